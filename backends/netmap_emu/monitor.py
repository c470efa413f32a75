"""REGISTER of monitors (spec G1-G5): copy monitors (``/r``, ``/t``, ``/rt``) and zero-copy
monitors (``/z``) of VALE ports and of pipe ends, and the binding a monitor's file is.

Shape (G2): 1 TX ring (monitors cannot inject) and max(parent TX, parent RX) RX rings, slots
as the parent's rings (hints within 1..4096); RX ring ``i`` watches the parent's TX and/or RX
ring ``i``; name ``PARENT/[z][r][t]#K`` with K counting the parent's monitors. A copy monitor
gets a private allocator sized like netmap's (Live check 1: 8,478,720 bytes for 1024 slots);
a zero-copy monitor takes its rings, buffers and netmap_if from the parent's allocator (same
mem_id) and swaps buffers with the parent (G4). The parent must be in netmap mode (EINVAL).
How data moves is in :mod:`netmap_emu.monitor_sync`, who watches what in
:mod:`netmap_emu.monitor_topology`.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import InvalidRequestError, NoSuchPortError, OutOfMemoryError

from . import kernel as _k
from . import monitor_topology as _topo
from . import vale_kernel as _vk
from .binding import EmuBinding
from .layout import private_params
from .monitor_sync import MonitorRxCtl, MonitorTxCtl, copy_to_monitors, gone_error
from .namespace import Namespace

__all__ = ["register", "MonitorBinding", "copy_to_monitors"]

_MAXSLOTS = abi.NM_MONITOR_MAXSLOTS


@dataclass(frozen=True)
class _Parent:
    """The monitored port as REGISTER sees it."""

    key: tuple           # monitor_topology key
    listed: str          # the adapter name monitors are named after
    mem_id: int
    ntx: int
    nrx: int
    txs: int
    rxs: int


def _rings(mode: int, ringid: int, n_tx: int, n_rx: int, name: str):
    if mode == abi.NR_REG_ALL_NIC:
        return list(range(n_tx)), list(range(n_rx))
    if mode == abi.NR_REG_ONE_NIC:
        if ringid >= n_tx and ringid >= n_rx:
            raise InvalidRequestError(errno.EINVAL, f"{name}: ringid={ringid} beyond the parent's rings "
                                      f"(tx {n_tx}, rx {n_rx})")
        return ([ringid] if ringid < n_tx else []), ([ringid] if ringid < n_rx else [])
    raise InvalidRequestError(errno.EINVAL, f"{name}: nr_mode={mode}; a monitor takes NR_REG_ALL_NIC "
                              f"({abi.NR_REG_ALL_NIC}) or NR_REG_ONE_NIC ({abi.NR_REG_ONE_NIC})")


def _parent(reg: dict, kname: str, pn) -> tuple[_Parent, dict]:
    """The monitored port and the record its monitor counter lives in. EINVAL when it is not
    in netmap mode (G1), ENXIO for a name that is neither a VALE port nor a pipe."""
    if pn is not None:
        p = reg["parents"].get(pn.parent)
        pipe = None if p is None else p["pipes"].get(pn.pipe_id)
        key = ("pipe", pn.parent, pn.pipe_id, pn.end)
        if pipe is None or not _topo.in_netmap_mode(reg, key):
            raise InvalidRequestError(errno.EINVAL, f"{kname}: the pipe end is not in netmap mode "
                                      "(open it before its monitor)")
        e = pn.end
        par = _Parent(key, kname, p["mem_id"], pipe["ntx"][e], pipe["nrx"][e], pipe["txs"][e], pipe["rxs"][e])
        seq = pipe.setdefault("mon_seq", [0, 0])
        return par, {"rec": seq, "idx": e}
    if kname[:3] != "val" and not _vk.is_persistent(reg, kname):
        raise NoSuchPortError(errno.ENXIO, f"{kname}: no such port to monitor (the emulator monitors "
                              "VALE ports and pipe ends)")
    try:
        pname = _vk.find_port(reg, kname)
    except Exception:   # noqa: BLE001 - any unusable name: not a port in netmap mode
        pname = None
    prec = reg["parents"].get(pname) if pname is not None else None
    if prec is None or "vale" not in prec or not _topo.in_netmap_mode(reg, ("vale", pname)):
        raise InvalidRequestError(errno.EINVAL, f"{kname}: the port is not in netmap mode (open it before "
                                  "its monitor)")
    v = prec["vale"]
    listed = f"{v['switch']}:{pname}" if v["persistent"] and v["switch"] else pname
    par = _Parent(("vale", pname), listed, prec["mem_id"], v["ntx"], v["nrx"], v["txs"], v["rxs"])
    return par, {"rec": prec, "idx": "mon_seq"}


def _next_seq(slot: dict) -> int:
    rec, idx = slot["rec"], slot["idx"]
    if isinstance(rec, list):
        k = rec[idx]
        rec[idx] = k + 1
    else:
        k = rec.get(idx, 0)
        rec[idx] = k + 1
    return k


def register(ns: Namespace, spec, kname: str, pn, hints: dict, rules: str):
    """REGISTER a monitor of ``kname`` (a VALE port or pipe end in netmap mode)."""
    flags = int(spec.flags)
    zcopy = bool(flags & abi.NR_ZCOPY_MON)
    if zcopy:
        flags |= abi.NR_MONITOR_TX | abi.NR_MONITOR_RX   # as the kernel, echoed back (0x700)
    with ns.locked():
        reg, _ = _k.prepare(ns)
        par, seq = _parent(reg, kname, pn)
        mon_tx, mon_rx = _rings(spec.mode, spec.ringid, par.ntx, par.nrx, kname)
        if not flags & abi.NR_MONITOR_TX:
            mon_tx = []
        if not flags & abi.NR_MONITOR_RX:
            mon_rx = []
        nrx = max(par.ntx, par.nrx)
        rxs = _k._clamp(hints.get("rx_slots", 0), par.rxs, 1, _MAXSLOTS)
        txs = _k._clamp(hints.get("tx_slots", 0), par.txs, 1, _MAXSLOTS)
        bound_rx = sorted(set(mon_tx) | set(mon_rx))
        letters = ("z" if zcopy else "") + ("r" if flags & abi.NR_MONITOR_RX else "") \
            + ("t" if flags & abi.NR_MONITOR_TX else "")
        mname = f"{par.listed}/{letters}#{_next_seq(seq)}"
        extra_req = max(0, min(int(hints.get("extra_bufs", 0)), _k.EXTRA_BUFS_MAX))
        if zcopy:
            mem_id = par.mem_id
        else:
            mem_id = _k._new_mem_id(reg)
        reg["txn"] = {"mems": [mem_id]}
        ns.save(reg)
        try:
            if zcopy:
                a = _k._alloc_of(ns, reg, mem_id)
                if max(rxs, txs) > a.geom.max_slots():
                    raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {max(rxs, txs)} slots do not fit a ring "
                                           f"object of mem_id {mem_id} (at most {a.geom.max_slots()})")
            else:
                a = _k._create_mem(ns, reg, mem_id, private_params(1, txs, nrx, rxs, extra_req, 0), True)
            mrec = reg["mems"][str(mem_id)]
            total = a.geom.ring_pool.objtotal
            rx_objs = {}
            for r in bound_rx:   # RX rings first, then the TX ring (Live check 1)
                obj = _k._take_obj(mrec["ring_used"], total, "ring", mem_id)
                a.init_ring(obj, rxs, r, abi.NR_RX, a.alloc_bufs(rxs))
                _vk.init_kring(a, obj, rxs, abi.NR_RX)
                rx_objs[r] = obj
            tobj = _k._take_obj(mrec["ring_used"], total, "ring", mem_id)
            a.init_ring(tobj, txs, 0, abi.NR_TX, a.alloc_bufs(txs))
            _vk.init_kring(a, tobj, txs, abi.NR_TX)
            if 1 + nrx + 2 > a.geom.max_if_rings():
                raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {nrx + 3} ring_ofs entries do not fit a "
                                       f"netmap_if of mem_id {mem_id}")
            if_obj = _k._take_obj(mrec["if_used"], a.geom.if_pool.objtotal, "netmap_if", mem_id)
            extra = a.alloc_bufs(extra_req, partial=True)
            head = a.push_extra(extra)
            if_off = a.if_offset(if_obj)
            ofs = ([a.ring_offset(tobj) - if_off, 0]
                   + [a.ring_offset(rx_objs[r]) - if_off if r in rx_objs else 0 for r in range(nrx)] + [0])
            a.write_if(if_obj, mname, 1, nrx, ofs, head)
            bid = reg["next_bid"]
            reg["next_bid"] = bid + 1
            ns.hold_live(bid)
            path = ns.fifo_path(bid)
            _k._unlink(path)
            os.mkfifo(path, 0o600)
            reg["bindings"][str(bid)] = {
                "pid": os.getpid(), "mem_id": mem_id, "parent": None, "pipe": None, "end": 0,
                "kind": "monitor", "if": if_obj, "tx": [0], "rx": bound_rx, "excl": False, "flags": flags,
                "name": mname, "extra": int(extra.size), "rings": list(rx_objs.values()) + [tobj],
                "mon": {"key": list(par.key), "zcopy": zcopy, "gone": False, "tx": mon_tx, "rx": mon_rx,
                        "objs": {str(r): o for r, o in rx_objs.items()}},
            }
            _topo.retopo(ns, reg, par.key)    # chains and pipe rings learn of the new monitor
            reg["txn"] = None
            ns.save(reg)
            if par.key[0] == "vale":
                _vk.bump(ns, reg, reg["parents"][par.key[1]]["vale"]["switch"])
        except BaseException:
            _vk._undo(ns)
            raise
    info = RegisterInfo(name=kname, mode=spec.mode, ringid=spec.ringid, flags=flags, mem_id=mem_id,
                        memsize=a.geom.memsize, offset=if_off, tx_rings=1, rx_rings=nrx, tx_slots=txs,
                        rx_slots=rxs, host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    r = _k.Registered(bid, info, a, (tobj,), tuple(rx_objs[i] for i in bound_rx), (0,), tuple(bound_rx))
    try:
        return MonitorBinding(ns, r, rules)
    except BaseException:
        with ns.locked():
            _k.unregister(ns, bid)
        ns.release_live(bid)
        raise


class MonitorBinding(EmuBinding):
    """A registered monitor (one /dev/netmap fd bound to it). Its RX rings are filled by the
    monitored port's syncs; its TX ring refuses to send. Once the port leaves netmap mode
    (spec G5) rxsync does nothing: ``rules="netmap"`` returns normally as NIOCRXSYNC does,
    ``rules="strict"`` raises EIO; poll reports POLLERR either way."""

    def __init__(self, ns: Namespace, r: _k.Registered, rules: str) -> None:
        super().__init__(ns, r, rules)
        strict = rules == "strict"
        a, pfx = r.alloc, r.info.name
        self._tx = tuple(MonitorTxCtl(ns, a, o, f"{pfx}:tx{k}", strict, None, "")
                         for o, k in zip(r.tx_objs, r.tx_ids))
        self._rx = tuple(MonitorRxCtl(ns, a, o, f"{pfx}:rx{k}", strict) for o, k in zip(r.rx_objs, r.rx_ids))

    def rxsync(self) -> None:
        """NIOCRXSYNC on every bound RX ring (see the class doc for a monitor whose port left)."""
        self._check()
        failed = False
        for c in self._rx:
            if c.rxsync() and c.gone():
                failed = True
        if failed and self.rules == "strict":
            raise gone_error(self.info.name)

    def gone(self) -> bool:
        """Whether the monitored port left netmap mode (not a netmap call)."""
        return any(c.gone() for c in self._rx)

    def peer_bound(self) -> bool:   # pipes only
        return False
