"""Sync-rule violations on emulated pipes in both modes (spec B6-B9, Live check 5)."""
from __future__ import annotations

import numpy as np
import pytest

from netmap_core import POLLERR, POLLIN, POLLOUT, RingProtocolError
from netmap_emu.testing import isolated_namespace, open_emu


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


@pytest.fixture(params=["netmap", "strict"])
def mode(request):
    return request.param


def pair(mode, name="rp"):
    m = open_emu(f"netmap:{name}{{1@conf:slots=8", rules=mode)
    s = open_emu(f"netmap:{name}}}1", rules=mode)
    return m, s


def hct(r):
    return r.head, r.cur, r.tail


def set_hc(r, head, cur):
    r._words[5] = head
    r._words[6] = cur


def expect(mode, sync, ring, port):
    """Run ``sync``: strict must raise and leave ring and kring untouched; netmap returns."""
    if mode == "strict":
        before = (hct(ring), ring.slots.copy())
        with pytest.raises(RingProtocolError):
            sync()
        assert hct(ring) == before[0]
        assert np.array_equal(ring.slots, before[1])
        return False
    sync()
    return True


def test_pipe_two_step_adoption_full_ring(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(7)
    m.txsync()
    s.rxsync()
    rx.advance(7)
    s.rxsync()
    m.txsync()
    tx.advance(7)
    m.txsync()
    assert hct(tx) == (6, 6, 6)           # full: head == tail
    set_hc(tx, 0, 0)                       # head moved 2 beyond tail
    k0 = m._binding.kring("tx")
    if not expect(mode, m.txsync, tx, m):
        assert m._binding.kring("tx") == k0
        return
    assert hct(tx) == (0, 0, 6)            # first sync: adopted, nothing sent
    s.rxsync()
    assert rx.space() == 7
    m.txsync()                             # second sync: the adopted range goes out
    assert tx.space() == 6
    s.rxsync()
    assert rx.space() == 1


def test_pipe_two_step_adoption_head_moved_back(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    assert hct(tx) == (3, 3, 7)
    set_hc(tx, 0, 0)
    if not expect(mode, m.txsync, tx, m):
        return
    s.rxsync()
    assert rx.space() == 3                 # nothing more sent by the failed sync
    m.txsync()
    assert tx.space() == 7
    s.rxsync()
    assert rx.space() == 0                 # all 8 slots in flight: the receiver sees none


def test_tx_head_out_of_range_resets(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    for bad in (8, 100):
        set_hc(tx, bad, bad)
        if mode == "netmap":
            assert m.poll(POLLOUT, 0) == POLLOUT | POLLERR
            assert hct(tx) == (3, 3, 7)
        else:
            expect(mode, m.txsync, tx, m)
            set_hc(tx, 3, 3)
    s.rxsync()
    assert rx.space() == 3                 # nothing sent


def test_tx_inconsistent_head_cur_kept_and_failing(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    set_hc(tx, 5, 4)
    if not expect(mode, m.txsync, tx, m):
        return
    for _ in range(3):
        assert m.poll(POLLOUT, 0) == POLLOUT | POLLERR
        assert hct(tx) == (5, 4, 7)
    s.rxsync()
    assert rx.space() == 3


def test_tx_cur_beyond_ring_accepted_in_wrapped_case(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    s.rxsync()
    rx.advance(3)
    s.rxsync()
    m.txsync()
    assert hct(tx) == (3, 3, 2)            # wrapped: rtail < rhead
    set_hc(tx, 5, 100)
    if not expect(mode, m.txsync, tx, m):
        return
    assert hct(tx) == (5, 100, 2)
    s.rxsync()
    assert rx.space() == 2                 # the two slots were sent
    assert m.poll(POLLOUT, 0) == POLLOUT   # cur != tail forever


def test_overwritten_tail_restored_silently(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(2)
    tx._words[7] = 0
    m.txsync()                             # legal head/cur: both modes accept
    assert tx.tail == 7
    s.rxsync()
    rx._words[7] = 7
    s.rxsync()
    assert rx.tail == 2


def test_bad_slots_sanitised_only_on_failure(mode):
    m, s = pair(mode)
    tx = m.tx_rings[0]
    nb = tx.nbufs
    tx.slots["buf_idx"][:4] = [0, 1, nb, 0xFFFFFFFF]     # nb = objtotal
    tx.slots["len"][4:6] = [2049, 5000]
    set_hc(tx, 9, 9)
    if not expect(mode, m.txsync, tx, m):
        return
    assert list(tx.slots["buf_idx"][:4]) == [0, 0, 0, 0]
    assert list(tx.slots["len"][:6]) == [0, 0, 0, 0, 0, 0]
    assert int(tx.slots["buf_idx"][4]) == 14     # a bad len keeps its index


def test_rx_head_out_of_range_resets(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    s.rxsync()
    set_hc(rx, 8, 8)
    if not expect(mode, s.rxsync, rx, s):
        return
    assert hct(rx) == (0, 0, 3)
    set_hc(rx, 8, 8)
    assert s.poll(POLLIN, 0) == POLLIN | POLLERR
    m.txsync()
    assert tx.tail == 7                    # nothing released


def test_rx_head_beyond_tail_is_acted_upon(mode):
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    s.rxsync()
    assert hct(rx) == (0, 0, 3)
    set_hc(rx, 5, 5)
    if not expect(mode, s.rxsync, rx, s):
        return
    assert hct(rx) == (5, 5, 3)            # kept: six stale "received" slots (spec B8 quirk)
    assert s._binding.kring("rx").hwcur == 5
    m.txsync()
    assert tx.tail == 4                    # five slots came back to the sender


def test_rx_prologue_checks_the_tail_the_receiver_was_shown(mode):
    """The receiver's hwtail takes what the peer published only at its own rxsync (netmap's
    pipe_tail): before that, head may not move past the tail it was last shown."""
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()                             # published for the slave, not yet shown to it
    assert hct(rx) == (0, 0, 0)
    rx.slots["len"][6] = rx.buf_size + 1   # a bad slot the reinit must sanitise
    set_hc(rx, 2, 2)
    if mode == "strict":
        with pytest.raises(RingProtocolError) as e:
            s.rxsync()
        assert (e.value.field, e.value.value) == ("head", 2)
        assert "[0, 0]" in str(e.value)
        assert hct(rx) == (2, 2, 0) and int(rx.slots["len"][6]) == rx.buf_size + 1
        return
    assert s.poll(POLLIN, 0) == POLLIN | POLLERR
    assert int(rx.slots["len"][6]) == 0    # sanitised
    assert hct(rx) == (2, 2, 3)            # head adopted (B8), then the rxsync took the tail
    m.txsync()
    assert tx.tail == 1                    # the two slots never shown came back anyway


def test_tx_reset_restores_the_tail_the_sender_last_synced(mode):
    """A reinit resets to the kring's hwtail, which only the sender's own sync updates: a
    release the sender has not synced yet does not show up in the reset."""
    m, s = pair(mode)
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(3)
    m.txsync()
    s.rxsync()
    rx.advance(3)
    s.rxsync()                             # releases 3: published for the master
    k0 = m._binding.kring("tx")
    assert (k0.hwcur, k0.hwtail) == (3, 7)
    set_hc(tx, 100, 100)
    if mode == "strict":
        with pytest.raises(RingProtocolError):
            m.txsync()
        assert m._binding.kring("tx") == k0
        set_hc(tx, 3, 3)
    else:
        m.txsync()
        assert hct(tx) == (3, 3, 7)
    m.txsync()
    assert hct(tx) == (3, 3, 2)            # the next passing sync takes the release


@pytest.mark.parametrize("sender_mode", ["netmap", "strict"])
def test_fast_sync_rechecks_cur_against_a_tail_that_moved_back(sender_mode):
    """2-slot pipe: the slave (netmap rules) releases a slot it never received, which moves
    the master's tail back below its cur. The master's next sync changes nothing else, yet its
    prologue must fail: the lock-free path may only skip the checks when they would pass."""
    with open_emu("netmap:fb{1@conf:slots=2", rules=sender_mode) as m, \
            open_emu("netmap:fb}1", rules="netmap") as s:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        tx.cur = 1                         # head 0, cur 1 = tail: legal
        set_hc(rx, 1, 1)
        s.rxsync()                         # adopted (B8): slot 0 goes back unreceived
        m.txsync()
        assert hct(tx) == (0, 1, 0)        # tail moved back below cur
        if sender_mode == "strict":
            with pytest.raises(RingProtocolError) as e:
                m.poll(POLLOUT, 0)
            assert (e.value.field, e.value.value) == ("cur", 1)
        else:
            assert m.poll(POLLOUT, 0) == POLLOUT | POLLERR
            assert m.poll(POLLOUT, 0) == POLLOUT | POLLERR   # adopted values fail every time
