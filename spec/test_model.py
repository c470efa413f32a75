"""The reference model on its own: it must reproduce what netmap was observed doing.

Each test replays a live observation from the netmap spec (F5, F7, B6-B8, B13) on an 8-slot
pipe whose master RX ring holds buffers 2..9 and TX ring 10..17, as a fresh pipe does.
"""
from __future__ import annotations

import pytest

from netmap_core.testing.model import (
    BUF,
    FLAGS,
    MASTER,
    NETMAP,
    NS_BUF_CHANGED,
    NS_MOREFRAG,
    POLLERR,
    POLLIN,
    POLLOUT,
    RX,
    SLAVE,
    STRICT,
    TX,
    PipeModel,
    StrictViolation,
    circ_between,
    parse_payload,
    payload,
)


def pipe(n: int = 8, mode: str = NETMAP) -> PipeModel:
    rx = [[2 + i, 2048, 0, 0] for i in range(n)]
    tx = [[2 + n + i, 2048, 0, 0] for i in range(n)]
    m = PipeModel(n, mode, 2048, MASTER, tx, rx, objtotal=4098)
    m.register(1, MASTER, False, [])
    m.register(2, SLAVE, False, [])
    return m


def send(m: PipeModel, role: str, k: int, flags=None, start_len: int = 60) -> None:
    flags = flags or [0] * k
    m.fill(role, [start_len + j for j in range(k)], flags, [0] * k)


def release(m: PipeModel, role: str, k: int) -> None:
    r = m.ring(role, RX)
    new = (r.head + k) % r.n
    m.set_indexes(role, RX, head=new, cur=new)


def laws(m: PipeModel) -> None:
    assert m.sane, m.anomalies
    assert m.conservation_error() is None
    assert m.order_error() is None
    assert m.one_slot_empty_error() is None


def test_fresh_rings_follow_f6_and_f8():
    m = pipe()
    tx, rx = m.ring(MASTER, TX), m.ring(SLAVE, RX)
    assert tx.indexes() == (0, 0, 7) and rx.indexes() == (0, 0, 0)
    assert tx.slots == rx.slots and m.ring(MASTER, RX).slots == m.ring(SLAVE, TX).slots
    laws(m)


def test_f5_exchange_as_observed_live():
    m = PipeModel(8, NETMAP, 2048, MASTER, [[10 + i, 2048, 0, 0] for i in range(8)],
                  [[2 + i, 2048, 0, 0] for i in range(8)], objtotal=4098)
    m.register(1, MASTER, False, [21, 20])
    m.register(2, SLAVE, False, [])
    m.swap_with_extra(1, TX, 2)  # slot 2 now holds extra buffer 21 with NS_BUF_CHANGED
    send(m, MASTER, 5, flags=[0, 0, 0, 0, 0x2])
    m.txsync(MASTER)
    mtx, srx = m.ring(MASTER, TX), m.ring(SLAVE, RX)
    assert mtx.indexes() == (5, 5, 7)  # the sender's tail does not move at its own txsync
    assert [tuple(s[:3]) for s in srx.slots[:5]] == [
        (10, 60, 0), (11, 61, 0), (21, 62, NS_BUF_CHANGED), (13, 63, 0), (14, 64, 0x2)]
    assert mtx.slots[2][FLAGS] == 0  # NS_BUF_CHANGED cleared on the consumed TX slot
    assert srx.tail == 0
    m.rxsync(SLAVE)
    assert srx.tail == 5
    srx.slots[0][BUF] = 2  # the slave swaps buffer 2 into slot 0 and says so
    srx.slots[0][FLAGS] |= NS_BUF_CHANGED
    release(m, SLAVE, 3)
    m.rxsync(SLAVE)
    assert [tuple(s[:3]) for s in mtx.slots[:3]] == [
        (2, 60, NS_BUF_CHANGED), (11, 61, 0), (21, 62, NS_BUF_CHANGED)]
    assert srx.slots[0][FLAGS] == 0 and srx.slots[2][FLAGS] == 0
    assert mtx.tail == 7
    m.txsync(MASTER)
    assert mtx.tail == 2
    send(m, MASTER, 5)  # fill until head == tail
    assert mtx.head == mtx.tail == 2
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    assert srx.user_space() == 7  # n-1 unreleased slots
    release(m, SLAVE, 7)
    m.rxsync(SLAVE)
    m.txsync(MASTER)
    assert mtx.tail == 1 and mtx.head == 2  # tail = head - 1: all free


def test_morefrag_tail_stops_at_last_complete_packet():
    m = pipe()
    send(m, MASTER, 2)
    m.txsync(MASTER)
    send(m, MASTER, 3, flags=[NS_MOREFRAG, 0, NS_MOREFRAG])  # packet in 2-3, dangling 4
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).tail == 4
    send(m, MASTER, 1)  # completes the packet in 4-5
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).tail == 6
    laws(m)


