"""How monitors see traffic inside syncs (spec G2-G5): what a watched ring delivers to
(:class:`Watches`), the call-outs of pipe syncs (:class:`PipeMonitors`), and a monitor's own
rings (:class:`MonitorRxRing`, :class:`MonitorTxRing`).

A sync of a watched ring reads its kring ``mon`` word without a lock, loads the matching
:class:`Watch` (the resolver takes the namespace lock if the generation moved, before any ring
lock is held), and uses it under the ring's lock only if ``mon`` still holds that generation:
whoever changes what a ring delivers to rewrites ``mon`` under that same ring lock, so nothing
is ever written into a monitor ring that is being freed. Delivery into a monitor ring takes
that ring's lock (the lock order is always monitored ring -> monitor ring, down a chain).
"""
from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass

from netmap_core.errors import NetmapOSError

from ..shm import kring
from ..shm.allocator import Allocator
from .delivery import RxTarget, copy_to_monitors, swap_with_monitor
from .ring import RingController, span

__all__ = ["Watch", "Watches", "PipeMonitors", "MonitorRxRing", "MonitorTxRing", "gone_error"]


@dataclass(frozen=True)
class Watch:
    """What one watched ring delivers to, valid while its ``mon`` word equals ``gen``."""

    gen: int
    copies: tuple[RxTarget, ...] = ()        # copy monitors' RX rings
    zmon: RxTarget | None = None          # the first (or, for a monitor ring, next) zero-copy monitor
    peer_copies: tuple[RxTarget, ...] = ()   # a pipe TX ring: copy monitors of the peer RX ring it fills


#: the kernel's answer for ring ``obj`` of an allocator: called holding no ring lock, it takes
#: the namespace lock and reads the ring's ``mon`` word (index given) under it
Resolver = Callable[[Allocator, int, int], Watch]


