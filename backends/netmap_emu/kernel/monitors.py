"""Monitors in the emulated kernel (spec G1-G5): REGISTER of copy (``/r``, ``/t``, ``/rt``) and
zero-copy (``/z``) monitors of VALE ports and pipe ends, who watches which ring, and what
happens when a monitor or its port goes away.

Shape (G2): 1 TX ring (monitors cannot inject) and max(parent TX, parent RX) RX rings, slots as
the parent's (hints within 1..4096); RX ring ``i`` watches the parent's TX and/or RX ring ``i``;
name ``PARENT/[z][r][t]#K``, K counting the parent's monitors. A copy monitor gets a private
allocator sized like netmap's (Live check 1); a zero-copy monitor takes its rings, buffers and
netmap_if from the parent's allocator and swaps buffers with the parent (G4).

Zero-copy monitors of one ring form a chain in registration order: the port's ring feeds the
first, each monitor's rxsync the next. Copy monitors all see the port's ring. A pipe ring or a
chained monitor ring learns that it delivers somewhere through its kring ``mon`` word, a
topology generation written here under the ring's lock (:func:`retopo`); VALE ports through
their switch's generation. The datapath resolves what a ring delivers to with
:func:`ring_watchers` and :func:`switch_watchers`, as (allocator, ring object) references.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
from dataclasses import dataclass

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import InvalidRequestError, NoSuchPortError, OutOfMemoryError
from netmap_core.portspec import PortSpec

from ..shm import kring
from ..shm.allocator import Allocator
from ..shm.geometry import private_params
from ..shm.namespace import Namespace, acquire, lock_timeout, sync_lock_pos, take_mutex, wait_deadline
from ..shm.wake import wake_ring
from . import memory, vale
from .bindings import new_binding
from .memory import clamp
from .pipes import Registered, pipe_end
from .registry import Registry, Store
from .state import Binding, Monitor, PortKey, pipe_key, port_key

__all__ = ["register", "drop_binding", "ring_watchers", "switch_watchers", "in_netmap_mode",
           "live_monitors", "RingRef", "MONITOR_FLAGS"]

MONITOR_FLAGS = abi.NR_MONITOR_TX | abi.NR_MONITOR_RX | abi.NR_ZCOPY_MON
#: a ring another ring delivers to: (its allocator as mapped here, its ring object)
RingRef = tuple[Allocator, int]


# --- who watches what -----------------------------------------------------------------------

def live_monitors(reg: Registry, key: PortKey, *, gone: bool = False) -> list[Binding]:
    """Monitors of port ``key`` in registration order (``gone=True``: orphaned ones too)."""
    return [b for b in reg.bindings.by("monitors", key) if gone or not (b.mon and b.mon.gone)]


def in_netmap_mode(reg: Registry, key: PortKey) -> bool:
    return reg.bindings.any("port", key)


def _mon(b: Binding) -> Monitor:
    assert b.mon is not None
    return b.mon


def _chain_next(reg: Registry, key: PortKey, bid: int, i: int) -> Binding | None:
    """The zero-copy monitor that monitor ``bid``'s ring ``i`` feeds: the next one (in
    registration order) on the port's RX list of ring ``i`` (netmap's rxsync of a monitor ring
    follows that list only)."""
    mons = live_monitors(reg, key)
    me = next((b for b in mons if b.bid == bid), None)
    if me is None or i not in _mon(me).rx:
        return None
    return next((b for b in mons if b.bid > bid and _mon(b).zcopy and i in _mon(b).rx), None)


def _port_watchers(reg: Registry, key: PortKey, side: str, i: int) -> tuple[list[Binding], Binding | None]:
    """(copy monitors, first zero-copy monitor) watching ring ``i`` (``side`` "tx"/"rx") of
    port ``key``."""
    copies: list[Binding] = []
    zmon = None
    for b in live_monitors(reg, key):
        m = _mon(b)
        if i not in (m.tx if side == "tx" else m.rx) or m.obj(i) is None:
            continue
        if m.zcopy:
            zmon = zmon or b
        else:
            copies.append(b)
    return copies, zmon


def _watchers(reg: Registry, mem_id: int, obj: int):
    """What ring object ``obj`` of allocator ``mem_id`` delivers to, as (binding, monitor ring
    index) pairs: (copies, zero-copy, peer copies). A pipe TX ring delivers to its own TX
    monitors and, at the txsync that fills the peer RX ring, to that ring's RX copy monitors
    (netmap's notify runs the receiver's monitors then, spec G3); a pipe RX ring to its RX
    zero-copy monitor; a zero-copy monitor's ring to the next one of its chain."""
    for b in reg.bindings.by("mem", mem_id):
        m = b.mon
        if m is None or not m.zcopy:
            continue
        for i, o in m.objs:
            if o == obj:
                nxt = None if m.gone else _chain_next(reg, m.key, b.bid, i)
                return [], (None if nxt is None else (nxt, i)), []
    for p in reg.parents.by("mem", mem_id):
        for pipe in reg.pipes.by("parent", p.name):
            for e in (0, 1):
                for side, objs in (("tx", pipe.tx[e]), ("rx", pipe.rx[e])):
                    if obj not in objs:
                        continue
                    i = objs.index(obj)
                    copies, zmon = _port_watchers(reg, ("pipe", p.name, pipe.pipe_id, e), side, i)
                    if side == "rx":
                        return [], (None if zmon is None else (zmon, i)), []
                    peer, _ = _port_watchers(reg, ("pipe", p.name, pipe.pipe_id, 1 - e), "rx", i)
                    return ([(b, i) for b in copies], (None if zmon is None else (zmon, i)),
                            [(b, i) for b in peer])
    return [], None, []


