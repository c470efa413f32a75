"""The cheap batch paths of a Ring: ``fill(k, lengths=L)`` (publish without touching buffers),
``fill(template=..., changed_only=True)`` (refill replaced buffers only) and its prepared form
``prepare_fill``, ``release`` and ``take``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from layout import build
from netmap_core import abi
from netmap_core.errors import ClosedPortError, CorruptRingError, InvalidRequestError
from netmap_core.ring import Ring, RingOwner, Taken


def ring_of(n: int, *, owner: RingOwner | None = None) -> tuple[Ring, Ring]:
    region, offs, _ = build(tx=(n,), rx=(n,))
    return (Ring(region, offs[0], name="t:tx0", owner=owner),
            Ring(region, offs[1], name="t:rx0", owner=owner))


def place(ring: Ring, head: int, room: int) -> None:
    """head = cur = ``head`` and ``room`` slots in [head, tail)."""
    ring.head = ring.cur = head
    ring.header["tail"] = (head + room) % ring.num_slots


@settings(max_examples=80)
@given(n=st.integers(2, 40), data=st.data())
def test_fill_lengths_stores_len_and_flags_of_exactly_the_published_slots(n, data):
    tx, _ = ring_of(n)
    start = data.draw(st.integers(0, n - 1))
    place(tx, start, n - 1)
    tx.slots["len"] = 7
    tx.slots["flags"] = abi.NS_BUF_CHANGED
    before = bytes(tx.buffers.reshape(-1))
    k = data.draw(st.integers(0, n + 3))
    length = data.draw(st.integers(0, tx.buf_size))
    done = tx.fill(k, lengths=length, flags=abi.NS_REPORT)
    assert done == min(k, n - 1)
    mine = {(start + j) % n for j in range(done)}
    for i in range(n):
        want = (length, abi.NS_REPORT) if i in mine else (7, abi.NS_BUF_CHANGED)
        assert (int(tx.slots["len"][i]), int(tx.slots["flags"][i])) == want, i
    assert tx.head == tx.cur == (start + done) % n
    assert bytes(tx.buffers.reshape(-1)) == before, "a lengths-only fill touched a buffer"


@settings(max_examples=40)
@given(n=st.integers(2, 40), data=st.data())
def test_fill_with_one_length_per_slot_wraps_like_a_walk(n, data):
    tx, _ = ring_of(n)
    start = data.draw(st.integers(0, n - 1))
    place(tx, start, n - 1)
    k = data.draw(st.integers(1, n - 1))
    lens = np.array(data.draw(st.lists(st.integers(0, 2048), min_size=k, max_size=k + 2)))
    assert tx.fill(k, lengths=lens) == k
    assert [int(tx.slots["len"][(start + j) % n]) for j in range(k)] == list(lens[:k])
    assert [int(tx.slots["flags"][(start + j) % n]) for j in range(k)] == [0] * k


def test_fill_lengths_neither_reads_nor_checks_buf_idx_but_a_payload_does():
    tx, _ = ring_of(8)
    tx.slots["buf_idx"][2] = 0xFFFFFFFF          # corrupt, and never used by a lengths-only fill
    assert tx.fill(4, lengths=60, advance=False) == 4
    assert int(tx.slots["buf_idx"][2]) == 0xFFFFFFFF
    with pytest.raises(CorruptRingError) as e:
        tx.fill(4, template=b"x" * 60)
    assert e.value.field == "slot[2].buf_idx" and e.value.value == 0xFFFFFFFF
    assert tx.head == 0, "a refused fill published nothing"


def test_fill_changed_only_copies_into_replaced_buffers_only():
    tx, _ = ring_of(8)
    frame = bytes(range(60))
    tx.buffers[:, :60] = 0xEE
    tx.slots["flags"][[1, 3]] = abi.NS_BUF_CHANGED
    tx.slots["buf_idx"][5] = 0xFFFFFFFF          # unchanged: its buffer is not looked at
    assert tx.fill(6, template=frame, changed_only=True) == 6
    for i in (0, 1, 2, 3, 4):
        body = bytes(tx.buffers[int(tx.slots["buf_idx"][i]), :60])
        assert body == (frame if i in (1, 3) else b"\xee" * 60), i
    assert list(tx.slots["len"][:6]) == [60] * 6
    assert list(tx.slots["flags"][:8]) == [0] * 8, "flags of the published slots are cleared"


@settings(max_examples=60)
@given(n=st.integers(2, 40), data=st.data())
def test_fill_changed_only_refills_exactly_the_marked_slots(n, data):
    tx, _ = ring_of(n)
    start, room = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    place(tx, start, room)
    tx.buffers[:, :8] = 0xEE
    flags = data.draw(st.lists(st.sampled_from([0, abi.NS_BUF_CHANGED, abi.NS_REPORT,
                                                abi.NS_BUF_CHANGED | abi.NS_MOREFRAG]),
                               min_size=n, max_size=n))
    tx.slots["flags"] = flags
    k = tx.fill(n, template=b"12345678", changed_only=True)
    assert k == room
    for j in range(n):
        i = (start + j) % n
        marked = j < k and flags[i] & abi.NS_BUF_CHANGED
        body = bytes(tx.buffers[int(tx.slots["buf_idx"][i]), :8])
        assert body == (b"12345678" if marked else b"\xee" * 8), (i, flags[i])
        assert int(tx.slots["flags"][i]) == (0 if j < k else flags[i])


@settings(max_examples=80)
@given(n=st.integers(2, 40), data=st.data())
def test_fill_changed_only_over_slots_that_already_hold_the_word(n, data):
    """A sender's ring after a lap: most slots hold the len and flags fill() would write (it
    then writes nothing); any slot that differs, or is marked replaced, still gets its word and,
    if marked, the template. A caller's own NS_BUF_CHANGED never counts as "unchanged"."""
    tx, _ = ring_of(n)
    start, room = data.draw(st.integers(0, n - 1)), data.draw(st.integers(1, n - 1))
    place(tx, start, room)
    flags = data.draw(st.sampled_from([0, abi.NS_REPORT, abi.NS_BUF_CHANGED]))
    states = data.draw(st.lists(st.sampled_from(["same", "same", "len", "marked", "flag"]),
                                min_size=n, max_size=n))
    word = {"same": (8, flags), "len": (9, flags), "marked": (8, flags | abi.NS_BUF_CHANGED),
            "flag": (8, flags ^ abi.NS_MOREFRAG)}
    tx.slots["len"] = [word[x][0] for x in states]
    tx.slots["flags"] = [word[x][1] for x in states]
    tx.buffers[:, :8] = 0xEE
    k = data.draw(st.integers(0, n))
    done = tx.fill(k, template=b"12345678", changed_only=True, flags=flags)
    assert done == min(k, room)
    for j in range(n):
        i = (start + j) % n
        refilled = j < done and word[states[i]][1] & abi.NS_BUF_CHANGED
        body = bytes(tx.buffers[int(tx.slots["buf_idx"][i]), :8])
        assert body == (b"12345678" if refilled else b"\xee" * 8), (i, states[i], flags)
        got = (int(tx.slots["len"][i]), int(tx.slots["flags"][i]))
        assert got == ((8, flags) if j < done else word[states[i]]), (i, states[i])
    assert tx.head == tx.cur == (start + done) % n


