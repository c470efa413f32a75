"""Who monitors what: monitors in the registry, zero-copy chains, the kring words that tell a
sync what a ring delivers to, and the unregister hook that tears monitors down or orphans them.

A monitor's binding record (namespace registry) carries::

    b["mon"] = {"key": ["vale", PORT] | ["pipe", PARENT, PIPE_ID, END],   # the monitored port
                "zcopy": bool, "gone": bool,         # gone: the port left netmap mode (G5)
                "tx": [ring ids], "rx": [ring ids],  # the port's rings it watches
                "objs": {ring id: ring object of its RX ring}}

Zero-copy monitors of one ring form a chain in registration order (spec G4): the port's ring
feeds the first, each monitor's rxsync the next. Copy monitors all see the port's ring.
VALE ports find their monitors in the switch snapshot (:mod:`netmap_emu.vale_sync`); pipe rings
and zero-copy monitor rings through their ``W_MON`` word (:mod:`netmap_emu.monitor_sync`).
Everything here runs under the namespace lock.
"""
from __future__ import annotations

import fcntl
import os

from netmap_core import abi

from . import allocator as _alloc
from . import kernel as _k
from . import vale_kernel as _vk
from .allocator import W_DIR, W_PEER, W_WAIT
from .monitor_sync import W_GONE, W_MON
from .namespace import SYNC_BASE, Namespace
from .vale_sync import RxTarget, wake_ring

__all__ = ["port_key", "monitor_key", "live_monitors", "in_netmap_mode", "chain_next",
           "watch_targets", "retopo", "orphan", "drop_hook", "switch_monitors"]


def port_key(b: dict):
    """The port a (non-monitor) binding registers: ("vale", port) or ("pipe", parent, id, end)."""
    if b.get("kind") == "vale":
        return ("vale", b["parent"])
    if b.get("kind") is None and b.get("pipe") is not None:
        return ("pipe", b["parent"], b["pipe"], b["end"])
    return None


def monitor_key(b: dict):
    mon = b.get("mon")
    return tuple(mon["key"]) if b.get("kind") == "monitor" and mon else None


def live_monitors(reg: dict, key, *, gone: bool = False) -> list[tuple[int, dict]]:
    """Monitors of port ``key`` in registration order (``gone=True``: orphaned ones too)."""
    out = [(int(bid), b) for bid, b in reg["bindings"].items()
           if monitor_key(b) == key and (gone or not b["mon"].get("gone"))]
    out.sort(key=lambda x: x[0])
    return out


def in_netmap_mode(reg: dict, key) -> bool:
    return any(port_key(o) == key for o in reg["bindings"].values())


def chain_next(reg: dict, key, bid: int, i: int):
    """The zero-copy monitor that monitor ``bid``'s ring ``i`` feeds: the next one (in
    registration order) on the port's RX list of ring ``i`` - netmap's rxsync of a monitor
    ring follows that list only. Returns its binding record or None."""
    mons = live_monitors(reg, key)
    me = next((b for k, b in mons if k == bid), None)
    if me is None or i not in me["mon"]["rx"]:
        return None
    return next((b for k, b in mons if k > bid and b["mon"]["zcopy"] and i in b["mon"]["rx"]), None)


def _target(ns: Namespace, reg: dict, b: dict, i: int) -> RxTarget:
    return RxTarget(ns, _k._alloc_of(ns, reg, b["mem_id"]), b["mon"]["objs"][str(i)])


def _port_watchers(reg: dict, key, side: str, i: int):
    """(copy monitors, first zero-copy monitor) watching ring ``i`` (``side`` "tx"/"rx") of
    port ``key``, as binding records."""
    copies, zmon = [], None
    for _bid, b in live_monitors(reg, key):
        if i not in b["mon"][side] or str(i) not in b["mon"]["objs"]:
            continue
        if b["mon"]["zcopy"]:
            zmon = zmon or b
        else:
            copies.append(b)
    return copies, zmon