def test_f7_sender_alone_then_late_receiver():
    m = PipeModel(8, NETMAP, 2048, MASTER, [[10 + i, 2048, 0, 0] for i in range(8)],
                  [[2 + i, 2048, 0, 0] for i in range(8)], objtotal=4098)
    m.register(1, MASTER, False, [])
    send(m, MASTER, 7)
    assert m.poll(MASTER, POLLOUT) == 0  # sent, no room: cur == tail
    m.register(2, SLAVE, False, [])
    assert m.ring(SLAVE, RX).indexes() == (0, 0, 0)  # until its first rxsync
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).indexes() == (0, 0, 7)
    laws(m)


def test_b13_poll_readiness():
    m = pipe()
    assert m.poll(MASTER, POLLOUT) == POLLOUT  # fresh TX ring
    m.set_indexes(MASTER, TX, cur=7)
    assert m.poll(MASTER, POLLOUT) == 0  # head 0, cur = tail = n-1: not ready
    m.set_indexes(MASTER, TX, cur=0)
    send(m, MASTER, 3)
    assert m.poll(MASTER, 0) == 0
    assert m.ring(MASTER, TX).hwcur == 3  # poll without events flushed the TX ring
    assert m.poll(SLAVE, POLLIN) == POLLIN
    m.set_indexes(SLAVE, RX, cur=3)  # keep the three slots, wake only for newer ones
    assert m.poll(SLAVE, POLLIN) == 0
    send(m, MASTER, 1)
    m.txsync(MASTER)
    assert m.poll(SLAVE, POLLIN) == POLLIN
    release(m, SLAVE, 4)
    assert m.poll(SLAVE, POLLOUT) == POLLOUT  # the RX part does not run ...
    assert m.ring(SLAVE, RX).hwcur == 0  # ... so nothing was released
    laws(m)


def wrapped_master() -> PipeModel:
    """Master TX with rhead 3, rtail 2 (the legal head range wraps), as in the live table."""
    m = pipe()
    send(m, MASTER, 3)
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    release(m, SLAVE, 3)
    m.rxsync(SLAVE)
    m.txsync(MASTER)
    t = m.ring(MASTER, TX)
    assert (t.indexes(), t.rhead, t.rtail) == ((3, 3, 2), 3, 2)
    return m


def test_b6_wrapped_cur_beyond_n_is_accepted_by_netmap():
    m = wrapped_master()
    send(m, MASTER, 2)
    m.set_indexes(MASTER, TX, cur=100)
    m.txsync(MASTER)
    t = m.ring(MASTER, TX)
    assert (t.head, t.cur, t.hwcur) == (5, 100, 5)  # accepted, the two slots were sent
    assert m.poll(MASTER, POLLOUT) == POLLOUT  # cur != tail for ever
    laws(m)


def test_b6_strict_rejects_what_netmap_accepts():
    m = wrapped_master()
    m.mode = STRICT
    send(m, MASTER, 2)
    m.set_indexes(MASTER, TX, cur=100)
    with pytest.raises(StrictViolation) as exc:
        m.txsync(MASTER)
    assert (exc.value.field, exc.value.value) == ("cur", 100)
    assert m.ring(MASTER, TX).hwcur == 3  # nothing happened


def test_b6_head_moved_back_in_wrapped_range_is_a_wraparound():
    m = wrapped_master()
    m.set_indexes(MASTER, TX, head=1, cur=1)
    m.txsync(MASTER)  # legal: sends slots 3..7, 0
    assert m.ring(MASTER, TX).hwcur == 1 and m.m2s.in_flight() == 6
    assert m.sane


@pytest.mark.parametrize("head", [8, 100])
def test_b8_out_of_range_head_resets_tx(head):
    m = wrapped_master()
    m.set_indexes(MASTER, TX, head=head)
    assert m.poll(MASTER, POLLOUT) & POLLERR
    assert m.ring(MASTER, TX).indexes() == (3, 3, 2)
    assert m.m2s.in_flight() == 0  # nothing sent
    laws(m)


def test_b8_inconsistent_head_cur_adopted_and_failing_again():
    m = wrapped_master()
    m.set_indexes(MASTER, TX, head=5, cur=4)
    assert m.poll(MASTER, POLLOUT) == POLLOUT | POLLERR
    for _ in range(3):
        m.txsync(MASTER)
        t = m.ring(MASTER, TX)
        assert (t.head, t.cur, t.rhead, t.rcur, t.hwcur) == (5, 4, 5, 4, 3)


