"""Delivering slots into another ring: :class:`RxTarget` (a VALE or monitor RX ring as a
destination, leased and committed under its lock), copies into copy monitors and buffer swaps
with zero-copy monitors (spec G3, G4).
"""
from __future__ import annotations

import fcntl
import os
from threading import get_ident

import numpy as np

from netmap_core import abi

from ..shm import kring
from ..shm.allocator import Allocator
from ..shm.namespace import acquire, sync_lock_pos, sync_timeout, take_mutex, wait_deadline
from ..shm.wake import wake_ring
from .ring import span

__all__ = ["RxTarget", "copy_to_monitors", "swap_with_monitor"]

_TXMON = np.uint16(abi.NS_TXMON)
_NOT_TXMON = np.uint16(0xFFFF ^ abi.NS_TXMON)
_CHANGED = np.uint16(abi.NS_BUF_CHANGED)
_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB


class RxTarget:
    """A VALE or monitor RX ring as a destination (see :class:`netmap_emu.datapath.forward.RxTarget`):
    ``lease`` takes the ring's locks and returns (hwtail, free slots) - no room when they
    cannot be had in time - ``commit`` publishes the new hwtail with one store, unlocks and
    wakes receivers sleeping in poll on the ring."""

    __slots__ = ("slots", "buffers", "ks", "n", "i_hwcur", "i_hwtail", "wait", "mutex", "lockfd",
                 "lockpos", "ns_dir", "_tail", "_held", "busy", "monitors", "ks64", "i_cnt")

    def __init__(self, a: Allocator, obj: int, lockfd: int, ns_dir: str) -> None:
        self.slots = a.slots(obj)
        self.buffers = a.buffers
        self.ks = a.ks
        self.n = self.slots.shape[0]
        self.i_hwcur = a.block_word(obj, kring.HWCUR)
        self.i_hwtail = a.block_word(obj, kring.PEER_TAIL)   # an unpaired ring is its own peer
        self.wait = a.block_word(obj, kring.WAITERS)
        self.ks64 = a.ks64
        self.i_cnt = a.block_word(obj, kring.SLOTS) // 2   # u64: slots, bytes, drops
        self.mutex = a.mutex(obj)
        self.lockfd = lockfd
        self.lockpos = sync_lock_pos(a.gen, obj)
        self.ns_dir = ns_dir
        self._tail = 0
        self._held = 0   # the thread holding the lease (0: none)
        self.busy = 0   # leases that found the ring's lock held by a stopped or stuck process
        self.monitors: list[RxTarget] | None = None   # copy monitors (set by the switch snapshot)

    def lease(self) -> tuple[int, int]:
        """Lock the ring and return (hwtail, free slots). A ring whose lock cannot be had -
        its holder is stopped (SIGSTOP, a debugger), or busy past the sync's deadline - is
        leased with no room, as netmap treats a busy ring: what was meant for it is dropped
        (and counted by the caller), ``busy`` counts the occasions."""
        mutex = self.mutex
        if not mutex.acquire(False) and not take_mutex(mutex, wait_deadline(sync_timeout()), "", quiet=True):
            self.busy += 1
            return 0, 0
        try:
            held = _try(self.lockfd, self.lockpos) or acquire(
                self.lockfd, self.lockpos, wait_deadline(sync_timeout()), "", early=True, quiet=True)
        except BaseException:
            mutex.release()
            raise
        if not held:
            mutex.release()
            self.busy += 1
            return 0, 0
        self._held = get_ident()
        n, ks = self.n, self.ks
        hwcur, hwtail = ks[self.i_hwcur], ks[self.i_hwtail]
        if hwcur >= n or hwtail >= n:   # corrupted kernel state: deliver nothing
            self._tail = 0
            return 0, 0
        self._tail = hwtail
        return hwtail, n - 1 - (hwtail - hwcur) % n

    def account(self, filled: int, nbytes: int, dropped: int) -> None:
        """Add one delivery to the ring's counters: slots and bytes given, packets meant for the
        ring that did not fit. Only under a lease that got the lock (a busy ring's drops are
        counted in ``busy`` and the forwarding stats, not in a record we may not write)."""
        if self._held == get_ident():
            ks64, i = self.ks64, self.i_cnt
            ks64[i] += filled
            ks64[i + 1] += nbytes
            if dropped:
                ks64[i + 2] += dropped

    def commit(self, filled: int) -> None:
        if self._held != get_ident():   # our lease found the ring busy: nothing was filled
            return
        self._held = 0
        try:
            if filled:
                t = self._tail + filled
                mons = self.monitors
                if mons:   # netmap's notify runs the ring's copy monitors on delivery (spec G3)
                    copy_to_monitors(mons, self.slots[span(self._tail, t % self.n, self.n)],
                                     self.buffers, tx=False)
                self.ks[self.i_hwtail] = t - self.n if t >= self.n else t
        finally:
            fcntl.lockf(self.lockfd, fcntl.LOCK_UN, 1, self.lockpos)
            self.mutex.release()
        if filled:
            wake_ring(self.ks, self.wait, self.ns_dir)


def _try(fd: int, pos: int) -> bool:
    """A few non-blocking attempts (a holder keeps a ring's lock for microseconds)."""
    for _ in range(4):
        try:
            fcntl.lockf(fd, _EX_NB, 1, pos)
            return True
        except OSError:
            os.sched_yield()
    return False


def copy_to_monitors(mons, slots: np.ndarray, buffers: np.ndarray, *, tx: bool) -> None:
    """Copy ``slots`` (a netmap_slot array, in order) with their payload into each copy monitor
    ring of ``mons``: the most recent ones that fit, ``len`` truncated to the monitor's buffer
    size, flags copied (NS_TXMON set for TX traffic, cleared otherwise). Costs one lease/commit
    (two fcntl calls) per monitor and one row copy per slot."""
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
            t.slots["flags"][d] = (s["flags"] & _NOT_TXMON) | (_TXMON if tx else 0)
        finally:
            t.commit(m)


def swap_with_monitor(t: RxTarget, slots: np.ndarray, idx: np.ndarray, *, tx: bool) -> int:
    """Zero-copy delivery (spec G4): swap the parent slots ``slots[idx]`` (completed TX slots or
    released RX slots, in ring order) with the free slots of monitor ring ``t`` - the most
    recent ones that fit. The monitor slot gets the parent's ``buf_idx``, ``len`` and flags
    (NS_TXMON set for TX traffic, cleared otherwise); the parent slot gets the monitor's
    ``buf_idx`` and ``len`` and NS_BUF_CHANGED. No payload moves. The caller holds the parent
    ring's lock; buffer indexes are moved, never used, so garbage an application wrote travels
    as it would in netmap. Returns the number of slots swapped."""
    first, space = t.lease()
    m = 0
    try:
        k = int(idx.size)
        m = min(k, space)
        if m:
            src = idx[k - m:]
            n = t.n
            d = np.arange(first, first + m, dtype=np.int64)
            d[d >= n] -= n
            pb, pl, pf = slots["buf_idx"], slots["len"], slots["flags"]
            mb, ml, mf = t.slots["buf_idx"], t.slots["len"], t.slots["flags"]
            b_in, l_in, f_in = pb[src], pl[src], pf[src]
            # the monitor's free slots first: until commit() publishes them nobody reads them
            b_out, l_out = mb[d], ml[d]
            mb[d] = b_in
            ml[d] = l_in
            mf[d] = (f_in & _NOT_TXMON) | (_TXMON if tx else 0)
            pb[src] = b_out
            pl[src] = l_out
            pf[src] = f_in | _CHANGED
    finally:
        t.commit(m)
    return m