def _pipe(reg: dict, key):
    p = reg["parents"].get(key[1])
    return None if p is None else p["pipes"].get(key[2])


def _watchers(reg: dict, mem_id: int, obj: int):
    """What ring object ``obj`` of allocator ``mem_id`` delivers to, as binding records and
    the monitor ring index: (copies, zero-copy, peer copies). A pipe TX ring delivers to its
    own TX monitors and, at the txsync that fills the peer RX ring, to that ring's RX copy
    monitors (netmap's notify runs the receiver's monitors then, spec G3); a pipe RX ring to
    its RX zero-copy monitor; a zero-copy monitor's ring to the next one of its chain."""
    for bid, b in reg["bindings"].items():
        key = monitor_key(b)
        if key is None or b["mem_id"] != mem_id or not b["mon"]["zcopy"]:
            continue
        for i, o in b["mon"]["objs"].items():
            if o == obj:
                nxt = None if b["mon"].get("gone") else chain_next(reg, key, int(bid), int(i))
                return [], (None if nxt is None else (nxt, int(i))), []
    for pname, p in reg["parents"].items():
        if p["mem_id"] != mem_id:
            continue
        for pid, pipe in p["pipes"].items():
            for e in (0, 1):
                for side in ("tx", "rx"):
                    if obj not in pipe[side][e]:
                        continue
                    i = pipe[side][e].index(obj)
                    copies, zmon = _port_watchers(reg, ("pipe", pname, pid, e), side, i)
                    if side == "rx":
                        return [], (None if zmon is None else (zmon, i)), []
                    peer, _z = _port_watchers(reg, ("pipe", pname, pid, 1 - e), "rx", i)
                    return ([(b, i) for b in copies], (None if zmon is None else (zmon, i)),
                            [(b, i) for b in peer])
    return [], None, []


def watch_targets(ns: Namespace, reg: dict, mem_id: int, obj: int):
    """:func:`_watchers` as RxTargets: (copies, zero-copy target or None, peer copies)."""
    copies, zmon, peer = _watchers(reg, mem_id, obj)
    return ([_target(ns, reg, b, i) for b, i in copies],
            None if zmon is None else _target(ns, reg, *zmon),
            [_target(ns, reg, b, i) for b, i in peer])


def _set_word(ns: Namespace, a: _alloc.Allocator, obj: int, value: int) -> None:
    """Write ring ``obj``'s W_MON under the lock its syncs hold (a pipe RX ring's is its
    peer TX ring's), so no sync is using the old value when this returns."""
    lockobj = obj if a.blocks[obj, W_DIR] == abi.NR_TX else int(a.blocks[obj, W_PEER]) - 1
    if not 0 <= lockobj < a.blocks.shape[0]:
        lockobj = obj
    with a.mutex(lockobj):
        pos = SYNC_BASE + a.gen * 4096 + lockobj
        fcntl.lockf(ns.fd, fcntl.LOCK_EX, 1, pos)
        try:
            a.blocks[obj, W_MON] = value
        finally:
            fcntl.lockf(ns.fd, fcntl.LOCK_UN, 1, pos)


def retopo(ns: Namespace, reg: dict, key) -> None:
    """Monitors of port ``key`` changed: give every ring that delivers to monitors (both ends'
    rings of a pipe, the zero-copy monitors' rings of a chain) a fresh W_MON generation, 0
    where nothing is delivered any more. VALE ports' own rings follow the switch generation."""
    rings: list[tuple[int, int]] = []
    keys = [key]
    if key[0] == "pipe":
        keys = [("pipe", key[1], key[2], 0), ("pipe", key[1], key[2], 1)]
        pipe = _pipe(reg, key)
        if pipe is not None:
            mem_id = reg["parents"][key[1]]["mem_id"]
            rings += [(mem_id, o) for side in ("tx", "rx") for end in pipe[side] for o in end if o >= 0]
    for k in keys:
        for _bid, b in live_monitors(reg, k, gone=True):
            if b["mon"]["zcopy"]:
                rings += [(b["mem_id"], o) for o in b["mon"]["objs"].values()]
    gen = int.from_bytes(os.urandom(4), "little") | 1   # never 0; unique enough to never alias
    for mem_id, obj in rings:
        copies, zmon, peer = _watchers(reg, mem_id, obj)
        has = bool(copies or zmon or peer)
        a = _k._alloc_of(ns, reg, mem_id)
        if has or a.blocks[obj, W_MON]:
            _set_word(ns, a, obj, gen if has else 0)


