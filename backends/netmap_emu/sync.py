"""The emulated kernel side of txsync/rxsync for one bound pipe ring, run in the calling process.

Everything a sync needs is precomputed when the ring is bound (word indexes into the kernel
state, numpy views of both rings' slots), so a sync costs two fcntl calls, a few dozen word
accesses and at most two slice copies per direction. As in netmap_pipe.c, a sync publishes the
peer's ``pipe_tail``; a ring's own ``hwtail`` takes its ``pipe_tail`` only inside its own sync,
after the prologue. Crash safety: the ``hwtail`` copy and the slot copies are written first and
are idempotent, then one aligned 8-byte store publishes (hwcur, peer pipe_tail) together; a
process killed at any instruction leaves either the old or the new state, and the next sync
redoes the copies.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time

import numpy as np

from netmap_core import abi

from .allocator import (W_DIR, W_HWCUR, W_HWTAIL, W_NSLOTS, W_PEER, W_PEER_HWTAIL, W_RCUR, W_RHEAD,
                        W_RTAIL, W_WAIT, Allocator)
from .prologue import KernelPrologue
from .namespace import SYNC_BASE

__all__ = ["RingCtl", "fence", "wake_fds", "MONITOR_HOOKS", "W_MON"]

_MOREFRAG = abi.NS_MOREFRAG
_CHANGED = abi.NS_BUF_CHANGED
_NOT_CHANGED = np.uint16(0xFFFF ^ abi.NS_BUF_CHANGED)
_OR = np.bitwise_or.reduce
_FENCE = threading.Lock()
_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB
_yield = os.sched_yield


#: Monitors of pipe rings (netmap_emu.monitor_sync registers its one call-out here). A ring whose
#: kring word W_MON is non-zero is watched: its syncs call ``prepare(ctl)`` before taking the
#: pair lock and, under it, ``before(ctl, a, b)`` on the slots [a, b) a txsync hands over or an
#: rxsync releases (before they move) and ``after(ctl, old_hwtail)`` at the end of a txsync.
MONITOR_HOOKS: list = []
W_MON = 10


def fence() -> None:
    """A full memory barrier. Acquiring a lock executes a locked instruction, which x86 never
    reorders with later loads; without it a store ("I sleep" / "ring published") could be
    overtaken by the following load of the other side's word and both sides miss the wakeup."""
    _FENCE.acquire()
    _FENCE.release()


#: per-process cache of write ends of other bindings' wake FIFOs: path -> fd
wake_fds: dict[str, int] = {}


def arm_waiter(ks, w: int, bid: int) -> None:
    """Enter ``bid`` in a ring's four sleeper words starting at ``ks[w]`` (no-op if present).
    With all four taken the sleeper relies on its bounded sleep slices."""
    free = -1
    for i in range(w, w + 4):
        v = ks[i]
        if v == bid:
            return
        if v == 0 and free < 0:
            free = i
    if free >= 0:
        ks[free] = bid


def disarm_waiter(ks, w: int, bid: int) -> None:
    """Remove ``bid`` from a ring's sleeper words."""
    for i in range(w, w + 4):
        if ks[i] == bid:
            ks[i] = 0


def _wake(ns_dir: str, bid: int) -> None:
    """Write one wake byte into binding ``bid``'s FIFO (never blocks)."""
    path = f"{ns_dir}/wake.{bid}"
    for _ in range(2):  # a cached fd may point to an older FIFO of that name: reopen once
        fd = wake_fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # gone, or no reader: its owner closed or died
                return
            wake_fds[path] = fd
        try:
            os.write(fd, b"\x01")
            return
        except BlockingIOError:  # FIFO full: plenty of wake bytes already pending
            return
        except OSError:  # EPIPE: that reader is gone
            del wake_fds[path]
            os.close(fd)


