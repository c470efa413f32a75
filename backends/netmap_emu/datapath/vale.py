"""The emulated kernel side of VALE txsync/rxsync, run in the calling process: the sender's
txsync forwards ``[hwcur, head)`` through the switch and frees its whole ring (spec E6), the
receiver's rxsync releases ``[hwcur, head)`` and shows what senders published (spec E12).

Locks (fcntl byte-range locks on the namespace lock file, dropped by the OS when a holder
dies, plus a thread mutex per ring): each ring has its lock byte (``sync_lock_pos``). A sender
holds its TX ring's byte for the whole txsync and one destination RX ring's byte at a time
while it reserves, copies and publishes (netmap only leases under the lock; holding it is
simpler and a dead sender publishes nothing: ``hwtail`` moves with one store after the
copies). Lock order is always TX ring -> switch (shared) -> one RX ring, and nobody waits for
the namespace lock while holding the switch byte, so there is no cycle.

Senders see a switch through a :class:`Snapshot`, rebuilt from the kernel's
:class:`SwitchView` whenever the switch segment's generation moves.
"""
from __future__ import annotations

import importlib
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netmap_core import abi

from ..shm import kring
from ..shm.allocator import Allocator
from ..shm.switch import SwitchSeg
from .delivery import RxTarget, copy_to_monitors, swap_with_monitor
from .forward import Destinations, ForwardStats, LookupUnavailable, SourceSlots, forward
from .lookup import LearningBridge
from .ring import RingController, span

__all__ = ["SwitchView", "Snapshot", "SwitchRuntime", "runtime_for", "ValeTxRing", "ValeRxRing",
           "local_lookups", "read_indirect", "RingRef", "import_lookup"]

_MAXRINGS = abi.NM_BDG_MAXRINGS
_ADD = np.add.reduce
_OR = np.bitwise_or.reduce
_I64 = np.int64   # accumulator of len sums: u16 into i64 never overflows, and is
#                  several times faster than into u64 (a casting loop)
_U16 = np.uint16
#: process-local lookups installed with ``local=True``: (namespace, switch) -> callable
local_lookups: dict[tuple[str, str], Callable] = {}
#: held weakly: a runtime's snapshot maps the switch's allocators, which must be unmapped
#: (their /dev/shm memory returned) once no ring or handle of this process uses the switch
_RUNTIMES: weakref.WeakValueDictionary[tuple[str, str], SwitchRuntime] = weakref.WeakValueDictionary()
_RT_LOCK = threading.Lock()
_MEMFD: list[int] = []
#: a ring in shared memory: (its allocator as mapped here, its ring object)
RingRef = tuple[Allocator, int]


def read_indirect(ptr: int, length: int) -> bytes | None:
    """``NS_INDIRECT``: ``length`` bytes at user address ``ptr`` of this process (the sender's
    txsync runs here), read through /proc/self/mem so a bad pointer fails like copyin."""
    try:
        if not _MEMFD:
            _MEMFD.append(os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC))
        data = os.pread(_MEMFD[0], length, ptr)
        return data if len(data) == length else None
    except (OSError, OverflowError, ValueError):
        return None


@dataclass(frozen=True)
class SwitchView:
    """A switch as the kernel describes it at one generation of its segment: ports, their RX
    rings that are bound (forwarding destinations) and the monitors of each (port, ring)."""

    gen: int
    lookup_gen: int
    port_of: dict[str, int]                     # interface name -> port index
    nrx: dict[int, int]                         # port -> RX rings
    hdr_len: dict[int, int]                     # port -> virtio-net header length
    rx_rings: dict[tuple[int, int], RingRef]    # (port, ring) -> bound RX ring
    mon_tx: dict = field(default_factory=dict)  # (port, ring) -> [copy monitor rings]
    mon_rx: dict = field(default_factory=dict)
    z_tx: dict = field(default_factory=dict)    # (port, ring) -> first zero-copy monitor ring
    z_rx: dict = field(default_factory=dict)


