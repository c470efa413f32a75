"""The emulated kernel side of VALE txsync/rxsync, run in the calling process: the sender's
txsync forwards ``[hwcur, head)`` through the switch and frees its whole ring (spec E6), the
receiver's rxsync releases ``[hwcur, head)`` and shows what senders published (spec E12).

Locks (fcntl byte-range locks on the namespace lock file, dropped by the OS when a holder
dies, plus a thread mutex per ring): each ring has the lock byte the core uses for ring pairs
(``SYNC_BASE + gen*4096 + ring object``). A sender holds its TX ring's byte for the whole
txsync and one destination RX ring's byte at a time while it reserves, copies and publishes
(netmap only leases under the lock; holding it is simpler and a dead sender publishes
nothing: ``hwtail`` moves with one store after the copies). Lock order is always TX ring ->
switch (shared) -> one RX ring, and nobody waits for the namespace lock while holding the
switch byte, so there is no cycle.
"""
from __future__ import annotations

import fcntl
import importlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from netmap_core import abi

from . import allocator as _alloc
from . import kernel as _k
from .allocator import W_HWCUR, W_PEER_HWTAIL, W_RCUR, W_RHEAD, W_RTAIL, W_WAIT
from .prologue import KernelPrologue
from .namespace import SYNC_BASE, Namespace
from .sync import _wake, arm_waiter, disarm_waiter, fence
from .vale_forward import Destinations, ForwardStats, SourceSlots, forward
from .vale_lookup import drop_all
from .vale_switch import SwitchSeg, attach_seg

__all__ = ["RxTarget", "ValeTxCtl", "ValeRxCtl", "SwitchRuntime", "runtime_for", "local_lookups",
           "read_indirect"]

_NOT_CHANGED = np.uint16(0xFFFF ^ abi.NS_BUF_CHANGED)
_MAXRINGS = abi.NM_BDG_MAXRINGS
#: process-local lookups installed with ``local=True``: (namespace, switch) -> callable
local_lookups: dict[tuple[str, str], Callable] = {}
_RUNTIMES: dict[tuple[str, str], "SwitchRuntime"] = {}
_RT_LOCK = threading.Lock()
_MEMFD: list[int] = []


def read_indirect(ptr: int, length: int) -> Optional[bytes]:
    """``NS_INDIRECT``: ``length`` bytes at user address ``ptr`` of this process (the sender's
    txsync runs here), read through /proc/self/mem so a bad pointer fails like copyin."""
    try:
        if not _MEMFD:
            _MEMFD.append(os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC))
        data = os.pread(_MEMFD[0], length, ptr)
        return data if len(data) == length else None
    except (OSError, OverflowError, ValueError):
        return None


def _span(a: int, b: int, n: int) -> np.ndarray:
    return np.arange(a, b) if b >= a else np.concatenate((np.arange(a, n), np.arange(0, b)))


class RxTarget:
    """A VALE RX ring as a forwarding destination (see :class:`netmap_emu.vale_forward.RxTarget`):
    ``lease`` takes the ring's locks and returns (hwtail, free slots), ``commit`` publishes the
    new hwtail with one store, unlocks and wakes receivers sleeping in poll on the ring."""

    __slots__ = ("slots", "buffers", "ks", "n", "i_hwcur", "i_hwtail", "wait", "mutex", "lockfd",
                 "lockpos", "ns_dir", "_tail", "monitors")

    def __init__(self, ns: Namespace, a: _alloc.Allocator, obj: int) -> None:
        self.slots = a.slots(obj)
        self.buffers = a.buffers
        self.ks = a.ks
        self.n = self.slots.shape[0]
        self.i_hwcur = a.block_word(obj, W_HWCUR)
        self.i_hwtail = a.block_word(obj, W_PEER_HWTAIL)   # an unpaired ring is its own peer
        self.wait = a.block_word(obj, W_WAIT)
        self.mutex = a.mutex(obj)
        self.lockfd = ns.fd
        self.lockpos = SYNC_BASE + a.gen * 4096 + obj
        self.ns_dir = ns.dir
        self._tail = 0
        self.monitors = None   # copy monitors of this ring (set by the switch snapshot)

    def lease(self) -> tuple[int, int]:
        self.mutex.acquire()
        try:
            fcntl.lockf(self.lockfd, fcntl.LOCK_EX, 1, self.lockpos)
        except BaseException:
            self.mutex.release()
            raise
        n, ks = self.n, self.ks
        hwcur, hwtail = ks[self.i_hwcur], ks[self.i_hwtail]
        if hwcur >= n or hwtail >= n:   # corrupted kernel state: deliver nothing
            self._tail = 0
            return 0, 0
        self._tail = hwtail
        return hwtail, n - 1 - (hwtail - hwcur) % n

    def commit(self, filled: int) -> None:
        try:
            if filled:
                t = self._tail + filled
                mons = self.monitors
                if mons:   # netmap's notify runs the ring's copy monitors on delivery (spec G3)
                    from .monitor import copy_to_monitors
                    copy_to_monitors(mons, self.slots[_span(self._tail, t % self.n, self.n)],
                                     self.buffers, tx=False)
                self.ks[self.i_hwtail] = t - self.n if t >= self.n else t
        finally:
            fcntl.lockf(self.lockfd, fcntl.LOCK_UN, 1, self.lockpos)
            self.mutex.release()
        if filled:
            wake_ring(self.ks, self.wait, self.ns_dir)