class RingCtl(KernelPrologue):
    """One bound ring of a pipe end: its netmap_ring words, its kring words (its ``pipe_tail``
    lives in the peer's block, see :mod:`netmap_emu.allocator`) and both rings' slots."""

    __slots__ = (
        "name", "alloc", "obj", "peer", "n", "tx", "strict", "rw", "ts64", "ks", "ks64",
        "i_hwcur", "i_hwtail", "i_ptail", "i_rhead", "i_rcur", "i_rtail", "i_pub", "i_peer_ptail",
        "peer_wait", "own_wait", "slots", "s64", "p64", "f16", "pf16", "fmv", "lockfd", "lockpos",
        "mutex", "nbufs", "buf_size", "ns_dir", "i_mon",
    )

    def __init__(self, alloc: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str) -> None:
        ks = alloc.ks
        bw = alloc.block_word
        peer = ks[bw(obj, W_PEER)] - 1
        off = alloc.ring_offset(obj)
        hdr = memoryview(alloc.region)[off: off + abi.NETMAP_RING_SLOTS_OFFSET]
        n = ks[bw(obj, W_NSLOTS)]  # from the kernel state: the ring header is the app's to scribble on
        self.name = name
        self.alloc = alloc
        self.obj = obj
        self.peer = peer
        self.n = n
        self.tx = ks[bw(obj, W_DIR)] == abi.NR_TX
        self.strict = strict
        self.rw = hdr[:40].cast("I")           # head 5, cur 6, tail 7
        self.ts64 = hdr[40:56].cast("q")       # struct timeval
        self.ks = ks
        self.ks64 = alloc.ks64
        self.i_hwcur = bw(obj, W_HWCUR)
        self.i_hwtail = bw(obj, W_HWTAIL)        # what our own last sync took from pipe_tail
        self.i_ptail = bw(peer, W_PEER_HWTAIL)   # our pipe_tail: the peer's syncs publish it
        self.i_rhead = bw(obj, W_RHEAD)
        self.i_rcur = bw(obj, W_RCUR)
        self.i_rtail = bw(obj, W_RTAIL)
        self.i_pub = bw(obj, W_HWCUR) // 2      # u64: (own hwcur, peer's pipe_tail)
        self.i_peer_ptail = bw(obj, W_PEER_HWTAIL)
        self.peer_wait = (bw(peer, W_WAIT) // 2, bw(peer, W_WAIT + 2) // 2)
        self.own_wait = bw(obj, W_WAIT)
        self.slots = alloc.slots(obj)
        self.s64 = self.slots.view(np.uint64).reshape(n, 2)
        self.p64 = alloc.slots(peer).view(np.uint64).reshape(n, 2)
        self.f16 = self.slots.view(np.uint16).reshape(n, 8)[:, 3]
        self.pf16 = alloc.slots(peer).view(np.uint16).reshape(n, 8)[:, 3]
        soff = off + abi.NETMAP_RING_SLOTS_OFFSET
        self.fmv = memoryview(alloc.region)[soff: soff + 16 * n].cast("H")  # flags of slot i: 8*i+3
        tobj = obj if self.tx else peer
        self.lockfd = lockfd
        self.lockpos = SYNC_BASE + alloc.gen * 4096 + tobj
        self.mutex = alloc.mutex(tobj)
        self.nbufs = alloc.geom.nbufs
        self.buf_size = alloc.geom.buf_size
        self.ns_dir = ns_dir
        self.i_mon = bw(obj, W_MON)

    def _lock(self) -> None:
        """Take the ring pair's fcntl lock. A holder keeps it a few µs, while a blocked
        F_SETLKW sleeps and costs a context switch: try a few times (yielding) first."""
        fd, pos = self.lockfd, self.lockpos
        for _ in range(8):
            try:
                fcntl.lockf(fd, _EX_NB, 1, pos)
                return
            except OSError:
                os.sched_yield()
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, pos)

    # --- state as the rules module sees it ---------------------------------------------------
    # --- txsync ----------------------------------------------------------------------------
    def txsync(self) -> int:
        """Prologue, pipe txsync, finalize (spec B6, B8, B9, F5). Returns 1 if the prologue
        failed (netmap mode; the ring was reinitialised and nothing sent), else 0."""
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        rtail = ks[self.i_rtail]
        if (head == ks[self.i_hwcur] and head == ks[self.i_rhead] and cur == ks[self.i_rcur]
                and cur < n and (cur - head) % n <= (rtail - head) % n and not ks[self.i_mon]):
            # Nothing to send, and the prologue passes (head == rhead, cur in [head, rtail]: the
            # strict rule, so netmap's too). netmap's txsync then only takes pipe_tail as
            # hwtail and finalizes: no lock needed.
            t = ks[self.i_ptail]
            if t == rtail and t == rw[7] and t == ks[self.i_hwtail]:
                _yield()  # a no-op sync: let a peer sharing this CPU run, as a syscall would
            else:
                ks[self.i_hwtail] = t
                ks[self.i_rtail] = t
                rw[7] = t
            return 0
        return self._locked(self._tx)

    def _locked(self, step) -> int:
        """Run the kernel side ``step`` under the ring pair's lock (monitors prepared first),
        then wake the peer if slots moved. Returns the prologue verdict (1 = failed)."""
        if self.ks[self.i_mon] and MONITOR_HOOKS:
            MONITOR_HOOKS[0].prepare(self)
        with self.mutex:
            self._lock()
            try:
                moved, err = step()
            finally:
                fcntl.lockf(self.lockfd, fcntl.LOCK_UN, 1, self.lockpos)
        if moved:
            self.wake_peer()
        return err

    def _tx(self):
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        mon = MONITOR_HOOKS[0] if ks[self.i_mon] and MONITOR_HOOKS else None
        old_hwtail = ks[self.i_hwtail]
        if self.tx_prologue(head, cur):
            return False, 1
        hwtail = ks[self.i_ptail]   # netmap_pipe_txsync: hwtail = pipe_tail
        ks[self.i_hwtail] = hwtail
        hwcur = ks[self.i_hwcur]
        moved = head != hwcur
        if moved:
            if mon is not None:
                mon.before(self, hwcur, head)
            s64, p64, f = self.s64, self.p64, self.f16
            spans = ((hwcur, head),) if head > hwcur else ((hwcur, n), (0, head))
            for a, b in spans:
                p64[a:b] = s64[a:b]
            last = head - 1 if head else n - 1
            if self.fmv[8 * last + 3] & _MOREFRAG:
                nk = self._last_complete(hwcur, head)
            else:
                nk = head
            if nk < 0:
                nk = ks[self.i_peer_ptail]
            self.ks64[self.i_pub] = head | (nk << 32)   # publish hwcur and the peer's pipe_tail at once
            for a, b in spans:
                if _OR(f[a:b]) & _CHANGED:
                    np.bitwise_and(f[a:b], _NOT_CHANGED, out=f[a:b])
        if mon is not None:
            mon.after(self, old_hwtail)
        ks[self.i_rtail] = hwtail
        rw[7] = hwtail
        return moved, 0

    def _last_complete(self, a: int, b: int) -> int:
        """Index after the last slot in [a, b) without NS_MOREFRAG, or -1 if every slot has it."""
        idx = np.arange(a, b) if b > a else np.concatenate((np.arange(a, self.n), np.arange(0, b)))
        done = np.flatnonzero((self.f16[idx] & _MOREFRAG) == 0)
        if done.size == 0:
            return -1
        k = int(idx[done[-1]]) + 1
        return 0 if k == self.n else k

    # --- rxsync ----------------------------------------------------------------------------
    def rxsync(self) -> int:
        """Prologue, pipe rxsync, finalize, timestamp (spec B7, B8, B16, F5). Returns 1 if the
        prologue failed (netmap mode: reinit done, the sync still ran), else 0."""
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        hwtail = ks[self.i_hwtail]
        if (head == ks[self.i_hwcur] and head == ks[self.i_rhead] and cur == ks[self.i_rcur]
                and cur < n and (cur - head) % n <= (hwtail - head) % n):
            # nothing to release and the prologue passes: take pipe_tail, refresh ts, no lock
            t = ks[self.i_ptail]
            if t == hwtail and t == rw[7] and t == ks[self.i_rtail]:
                _yield()
            else:
                ks[self.i_hwtail] = t
                ks[self.i_rtail] = t
                rw[7] = t
            ts = self.ts64
            ts[0], ts[1] = divmod(time.time_ns() // 1000, 1_000_000)
            return 0
        return self._locked(self._rx)

    def _rx(self):
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        hwcur = ks[self.i_hwcur]
        err = self.rx_prologue(head, cur)
        hwtail = ks[self.i_ptail]   # netmap_pipe_rxsync: hwtail = pipe_tail (even after a reinit)
        ks[self.i_hwtail] = hwtail
        rhead = ks[self.i_rhead]
        moved = rhead != hwcur and rhead < n
        if moved:
            if ks[self.i_mon] and MONITOR_HOOKS:
                MONITOR_HOOKS[0].before(self, hwcur, rhead)
            f, s64, p64 = self.f16, self.s64, self.p64
            spans = ((hwcur, rhead),) if rhead > hwcur else ((hwcur, n), (0, rhead))
            for a, b in spans:  # every released slot goes back to the sender, as it is now (F5)
                p64[a:b] = s64[a:b]
            self.ks64[self.i_pub] = rhead | ((rhead - 1 if rhead else n - 1) << 32)
            for a, b in spans:
                if _OR(f[a:b]) & _CHANGED:
                    np.bitwise_and(f[a:b], _NOT_CHANGED, out=f[a:b])
        ks[self.i_rtail] = hwtail
        rw[7] = hwtail
        ts = self.ts64
        ts[0], ts[1] = divmod(time.time_ns() // 1000, 1_000_000)
        return moved, err

    # --- poll support --------------------------------------------------------------------------
    def wake_peer(self) -> None:
        """After publishing: wake bindings sleeping in poll on the peer ring (if any)."""
        fence()  # order our published indexes before reading the sleepers' words
        ks64 = self.ks64
        for i in self.peer_wait:
            if ks64[i]:
                self._wake_word(2 * i)
                self._wake_word(2 * i + 1)

    def _wake_word(self, w: int) -> None:
        bid = self.ks[w]
        if bid:
            self.ks[w] = 0
            _wake(self.ns_dir, bid)

    def arm(self, bid: int) -> None:
        """Publish "binding ``bid`` is about to sleep on this ring" (the caller then fences and
        re-checks the ring before blocking)."""
        arm_waiter(self.ks, self.own_wait, bid)

    def disarm(self, bid: int) -> None:
        disarm_waiter(self.ks, self.own_wait, bid)

    def idle(self) -> bool:
        """Whether a sync now would change nothing: nothing to hand over, the prologue passes
        and the published tail is already shown. poll's second scan skips such rings."""
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        t = ks[self.i_ptail]
        return (head == ks[self.i_hwcur] and head == ks[self.i_rhead] and cur == ks[self.i_rcur]
                and t == rw[7] and t == ks[self.i_rtail] and t == ks[self.i_hwtail]
                and cur < n and (cur - head) % n <= (t - head) % n)

    def pending(self) -> bool:
        """TX: filled slots not yet handed over (``head != hwcur``)."""
        return self.rw[5] != self.ks[self.i_hwcur]
