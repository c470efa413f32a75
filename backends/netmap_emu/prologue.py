"""The emulated kernel's sync prologue for any ring controller: the fast test, then strict
errors or netmap's reinit (spec B6-B8), through netmap_core.rules.

A mixin: the controller provides ``n``, ``rw`` (ring header words), ``ks`` with the ``i_*``
kring word indexes, ``strict``, ``name``, ``slots``, ``nbufs`` and ``buf_size``.
"""
from __future__ import annotations

from netmap_core import rules as _rules
from netmap_core.rules import KRing

__all__ = ["KernelPrologue"]


class KernelPrologue:
    __slots__ = ()

    def kring(self) -> KRing:
        """This ring's kernel state as the pure rules see it."""
        ks = self.ks
        return KRing(self.n, ks[self.i_hwcur], ks[self.i_hwtail], ks[self.i_rhead], ks[self.i_rcur],
                     ks[self.i_rtail])

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
        if not _rules.walk_ok(head, cur, ks[self.i_rhead], ks[self.i_rtail], self.n):
            if self._fail(head, cur, _rules.strict_tx_check, _rules.txsync_prologue):
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