def _ref(ns: Namespace, reg: Registry, b: Binding, i: int) -> RingRef:
    obj = _mon(b).obj(i)
    assert obj is not None
    return memory.mapped(ns, reg, b.mem_id), obj


def ring_watchers(ns: Namespace, reg: Registry, mem_id: int, obj: int):
    """What ring ``obj`` of ``mem_id`` delivers to: (copy monitor rings, zero-copy monitor ring
    or None, copy monitor rings of the peer RX ring), as :data:`RingRef`."""
    copies, zmon, peer = _watchers(reg, mem_id, obj)
    return ([_ref(ns, reg, b, i) for b, i in copies], None if zmon is None else _ref(ns, reg, *zmon),
            [_ref(ns, reg, b, i) for b, i in peer])


def switch_watchers(ns: Namespace, reg: Registry, port_of: dict[str, int]):
    """Monitors of a switch's ports: (TX copy rings, RX copy rings, first TX zero-copy ring,
    first RX zero-copy ring), keyed by (port index, ring id), as :data:`RingRef`."""
    mon_tx: dict = {}
    mon_rx: dict = {}
    z_tx: dict = {}
    z_rx: dict = {}
    for pname, port in port_of.items():
        for b in live_monitors(reg, ("vale", pname)):
            m = _mon(b)
            for rings, out, zout in ((m.tx, mon_tx, z_tx), (m.rx, mon_rx, z_rx)):
                for r in rings:
                    if m.obj(r) is None:
                        continue
                    if m.zcopy:
                        zout.setdefault((port, r), _ref(ns, reg, b, r))
                    else:
                        out.setdefault((port, r), []).append(_ref(ns, reg, b, r))
    return mon_tx, mon_rx, z_tx, z_rx


