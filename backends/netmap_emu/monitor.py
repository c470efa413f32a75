"""Copy monitors of VALE ports (spec G1-G3): REGISTER of a port's name with NR_MONITOR_TX
and/or NR_MONITOR_RX gives a port with its own private memory whose RX ring ``i`` receives a
copy of every slot the parent's TX ring ``i`` hands over (at the parent's txsync, flagged
``NS_TXMON``) and of every slot its RX ring ``i`` receives (at the parent's rxsync).

Shape (G2): 1 TX ring (monitors cannot inject: its txsync just frees it) and
max(parent TX, parent RX) RX rings, slots as the parent's; name ``PARENT/rt#K`` with a
namespace-wide counter K. When a monitor ring lacks room, only the most recent slots that fit
are copied (G3). Copies run under the monitored switch's shared lock, so a monitor that is
closing (exclusive lock) is never written to. Zero-copy monitors (``/z``) and monitors of
pipes are not emulated (EOPNOTSUPP).
"""
from __future__ import annotations

import errno
import os

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import InvalidRequestError, NotSupportedError

from . import kernel as _k
from . import vale_kernel as _vk
from .layout import private_params
from .namespace import Namespace

__all__ = ["register", "switch_monitors", "copy_to_monitors"]

_MAXSLOTS = abi.NM_MONITOR_MAXSLOTS


def _monitor_hook(ns, reg, b, a, cand) -> list[str]:
    """A monitor closed: tell its parent's switch (senders drop the copy targets)."""
    mon = b.get("mon")
    if b.get("kind") != "monitor" or not mon:
        return []
    p = reg["parents"].get(mon["parent"])
    if p is not None and "vale" in p:
        _vk.bump(ns, reg, p["vale"]["switch"])
    return []


if _monitor_hook not in _k.DROP_HOOKS:
    _k.DROP_HOOKS.append(_monitor_hook)


def _rings(mode: int, ringid: int, n_tx: int, n_rx: int, name: str):
    if mode == abi.NR_REG_ALL_NIC:
        return list(range(n_tx)), list(range(n_rx))
    if mode == abi.NR_REG_ONE_NIC:
        if ringid >= n_tx and ringid >= n_rx:
            raise InvalidRequestError(errno.EINVAL, f"{name}: ringid={ringid} beyond the parent's rings")
        return ([ringid] if ringid < n_tx else []), ([ringid] if ringid < n_rx else [])
    raise InvalidRequestError(errno.EINVAL, f"{name}: nr_mode={mode}; a monitor of a VALE port takes "
                              "NR_REG_ALL_NIC or NR_REG_ONE_NIC")