#: the kernel's description of a switch: takes the namespace lock and reads the segment's
#: generations under it
Describe = Callable[[SwitchSeg], SwitchView]


@dataclass
class Snapshot:
    """One switch as senders of this process see it, valid while ``gen`` is current."""

    gen: int
    lookup_gen: int
    dests: Destinations
    lookup: Callable
    port_of: dict            # interface name -> port index
    hdr_len: np.ndarray
    mon_tx: dict = field(default_factory=dict)   # (port, ring) -> [copy monitor targets]
    mon_rx: dict = field(default_factory=dict)
    zmon_tx: dict = field(default_factory=dict)  # (port, ring) -> first zero-copy monitor target
    zmon_rx: dict = field(default_factory=dict)


class SwitchRuntime:
    """This process's view of one switch: its segment and the current :class:`Snapshot`."""

    def __init__(self, ns_name: str, sw: str, seg: SwitchSeg, lockfd: int, ns_dir: str,
                 describe: Describe) -> None:
        self.ns_name = ns_name
        self.sw = sw
        self.seg = seg
        self.lockfd = lockfd
        self.ns_dir = ns_dir
        self.describe = describe
        self.bridge = LearningBridge(seg.table)
        self.snap: Snapshot | None = None
        self.targets: dict[tuple[str, int], RxTarget] = {}
        self.stats = ForwardStats()

    def current(self) -> Snapshot:
        """The snapshot, rebuilt from the kernel's view when a port, ring, monitor or the
        lookup changed (the view takes the namespace lock; callers hold no switch or RX ring
        lock)."""
        s = self.snap
        seg = self.seg
        if s is not None and s.gen == seg.ports_gen and s.lookup_gen == seg.lookup_gen:
            return s
        self.snap = self._build(self.describe(seg))
        return self.snap

    def _target(self, ref: RingRef, keep: dict) -> RxTarget:
        a, obj = ref
        key = (a.rname, obj)
        t = self.targets.get(key) or RxTarget(a, obj, self.lockfd, self.ns_dir)
        keep[key] = t
        return t

    def _build(self, v: SwitchView) -> Snapshot:
        nrx = np.zeros(256, dtype=np.int64)
        hdr = np.zeros(256, dtype=np.int64)
        for p, k in v.nrx.items():
            nrx[p] = k
        for p, h in v.hdr_len.items():
            hdr[p] = h
        keep: dict[tuple[str, int], RxTarget] = {}
        rings = {pr: self._target(ref, keep) for pr, ref in v.rx_rings.items()}
        mon_tx = {pr: [self._target(r, keep) for r in refs] for pr, refs in v.mon_tx.items()}
        mon_rx = {pr: [self._target(r, keep) for r in refs] for pr, refs in v.mon_rx.items()}
        z_tx = {pr: self._target(ref, keep) for pr, ref in v.z_tx.items()}
        z_rx = {pr: self._target(ref, keep) for pr, ref in v.z_rx.items()}
        self.targets = keep
        for pr, t in rings.items():
            t.monitors = mon_rx.get(pr)
        dests = Destinations(active=np.array(sorted(v.port_of.values()), dtype=np.int64), num_rx_rings=nrx,
                             ring=lambda p, r: rings.get((p, r)), hdr_len=hdr)
        return Snapshot(v.gen, v.lookup_gen, dests, self._lookup(), dict(v.port_of), hdr,
                        mon_tx, mon_rx, z_tx, z_rx)

    def _lookup(self) -> Callable:
        local = local_lookups.get((self.ns_name, self.sw))
        if local is not None:
            return local
        name = self.seg.lookup_name
        if not name:
            return self.bridge
        try:
            return import_lookup(name)
        except Exception as exc:  # noqa: BLE001 - a broken lookup drops, it must not break txsync
            why = f"lookup {name!r} not importable in pid {os.getpid()}: {type(exc).__name__}: {exc}"

            def unimportable(batch):
                raise LookupUnavailable(why)
            return unimportable


