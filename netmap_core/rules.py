"""netmap's sync rules (prologue checks and ring reinit, spec B6-B9) as pure functions.

One place for both backends: the emulator's kernel side runs them inside every txsync/rxsync,
and the real device runs the same checks in user space before its ioctls in strict mode.

Two modes, chosen per port:

* ``"netmap"`` - exactly what the kernel does: a failed prologue returns success, adds POLLERR
  to poll, sanitises every slot, and resets head/cur/tail only when one is out of range (an
  in-range but inconsistent head/cur is *adopted*, the [quirk] of spec B8).
* ``"strict"`` - raise :class:`RingProtocolError` naming the field, its value and the legal
  range, before anything is touched. Strict is a superset of netmap's failures: it also rejects
  a ``cur`` outside ``[head, tail]`` that the kernel lets through in the wrapped TX case (B6).

All indexes are circular: ``[a, b]`` means the slots met walking from ``a`` to ``b``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .errors import InvalidRequestError, RingProtocolError

__all__ = [
    "NETMAP", "STRICT", "MODES", "KRing", "Violation", "Reinit",
    "txsync_prologue", "rxsync_prologue", "strict_tx_check", "strict_rx_check",
    "reinit", "sanitize_slots", "check_mode", "in_circular", "walk_ok",
]

NETMAP = "netmap"
STRICT = "strict"
MODES = (NETMAP, STRICT)


def check_mode(mode: str) -> str:
    """Validate a ``rules=`` argument."""
    if mode not in MODES:
        raise InvalidRequestError(22, f"rules={mode!r} is not a sync-rule mode; allowed: {MODES}")
    return mode


@dataclass(frozen=True)
class KRing:
    """The kernel-private shadow of one ring (netmap's kring): what the user cannot fake."""

    num_slots: int
    hwcur: int
    hwtail: int
    rhead: int
    rcur: int
    rtail: int

    @classmethod
    def fresh_tx(cls, n: int) -> KRing:
        """A TX kring right after binding: head/cur 0, tail n-1 (spec A10)."""
        return cls(n, 0, n - 1, 0, 0, n - 1)

    @classmethod
    def fresh_rx(cls, n: int) -> KRing:
        """An RX kring right after binding: head/cur/tail 0."""
        return cls(n, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Violation:
    """Why a prologue failed: ``field`` held ``value``, but only ``allowed`` was legal."""

    field: str
    value: int
    allowed: str

    def error(self, ring: str) -> RingProtocolError:
        return RingProtocolError(ring, self.field, self.value, self.allowed)


def in_circular(x: int, a: int, b: int, n: int) -> bool:
    """True if slot ``x`` lies on the walk from ``a`` to ``b`` (both inclusive) on an n-ring."""
    return 0 <= x < n and (x - a) % n <= (b - a) % n


def _span(a: int, b: int) -> str:
    return f"[{a}, {b}]" if a <= b else f"[{a}, n-1] or [0, {b}] (wrapping)"


def _kernel_sanity(k: KRing, *fields: str) -> Violation | None:
    for f in fields:
        v = getattr(k, f)
        if not 0 <= v < k.num_slots:
            return Violation(f"kring.{f}", v, f"0..{k.num_slots - 1}")
    return None


def txsync_prologue(k: KRing, head: int, cur: int) -> Violation | None:
    """netmap's TX prologue (``nm_txsync_prologue``): None if the kernel accepts head/cur."""
    bad = _kernel_sanity(k, "hwcur", "rhead", "rtail", "hwtail")
    if bad:
        return bad
    n, rh, rt = k.num_slots, k.rhead, k.rtail
    head_ok = f"{_span(rh, rt)} (from the last synced head to tail)"
    if rt >= rh:
        if head < rh or head > rt:
            return Violation("head", head, head_ok)
        if cur < head or cur > rt:
            return Violation("cur", cur, _span(head, rt) + " (from head to tail)")
    else:
        if rt < head < rh:
            return Violation("head", head, head_ok)
        if head <= rt:
            if cur < head or cur > rt:
                return Violation("cur", cur, _span(head, rt) + " (from head to tail)")
        elif rt < cur < head:
            return Violation("cur", cur, _span(head, rt) + " (from head to tail)")
    if head >= n:  # the kernel sees it through the returned head (>= n means failure)
        return Violation("head", head, head_ok)
    return None


def rxsync_prologue(k: KRing, head: int, cur: int) -> Violation | None:
    """netmap's RX prologue (``nm_rxsync_prologue``): None if the kernel accepts head/cur.

    Unlike TX, the kernel first adopts the user's head/cur as rhead/rcur (see :func:`reinit`).
    """
    bad = _kernel_sanity(k, "hwcur", "hwtail")
    if bad:
        return bad
    n, hc, ht = k.num_slots, k.hwcur, k.hwtail
    head_ok = f"{_span(hc, ht)} (from the last released slot to tail)"
    if ht >= hc:
        if head < hc or head > ht:
            return Violation("head", head, head_ok)
        if cur < head or cur > ht:
            return Violation("cur", cur, _span(head, ht) + " (from head to tail)")
    else:
        if ht < head < hc:
            return Violation("head", head, head_ok)
        if head <= ht:
            if cur < head or cur > ht:
                return Violation("cur", cur, _span(head, ht) + " (from head to tail)")
        elif ht < cur < head:
            return Violation("cur", cur, _span(head, ht) + " (from head to tail)")
    if head >= n:
        return Violation("head", head, head_ok)
    return None


def _strict(first: int, last: int, n: int, head: int, cur: int, what: str) -> Violation | None:
    if not in_circular(head, first, last, n):
        return Violation("head", head, f"{_span(first, last)} ({what})")
    if not in_circular(cur, head, last, n):
        return Violation("cur", cur, f"{_span(head, last)} (from head to tail)")
    return None


def strict_tx_check(k: KRing, head: int, cur: int) -> Violation | None:
    """Strict TX rule: head in [rhead, rtail], cur in [head, rtail], both < num_slots."""
    return txsync_prologue(k, head, cur) or _strict(
        k.rhead, k.rtail, k.num_slots, head, cur, "from the last synced head to tail")


def strict_rx_check(k: KRing, head: int, cur: int) -> Violation | None:
    """Strict RX rule: head in [hwcur, hwtail], cur in [head, hwtail], both < num_slots."""
    return rxsync_prologue(k, head, cur) or _strict(
        k.hwcur, k.hwtail, k.num_slots, head, cur, "from the last released slot to tail")


@dataclass(frozen=True)
class Reinit:
    """Outcome of netmap's ``netmap_ring_reinit``: the new kring and user-visible indexes."""

    kring: KRing
    head: int
    cur: int
    tail: int
    reset: bool  # True when an index was out of range and the ring went back to hwcur/hwtail


def reinit(k: KRing, head: int, cur: int, tail: int) -> Reinit:
    """netmap's reinit after a failed prologue (spec B8), slots excluded (see sanitize_slots).

    The user's head/cur/tail are adopted as rhead/rcur/rtail; only if one of them is beyond
    ``num_slots - 1`` is the ring reset to ``head = cur = hwcur, tail = hwtail``.
    """
    lim = k.num_slots - 1
    if head > lim or cur > lim or tail > lim:
        nk = replace(k, rhead=k.hwcur, rcur=k.hwcur, rtail=k.hwtail)
        return Reinit(nk, k.hwcur, k.hwcur, k.hwtail, True)
    return Reinit(replace(k, rhead=head, rcur=cur, rtail=tail), head, cur, tail, False)


def sanitize_slots(slots: np.ndarray, objtotal: int, buf_size: int) -> int:
    """Reinit's slot scan: bad ``buf_idx`` (< 2 or >= objtotal) -> index 0 and len 0;
    ``len > buf_size`` -> len 0. Mutates ``slots`` in place; returns how many slots changed."""
    idx = slots["buf_idx"]
    badidx = (idx < 2) | (idx >= objtotal)
    badlen = ~badidx & (slots["len"] > buf_size)
    changed = int(np.count_nonzero(badidx & ((idx != 0) | (slots["len"] != 0)))
                  + np.count_nonzero(badlen))
    slots["buf_idx"][badidx] = 0
    slots["len"][badidx | badlen] = 0
    return changed


def walk_ok(head: int, cur: int, first: int, last: int, n: int) -> bool:
    """The fast test both prologues start with: ``head`` on the walk ``first -> last`` and
    ``cur`` on ``head -> last``, all below ``n`` (TX: rhead/rtail, RX: hwcur/hwtail). When it
    holds, netmap's prologue and the strict check both pass; otherwise ask them."""
    return (head < n and cur < n and first < n and last < n
            and (head - first) % n <= (last - first) % n and (cur - head) % n <= (last - head) % n)