def _set_mon_word(ns: Namespace, a: Allocator, obj: int, value: int) -> None:
    """Write ring ``obj``'s ``mon`` word under the lock its syncs hold (a pipe RX ring's is its
    peer TX ring's), so no sync is using the old value when this returns."""
    lockobj = obj if a.blocks[obj, kring.DIR] == abi.NR_TX else int(a.blocks[obj, kring.PEER]) - 1
    if not 0 <= lockobj < a.blocks.shape[0]:
        lockobj = obj
    what = f"the lock of ring object {lockobj} of mem_id {a.mem_id}"
    deadline = wait_deadline(lock_timeout())   # a process stopped inside a sync: bounded
    mutex = a.mutex(lockobj)
    take_mutex(mutex, deadline, what)
    try:
        pos = sync_lock_pos(a.gen, lockobj)
        acquire(ns.fd, pos, deadline, what)
        try:
            a.blocks[obj, kring.MON] = value
        finally:
            fcntl.lockf(ns.fd, fcntl.LOCK_UN, 1, pos)
    finally:
        mutex.release()


def retopo(ns: Namespace, reg: Registry, key: PortKey) -> None:
    """Monitors of port ``key`` changed: give every ring that delivers to monitors (both ends'
    rings of a pipe, the zero-copy monitors' rings of a chain) a fresh ``mon`` generation, 0
    where nothing is delivered any more. VALE ports' own rings follow the switch generation."""
    rings: list[tuple[int, int]] = []
    keys = [key]
    if key[0] == "pipe":
        keys = [("pipe", key[1], key[2], 0), ("pipe", key[1], key[2], 1)]
        pipe = reg.pipes.get(pipe_key(key[1], key[2]))
        if pipe is not None:
            mem_id = reg.parents[key[1]].mem_id
            rings += [(mem_id, o) for o in pipe.objs()]
    for k in keys:
        for b in live_monitors(reg, k, gone=True):
            if _mon(b).zcopy:
                rings += [(b.mem_id, o) for _, o in _mon(b).objs]
    gen = int.from_bytes(os.urandom(4), "little") | 1   # never 0; unique enough to never alias
    for mem_id, obj in rings:
        copies, zmon, peer = _watchers(reg, mem_id, obj)
        has = bool(copies or zmon or peer)
        a = memory.mapped(ns, reg, mem_id)
        if has or a.blocks[obj, kring.MON]:
            _set_mon_word(ns, a, obj, gen if has else 0)


def _orphan(ns: Namespace, reg: Registry, key: PortKey) -> list[str]:
    """Port ``key`` left netmap mode (spec G5): its monitors are gone for good - their rxsync
    fails with EIO from now on, sleepers in poll are woken to see POLLERR."""
    out = []
    for b in live_monitors(reg, key):
        reg.bindings[b.bid] = dataclasses.replace(b, mon=dataclasses.replace(_mon(b), gone=True))
        a = memory.mapped(ns, reg, b.mem_id)
        for obj in b.rings:
            a.blocks[obj, kring.GONE] = 1
            wake_ring(a.ks, a.block_word(obj, kring.WAITERS), ns.dir)
        out.append(f"monitor {b.name} orphaned")
    return out


def _bump(ns: Namespace, reg: Registry, key: PortKey) -> None:
    if key[0] == "vale":
        p = reg.parents.get(key[1])
        if p is not None and p.vale is not None:
            vale.bump(ns, reg, p.vale.switch)


def drop_binding(ns: Namespace, reg: Registry, b: Binding, a: Allocator, cand: list[np.ndarray]) -> list[str]:
    """Step 4 of unregister (``b`` already left the registry). A monitor: stop every delivery
    into it (switch generation, ``mon`` words), then free a zero-copy monitor's rings (their
    buffers go to ``cand``). The last binding of a monitored port: orphan its monitors (G5)."""
    if b.mon is not None:
        key = b.mon.key
        _bump(ns, reg, key)
        retopo(ns, reg, key)
        if b.mon.zcopy:
            cand.append(memory.slot_bufs(a, b.rings))
            memory.release_rings(reg, b.mem_id, b.rings)
        return []
    port = port_key(b)
    if port is None or in_netmap_mode(reg, port) or not live_monitors(reg, port):
        return []
    out = _orphan(ns, reg, port)
    _bump(ns, reg, port)
    retopo(ns, reg, port)
    return out