def wake_ring(ks, wait: int, ns_dir: str) -> None:
    """Wake the bindings armed (sleeping in poll) on a ring whose wait words start at ``wait``."""
    fence()
    for w in range(wait, wait + 4):
        bid = ks[w]
        if bid:
            ks[w] = 0
            _wake(ns_dir, bid)


@dataclass
class Snapshot:
    """One switch as senders of this process see it, valid while ``gen`` is current."""

    gen: int
    lookup_gen: int
    dests: Destinations
    lookup: Callable
    port_of: dict            # parent name -> port index
    hdr_len: np.ndarray
    mon_tx: dict = field(default_factory=dict)   # (port, ring) -> [copy monitor targets]
    mon_rx: dict = field(default_factory=dict)
    zmon_tx: dict = field(default_factory=dict)  # (port, ring) -> first zero-copy monitor target
    zmon_rx: dict = field(default_factory=dict)


class SwitchRuntime:
    """This process's view of one switch: its segment and the current :class:`Snapshot`."""

    def __init__(self, ns: Namespace, sw: str, seg: SwitchSeg) -> None:
        self.ns = ns
        self.sw = sw
        self.seg = seg
        self.snap: Optional[Snapshot] = None
        self.targets: dict[tuple[str, int], RxTarget] = {}
        self.lookup_error: Optional[str] = None
        self.stats = ForwardStats()

    def current(self) -> Snapshot:
        """The snapshot, rebuilt from the registry when a port, ring, monitor or the lookup
        changed (takes the namespace lock; callers hold no switch or RX ring lock)."""
        s = self.snap
        seg = self.seg
        if s is not None and s.gen == seg.ports_gen and s.lookup_gen == seg.lookup_gen:
            return s
        with self.ns.locked():
            reg, _ = _k.prepare(self.ns)
            gen, lgen = seg.ports_gen, seg.lookup_gen
            self.snap = self._build(reg, gen, lgen)
        return self.snap

    def _build(self, reg: dict, gen: int, lgen: int) -> Snapshot:
        from . import monitor_topology as _mon   # late: monitors import this module

        rec = reg.get("switches", {}).get(self.sw)
        nrx = np.zeros(256, dtype=np.int64)
        hdr = np.zeros(256, dtype=np.int64)
        rings: dict[tuple[int, int], RxTarget] = {}
        port_of: dict[str, int] = {}
        active = []
        targets = {}
        for k, pname in (rec["ports"].items() if rec else ()):
            p = int(k)
            prec = reg["parents"][pname]
            v = prec["vale"]
            active.append(p)
            port_of[pname] = p
            nrx[p] = v["nrx"]
            hdr[p] = v["hdr_len"]
            bound = {r for b in reg["bindings"].values()
                     if b.get("kind") == "vale" and b["parent"] == pname for r in b["rx"]}
            a = _k._alloc_of(self.ns, reg, prec["mem_id"])
            for r in bound:
                obj = v["rx"][r]
                if obj < 0:
                    continue
                key = (a.rname, obj)
                t = self.targets.get(key) or RxTarget(self.ns, a, obj)
                targets[key] = t
                rings[(p, r)] = t
        self.targets = targets
        dests = Destinations(active=np.array(sorted(active), dtype=np.int64), num_rx_rings=nrx,
                             ring=lambda p, r: rings.get((p, r)), hdr_len=hdr)
        mon_tx, mon_rx, z_tx, z_rx = _mon.switch_monitors(self.ns, reg, port_of)
        for key, t in rings.items():
            t.monitors = mon_rx.get(key)
        return Snapshot(gen, lgen, dests, self._lookup(), port_of, hdr, mon_tx, mon_rx, z_tx, z_rx)

    def _lookup(self) -> Callable:
        local = local_lookups.get((self.ns.name, self.sw))
        if local is not None:
            return local
        name = self.seg.lookup_name
        if not name:
            return self.seg.bridge
        try:
            mod, _, qual = name.partition(":")
            obj = importlib.import_module(mod)
            for part in qual.split("."):
                obj = getattr(obj, part)
            self.lookup_error = None
            return obj
        except Exception as exc:  # noqa: BLE001 - a broken lookup drops, it must not break txsync
            self.lookup_error = f"lookup {name!r} not importable here: {exc!r}"
            return drop_all