def orphan(ns: Namespace, reg: dict, key) -> list[str]:
    """Port ``key`` left netmap mode (spec G5): its monitors are marked gone for good - their
    rxsync fails with EIO from now on, sleepers in poll are woken to see POLLERR."""
    out = []
    for bid, b in live_monitors(reg, key):
        b["mon"]["gone"] = True
        a = _k._alloc_of(ns, reg, b["mem_id"])
        for obj in b["rings"]:
            a.blocks[obj, W_GONE] = 1
            wake_ring(a.ks, a.block_word(obj, W_WAIT), ns.dir)
        out.append(f"monitor {b['name']} orphaned")
    return out


def _bump(ns: Namespace, reg: dict, key) -> None:
    if key[0] == "vale":
        p = reg["parents"].get(key[1])
        if p is not None and "vale" in p:
            _vk.bump(ns, reg, p["vale"]["switch"])


def drop_hook(ns: Namespace, reg: dict, b: dict, a: _alloc.Allocator, cand: list) -> list[str]:
    """Called by the core's unregister after binding ``b`` left the registry. A monitor:
    stop every delivery into it (switch generation, W_MON words), then free a zero-copy
    monitor's rings (their buffers go to ``cand``). The last binding of a monitored port:
    orphan its monitors (G5)."""
    key = monitor_key(b)
    if key is not None:
        _bump(ns, reg, key)
        retopo(ns, reg, key)
        if b["mon"]["zcopy"]:
            mrec = reg["mems"].get(str(b["mem_id"]))
            cand.append(_k._slot_bufs(a, b["rings"]))
            for o in b["rings"]:
                if mrec is not None and o in mrec["ring_used"]:
                    mrec["ring_used"].remove(o)
        return []
    key = port_key(b)
    if key is None or in_netmap_mode(reg, key) or not live_monitors(reg, key):
        return []
    out = orphan(ns, reg, key)
    _bump(ns, reg, key)
    retopo(ns, reg, key)
    return out


def switch_monitors(ns: Namespace, reg: dict, port_of: dict) -> tuple[dict, dict, dict, dict]:
    """Monitors of a switch's ports for its snapshot: (TX copy targets, RX copy targets,
    first TX zero-copy target, first RX zero-copy target), keyed by (port index, ring id)."""
    mon_tx: dict = {}
    mon_rx: dict = {}
    z_tx: dict = {}
    z_rx: dict = {}
    for pname, port in port_of.items():
        key = ("vale", pname)
        mons = live_monitors(reg, key)
        if not mons:
            continue
        for _bid, b in mons:
            for side, out, zout in (("tx", mon_tx, z_tx), ("rx", mon_rx, z_rx)):
                for r in b["mon"][side]:
                    if str(r) not in b["mon"]["objs"]:
                        continue
                    if b["mon"]["zcopy"]:
                        if (port, r) not in zout:
                            zout[(port, r)] = _target(ns, reg, b, r)
                    else:
                        out.setdefault((port, r), []).append(_target(ns, reg, b, r))
    return mon_tx, mon_rx, z_tx, z_rx


# every process that may reclaim a binding (any registry operation can) must run this
if drop_hook not in _k.DROP_HOOKS:
    _k.DROP_HOOKS.append(drop_hook)