def test_fill_changed_only_over_a_lap_of_unchanged_slots_reads_no_buf_idx():
    tx, _ = ring_of(8)
    place(tx, 2, 7)
    tx.slots["len"], tx.slots["flags"] = 60, 0
    tx.slots["buf_idx"][4] = 0xFFFFFFFF       # never looked at: no slot is marked
    assert tx.fill(5, template=b"z" * 60, changed_only=True) == 5
    assert tx.head == 7 and int(tx.slots["buf_idx"][4]) == 0xFFFFFFFF
    tx.slots["flags"][4] = abi.NS_BUF_CHANGED  # ... until that slot is marked replaced
    place(tx, 2, 7)
    with pytest.raises(CorruptRingError) as e:
        tx.fill(5, template=b"z" * 60, changed_only=True)
    assert e.value.field == "slot[4].buf_idx" and tx.head == 2


def test_fill_changed_only_with_one_length_per_slot():
    tx, _ = ring_of(8)
    tx.slots["len"], tx.slots["flags"] = 60, 0
    tx.slots["flags"][2] = abi.NS_BUF_CHANGED
    tx.buffers[:, :4] = 0xEE
    assert tx.fill(4, template=b"abcd", lengths=np.array([4, 3, 2, 1]), changed_only=True) == 4
    assert list(tx.slots["len"][:5]) == [4, 3, 2, 1, 60]
    assert [bytes(tx.buffers[int(tx.slots["buf_idx"][i]), :4]) for i in (1, 2)] == [b"\xee" * 4, b"abcd"]