def runtime_for(ns: Namespace, sw: str, idx: int, gen: int) -> SwitchRuntime:
    key = (ns.name, f"{sw}.{gen}")
    with _RT_LOCK:
        rt = _RUNTIMES.get(key)
        if rt is None:
            rt = _RUNTIMES[key] = SwitchRuntime(ns, sw, attach_seg(ns, idx, gen))
        return rt


class _Ctl(KernelPrologue):
    """What every emulated ring controller offers the binding's poll loop."""

    __slots__ = ("name", "alloc", "obj", "n", "strict", "rw", "ts64", "ks", "ks64", "i_hwcur",
                 "i_hwtail", "i_rhead", "i_rcur", "i_rtail", "i_pub", "wait", "slots", "f16",
                 "lockfd", "lockpos", "mutex", "nbufs", "buf_size", "ns", "ringid", "port",
                 "runtime", "pname")

    def __init__(self, ns: Namespace, a: _alloc.Allocator, obj: int, name: str, strict: bool,
                 runtime: Optional[SwitchRuntime], pname: str) -> None:
        off = a.ring_offset(obj)
        hdr = memoryview(a.region)[off: off + abi.NETMAP_RING_SLOTS_OFFSET]
        self.name = name
        self.alloc = a
        self.obj = obj
        self.n = hdr.cast("I")[2]
        self.ringid = hdr.cast("H")[8]
        self.strict = strict
        self.rw = hdr[:40].cast("I")
        self.ts64 = hdr[40:56].cast("q")
        self.ks = a.ks
        self.ks64 = a.ks64
        bw = a.block_word
        self.i_hwcur = bw(obj, W_HWCUR)
        self.i_hwtail = bw(obj, W_PEER_HWTAIL)
        self.i_rhead = bw(obj, W_RHEAD)
        self.i_rcur = bw(obj, W_RCUR)
        self.i_rtail = bw(obj, W_RTAIL)
        self.i_pub = bw(obj, W_HWCUR) // 2
        self.wait = bw(obj, W_WAIT)
        self.slots = a.slots(obj)
        self.f16 = self.slots.view(np.uint16).reshape(self.n, 8)[:, 3]
        self.lockfd = ns.fd
        self.lockpos = SYNC_BASE + a.gen * 4096 + obj
        self.mutex = a.mutex(obj)
        self.nbufs = a.geom.nbufs
        self.buf_size = a.geom.buf_size
        self.ns = ns
        self.runtime = runtime
        self.pname = pname
        self.port = -1

    def _lock(self) -> None:
        self.mutex.acquire()
        try:
            fcntl.lockf(self.lockfd, fcntl.LOCK_EX, 1, self.lockpos)
        except BaseException:
            self.mutex.release()
            raise

    def _unlock(self) -> None:
        try:
            fcntl.lockf(self.lockfd, fcntl.LOCK_UN, 1, self.lockpos)
        finally:
            self.mutex.release()

    def arm(self, bid: int) -> None:
        arm_waiter(self.ks, self.wait, bid)

    def disarm(self, bid: int) -> None:
        disarm_waiter(self.ks, self.wait, bid)

    def _clear_changed(self, idx: np.ndarray) -> None:
        f = self.f16
        f[idx] &= _NOT_CHANGED


