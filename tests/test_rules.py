"""The sync rules against an independent reference model and against the live observations of
spec B6-B8 (Live check 5)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from netmap_core import abi, rules
from netmap_core.errors import InvalidRequestError, RingProtocolError
from netmap_core.rules import KRing


# --- reference model: legal positions enumerated by walking the ring --------------------------
def walk(a: int, b: int, n: int) -> set[int]:
    """Every slot met walking from a to b inclusive."""
    out, i = {a}, a
    while i != b:
        i = (i + 1) % n
        out.add(i)
    return out


def ref_tx_accepts(k: KRing, head: int, cur: int) -> bool:
    """The kernel's TX verdict, derived from the picture in nm_txsync_prologue's comment:
    head must be reachable from rhead without passing rtail; cur from head likewise, except
    that in the wrapped layout with head at or after rhead any cur >= n also passes (B6)."""
    n = k.num_slots
    if head >= n or head not in walk(k.rhead, k.rtail, n):
        return False
    if cur < n and cur in walk(head, k.rtail, n):
        return True
    return cur >= n and k.rtail < k.rhead and head >= k.rhead


def ref_rx_accepts(k: KRing, head: int, cur: int) -> bool:
    n = k.num_slots
    if head >= n or head not in walk(k.hwcur, k.hwtail, n):
        return False
    if cur < n and cur in walk(head, k.hwtail, n):
        return True
    return cur >= n and k.hwtail < k.hwcur and head >= k.hwcur


def ref_strict(first: int, last: int, n: int, head: int, cur: int) -> bool:
    return head < n and cur < n and head in walk(first, last, n) and cur in walk(head, last, n)


@st.composite
def tx_case(draw):
    n = draw(st.integers(1, 24))
    rhead = draw(st.integers(0, n - 1))
    rtail = draw(st.integers(0, n - 1))
    k = KRing(n, hwcur=rhead, hwtail=rtail, rhead=rhead, rcur=rhead, rtail=rtail)
    head = draw(st.integers(0, n + 3) | st.sampled_from([100, 2**32 - 1]))
    cur = draw(st.integers(0, n + 3) | st.just(head))
    return k, head, cur


@st.composite
def rx_case(draw):
    n = draw(st.integers(1, 24))
    hwcur = draw(st.integers(0, n - 1))
    hwtail = draw(st.integers(0, n - 1))
    k = KRing(n, hwcur=hwcur, hwtail=hwtail, rhead=hwcur, rcur=hwcur, rtail=hwtail)
    head = draw(st.integers(0, n + 3))
    cur = draw(st.integers(0, n + 3) | st.just(head))
    return k, head, cur


@given(tx_case())
def test_tx_prologue_matches_the_reference(case):
    k, head, cur = case
    assert (rules.txsync_prologue(k, head, cur) is None) == ref_tx_accepts(k, head, cur)


@given(rx_case())
def test_rx_prologue_matches_the_reference(case):
    k, head, cur = case
    assert (rules.rxsync_prologue(k, head, cur) is None) == ref_rx_accepts(k, head, cur)


@given(tx_case())
def test_strict_tx_is_the_walk_rule_and_a_superset_of_netmap(case):
    k, head, cur = case
    v = rules.strict_tx_check(k, head, cur)
    assert (v is None) == ref_strict(k.rhead, k.rtail, k.num_slots, head, cur)
    if rules.txsync_prologue(k, head, cur) is not None:
        assert v is not None
    if v is not None:
        assert v.field in ("head", "cur") and v.value == (head if v.field == "head" else cur)


@given(rx_case())
def test_strict_rx_is_the_walk_rule(case):
    k, head, cur = case
    v = rules.strict_rx_check(k, head, cur)
    assert (v is None) == ref_strict(k.hwcur, k.hwtail, k.num_slots, head, cur)


def test_kernel_sanity_failure_names_the_kring_field():
    k = KRing(8, hwcur=9, hwtail=2, rhead=3, rcur=3, rtail=2)
    v = rules.txsync_prologue(k, 3, 3)
    assert v.field == "kring.hwcur" and v.value == 9 and v.allowed == "0..7"


# --- Live check 5: VALE port, 8 slots, TX h/c/t 3/3/2 -------------------------------------
TX = KRing(8, hwcur=3, hwtail=2, rhead=3, rcur=3, rtail=2)
RX = KRing(8, hwcur=0, hwtail=3, rhead=0, rcur=0, rtail=3)


@pytest.mark.parametrize("head,cur,ok", [
    (8, 8, False), (100, 100, False),  # out of range
    (5, 4, False),                     # cur behind head
    (5, 100, True),                    # [quirk] accepted: cur >= n in the wrapped case
    (1, 1, True),                      # "behind" hwcur is a wrap-around, legal
    (5, 5, True),
])
def test_live_tx_rows(head, cur, ok):
    assert (rules.txsync_prologue(TX, head, cur) is None) is ok


@pytest.mark.parametrize("head,cur,ok", [
    (5, 5, False), (2, 1, False), (1, 5, False), (8, 8, False), (100, 100, False),
    (3, 3, True), (1, 2, True),
])
def test_live_rx_rows(head, cur, ok):
    assert (rules.rxsync_prologue(RX, head, cur) is None) is ok


def test_strict_rejects_the_cur_quirk_with_a_precise_error():
    v = rules.strict_tx_check(TX, 5, 100)
    err = v.error("vale0:a:tx0")
    assert isinstance(err, RingProtocolError)
    assert (err.field, err.value) == ("cur", 100)
    assert "[5, n-1] or [0, 2]" in err.allowed and "vale0:a:tx0" in str(err)


def test_reinit_resets_only_out_of_range_indexes():
    r = rules.reinit(TX, 8, 8, 2)
    assert r.reset and (r.head, r.cur, r.tail) == (3, 3, 2)
    assert (r.kring.rhead, r.kring.rcur, r.kring.rtail) == (3, 3, 2)
    r = rules.reinit(TX, 5, 4, 2)  # [quirk] in range but inconsistent: adopted
    assert not r.reset and (r.head, r.cur, r.tail) == (5, 4, 2)
    assert (r.kring.rhead, r.kring.rcur) == (5, 4)
    # the adopted values fail again on the next sync, as observed live
    assert rules.txsync_prologue(r.kring, 5, 4) is not None
    r = rules.reinit(RX, 8, 8, 3)
    assert r.reset and (r.head, r.cur, r.tail) == (0, 0, 3)


def test_sanitize_slots_as_observed_live():
    slots = np.zeros(6, abi.netmap_slot)
    slots["buf_idx"] = [0, 1, 5000, 0xFFFFFFFF, 7, 8]
    slots["len"] = [60, 60, 60, 60, 2049, 2048]
    changed = rules.sanitize_slots(slots, objtotal=5000, buf_size=2048)
    assert list(slots["buf_idx"]) == [0, 0, 0, 0, 7, 8]
    assert list(slots["len"]) == [0, 0, 0, 0, 0, 2048]
    assert changed == 5


def test_mode_names_are_checked():
    assert rules.check_mode("strict") == "strict"
    with pytest.raises(InvalidRequestError, match="rules='lenient'"):
        rules.check_mode("lenient")


@given(tx_case())
def test_walk_ok_is_the_strict_rule_on_sane_krings(case):
    k, head, cur = case
    fast = rules.walk_ok(head, cur, k.rhead, k.rtail, k.num_slots)
    assert fast == (rules.strict_tx_check(k, head, cur) is None)
    if fast:  # the fast test never accepts what netmap refuses
        assert rules.txsync_prologue(k, head, cur) is None