def test_fill_changed_only_checks_the_replaced_buffers_it_writes():
    tx, _ = ring_of(8)
    place(tx, 6, 7)                               # slots 6, 7, 0.. : the run wraps
    tx.slots["flags"][1] = abi.NS_BUF_CHANGED
    tx.slots["buf_idx"][1] = tx.nbufs
    with pytest.raises(CorruptRingError) as e:
        tx.fill(5, template=b"y" * 60, changed_only=True)
    assert e.value.field == "slot[1].buf_idx" and e.value.value == tx.nbufs
    assert tx.head == 6


SLOT_STATES = {"same": (8, 0), "len": (9, 0), "marked": (8, abi.NS_BUF_CHANGED),
               "flag": (8, abi.NS_MOREFRAG), "report": (8, abi.NS_REPORT)}


def twin_rings(n: int, start: int, room: int, states: list[str]) -> tuple[Ring, Ring]:
    """Two TX rings in two regions, byte for byte alike: head at ``start``, ``room`` free
    slots, slot i's len and flags from ``states[i]``, every buffer 0xEE."""
    rings = []
    for _ in range(2):
        tx, _ = ring_of(n)
        place(tx, start, room)
        tx.slots["len"] = [SLOT_STATES[x][0] for x in states]
        tx.slots["flags"] = [SLOT_STATES[x][1] for x in states]
        tx.buffers[:, :8] = 0xEE
        rings.append(tx)
    return rings[0], rings[1]


@settings(max_examples=80)
@given(n=st.integers(2, 40), data=st.data())
def test_prepare_fill_does_what_fill_changed_only_does(n, data):
    """Over every mix of slots that hold the template's word and slots that do not (another
    len, a flag, marked replaced), wrapping or not, with k below, at or past the room: the
    prepared fill leaves the ring, byte for byte, as ``fill(changed_only=True)`` does."""
    start, room = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    states = data.draw(st.lists(st.sampled_from(["same", "same", "same", *SLOT_STATES]),
                                min_size=n, max_size=n))
    mine, theirs = twin_rings(n, start, room, states)
    send = mine.prepare_fill(b"12345678")
    for _ in range(data.draw(st.integers(1, 4))):      # later calls see what earlier ones left
        k = data.draw(st.integers(-1, n + 1))
        assert send(k) == theirs.fill(k, template=b"12345678", changed_only=True)
        assert bytes(mine.region) == bytes(theirs.region)
        free = data.draw(st.integers(0, n - 1))        # the kernel reclaims some slots ...
        place(mine, mine.head, free)
        place(theirs, theirs.head, free)
        marked = data.draw(st.lists(st.integers(0, n - 1), max_size=3))
        for r in (mine, theirs):                       # ... and replaces some buffers
            r.slots["flags"][marked] = abi.NS_BUF_CHANGED


