"""Emulated pipes: slot exchange, in-flight limit, fragments, peer lifetime (spec F1-F8)."""
from __future__ import annotations

import numpy as np
import pytest

from netmap_core import POLLOUT, abi
from netmap_emu.testing import isolated_namespace, open_emu, segments


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


def slot(ring, i):
    s = ring.slots[i]
    return int(s["buf_idx"]), int(s["len"]), int(s["flags"])


def test_f5_eight_slot_exchange_step_by_step():
    m = open_emu("netmap:pipeF{1@conf:slots=8", extra_bufs=10)
    s = open_emu("netmap:pipeF}1")
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    assert list(tx.slots["buf_idx"]) == list(range(10, 18))
    assert 21 in m.extra_buffers()
    for i in range(5):
        tx.slots["len"][i] = 60 + i
    tx.slots["buf_idx"][2] = 21
    tx.slots["flags"][2] = abi.NS_BUF_CHANGED
    tx.slots["flags"][4] = abi.NS_REPORT
    tx.advance(5)
    m.txsync()
    assert (tx.head, tx.cur, tx.tail) == (5, 5, 7)          # tail does not move at the sender's sync
    assert slot(tx, 2) == (21, 62, 0)                       # NS_BUF_CHANGED cleared on the TX slot
    assert slot(tx, 4) == (14, 64, abi.NS_REPORT)
    # the peer's RX slots already hold the copies before its rxsync; tail moves at the rxsync
    want = [(10, 60, 0), (11, 61, 0), (21, 62, 1), (13, 63, 0), (14, 64, 2)]
    assert [slot(rx, i) for i in range(5)] == want
    assert rx.tail == 0
    s.rxsync()
    assert (rx.head, rx.cur, rx.tail) == (0, 0, 5)
    # the slave swaps buffer 2 into slot 0 and releases 3 slots
    rx.slots["buf_idx"][0] = 2
    rx.slots["flags"][0] |= abi.NS_BUF_CHANGED
    rx.advance(3)
    s.rxsync()
    assert [slot(tx, i) for i in range(3)] == [(2, 60, 1), (11, 61, 0), (21, 62, 1)]
    assert not (rx.slots["flags"][:3] & abi.NS_BUF_CHANGED).any()
    assert tx.tail == 7
    m.txsync()
    assert tx.tail == 2
    # fill until head == tail: the slave then holds n-1 = 7 unreleased slots
    assert tx.fill(template=b"z" * 10) == 5
    assert tx.head == tx.tail == 2
    m.txsync()
    s.rxsync()
    assert rx.space() == 7
    rx.advance(7)
    s.rxsync()
    m.txsync()
    assert tx.tail == (tx.head - 1) % 8 and tx.space() == 7
    m.close()
    s.close()
    assert segments() == []


def test_at_most_n_minus_1_in_flight_and_partial_read():
    with open_emu("netmap:pp{1@conf:slots=16") as m, open_emu("netmap:pp}1") as s:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        assert tx.fill(100, template=b"a") == 15
        m.txsync()
        assert tx.space() == 0
        s.rxsync()
        assert rx.space() == 15
        # 008_partial_read_pipe_test shape: send 10, receive 7 -> exactly 3 pending
        rx.advance(15)
        s.rxsync()
        m.txsync()
        assert tx.fill(10, template=b"b") == 10
        m.txsync()
        s.rxsync()
        rx.advance(7)
        s.rxsync()
        assert rx.space() == 3


def test_peer_not_yet_open_then_opened():
    m = open_emu("netmap:late{1@conf:slots=8")
    tx = m.tx_rings[0]
    assert tx.fill(20, data=np.arange(7 * 4, dtype=np.uint8).reshape(7, 4)) == 7
    m.txsync()
    assert m.poll(POLLOUT, 0) == 0   # no room: n-1 in flight
    s = open_emu("netmap:late}1")
    rx = s.rx_rings[0]
    assert (rx.head, rx.cur, rx.tail) == (0, 0, 0)        # until its first rxsync
    s.rxsync()
    assert rx.tail == 7
    assert rx.ready().gather(0, 4).tolist()[6] == [24, 25, 26, 27]
    # close the slave with frames pending; reopen it: same ring state and contents
    rx.advance(5)
    s.rxsync()
    s.close()
    s = open_emu("netmap:late}1")
    rx = s.rx_rings[0]
    assert (rx.head, rx.tail) == (5, 7)
    assert rx.ready().gather(0, 4).tolist() == [[20, 21, 22, 23], [24, 25, 26, 27]]
    s.close()
    m.close()
    assert segments() == []


def test_morefrag_tail_stays_invisible():
    with open_emu("netmap:mf{1@conf:slots=8") as m, open_emu("netmap:mf}1") as s:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        flags = [0, 0, abi.NS_MOREFRAG, 0, abi.NS_MOREFRAG]
        tx.slots["flags"][:5] = flags
        tx.advance(5)
        m.txsync()
        s.rxsync()
        assert rx.tail == 4
        tx.slots["flags"][5] = 0
        tx.advance(1)
        m.txsync()
        s.rxsync()
        assert rx.tail == 6
        assert list(rx.slots["flags"][:6]) == flags + [0]


def test_released_slots_copied_back_whole():
    """netmap_pipe_rxsync copies every released slot to the sender as the receiver left it
    (checked on netmap.ko: an edited len comes back without NS_BUF_CHANGED), then clears
    NS_BUF_CHANGED on the RX slot only."""
    with open_emu("netmap:fl{1@conf:slots=8") as m, open_emu("netmap:fl}1") as s:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        tx.advance(2)
        m.txsync()
        s.rxsync()
        rx.slots["len"][0] = 33                       # no NS_BUF_CHANGED: copied back all the same
        rx.slots["buf_idx"][1] = 3
        rx.slots["flags"][1] = abi.NS_BUF_CHANGED | abi.NS_REPORT
        rx.advance(2)
        s.rxsync()
        assert slot(tx, 0)[1] == 33
        assert slot(tx, 1) == (3, 2048, abi.NS_BUF_CHANGED | abi.NS_REPORT)
        assert slot(rx, 1) == (3, 2048, abi.NS_REPORT)


def test_both_ends_closed_destroys_everything():
    m = open_emu("netmap:d{1")
    s = open_emu("netmap:d}1")
    m.close()
    assert len(segments()) == 2
    s.close()
    assert segments() == []
    with open_emu("netmap:d}1") as s2:    # a fresh pipe: rings start in the normal state (F8)
        assert s2.tx_rings[0].tail == 1023 and s2.rx_rings[0].tail == 0
        assert s2.info.mem_id == 2


def test_vale_named_parent_hosts_a_pipe():
    with open_emu("vale0:a{1") as m, open_emu("vale0:a}1") as s:
        assert m.info.mem_id == s.info.mem_id
        m.tx_rings[0].fill(1, template=b"hi")
        m.txsync()
        s.rxsync()
        assert bytes(s.rx_rings[0].payload(0)) == b"hi"