def import_lookup(name: str) -> Callable:
    """The object ``"module:qualname"`` names (ImportError/AttributeError/ValueError if none)."""
    mod, _, qual = name.partition(":")
    if not mod or not qual:
        raise ValueError(f"{name!r} is not 'module:qualname'")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def runtime_for(ns_name: str, sw: str, seg: SwitchSeg, lockfd: int, ns_dir: str,
                describe: Describe) -> SwitchRuntime:
    """This process's runtime of switch ``sw`` incarnation ``seg.gen`` (created once)."""
    key = (ns_name, f"{sw}.{seg.gen}")
    with _RT_LOCK:
        rt = _RUNTIMES.get(key)
        if rt is None:
            rt = _RUNTIMES[key] = SwitchRuntime(ns_name, sw, seg, lockfd, ns_dir, describe)
        return rt


class _ValeRing(RingController):
    """A bound ring of a VALE port: an unpaired ring whose hwtail senders publish in its
    ``peer_tail`` word."""

    __slots__ = ("runtime", "pname")

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
                 runtime: SwitchRuntime | None, pname: str) -> None:
        super().__init__(a, obj, name, strict, lockfd, ns_dir, hwtail_word=kring.PEER_TAIL)
        self.runtime = runtime
        self.pname = pname


class ValeTxRing(_ValeRing):
    """A bound VALE TX ring. txsync forwards ``[hwcur, head)`` (whole packets, a trailing
    MOREFRAG slot sent truncated), then ``hwcur = head`` and ``hwtail = head - 1``: the whole
    ring is free again after every txsync, whatever the destinations dropped (spec E6)."""

    __slots__ = ()

    def pending(self) -> bool:
        return self.rw[5] != self.ks[self.i_hwcur]

    def txsync(self) -> int:
        rt = self.runtime
        snap = rt.current() if rt is not None else None
        self.lock()
        try:
            rw, ks, n = self.rw, self.ks, self.n
            head, cur = rw[5], rw[6]
            rhead0, rcur0 = ks[self.i_rhead], ks[self.i_rcur]
            if self.tx_prologue(head, cur):
                return 1
            hwcur = ks[self.i_hwcur]
            if head != hwcur and hwcur < n and self.strict:
                # refused in the sender's own txsync, before the switch reads any of them;
                # strict changes nothing when it raises
                try:
                    self.strict_slots(((hwcur, head),) if head > hwcur else ((hwcur, n), (0, head)),
                                      "handed to the switch by txsync")
                except BaseException:
                    ks[self.i_rhead], ks[self.i_rcur] = rhead0, rcur0
                    raise
            if head != hwcur and hwcur < n:
                bidx, lens, flags = self.span_fields(hwcur, head)
                k = lens.shape[0]   # statistics: what this txsync handed to the switch
                self.count(k, int(_ADD(lens, 0, _I64)) if k > 8 else sum(lens.tolist()))
                seen = int(_OR(flags, 0, _U16))   # every flag some slot has
                old_tail = ks[self.i_hwtail]
                if rt is not None and snap is not None:
                    snap = self._forward(rt, snap, hwcur, head, bidx, lens, flags, seen)
                if seen & abi.NS_BUF_CHANGED:
                    self.clear_changed_span(hwcur, head)
                self.ks64[self.i_pub] = head | ((head - 1 if head else n - 1) << 32)
                if rt is not None and snap is not None and snap.zmon_tx and old_tail < n:
                    self._zmon_tx(rt, snap, old_tail)
            hwtail = ks[self.i_hwtail]
            ks[self.i_rtail] = hwtail
            rw[7] = hwtail
            return 0
        finally:
            self.unlock()

    def _zmon_tx(self, rt: SwitchRuntime, snap: Snapshot, old_tail: int) -> None:
        """Zero-copy monitor (spec G4): swap the slots this txsync completed, i.e. those between
        the old and the new hwtail (the whole batch: VALE transmits at once), after NS_BUF_CHANGED
        was cleared on them, so the parent's slots come back flagged."""
        with rt.seg.shared():
            if rt.seg.ports_gen != snap.gen:
                return   # monitors changed meanwhile: these slots go unmonitored
            t = snap.zmon_tx.get((snap.port_of.get(self.pname, -1), self.ringid))
            if t is not None:
                n = self.n
                new_tail = self.ks[self.i_hwtail]
                swap_with_monitor(t, self.slots, span((old_tail + 1) % n, (new_tail + 1) % n, n), tx=True)

    def _forward(self, rt: SwitchRuntime, snap: Snapshot, hwcur: int, head: int, bidx: np.ndarray,
                 lens: np.ndarray, flags: np.ndarray, seen: int) -> Snapshot:
        """Forward slots [hwcur, head) - their ``buf_idx``, ``len`` and (private) ``flags``
        as :meth:`span_fields` gave them, ``seen`` the flags OR-ed - under the switch lock;
        returns the snapshot used."""
        a = self.alloc
        while True:
            with rt.seg.shared():
                if rt.seg.ports_gen == snap.gen and rt.seg.lookup_gen == snap.lookup_gen:
                    port = snap.port_of.get(self.pname, -1)
                    key = (port, self.ringid)
                    mons = snap.mon_tx.get(key)
                    if mons:
                        copy_to_monitors(mons, self.slots[span(hwcur, head, self.n)], a.buffers, tx=True)
                    if port >= 0:
                        ptr = None
                        if seen & abi.NS_INDIRECT:
                            ptr = self.slots["ptr"][span(hwcur, head, self.n)]
                        src = SourceSlots(buf_idx=bidx, len=lens, flags=flags, buffers=a.buffers,
                                          port=port, ring=self.ringid,
                                          hdr_len=int(snap.hdr_len[port]), ptr=ptr)
                        st = rt.stats
                        failed = st.lookup_errors
                        forward(src, snap.lookup, snap.dests, read_indirect=read_indirect,
                                stats=st)   # receivers were woken by each commit
                        st.touched.clear()
                        if st.lookup_errors != failed:   # where the lookup's installer sees it
                            rt.seg.record_lookup_error(st.lookup_error, st.lookup_errors - failed)
                    return snap
            snap = rt.current()   # a port changed meanwhile: reload without holding the switch