def test_prepare_fill_publishes_a_lap_of_unchanged_slots_by_head_and_cur_alone():
    tx, _ = ring_of(8)
    place(tx, 2, 7)
    tx.slots["len"], tx.slots["flags"] = 60, 0
    tx.slots["buf_idx"][4] = 0xFFFFFFFF       # never looked at: no slot is marked
    send = tx.prepare_fill(np.full(60, 0x7A, np.uint8))
    before = bytes(tx.region[tx.offset + abi.NETMAP_RING_SLOTS_OFFSET:])
    assert send(np.int64(5)) == 5
    assert tx.head == tx.cur == 7
    assert bytes(tx.region[tx.offset + abi.NETMAP_RING_SLOTS_OFFSET:]) == before
    place(tx, 5, 7)
    assert send(3) == 3 and tx.head == tx.cur == 0, "a run up to the last slot"
    place(tx, 6, 7)                           # 6, 7, 0, 1: a wrapping run is fill()'s
    tx.slots["flags"][0] = abi.NS_BUF_CHANGED
    assert send(4) == 4 and tx.head == 2
    assert bytes(tx.buffers[int(tx.slots["buf_idx"][0]), :60]) == b"z" * 60
    assert int(tx.slots["flags"][0]) == 0


def test_prepare_fill_checks_its_template_once_and_every_call():
    owner = RingOwner(None, "t")
    tx, _ = ring_of(8, owner=owner)
    before = bytes(tx.region)
    with pytest.raises(InvalidRequestError, match="template width 2049 exceeds the buffer size 2048"):
        tx.prepare_fill(b"x" * 2049)
    with pytest.raises(InvalidRequestError, match=r"1-D \(one frame\), got shape \(2, 30\)"):
        tx.prepare_fill(np.zeros((2, 30), np.uint8))
    send = tx.prepare_fill(b"x" * 60)
    with pytest.raises(InvalidRequestError, match=r"k=1\.5 is not an integer"):
        send(1.5)
    for field, value in (("head", 8), ("tail", 9)):
        was = int(tx.header[field])
        tx.header[field] = value
        with pytest.raises(CorruptRingError) as e:
            send(1)
        assert e.value.field == field and e.value.value == value
        tx.header[field] = was
    owner.closed = True
    with pytest.raises(ClosedPortError):
        send(1)
    assert bytes(tx.region) == before, "a refused call wrote nothing"


@pytest.mark.parametrize("kwargs, match", [
    ({"lengths": -1}, r"lengths=-1 is out of range; allowed: 0\.\.2048"),
    ({"lengths": 2049}, r"lengths=2049 is out of range"),
    ({"lengths": np.array([60, 2049, 60])}, r"lengths holds 2049; allowed: 0\.\.2048"),
    ({"lengths": [60, 60]}, r"shape \(2,\).*3 or more integers"),
    ({"lengths": np.array([1.5, 2.0, 3.0])}, r"dtype float64"),
    ({"lengths": "60"}, r"lengths"),
    ({"lengths": 60, "flags": 0x10000}, r"flags=65536 is out of range; allowed: 0\.\.0xffff"),
    ({"lengths": 60, "flags": -1}, r"flags=-1"),
    ({"changed_only": True}, r"changed_only=True .* pass template="),
    ({"changed_only": True, "data": np.zeros((3, 4), np.uint8)}, r"changed_only"),
])
def test_fill_refuses_bad_arguments_before_writing(kwargs, match):
    tx, _ = ring_of(8)
    tx.slots["len"] = 9
    with pytest.raises(InvalidRequestError, match=match):
        tx.fill(3, **kwargs)
    assert tx.head == 0 and list(tx.slots["len"]) == [9] * 8


def test_fill_accepts_numpy_integers():
    tx, _ = ring_of(8)
    assert tx.fill(np.int64(3), lengths=np.uint16(42), flags=np.uint16(abi.NS_REPORT)) == 3
    assert list(tx.slots["len"][:3]) == [42] * 3


@settings(max_examples=60)
@given(n=st.integers(2, 40), data=st.data())
def test_release_moves_head_past_up_to_limit_slots(n, data):
    _, rx = ring_of(n)
    start = data.draw(st.integers(0, n - 1))
    room = data.draw(st.integers(0, n - 1))
    place(rx, start, room)
    limit = data.draw(st.none() | st.integers(0, n + 2))
    k = rx.release(limit)
    assert k == (room if limit is None else min(room, limit))
    assert rx.head == rx.cur == (start + k) % n
    assert rx.space() == room - k


