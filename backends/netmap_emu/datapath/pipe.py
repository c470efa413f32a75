"""The emulated kernel side of txsync/rxsync for one bound pipe ring, run in the calling process.

Everything a sync needs is precomputed when the ring is bound (word indexes into the kernel
state, numpy views of both rings' slots), so a sync costs two fcntl calls, a few dozen word
accesses and at most two slice copies per direction. As in netmap_pipe.c, a sync publishes the
peer's ``pipe_tail``; a ring's own ``hwtail`` takes its ``pipe_tail`` only inside its own sync,
after the prologue. Crash safety: the ``hwtail`` copy and the slot copies are written first and
are idempotent, then one aligned 8-byte store publishes (hwcur, peer pipe_tail) together; a
process killed at any instruction leaves either the old or the new state, and the next sync
redoes the copies. A watched ring (kring ``mon`` word non-zero) calls its
:class:`~netmap_emu.datapath.monitor.PipeMonitors` at the points netmap's monitors intercept.
"""
from __future__ import annotations

import os

import numpy as np

from netmap_core import abi

from ..shm import kring
from ..shm.allocator import Allocator
from ..shm.wake import fence, wake_binding
from .monitor import PipeMonitors
from .ring import NOT_CHANGED, RingController

__all__ = ["PipeRing"]

_MOREFRAG = abi.NS_MOREFRAG
_CHANGED = abi.NS_BUF_CHANGED
_NOT_CHANGED = NOT_CHANGED
_OR = np.bitwise_or.reduce
_yield = os.sched_yield


class PipeRing(RingController):
    """One bound ring of a pipe end: its netmap_ring words, its kring words (its ``pipe_tail``
    lives in the peer's record, see :mod:`netmap_emu.shm.kring`) and both rings' slots."""

    __slots__ = ("peer", "tx", "i_ptail", "i_peer_ptail", "peer_wait", "s64", "p64", "pf16", "fmv",
                 "i_mon", "monitors", "i_peer_cnt")

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
                 monitors: PipeMonitors | None) -> None:
        peer = int(a.blocks[obj, kring.PEER]) - 1
        tx = int(a.blocks[obj, kring.DIR]) == abi.NR_TX
        super().__init__(a, obj, name, strict, lockfd, ns_dir, hwtail_word=kring.HWTAIL,
                         lock_obj=obj if tx else peer)
        bw = a.block_word
        n = self.n
        self.peer = peer
        self.tx = tx
        self.i_ptail = bw(peer, kring.PEER_TAIL)     # our pipe_tail: the peer's syncs publish it
        self.i_peer_ptail = bw(obj, kring.PEER_TAIL)
        self.peer_wait = (bw(peer, kring.WAITERS) // 2, bw(peer, kring.WAITERS + 2) // 2)
        self.s64 = self.slots.view(np.uint64).reshape(n, 2)
        self.p64 = a.slots(peer).view(np.uint64).reshape(n, 2)
        self.pf16 = a.slots(peer).view(np.uint16).reshape(n, 8)[:, 3]
        off = a.ring_offset(obj) + abi.NETMAP_RING_SLOTS_OFFSET
        self.fmv = memoryview(a.region)[off: off + 16 * n].cast("H")  # flags of slot i: 8*i+3
        self.i_mon = bw(obj, kring.MON)
        self.i_peer_cnt = bw(peer, kring.SLOTS) // 2
        self.monitors = monitors
        self.published = self.i_ptail

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
        mon = self.monitors
        if mon is not None and self.ks[self.i_mon]:
            mon.prepare(self)
        moved, err = self.locked(step)
        if moved:
            self.wake_peer()
        return err

    def _tx(self):
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        mon = self.monitors if ks[self.i_mon] else None
        old_hwtail = ks[self.i_hwtail]
        rhead0, rcur0 = ks[self.i_rhead], ks[self.i_rcur]
        if self.tx_prologue(head, cur):
            return False, 1
        hwcur = ks[self.i_hwcur]
        moved = head != hwcur
        spans = ((hwcur, head),) if head > hwcur else ((hwcur, n), (0, head))
        if moved and self.strict:
            # the sender's slots are refused here, not in the receiver that would read them;
            # the kring is left as it was (strict never changes state when it raises)
            try:
                self.strict_slots(spans, "handed to the peer by txsync")
            except BaseException:
                ks[self.i_rhead], ks[self.i_rcur] = rhead0, rcur0
                raise
        hwtail = ks[self.i_ptail]   # netmap_pipe_txsync: hwtail = pipe_tail
        ks[self.i_hwtail] = hwtail
        if moved:
            if mon is not None:
                mon.before(self, hwcur, head)
            s64, p64, f = self.s64, self.p64, self.f16
            for a, b in spans:
                p64[a:b] = s64[a:b]
            last = head - 1 if head else n - 1
            if self.fmv[8 * last + 3] & _MOREFRAG:
                nk = self._last_complete(hwcur, head)
            else:
                nk = head
            if nk < 0:
                nk = ks[self.i_peer_ptail]
            ks64 = self.ks64
            ks64[self.i_pub] = head | (nk << 32)   # publish hwcur and the peer's pipe_tail at once
            nbytes = 0
            for a, b in spans:
                if _OR(f[a:b]) & _CHANGED:
                    np.bitwise_and(f[a:b], _NOT_CHANGED, out=f[a:b])
                nbytes += self.span_bytes(a, b)
            # statistics, once per sync: what T handed over is what R was given (a pipe never
            # drops); both records are under the pair's lock, which we hold
            k = head - hwcur if head > hwcur else head - hwcur + n
            i = self.i_cnt
            ks64[i] += k
            ks64[i + 1] += nbytes
            i = self.i_peer_cnt
            ks64[i] += k
            ks64[i + 1] += nbytes
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
            self.timestamp()
            return 0
        return self._locked(self._rx)

    def _rx(self):
        rw, ks, n = self.rw, self.ks, self.n
        head = rw[5]
        cur = rw[6]
        hwcur = ks[self.i_hwcur]
        rhead0, rcur0 = ks[self.i_rhead], ks[self.i_rcur]
        err = self.rx_prologue(head, cur)
        rhead = ks[self.i_rhead]
        moved = rhead != hwcur and rhead < n
        spans = ((hwcur, rhead),) if rhead > hwcur else ((hwcur, n), (0, rhead))
        if moved and self.strict:
            # released slots go back to the sender as they are: refuse bad ones this receiver
            # wrote (one the sender handed over goes back unchanged)
            try:
                self.strict_slots(spans, "returned to the sender by rxsync", self.p64)
            except BaseException:
                ks[self.i_rhead], ks[self.i_rcur] = rhead0, rcur0
                raise
        hwtail = ks[self.i_ptail]   # netmap_pipe_rxsync: hwtail = pipe_tail (even after a reinit)
        ks[self.i_hwtail] = hwtail
        if moved:
            if ks[self.i_mon] and self.monitors is not None:
                self.monitors.before(self, hwcur, rhead)
            f, s64, p64 = self.f16, self.s64, self.p64
            for a, b in spans:  # every released slot goes back to the sender, as it is now (F5)
                p64[a:b] = s64[a:b]
            self.ks64[self.i_pub] = rhead | ((rhead - 1 if rhead else n - 1) << 32)
            for a, b in spans:
                if _OR(f[a:b]) & _CHANGED:
                    np.bitwise_and(f[a:b], _NOT_CHANGED, out=f[a:b])
        ks[self.i_rtail] = hwtail
        rw[7] = hwtail
        self.timestamp()
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
            wake_binding(self.ns_dir, bid)

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
