"""Ring arithmetic and the per-slot and batch helpers, over netmap-layout memory in a bytearray."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from layout import build
from netmap_core import abi
from netmap_core.errors import InvalidRequestError, RingProtocolError
from netmap_core.ring import Ring


def ring_of(n: int, *, tx=True, extra=16) -> tuple[Ring, Ring]:
    region, offs, _ = build(tx=(n,), rx=(n,), extra=extra)
    return Ring(region, offs[0], name="t:tx0"), Ring(region, offs[1], name="t:rx0")


def walk_count(a: int, b: int, n: int) -> int:
    """Independent reference: slots met walking from a up to (not including) b."""
    count, i = 0, a
    while i != b:
        i = (i + 1) % n
        count += 1
    return count


sizes = st.integers(min_value=1, max_value=70)


@given(n=sizes, data=st.data())
def test_space_next_empty_match_a_walk(n, data):
    tx, _ = ring_of(n)
    head = data.draw(st.integers(0, n - 1))
    tail = data.draw(st.integers(0, n - 1))
    tx.head = head
    tx.header["tail"] = tail
    assert tx.space() == walk_count(head, tail, n)
    assert tx.empty == (head == tail)
    assert tx.next(head) == (head + 1) % n
    assert tx.tx_pending() == (((tail + 1) % n) != head)


@given(n=sizes, data=st.data())
def test_advance_wraps_and_is_bounded_by_space(n, data):
    tx, _ = ring_of(n)
    tx.head = tx.cur = data.draw(st.integers(0, n - 1))
    before = tx.space()
    k = data.draw(st.integers(0, before))
    start = tx.head
    tx.advance(k)
    assert tx.head == tx.cur == (start + k) % n
    assert tx.space() == before - k
    with pytest.raises(RingProtocolError) as e:
        tx.advance(tx.space() + 1)
    assert e.value.field == "advance"


def test_fresh_layout_fields():
    tx, rx = ring_of(12)
    assert (tx.num_slots, tx.buf_size, tx.dir, rx.dir) == (12, 2048, abi.NR_TX, abi.NR_RX)
    assert (tx.head, tx.cur, tx.tail, tx.space()) == (0, 0, 11, 11)
    assert rx.empty and rx.space() == 0
    assert tx.slots.dtype == abi.netmap_slot and tx.slots.shape == (12,)
    assert list(tx.slots["buf_idx"][:3]) == [2, 3, 4]


def test_buf_is_a_zero_copy_view_of_the_slot_buffer():
    tx, rx = ring_of(8)
    tx.buf(3)[:4] = [1, 2, 3, 4]
    idx = int(tx.slots["buf_idx"][3])
    assert bytes(tx.buffers[idx, :4]) == b"\x01\x02\x03\x04"
    assert bytes(rx.buffers[idx, :4]) == b"\x01\x02\x03\x04"  # one pool per region
    tx.slots["len"][3] = 3
    assert bytes(tx.payload(3)) == b"\x01\x02\x03"


def test_bad_indexes_from_memory_are_refused_with_field_and_range():
    tx, _ = ring_of(8)
    tx.slots["buf_idx"][5] = 10**6
    with pytest.raises(RingProtocolError) as e:
        tx.buf(5)
    assert e.value.field == "slot[5].buf_idx" and e.value.value == 10**6
    with pytest.raises(RingProtocolError):
        tx.buf(8)
    with pytest.raises(InvalidRequestError, match=r"t:tx0: head=-1 is out of range; allowed: 0\.\.7"):
        tx.head = -1


def test_header_that_does_not_fit_is_refused():
    region, offs, _ = build(tx=(8,), rx=(8,))
    hdr = np.ndarray((), abi.netmap_ring, np.frombuffer(region, np.uint8), offs[0])
    hdr["num_slots"] = 10**7
    with pytest.raises(InvalidRequestError, match="num_slots=10000000"):
        Ring(region, offs[0])
    with pytest.raises(InvalidRequestError):
        Ring(region, len(region) - 8)
    with pytest.raises(InvalidRequestError, match="read-only"):
        Ring(bytes(region), offs[1])


@settings(max_examples=60)
@given(n=st.integers(2, 40), data=st.data())
def test_fill_then_ready_round_trip_with_wrap(n, data):
    tx, _ = ring_of(n)
    start = data.draw(st.integers(0, n - 1))
    tx.head = tx.cur = start
    tx.header["tail"] = (start - 1) % n  # all free, so filling wraps for most starts
    k = data.draw(st.integers(0, n - 1))
    payload = np.arange(k * 6, dtype=np.uint8).reshape(k, 6)
    assert tx.fill(k, data=payload, lengths=np.full(k, 6)) == k
    assert tx.head == (start + k) % n
    # read the same slots back as a batch: move head back and let ready() see them
    tx.head = tx.cur = start
    batch = tx.ready(limit=k)
    assert len(batch) == k
    assert list(batch.slot_idx) == [(start + j) % n for j in range(k)]
    assert (batch.len == 6).all()
    assert (batch.gather(0, 6) == payload).all()


def test_fill_from_template_and_flags():
    tx, _ = ring_of(8)
    assert tx.fill(3, template=b"\xaa" * 60, flags=abi.NS_REPORT) == 3
    assert list(tx.slots["len"][:3]) == [60] * 3
    assert list(tx.slots["flags"][:3]) == [abi.NS_REPORT] * 3
    assert bytes(tx.buf(2)[:60]) == b"\xaa" * 60
    assert tx.fill(100, template=b"x") == 4  # only space() slots are taken
    with pytest.raises(InvalidRequestError, match="exceeds buffer size"):
        tx.fill(1, template=b"x" * 2049)


def test_forward_swaps_buffers_zero_copy_and_sets_buf_changed():
    tx, rx = ring_of(8)
    rx.header["tail"] = 5  # five received frames
    rx.slots["len"][:5] = [60, 61, 62, 63, 64]
    rx_bufs = list(rx.slots["buf_idx"][:5])
    tx_bufs = list(tx.slots["buf_idx"][:5])
    assert rx.forward(tx) == 5
    assert list(tx.slots["buf_idx"][:5]) == rx_bufs
    assert list(rx.slots["buf_idx"][:5]) == tx_bufs
    assert list(tx.slots["len"][:5]) == [60, 61, 62, 63, 64]
    assert all(f & abi.NS_BUF_CHANGED for f in tx.slots["flags"][:5])
    assert all(f & abi.NS_BUF_CHANGED for f in rx.slots["flags"][:5])
    assert (rx.head, tx.head) == (5, 5)


def test_forward_copies_between_different_pools():
    a_tx, a_rx = ring_of(8)
    b_tx, _ = ring_of(8)
    a_rx.header["tail"] = 2
    a_rx.slots["len"][:2] = 4
    a_rx.buf(0)[:4] = [9, 9, 9, 9]
    keep = list(b_tx.slots["buf_idx"][:2])
    assert not a_rx.same_pool(b_tx)
    assert a_rx.forward(b_tx) == 2
    assert list(b_tx.slots["buf_idx"][:2]) == keep  # copied, not swapped
    assert bytes(b_tx.buf(0)[:4]) == b"\x09" * 4
    with pytest.raises(InvalidRequestError, match="share a buffer pool"):
        a_rx.forward(b_tx, copy=False)


def test_describe_draws_ownership():
    tx, _ = ring_of(8)
    tx.head = tx.cur = 2
    tx.header["tail"] = 5
    assert tx.describe().startswith("[..uuu...]")
    assert "head=2" in repr(tx) and "space=3" in repr(tx)


def test_field_view_reads_and_writes_one_value_per_buffer():
    tx, rx = ring_of(8)
    tx.fill(4, template=bytes(60))
    tx.head = tx.cur = 0
    batch = tx.ready(limit=4)
    batch.write(14, np.arange(100, 104, dtype="<u8"))
    assert list(batch.read(14)) == [100, 101, 102, 103]
    assert bytes(tx.buf(1)[14:22]) == (101).to_bytes(8, "little")
    assert list(batch.read(14, "<u2")) == [100, 101, 102, 103]
    with pytest.raises(InvalidRequestError, match="exceed buffer size"):
        tx.field(2045, "<u4")
    # the view covers every buffer of the pool and is shared by rings of the pool
    assert tx.field(0, "u1").shape == (tx.nbufs,)
    assert rx.field(14)[int(tx.slots["buf_idx"][1])] == 101


HOSTILE_WORDS = [8, 9, 1000, 0x7FFFFFFF, 0xB0000000, 0xFFFFFFFF]


@pytest.mark.parametrize("value", HOSTILE_WORDS)
@pytest.mark.parametrize("field", ["head", "tail"])
def test_hostile_header_words_are_refused_before_use(field, value):
    """tail = 0xB0000000 once made space() return 2952790016 and ready() allocate 22 GiB."""
    from netmap_core.errors import CorruptRingError

    tx, rx = ring_of(8)
    for r in (tx, rx):
        r.header[field] = value
        calls = [r.space, r.ready, lambda r=r: r.ready(3), lambda r=r: r.advance(0),
                 lambda r=r: r.fill(2, template=b"ab"), lambda r=r: r.forward(tx if r is rx else rx)]
        for call in calls:
            with pytest.raises(CorruptRingError) as e:
                call()
            err = e.value
            assert (err.ring, err.field, err.value) == (r.name, field, value)
            assert err.allowed.startswith("0..7") and "num_slots=8" in str(err)
            assert isinstance(err, RingProtocolError)
        assert "?" in repr(r) and f"{field}={value}" in r.describe()
    assert int(tx.slots["len"][0]) == 2048, "fill wrote nothing"


def test_hostile_tail_in_tx_pending_is_refused():
    from netmap_core.errors import CorruptRingError

    tx, _ = ring_of(8)
    tx.header["tail"] = 8
    with pytest.raises(CorruptRingError, match="tail=8"):
        tx.tx_pending()


def test_num_slots_is_fixed_when_the_ring_is_mapped():
    tx, _ = ring_of(8)
    tx.header["num_slots"] = 0xB0000000
    tx.header["tail"] = 100
    with pytest.raises(RingProtocolError, match="tail=100"):
        tx.ready()
    assert tx.num_slots == 8


def test_ready_refuses_a_slot_len_beyond_the_buffer_size():
    from netmap_core.errors import CorruptRingError

    _, rx = ring_of(8)
    rx.header["tail"] = 5
    rx.slots["len"][3] = 2049
    with pytest.raises(CorruptRingError) as e:
        rx.ready()
    assert (e.value.field, e.value.value) == ("slot[3].len", 2049)
    assert len(rx.ready(3)) == 3   # the slots before it are fine


@pytest.mark.parametrize("limit", [-1, -(2**40), 1.5, "3"])
def test_ready_and_forward_refuse_bad_limits(limit):
    tx, rx = ring_of(8)
    with pytest.raises(InvalidRequestError, match="limit"):
        tx.ready(limit)
    with pytest.raises(InvalidRequestError, match="limit"):
        tx.forward(rx, limit)


def test_huge_limits_are_bounded_by_space():
    tx, rx = ring_of(8)
    assert len(tx.ready(2**62)) == 7
    assert tx.fill(2**62, template=b"x") == 7


@pytest.mark.parametrize("setter", ["head", "cur"])
@pytest.mark.parametrize("value", [8, 9, 2**32 - 1, 2**32, -1])
def test_head_and_cur_setters_refuse_values_outside_the_ring(setter, value):
    tx, _ = ring_of(8)
    with pytest.raises(InvalidRequestError, match=rf"t:tx0: {setter}={value} is out of range; "
                       r"allowed: 0\.\.7 \(the ring has 8 slots\)"):
        setattr(tx, setter, value)
    assert (tx.head, tx.cur) == (0, 0)
    setattr(tx, setter, np.uint32(7))   # numpy integers are fine
    assert getattr(tx, setter) == 7
    with pytest.raises(InvalidRequestError, match="not an integer"):
        setattr(tx, setter, 1.0)


@pytest.mark.parametrize("i", [-1, 8, 100])
def test_next_refuses_slots_outside_the_ring(i):
    tx, _ = ring_of(8)
    with pytest.raises(InvalidRequestError, match=rf"next: slot={i} is out of range; allowed: 0\.\.7"):
        tx.next(i)
    assert tx.next(7) == 0


def test_set_len_refuses_slots_outside_the_ring():
    tx, _ = ring_of(8)
    with pytest.raises(RingProtocolError, match="slot=-1"):
        tx.set_len(-1, 10)      # once wrote into slot 7 through a negative index
    with pytest.raises(RingProtocolError, match="slot=8"):
        tx.set_len(8, 10)
    assert int(tx.slots["len"][7]) == 2048


def test_advance_refuses_non_integers():
    tx, _ = ring_of(8)
    with pytest.raises(InvalidRequestError, match="advance=1.5 is not an integer"):
        tx.advance(1.5)
    tx.advance(np.int64(2))
    assert tx.head == 2


def test_forward_names_the_slot_with_a_bad_buffer():
    from netmap_core.errors import CorruptRingError

    tx, rx = ring_of(8)
    rx.header["tail"] = 4
    rx.slots["buf_idx"][2] = 10**6
    with pytest.raises(CorruptRingError) as e:
        rx.forward(tx)
    assert (e.value.ring, e.value.field, e.value.value) == ("t:rx0", "slot[2].buf_idx", 10**6)
    assert (rx.head, tx.head) == (0, 0), "nothing moved"


@settings(max_examples=60)
@given(n=st.integers(1, 40), data=st.data())
def test_bufs_and_payloads_walk_head_to_tail_like_buf_and_next(n, data):
    tx, _ = ring_of(n)
    head = data.draw(st.integers(0, n - 1))
    tx.head = tx.cur = head
    tx.header["tail"] = data.draw(st.integers(0, n - 1))
    tx.slots["len"][:] = data.draw(st.lists(st.integers(0, 2048), min_size=n, max_size=n))
    k = data.draw(st.one_of(st.none(), st.integers(0, 2 * n)))
    want, i = [], head
    for _ in range(tx.space() if k is None else min(k, tx.space())):
        want.append(i)
        i = tx.next(i)
    got = list(tx.bufs(k))
    assert [i for i, _ in got] == want
    for i, b in got:  # the very buffer buf(i) shows: zero copy, writable
        assert b.shape == (tx.buf_size,) and b.ctypes.data == tx.buf(i).ctypes.data
    pays = list(tx.payloads(k))
    assert [i for i, _ in pays] == want
    assert all(p.ctypes.data == tx.buf(i).ctypes.data and len(p) == tx.slots["len"][i] for i, p in pays)
    assert tx.head == head  # neither moves head


def test_bufs_views_write_through_and_payloads_read_them():
    tx, _ = ring_of(8)
    for i, b in tx.bufs(3):
        b[:2] = [i, 0xEE]
        tx.set_len(i, 2)
    assert [bytes(p) for _, p in tx.payloads(3)] == [b"\x00\xee", b"\x01\xee", b"\x02\xee"]


def test_bufs_and_payloads_check_what_they_read_from_memory():
    from netmap_core.errors import CorruptRingError

    tx, _ = ring_of(8)
    tx.slots["buf_idx"][2] = 10**6
    tx.slots["len"][1] = 4000
    walk = tx.bufs(4)
    assert [i for i, _ in (next(walk), next(walk))] == [0, 1]  # checked when reached
    with pytest.raises(CorruptRingError) as e:
        next(walk)
    assert (e.value.field, e.value.value) == ("slot[2].buf_idx", 10**6)
    with pytest.raises(CorruptRingError) as e:
        list(tx.payloads())
    assert (e.value.field, e.value.value) == ("slot[1].len", 4000)
    with pytest.raises(InvalidRequestError, match="bufs: k=-1 is negative"):
        tx.bufs(-1)
    tx.header["tail"] = 99
    with pytest.raises(CorruptRingError) as e:
        tx.payloads()  # head and tail are checked by the call, before any slot
    assert e.value.field == "tail"