@settings(max_examples=60)
@given(n=st.integers(2, 40), data=st.data())
def test_take_counts_slots_packets_and_bytes_then_releases(n, data):
    _, rx = ring_of(n)
    start = data.draw(st.integers(0, n - 1))
    room = data.draw(st.integers(0, n - 1))
    place(rx, start, room)
    lens = data.draw(st.lists(st.integers(0, 2048), min_size=n, max_size=n))
    more = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    other = data.draw(st.sampled_from([0, abi.NS_BUF_CHANGED, abi.NS_REPORT << 8]))  # no flag, or
    rx.slots["len"] = lens                       # bits beside NS_MOREFRAG in either byte
    rx.slots["flags"] = [abi.NS_MOREFRAG | other if m else other for m in more]
    limit = data.draw(st.none() | st.integers(0, n))
    k = room if limit is None else min(room, limit)
    mine = [(start + j) % n for j in range(k)]
    got = rx.take(limit)
    assert got == Taken(k, sum(not more[i] for i in mine), sum(lens[i] for i in mine))
    assert rx.head == rx.cur == (start + k) % n


@settings(max_examples=100)
@given(n=st.integers(2, 40), data=st.data())
def test_take_of_one_frame_size_agrees_with_the_slot_by_slot_count(n, data):
    """Traffic of one size (the compare path) and every way a slot can differ from the first:
    another len, a flag, a len beyond the buffer (refused, nothing released)."""
    _, rx = ring_of(n)
    start, room = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    place(rx, start, room)
    size = data.draw(st.sampled_from([0, 60, 2048, 2049]))
    odd = data.draw(st.sampled_from([("len", 61), ("len", 2049), ("flags", abi.NS_MOREFRAG),
                                     ("flags", abi.NS_REPORT), ("flags", abi.NS_BUF_CHANGED)]))
    rx.slots["len"], rx.slots["flags"] = size, 0
    marked = data.draw(st.lists(st.integers(0, n - 1), max_size=2))
    for i in marked:
        rx.slots[odd[0]][i] = odd[1]
    limit = data.draw(st.none() | st.integers(0, n))
    k = room if limit is None else min(room, limit)
    mine = [(start + j) % n for j in range(k)]
    lens = [int(rx.slots["len"][i]) for i in mine]
    bad = [i for i in mine if rx.slots["len"][i] > 2048]
    if bad:
        with pytest.raises(CorruptRingError) as e:
            rx.take(limit)
        assert e.value.field == f"slot[{bad[0]}].len"
        assert rx.head == start
        return
    frags = sum(bool(rx.slots["flags"][i] & abi.NS_MOREFRAG) for i in mine)
    assert rx.take(limit) == Taken(k, k - frags, sum(lens))
    assert rx.head == rx.cur == (start + k) % n


def test_take_checks_every_len_and_releases_nothing_on_a_bad_one():
    _, rx = ring_of(8)
    place(rx, 6, 5)                               # slots 6, 7, 0, 1, 2
    rx.slots["len"] = 60
    rx.slots["len"][1] = 2049
    with pytest.raises(CorruptRingError) as e:
        rx.take()
    assert e.value.field == "slot[1].len" and e.value.value == 2049
    assert rx.head == 6
    assert rx.take(2) == Taken(2, 2, 120), "slots before the bad one are fine"


def test_release_and_take_check_head_and_tail():
    _, rx = ring_of(8)
    rx.header["tail"] = 8
    for call in (rx.release, rx.take, lambda: rx.fill(1, lengths=1)):
        with pytest.raises(CorruptRingError) as e:
            call()
        assert e.value.field == "tail"
    rx.header["tail"] = 3
    with pytest.raises(InvalidRequestError, match="release: limit=-1"):
        rx.release(-1)
    with pytest.raises(InvalidRequestError, match="take: limit"):
        rx.take(1.5)


def test_a_closed_ports_ring_refuses_the_cheap_paths():
    owner = RingOwner(None, "t")
    tx, rx = ring_of(8, owner=owner)
    owner.closed = True
    for call in (lambda: tx.fill(1, lengths=60), rx.release, rx.take):
        with pytest.raises(ClosedPortError):
            call()