class ValeRxRing(_ValeRing):
    """A bound VALE RX ring. rxsync swaps the released slots ``[hwcur, head)`` with a
    zero-copy monitor, releases them (clearing NS_BUF_CHANGED) so senders may fill them
    again, and shows ``tail = hwtail`` (spec E12). Copy monitors got their copies when the
    senders delivered (:class:`RxTarget`)."""

    __slots__ = ()

    def rxsync(self) -> int:
        rt = self.runtime
        snap = None
        if rt is not None:
            snap = rt.snap
            if snap is None or snap.gen != rt.seg.ports_gen:
                snap = rt.current()   # monitors may have come or gone
        err = 0
        self.lock()
        try:
            rw, ks, n = self.rw, self.ks, self.n
            head, cur = rw[5], rw[6]
            hwcur = ks[self.i_hwcur]
            err = self.rx_prologue(head, cur)
            rhead = ks[self.i_rhead]
            if rhead != hwcur and rhead < n and hwcur < n:
                if rt is not None and snap is not None and snap.zmon_rx:
                    self._zmon_rx(rt, snap, span(hwcur, rhead, n))
                # senders write these slots next: look before writing, so that a receiver
                # that set no NS_BUF_CHANGED does not take their cache lines from the sender
                self.clear_changed_span(hwcur, rhead, look=True)
                ks[self.i_hwcur] = rhead
            hwtail = ks[self.i_hwtail]
            ks[self.i_rtail] = hwtail
            rw[7] = hwtail
        finally:
            self.unlock()
        self.timestamp()
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
                swap_with_monitor(t, self.slots, idx, tx=False)