def register(ns: Namespace, spec, kname: str, pn, hints: dict, rules: str):
    """REGISTER a copy monitor of VALE port ``kname`` (spec G1): EINVAL unless the parent is
    open (in netmap mode)."""
    from .vale_binding import ValeBinding

    flags = int(spec.flags)
    if flags & abi.NR_ZCOPY_MON:
        raise NotSupportedError(errno.EOPNOTSUPP, f"{kname}: zero-copy monitors (/z) are not emulated; "
                                "use a copy monitor (/r, /t, /rt)")
    if pn is not None:
        raise NotSupportedError(errno.EOPNOTSUPP, f"{kname}: monitors of pipes are not emulated")
    with ns.locked():
        reg, _ = _k.prepare(ns)
        try:
            pname = _vk.find_port(reg, kname) if (kname[:3] == "val" or _vk.is_persistent(reg, kname)) else None
        except Exception:
            pname = None
        if pname is None or pname not in reg["parents"]:
            raise InvalidRequestError(errno.EINVAL, f"{kname}: a monitor needs an existing port (the emulator "
                                      "monitors VALE ports)")
        if not any(b.get("kind") == "vale" and b["parent"] == pname for b in reg["bindings"].values()):
            raise InvalidRequestError(errno.EINVAL, f"{kname}: the port is not in netmap mode (open it first)")
        v = reg["parents"][pname]["vale"]
        mon_tx, mon_rx = _rings(spec.mode, spec.ringid, v["ntx"], v["nrx"], kname)
        if not flags & abi.NR_MONITOR_TX:
            mon_tx = []
        if not flags & abi.NR_MONITOR_RX:
            mon_rx = []
        nrx = max(v["ntx"], v["nrx"])
        rxs = _k._clamp(hints.get("rx_slots", 0), max(v["txs"], v["rxs"]), 1, _MAXSLOTS)
        txs = _k._clamp(hints.get("tx_slots", 0), v["txs"], 1, _MAXSLOTS)
        bound_rx = sorted(set(mon_tx) | set(mon_rx))
        k = reg.get("mon_seq", 0)
        reg["mon_seq"] = k + 1
        letters = ("r" if flags & abi.NR_MONITOR_RX else "") + ("t" if flags & abi.NR_MONITOR_TX else "")
        listed = f"{v['switch']}:{pname}" if v["persistent"] and v["switch"] else pname
        mname = f"{listed}/{letters}#{k}"
        extra_req = max(0, min(int(hints.get("extra_bufs", 0)), _k.EXTRA_BUFS_MAX))
        mem_id = _k._new_mem_id(reg)
        reg["txn"] = {"mems": [mem_id]}
        ns.save(reg)
        try:
            a = _k._create_mem(ns, reg, mem_id, private_params(1, txs, nrx, rxs, extra_req, 0), True)
            mrec = reg["mems"][str(mem_id)]
            total = a.geom.ring_pool.objtotal
            rx_objs = {}
            for r in bound_rx:
                obj = _k._take_obj(mrec["ring_used"], total, "ring", mem_id)
                a.init_ring(obj, rxs, r, abi.NR_RX, a.alloc_bufs(rxs))
                _vk.init_kring(a, obj, rxs, abi.NR_RX)
                rx_objs[r] = obj
            tobj = _k._take_obj(mrec["ring_used"], total, "ring", mem_id)
            a.init_ring(tobj, txs, 0, abi.NR_TX, a.alloc_bufs(txs))
            _vk.init_kring(a, tobj, txs, abi.NR_TX)
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
                "name": mname, "extra": int(extra.size), "rings": [tobj] + list(rx_objs.values()),
                "mon": {"parent": pname, "tx": mon_tx, "rx": mon_rx,
                        "objs": {str(r): o for r, o in rx_objs.items()}},
            }
            reg["txn"] = None
            ns.save(reg)
            _vk.bump(ns, reg, v["switch"])
        except BaseException:
            _vk._undo(ns)
            raise
    info = RegisterInfo(name=kname, mode=spec.mode, ringid=spec.ringid, flags=flags, mem_id=mem_id,
                        memsize=a.geom.memsize, offset=if_off, tx_rings=1, rx_rings=nrx, tx_slots=txs,
                        rx_slots=rxs, host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    r = _k.Registered(bid, info, a, (tobj,), tuple(rx_objs[i] for i in bound_rx), (0,), tuple(bound_rx))
    try:
        return ValeBinding(ns, r, rules, None, mname)
    except BaseException:
        with ns.locked():
            _k.unregister(ns, bid)
        ns.release_live(bid)
        raise


def switch_monitors(ns, reg: dict, port_of: dict) -> tuple[dict, dict]:
    """(TX, RX) copy targets of a switch's ports, keyed by (port index, ring id)."""
    from .vale_sync import RxTarget

    mon_tx: dict = {}
    mon_rx: dict = {}
    for b in reg["bindings"].values():
        mon = b.get("mon")
        if b.get("kind") != "monitor" or not mon or mon["parent"] not in port_of:
            continue
        port = port_of[mon["parent"]]
        a = _k._alloc_of(ns, reg, b["mem_id"])
        for side, out in (("tx", mon_tx), ("rx", mon_rx)):
            for r in mon[side]:
                obj = mon["objs"].get(str(r))
                if obj is not None:
                    out.setdefault((port, r), []).append(RxTarget(ns, a, obj))
    return mon_tx, mon_rx


def copy_to_monitors(mons, slots: np.ndarray, buffers: np.ndarray, *, tx: bool) -> None:
    """Copy ``slots`` (a netmap_slot array, in order) with their payload into each monitor
    ring: the most recent ones that fit, ``len`` truncated to the monitor's buffer size,
    flags copied (plus NS_TXMON for TX traffic)."""
    nb = buffers.shape[0]
    for t in mons:
        first, space = t.lease()
        m = 0
        try:
            k = slots.shape[0]
            m = min(k, space)
            if m == 0:
                continue
            s = slots[k - m:]
            src = s["buf_idx"].astype(np.int64)
            src[(src >= nb) | (src < 0)] = 0
            lens = np.minimum(s["len"].astype(np.int64), t.buffers.shape[1])
            n = t.slots.shape[0]
            d = np.arange(first, first + m, dtype=np.int64)
            d[d >= n] -= n
            dbuf = t.slots["buf_idx"][d].astype(np.int64)
            dbuf[(dbuf >= t.buffers.shape[0]) | (dbuf < 0)] = 0
            w = int(min(lens.max(), buffers.shape[1], t.buffers.shape[1]))
            t.buffers[dbuf, :w] = buffers[src, :w]
            t.slots["len"][d] = lens
            t.slots["flags"][d] = s["flags"] | (abi.NS_TXMON if tx else 0)
        finally:
            t.commit(m)