class ValeTxCtl(_Ctl):
    """A bound VALE TX ring. txsync forwards ``[hwcur, head)`` (whole packets, a trailing
    MOREFRAG slot sent truncated), then ``hwcur = head`` and ``hwtail = head - 1``: the whole
    ring is free again after every txsync, whatever the destinations dropped (spec E6)."""

    __slots__ = ()

    def pending(self) -> bool:
        return self.rw[5] != self.ks[self.i_hwcur]

    def txsync(self) -> int:
        rt = self.runtime
        snap = rt.current() if rt is not None else None
        self._lock()
        try:
            rw, ks, n = self.rw, self.ks, self.n
            head, cur = rw[5], rw[6]
            if self.tx_prologue(head, cur):
                return 1
            hwcur = ks[self.i_hwcur]
            if head != hwcur and hwcur < n:
                idx = _span(hwcur, head, n)
                old_tail = ks[self.i_hwtail]
                if rt is not None:
                    snap = self._forward(rt, snap, idx)
                self._clear_changed(idx)
                self.ks64[self.i_pub] = head | ((head - 1 if head else n - 1) << 32)
                if snap is not None and snap.zmon_tx and old_tail < n:
                    self._zmon_tx(rt, snap, old_tail)
            hwtail = ks[self.i_hwtail]
            ks[self.i_rtail] = hwtail
            rw[7] = hwtail
            return 0
        finally:
            self._unlock()

    def _zmon_tx(self, rt: SwitchRuntime, snap: Snapshot, old_tail: int) -> None:
        """Zero-copy monitor (spec G4): swap the slots this txsync completed, i.e. those between
        the old and the new hwtail (the whole batch: VALE transmits at once), after NS_BUF_CHANGED
        was cleared on them, so the parent's slots come back flagged."""
        with rt.seg.shared():
            if rt.seg.ports_gen != snap.gen:
                return   # monitors changed meanwhile: these slots go unmonitored
            t = snap.zmon_tx.get((snap.port_of.get(self.pname, -1), self.ringid))
            if t is not None:
                from .monitor_sync import swap_with_monitor
                n = self.n
                new_tail = self.ks[self.i_hwtail]
                swap_with_monitor(t, self.slots, _span((old_tail + 1) % n, (new_tail + 1) % n, n), tx=True)

    def _forward(self, rt: SwitchRuntime, snap: Snapshot, idx: np.ndarray) -> Snapshot:
        s = self.slots[idx]
        a = self.alloc
        while True:
            with rt.seg.shared():
                if rt.seg.ports_gen == snap.gen and rt.seg.lookup_gen == snap.lookup_gen:
                    port = snap.port_of.get(self.pname, -1)
                    key = (port, self.ringid)
                    mons = snap.mon_tx.get(key)
                    if mons:
                        from .monitor import copy_to_monitors
                        copy_to_monitors(mons, s, a.buffers, tx=True)
                    if port >= 0:
                        src = SourceSlots(buf_idx=s["buf_idx"], len=s["len"], flags=s["flags"],
                                          buffers=a.buffers, port=port, ring=self.ringid,
                                          hdr_len=int(snap.hdr_len[port]), ptr=s["ptr"])
                        forward(src, snap.lookup, snap.dests, read_indirect=read_indirect,
                                stats=rt.stats)   # receivers were woken by each commit
                        rt.stats.touched.clear()
                    return snap
            snap = rt.current()   # a port changed meanwhile: reload without holding the switch


class ValeRxCtl(_Ctl):
    """A bound VALE RX ring. rxsync swaps the released slots ``[hwcur, head)`` with a
    zero-copy monitor, releases them (clearing NS_BUF_CHANGED) so senders may fill them
    again, and shows ``tail = hwtail`` (spec E12). Copy monitors got their copies when the
    senders delivered (:class:`RxTarget`)."""

    __slots__ = ()

    def pending(self) -> bool:
        return False

    def txsync(self) -> int:   # not used on RX rings
        return 0

    def rxsync(self) -> int:
        rt = self.runtime
        snap = None
        if rt is not None:
            snap = rt.snap
            if snap is None or snap.gen != rt.seg.ports_gen:
                snap = rt.current()   # monitors may have come or gone
        err = 0
        self._lock()
        try:
            rw, ks, n = self.rw, self.ks, self.n
            head, cur = rw[5], rw[6]
            hwcur = ks[self.i_hwcur]
            err = self.rx_prologue(head, cur)
            rhead = ks[self.i_rhead]
            if rhead != hwcur and rhead < n and hwcur < n:
                idx = _span(hwcur, rhead, n)
                if snap is not None and snap.zmon_rx:
                    self._zmon_rx(rt, snap, idx)
                self._clear_changed(idx)
                ks[self.i_hwcur] = rhead
            hwtail = ks[self.i_hwtail]
            ks[self.i_rtail] = hwtail
            rw[7] = hwtail
        finally:
            self._unlock()
        t = time.time_ns() // 1000
        self.ts64[0], self.ts64[1] = divmod(t, 1_000_000)
        return err

    def _zmon_rx(self, rt: SwitchRuntime, snap: Snapshot, idx: np.ndarray) -> None:
        """Zero-copy monitor (spec G4): swap the slots the application released, before this
        rxsync releases them - which clears the NS_BUF_CHANGED the swap sets (G4's live note:
        the parent sees the monitor's buffer and length, its own flags without the bit)."""
        t = snap.zmon_rx.get((snap.port_of.get(self.pname, -1), self.ringid))
        if t is None:
            return
        with rt.seg.shared():
            if rt.seg.ports_gen == snap.gen:
                from .monitor_sync import swap_with_monitor
                swap_with_monitor(t, self.slots, idx, tx=False)