# --- REGISTER ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Parent:
    """The monitored port as REGISTER sees it."""

    key: PortKey
    listed: str          # the adapter name monitors are named after
    mem_id: int
    ntx: int
    nrx: int
    txs: int
    rxs: int
    seq: int             # monitors opened on it so far


def _rings(mode: int, ringid: int, n_tx: int, n_rx: int, name: str) -> tuple[list[int], list[int]]:
    if mode == abi.NR_REG_ALL_NIC:
        return list(range(n_tx)), list(range(n_rx))
    if mode == abi.NR_REG_ONE_NIC:
        if ringid >= n_tx and ringid >= n_rx:
            raise InvalidRequestError(errno.EINVAL, f"{name}: ringid={ringid} beyond the parent's rings "
                                      f"(tx {n_tx}, rx {n_rx})")
        return ([ringid] if ringid < n_tx else []), ([ringid] if ringid < n_rx else [])
    raise InvalidRequestError(errno.EINVAL, f"{name}: nr_mode={mode}; a monitor takes NR_REG_ALL_NIC "
                              f"({abi.NR_REG_ALL_NIC}) or NR_REG_ONE_NIC ({abi.NR_REG_ONE_NIC})")


def _parent(reg: Registry, kname: str, spec: PortSpec) -> _Parent:
    """The monitored port. EINVAL when it is not in netmap mode (G1), ENXIO for a name that is
    neither a VALE port nor a pipe."""
    if spec.is_pipe:
        e = pipe_end(spec)
        pipe = reg.pipes.get(pipe_key(spec.parent, spec.pipe_id or ""))
        key: PortKey = ("pipe", spec.parent, spec.pipe_id, e)
        if pipe is None or not in_netmap_mode(reg, key):
            raise InvalidRequestError(errno.EINVAL, f"{kname}: the pipe end is not in netmap mode "
                                      "(open it before its monitor)")
        return _Parent(key, kname, reg.parents[spec.parent].mem_id, pipe.ntx[e], pipe.nrx[e], pipe.txs[e],
                       pipe.rxs[e], pipe.mon_seq[e])
    if kname[:3] != "val" and not vale.is_persistent(reg, kname):
        raise NoSuchPortError(errno.ENXIO, f"{kname}: no such port to monitor (the emulator monitors "
                              "VALE ports and pipe ends)")
    try:
        pname = vale.find_port(reg, kname)
    except Exception:   # noqa: BLE001 - any unusable name: not a port in netmap mode
        pname = None
    p = reg.parents.get(pname) if pname is not None else None
    if p is None or p.vale is None or not in_netmap_mode(reg, ("vale", pname)):
        raise InvalidRequestError(errno.EINVAL, f"{kname}: the port is not in netmap mode (open it before "
                                  "its monitor)")
    v = p.vale
    listed = f"{v.switch}:{pname}" if v.persistent and v.switch else p.name
    return _Parent(("vale", p.name), listed, p.mem_id, v.ntx, v.nrx, v.txs, v.rxs, p.mon_seq)


def _count_monitor(reg: Registry, par: _Parent) -> None:
    if par.key[0] == "pipe":
        k = pipe_key(par.key[1], par.key[2])
        pipe = reg.pipes[k]
        seq = list(pipe.mon_seq)
        seq[par.key[3]] += 1
        reg.pipes[k] = dataclasses.replace(pipe, mon_seq=(seq[0], seq[1]))
    else:
        p = reg.parents[par.key[1]]
        reg.parents[p.name] = dataclasses.replace(p, mon_seq=p.mon_seq + 1)