class Watches:
    """This process's cache of :class:`Watch` per watched ring."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self._cache: dict[tuple[str, int], Watch] = {}
        self._lock = threading.Lock()

    def watch_for(self, a: Allocator, obj: int, i_mon: int) -> Watch | None:
        """The Watch of ring ``obj`` for its current generation, resolved again when the
        generation moved (call it holding no ring lock). None when nobody watches the ring."""
        g = a.ks[i_mon]
        if not g:
            return None
        key = (a.rname, obj)
        w = self._cache.get(key)
        if w is not None and w.gen == g:
            return w
        w = self._resolve(a, obj, i_mon)
        with self._lock:
            self._cache[key] = w
            if len(self._cache) > 4096:   # views of long-gone rings: drop all but this one
                self._cache.clear()
                self._cache[key] = w
        return w

    def valid(self, a: Allocator, obj: int, i_mon: int) -> Watch | None:
        """The cached Watch of ring ``obj`` if it matches ``mon`` now (ring lock held)."""
        w = self._cache.get((a.rname, obj))
        g = a.ks[i_mon]
        return w if w is not None and g and w.gen == g else None


class PipeMonitors:
    """Monitors of pipe rings. :class:`~netmap_emu.datapath.pipe.PipeRing` calls, for a ring
    whose ``mon`` word is set:
    ``prepare(ctl)`` before taking the pair lock, then under it ``before(ctl, a, b)`` with the
    slots ``[a, b)`` a txsync hands over / an rxsync releases (before they move), and, at the
    end of a txsync that passed its prologue, ``after(ctl, old_hwtail)``. In netmap's order:

    * TX copy monitors copy the handed-over slots (``before``, NS_TXMON);
    * the peer RX ring's copy monitors copy what this txsync makes visible there (``after``):
      netmap's pipe txsync notifies the peer ring, whose intercepted notify runs its monitors,
      so they see frames before the receiver syncs (spec G3, netmap's script 014);
    * a TX zero-copy monitor swaps the slots this txsync found completed - released by the
      peer since the last sync, ``(old hwtail, hwtail]`` (``after``, script 027);
    * an RX zero-copy monitor swaps the released slots before the pipe hands them back to the
      sender, so the sender gets the monitor's buffers (``before``, script 017).
    """

    def __init__(self, watches: Watches) -> None:
        self.watches = watches
        self._peer_tail: dict[tuple[str, int], int] = {}   # peer's pipe_tail before a txsync moved it

    def prepare(self, ctl) -> None:
        self.watches.watch_for(ctl.alloc, ctl.obj, ctl.i_mon)

    def before(self, ctl, first: int, last: int) -> None:
        w = self.watches.valid(ctl.alloc, ctl.obj, ctl.i_mon)
        if w is None:
            return
        if ctl.tx:
            if w.copies:
                copy_to_monitors(w.copies, ctl.slots[span(first, last, ctl.n)], ctl.alloc.buffers, tx=True)
            if w.peer_copies:
                self._peer_tail[(ctl.alloc.rname, ctl.obj)] = ctl.ks[ctl.i_peer_ptail]
        elif w.zmon is not None:
            swap_with_monitor(w.zmon, ctl.slots, span(first, last, ctl.n), tx=False)

    def after(self, ctl, old_hwtail: int) -> None:
        start = self._peer_tail.pop((ctl.alloc.rname, ctl.obj), None)
        w = self.watches.valid(ctl.alloc, ctl.obj, ctl.i_mon)
        if w is None:
            return
        n = ctl.n
        if start is not None and w.peer_copies:
            end = ctl.ks[ctl.i_peer_ptail]
            if start < n and end < n and end != start:   # the peer's slots equal ours (spec F5)
                copy_to_monitors(w.peer_copies, ctl.slots[span(start, end, n)], ctl.alloc.buffers, tx=False)
        hwtail = ctl.ks[ctl.i_hwtail]
        if w.zmon is not None and old_hwtail < n and hwtail < n and hwtail != old_hwtail:
            swap_with_monitor(w.zmon, ctl.slots, span((old_hwtail + 1) % n, (hwtail + 1) % n, n), tx=True)


# --- a monitor's own rings ----------------------------------------------------------------------

class MonitorRxRing(RingController):
    """An RX ring of a monitor. rxsync (netmap_monitor_rxsync): prologue, hand the released
    slots ``[hwcur, head)`` to the next zero-copy monitor of a chain, ``hwcur = head`` (flags
    are left alone), ``tail = hwtail``. Once the monitored port has left netmap mode it does
    nothing and reports failure (EIO; poll adds POLLERR, spec G5)."""

    __slots__ = ("i_gone", "i_mon", "watches")

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
                 watches: Watches) -> None:
        super().__init__(a, obj, name, strict, lockfd, ns_dir, hwtail_word=kring.PEER_TAIL)
        self.i_gone = a.block_word(obj, kring.GONE)
        self.i_mon = a.block_word(obj, kring.MON)
        self.watches = watches

    def gone(self) -> bool:
        return bool(self.ks[self.i_gone])

    def rxsync(self) -> int:
        err = 0
        if self.ks[self.i_gone]:
            err = 1
        else:
            if self.ks[self.i_mon]:
                self.watches.watch_for(self.alloc, self.obj, self.i_mon)
            self.lock()
            try:
                err = self._rx()
            finally:
                self.unlock()
        self.timestamp()
        return err

    def _rx(self) -> int:
        rw, ks, n = self.rw, self.ks, self.n
        head, cur = rw[5], rw[6]
        hwcur = ks[self.i_hwcur]
        err = self.rx_prologue(head, cur)
        rhead = ks[self.i_rhead]
        if rhead != hwcur and rhead < n and hwcur < n:
            w = self.watches.valid(self.alloc, self.obj, self.i_mon)
            if w is not None and w.zmon is not None:
                swap_with_monitor(w.zmon, self.slots, span(hwcur, rhead, n), tx=False)
            ks[self.i_hwcur] = rhead
        hwtail = ks[self.i_hwtail]
        ks[self.i_rtail] = hwtail
        rw[7] = hwtail
        return err


class MonitorTxRing(RingController):
    """The TX ring of a monitor: monitors cannot inject (spec G2). txsync runs the prologue
    (adopting head/cur as netmap does) and then fails like netmap's monitor txsync: nothing is
    sent, ``tail`` never moves, poll reports POLLERR; NIOCTXSYNC itself still returns 0."""

    __slots__ = ()

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str) -> None:
        super().__init__(a, obj, name, strict, lockfd, ns_dir, hwtail_word=kring.PEER_TAIL)

    def pending(self) -> bool:
        return self.rw[5] != self.ks[self.i_hwcur]

    def txsync(self) -> int:
        self.lock()
        try:
            # a monitor cannot transmit (G2): the prologue still runs, the sync always fails
            self.tx_prologue(self.rw[5], self.rw[6])
            return 1
        finally:
            self.unlock()


def gone_error(name: str) -> NetmapOSError:
    return NetmapOSError(errno.EIO, f"{name}: the monitored port left netmap mode; the monitor "
                         "receives nothing more (close it and open a new one)")
