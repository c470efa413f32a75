"""One bound ring as the emulated kernel drives it inside a sync: its words, its lock, the sync
prologue (spec B6-B8, through netmap_core.rules), sleeping and waking. Every ring kind (pipe,
VALE, monitor) is a :class:`RingController`.

A controller precomputes everything a sync touches when the ring is bound: the ring header's
u32 words (``rw``: head 5, cur 6, tail 7), the kring word indexes into the kernel state
(``ks[i_hwcur]`` ...), numpy views of the slots, and the lock byte. The lock of a ring is a
thread mutex (fcntl locks do not exclude threads) plus an fcntl byte on the namespace lock
file, which the OS drops if the holder dies.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable

import numpy as np

from netmap_core import abi, rules as _rules
from netmap_core.errors import RingProtocolError
from netmap_core.rules import KRing

from ..shm import kring, namespace as _ns, wake
from ..shm.allocator import Allocator
from ..shm.namespace import sync_lock_pos, sync_timeout, take_mutex, wait_deadline

__all__ = ["RingController", "span", "NOT_CHANGED"]

NOT_CHANGED = np.uint16(0xFFFF ^ abi.NS_BUF_CHANGED)
_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB
_IDX_LEN = np.uint64(0xFFFF_FFFF_FFFF)
_ADD = np.add.reduce
_OR = np.bitwise_or.reduce
_U16 = np.uint16
_I64 = np.int64
_CHANGED = abi.NS_BUF_CHANGED


def span(a: int, b: int, n: int) -> np.ndarray:
    """Slot indexes from ``a`` up to (not including) ``b`` on a ring of ``n`` slots."""
    return np.arange(a, b) if b >= a else np.concatenate((np.arange(a, n), np.arange(0, b)))


class RingController:
    """A bound ring of one binding. Subclasses implement ``txsync``/``rxsync`` (returning 1 when
    the prologue failed, else 0) and may refine ``pending`` and ``idle`` (poll's second scan
    skips idle rings). ``lock_obj`` is the ring object whose lock byte the ring's syncs take
    (a pipe's RX ring shares its peer TX ring's); ``published`` is the kring word a peer's sync
    changes when this ring gets something new (poll watches it before sleeping)."""

    __slots__ = ("name", "alloc", "obj", "n", "strict", "rw", "ts64", "ks", "ks64", "i_hwcur",
                 "i_hwtail", "i_rhead", "i_rcur", "i_rtail", "i_pub", "wait", "slots", "f16",
                 "lockfd", "lockpos", "mutex", "nbufs", "buf_size", "ns_dir", "published", "ringid",
                 "bidx", "lens", "sw32", "i_cnt")

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
                 *, hwtail_word: int, lock_obj: int | None = None) -> None:
        off = a.ring_offset(obj)
        hdr = memoryview(a.region)[off: off + abi.NETMAP_RING_SLOTS_OFFSET]
        n = int(a.blocks[obj, kring.NUM_SLOTS])  # the kernel's copy: the header is the app's
        bw = a.block_word
        self.name = name
        self.alloc = a
        self.obj = obj
        self.n = n
        self.ringid = hdr.cast("H")[8]
        self.strict = strict
        self.rw = hdr[:40].cast("I")           # head 5, cur 6, tail 7
        self.ts64 = hdr[40:56].cast("q")       # struct timeval
        self.ks = a.ks
        self.ks64 = a.ks64
        self.i_hwcur = bw(obj, kring.HWCUR)
        self.i_hwtail = bw(obj, hwtail_word)
        self.i_rhead = bw(obj, kring.RHEAD)
        self.i_rcur = bw(obj, kring.RCUR)
        self.i_rtail = bw(obj, kring.RTAIL)
        self.i_pub = bw(obj, kring.HWCUR) // 2      # u64: (hwcur, peer_tail) published at once
        self.wait = bw(obj, kring.WAITERS)
        self.i_cnt = bw(obj, kring.SLOTS) // 2     # u64: slots, bytes, drops (statistics)
        self.slots = a.slots(obj)
        self.f16 = self.slots.view(np.uint16).reshape(n, 8)[:, 3]
        soff = off + abi.NETMAP_RING_SLOTS_OFFSET
        self.sw32 = memoryview(a.region)[soff: soff + 16 * n].cast("I")   # slot i: buf_idx 4i, len 4i+1
        self.bidx = self.slots["buf_idx"]
        self.lens = self.slots["len"]
        lock_obj = obj if lock_obj is None else lock_obj
        self.lockfd = lockfd
        self.lockpos = sync_lock_pos(a.gen, lock_obj)
        self.mutex = a.mutex(lock_obj)
        self.nbufs = a.geom.nbufs
        self.buf_size = a.geom.buf_size
        self.ns_dir = ns_dir
        self.published = self.i_hwtail

    # --- what poll asks ---------------------------------------------------------------------
    def txsync(self) -> int:
        return 0

    def rxsync(self) -> int:
        return 0

    def pending(self) -> bool:
        """TX: filled slots not yet handed over (``head != hwcur``)."""
        return False

    def idle(self) -> bool:
        """Whether a sync now would certainly change nothing (False: sync it)."""
        return False

    def kring(self) -> KRing:
        """This ring's kernel state as the pure rules see it."""
        ks = self.ks
        return KRing(self.n, ks[self.i_hwcur], ks[self.i_hwtail], ks[self.i_rhead], ks[self.i_rcur],
                     ks[self.i_rtail])

    # --- lock ---------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the ring's lock. A holder keeps it a few µs, while a sleep between attempts
        costs more: try a few times (yielding) first. Then wait, with backoff, at most
        :func:`~netmap_emu.shm.namespace.sync_timeout` (or until poll's deadline): a process
        stopped while holding the lock raises :class:`LockTimeoutError` naming it, here."""
        mutex = self.mutex
        if not mutex.acquire(False):
            take_mutex(mutex, wait_deadline(sync_timeout()), self._what())
        fd, pos = self.lockfd, self.lockpos
        try:
            for _ in range(8):
                try:
                    fcntl.lockf(fd, _EX_NB, 1, pos)
                    return
                except OSError:
                    os.sched_yield()
            _ns.acquire(fd, pos, wait_deadline(sync_timeout()), self._what(), env=_ns.ENV_SYNC_TIMEOUT)
        except BaseException:
            mutex.release()
            raise

    def _what(self) -> str:
        return f"the lock of ring {self.name}"

    def unlock(self) -> None:
        try:
            fcntl.lockf(self.lockfd, fcntl.LOCK_UN, 1, self.lockpos)
        finally:
            self.mutex.release()

    def locked(self, step: Callable[[], tuple[bool, int]]) -> tuple[bool, int]:
        self.lock()
        try:
            return step()
        finally:
            self.unlock()

    # --- prologue (spec B6-B8) ------------------------------------------------------------------
    def _fail(self, head: int, cur: int, check, prologue) -> bool:
        """Slow path of a prologue the fast test did not accept: strict -> raise; netmap ->
        reinit (spec B8). Returns True when the sync failed, False when netmap accepts after all."""
        k = self.kring()
        if self.strict:
            v = check(k, head, cur)
            if v is not None:
                raise v.error(self.name)
            return False
        if prologue(k, head, cur) is None:
            return False
        rw, ks = self.rw, self.ks
        r = _rules.reinit(k, head, cur, rw[7])
        ks[self.i_rhead], ks[self.i_rcur], ks[self.i_rtail] = r.kring.rhead, r.kring.rcur, r.kring.rtail
        if r.reset:
            rw[5], rw[6], rw[7] = r.head, r.cur, r.tail
        _rules.sanitize_slots(self.slots, self.nbufs, self.buf_size)
        return True

    def tx_prologue(self, head: int, cur: int) -> int:
        """TX prologue (B6): adopt head/cur as rhead/rcur; 1 if the sync failed, else 0."""
        ks = self.ks
        if (not _rules.walk_ok(head, cur, ks[self.i_rhead], ks[self.i_rtail], self.n)
                and self._fail(head, cur, _rules.strict_tx_check, _rules.txsync_prologue)):
            return 1
        ks[self.i_rhead] = head
        ks[self.i_rcur] = cur
        return 0

    def rx_prologue(self, head: int, cur: int) -> int:
        """RX prologue (B7): netmap adopts head/cur before checking them; 1 if it failed."""
        ks = self.ks
        if not _rules.walk_ok(head, cur, ks[self.i_hwcur], ks[self.i_hwtail], self.n):
            if not self.strict:
                ks[self.i_rhead] = head
                ks[self.i_rcur] = cur
            if self._fail(head, cur, _rules.strict_rx_check, _rules.rxsync_prologue):
                return 1
        ks[self.i_rhead] = head
        ks[self.i_rcur] = cur
        return 0

    def strict_slots(self, spans: tuple[tuple[int, int], ...], what: str,
                     origin: np.ndarray | None = None) -> None:
        """Strict rules: every slot of ``spans`` (``(a, b)`` ranges of slot indexes) that this
        sync hands over must name a buffer of the pool (``buf_idx`` 0..nbufs-1, as a Ring
        checks it) and a ``len`` within the buffer size. Raises RingProtocolError naming this
        ring and the first bad slot, before anything moved: the writer's own sync refuses the
        slot, not the peer that would read it. With ``origin`` (the peer ring's slots as
        ``(n, 2)`` u64 words), a bad slot whose buf_idx and len are still what the peer handed
        over is not this ring's doing and passes. Cost: two vectorised maxima per span
        (~2 µs for 512 slots; the per-slot check runs only when they find something)."""
        nb, bs, bidx, lens = self.nbufs, self.buf_size, self.bidx, self.lens
        for a, b in spans:
            if b <= a:
                continue
            if b - a <= 8:   # a few slots (per-packet senders): plain word reads beat numpy calls
                w = self.sw32
                if all(w[4 * i] < nb and w[4 * i + 1] & 0xFFFF <= bs for i in range(a, b)):
                    continue
                self._strict_bad(a, b, what, origin)
                continue
            # two strided maxima (~1 µs each for 512 slots); a column-wise reduction over the
            # slots' u16 words costs several times more
            if bidx[a:b].max() < nb and lens[a:b].max() <= bs:
                continue
            self._strict_bad(a, b, what, origin)

    def _strict_bad(self, a: int, b: int, what: str, origin: np.ndarray | None) -> None:
        """The exact check of slots [a, b) after the fast one flagged them (see strict_slots)."""
        nb, bs = self.nbufs, self.buf_size
        bi, ln = self.bidx[a:b], self.lens[a:b]
        bad = (bi >= nb) | (ln > bs)
        if origin is not None:
            mine = self.slots.view(np.uint64).reshape(self.n, 2)[a:b, 0]
            bad &= (mine & _IDX_LEN) != (origin[a:b, 0] & _IDX_LEN)
        if not bad.any():
            return
        j = int(np.argmax(bad))
        if bi[j] >= nb:
            raise RingProtocolError(self.name, f"slot[{a + j}].buf_idx", int(bi[j]),
                                    f"0..{nb - 1} (a buffer of the pool) in a slot {what}")
        raise RingProtocolError(self.name, f"slot[{a + j}].len", int(ln[j]),
                                f"0..{bs} (the buffer size) in a slot {what}")

    # --- statistics (kring words 16-21, read by netmap_emu.stats) -------------------------
    def span_bytes(self, a: int, b: int) -> int:
        """The ``len`` of slots [a, b) summed, for the byte counter: word reads for a few slots
        (a per-packet sync pays ~0.1 µs a slot, no numpy call), else one numpy sum (~2 µs)."""
        if b - a <= 8:
            w = self.sw32
            return sum([w[4 * i + 1] & 0xFFFF for i in range(a, b)])
        return int(_ADD(self.lens[a:b], 0, _I64))   # an i64 accumulator: ~2x faster than u64

    def count(self, slots: int, nbytes: int) -> None:
        """Add one sync's work to this ring's counters (caller holds the ring's lock)."""
        ks64, i = self.ks64, self.i_cnt
        ks64[i] += slots
        ks64[i + 1] += nbytes

    # --- finalize helpers --------------------------------------------------------------------
    def clear_changed(self, idx: np.ndarray) -> None:
        f = self.f16
        f[idx] &= NOT_CHANGED

    def clear_changed_span(self, a: int, b: int, *, look: bool = False) -> None:
        """Clear NS_BUF_CHANGED on slots [a, b) mod n, in place through the strided flags view
        (no index array: one numpy call per piece, two when the span wraps). ``look``: read
        the flags first and write only if some slot has the bit, so a ring whose slots another
        process fills is not dirtied in this process's cache for nothing (the common case:
        receivers do not set it)."""
        f = self.f16
        for v in ((f[a:b],) if b > a else (f[a:], f[:b])):
            if look and not _OR(v, 0, _U16) & _CHANGED:
                continue
            v &= NOT_CHANGED

    def span_fields(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``buf_idx``, ``len`` and ``flags`` of slots [a, b) mod n (a != b): views of the ring
        when the span does not wrap, else contiguous copies; ``flags`` is always a private
        copy (what the sync decides by must not change under it)."""
        if b > a:
            return self.bidx[a:b], self.lens[a:b], self.f16[a:b].copy()
        cat = np.concatenate
        return (cat((self.bidx[a:], self.bidx[:b])), cat((self.lens[a:], self.lens[:b])),
                cat((self.f16[a:], self.f16[:b])))

    def timestamp(self) -> None:
        ts = self.ts64
        ts[0], ts[1] = divmod(time.time_ns() // 1000, 1_000_000)

    # --- sleeping (see netmap_emu.shm.wake) ------------------------------------------------------
    def arm(self, bid: int) -> None:
        """Publish "binding ``bid`` is about to sleep on this ring" (the caller then fences and
        re-checks the ring before blocking)."""
        wake.arm(self.ks, self.wait, bid)

    def disarm(self, bid: int) -> None:
        wake.disarm(self.ks, self.wait, bid)