def register(ns: Namespace, store: Store, spec: PortSpec, hints: dict) -> Registered:
    """REGISTER a monitor of ``spec.name`` (a VALE port or pipe end in netmap mode). Commits."""
    reg = store.reg
    kname, mode, ringid, flags = spec.name, spec.mode, spec.ringid, int(spec.flags)
    zcopy = bool(flags & abi.NR_ZCOPY_MON)
    if zcopy:
        flags |= abi.NR_MONITOR_TX | abi.NR_MONITOR_RX   # as the kernel, echoed back (0x700)
    par = _parent(reg, kname, spec)
    mon_tx, mon_rx = _rings(mode, ringid, par.ntx, par.nrx, kname)
    if not flags & abi.NR_MONITOR_TX:
        mon_tx = []
    if not flags & abi.NR_MONITOR_RX:
        mon_rx = []
    nrx = max(par.ntx, par.nrx)
    rxs = clamp(hints.get("rx_slots", 0), par.rxs, 1, abi.NM_MONITOR_MAXSLOTS)
    txs = clamp(hints.get("tx_slots", 0), par.txs, 1, abi.NM_MONITOR_MAXSLOTS)
    bound_rx = sorted(set(mon_tx) | set(mon_rx))
    letters = ("z" if zcopy else "") + ("r" if flags & abi.NR_MONITOR_RX else "") \
        + ("t" if flags & abi.NR_MONITOR_TX else "")
    mname = f"{par.listed}/{letters}#{par.seq}"
    extra_req = max(0, min(int(hints.get("extra_bufs", 0)), abi.NM_BDG_MAX_EXTRA_BUFS))
    mem_id = par.mem_id if zcopy else memory.new_mem_id(reg)
    memory.mark(store, mem_id)
    try:
        _count_monitor(reg, par)
        if zcopy:
            a = memory.mapped(ns, reg, mem_id)
            if max(rxs, txs) > a.geom.max_slots():
                raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {max(rxs, txs)} slots do not fit a ring "
                                       f"object of mem_id {mem_id} (at most {a.geom.max_slots()})")
        else:
            a = memory.create_mem(ns, reg, mem_id, private_params(1, txs, nrx, rxs, extra_req, 0), True)
        total = a.geom.ring_pool.objtotal
        rx_objs: dict[int, int] = {}
        for r in bound_rx:   # RX rings first, then the TX ring (Live check 1)
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, rxs, r, abi.NR_RX, a.alloc_bufs(rxs))
            a.init_single(obj, rxs, abi.NR_RX)
            rx_objs[r] = obj
        tobj = memory.take_obj(reg, mem_id, "ring", total)
        a.init_ring(tobj, txs, 0, abi.NR_TX, a.alloc_bufs(txs))
        a.init_single(tobj, txs, abi.NR_TX)
        if_obj, if_off, extra = memory.write_netmap_if(
            reg, a, kname, mname, (tobj,), [rx_objs.get(r, -1) for r in range(nrx)], (0,), bound_rx,
            extra_req)
        mon = Monitor(par.key, zcopy, False, tuple(mon_tx), tuple(mon_rx), tuple(sorted(rx_objs.items())))
        bnd = new_binding(ns, reg, kind="monitor", mem_id=mem_id, parent=None, pipe=None, end=0,
                          if_obj=if_obj, tx=(0,), rx=tuple(bound_rx), excl=False, flags=flags, name=mname,
                          extra=int(extra.size), rings=(*rx_objs.values(), tobj), mon=mon)
        retopo(ns, reg, par.key)    # chains and pipe rings learn of the new monitor
        memory.finish(store)
        _bump(ns, reg, par.key)
    except BaseException:
        memory.undo(ns, store)
        raise
    info = RegisterInfo(name=kname, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id,
                        memsize=a.geom.memsize, offset=if_off, tx_rings=1, rx_rings=nrx, tx_slots=txs,
                        rx_slots=rxs, host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    return Registered(bnd.bid, info, a, (tobj,), tuple(rx_objs[i] for i in bound_rx), (0,), tuple(bound_rx))