def test_b8_pipe_two_step_quirk_full_ring():
    """(a) full ring, head = tail = 6, head set 2 beyond tail: the first txsync adopts, the
    second sends, all n slots are in flight; the slave sees 1 pending, the master 6 free."""
    m = pipe()
    send(m, MASTER, 7)
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    release(m, SLAVE, 7)
    m.rxsync(SLAVE)
    m.txsync(MASTER)
    send(m, MASTER, 7)
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    t = m.ring(MASTER, TX)
    assert t.head == t.tail == 6
    m.set_indexes(MASTER, TX, head=0, cur=0)
    m.txsync(MASTER)
    assert m.m2s.in_flight() == 7  # adopted, nothing sent
    m.txsync(MASTER)
    assert m.m2s.in_flight() == 8
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).user_space() == 1
    assert t.user_space() == 6
    assert not m.sane


def test_b8_pipe_two_step_quirk_back_behind_hwcur():
    """(b) 3 slots in flight (hwcur 3, tail 7), head set back to 0: after two txsyncs all 8
    slots are in flight; the slave sees 0 pending, the master 7 free."""
    m = pipe()
    send(m, MASTER, 3)
    m.txsync(MASTER)
    m.set_indexes(MASTER, TX, head=0, cur=0)
    m.txsync(MASTER)
    m.txsync(MASTER)
    assert m.m2s.in_flight() == 8
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).user_space() == 0
    assert m.ring(MASTER, TX).user_space() == 7


def test_b8_poll_does_both_steps_when_nothing_is_ready():
    """poll rescans once when nothing is ready, so a failed-and-adopted TX ring whose cur ==
    tail passes on the second scan within the same poll call."""
    m = pipe()
    send(m, MASTER, 3)
    m.txsync(MASTER)
    m.set_indexes(MASTER, TX, head=0, cur=7)  # behind hwcur; cur == tail: not ready
    assert m.poll(MASTER, POLLOUT) == POLLERR
    assert m.m2s.in_flight() == 8


def test_b8_rx_head_beyond_tail_releases_unreceived_slots():
    m = pipe()
    send(m, MASTER, 3)
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    m.set_indexes(SLAVE, RX, head=5, cur=5)
    assert m.poll(SLAVE, POLLIN) == POLLIN | POLLERR
    r = m.ring(SLAVE, RX)
    assert r.indexes() == (5, 5, 3) and r.hwcur == 5
    assert r.user_space() == 6  # six stale "received" slots
    assert not m.sane


@pytest.mark.parametrize("head", [8, 100])
def test_b8_rx_out_of_range_head_resets(head):
    m = pipe()
    send(m, MASTER, 3)
    m.txsync(MASTER)
    m.rxsync(SLAVE)
    m.set_indexes(SLAVE, RX, head=head)
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).indexes() == (0, 0, 3)
    laws(m)


def test_b8_sanitises_every_slot_of_the_ring():
    m = pipe()
    t = m.ring(MASTER, TX)
    t.slots[4][BUF] = 0xFFFFFFFF
    t.slots[5][1] = 5000
    t.slots[6][BUF] = 1
    m.set_indexes(MASTER, TX, head=100)
    m.txsync(MASTER)
    assert t.slots[4][:2] == [0, 0] and t.slots[5][:2] == [15, 0] and t.slots[6][:2] == [0, 0]


def test_tail_overwrite_restored():
    m = pipe()
    send(m, MASTER, 2)
    m.set_indexes(MASTER, TX, tail=0)
    m.txsync(MASTER)
    assert m.ring(MASTER, TX).tail == 7
    m.rxsync(SLAVE)
    m.set_indexes(SLAVE, RX, tail=7)
    m.rxsync(SLAVE)
    assert m.ring(SLAVE, RX).tail == 2
    laws(m)


def test_rx_extra_swap_and_forward_conserve_buffers():
    m = PipeModel(5, NETMAP, 2048, MASTER, [[10 + i, 2048, 0, 0] for i in range(5)],
                  [[2 + i, 2048, 0, 0] for i in range(5)], objtotal=4098)
    m.register(1, MASTER, False, [30, 31])
    m.register(2, SLAVE, False, [40])
    for _ in range(6):  # several wrap-arounds of a 5-slot ring
        send(m, MASTER, 3)
        m.txsync(MASTER)
        m.rxsync(SLAVE)
        r = m.ring(SLAVE, RX)
        m.swap_with_extra(2, RX, (r.head + 2) % r.n)  # the third slot: read, then swapped
        m.forward(SLAVE, 2)
        release(m, SLAVE, 1)
        m.rxsync(SLAVE)
        m.txsync(SLAVE)
        m.rxsync(MASTER)
        release(m, MASTER, m.ring(MASTER, RX).user_space())
        m.rxsync(MASTER)
        m.txsync(SLAVE)
        m.txsync(MASTER)
        laws(m)
    assert [t[0] for t in m.s2m.released] == [0] * len(m.s2m.released)  # bounced m2s packets


def test_payload_roundtrip_and_circ():
    assert parse_payload(payload(1, 77, 40)) == (1, 77)
    assert parse_payload(b"x" * 40) is None
    assert circ_between(1, 6, 2, 8) and not circ_between(4, 6, 2, 8) and not circ_between(8, 0, 7, 8)
