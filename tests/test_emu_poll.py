"""poll/fileno on the emulator: readiness (spec B13, B16), cross-process wakeups, idle CPU."""
from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import select
import threading
import time

import pytest

from netmap_core import POLLERR, POLLIN, POLLOUT, Port, abi, parse_portspec as spec_of
from netmap_emu import BACKEND
from netmap_emu.testing import isolated_namespace, open_emu

CTX = mp.get_context("fork")

#: a poll woken by nothing but its bounded sleep slice would sleep this long...
NO_SLICE = 600.0
#: ...so a poll with this timeout that returns ready proves a wake byte arrived, however slow
#: the machine (behaviour, not speed: the bound is never what passes or fails the test)
WAKE_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


def open_with_flags(text, flags):
    spec = dataclasses.replace(spec_of(text), flags=flags)
    return Port(BACKEND.register(spec, rules="strict"), spec)


def pending_at(s):
    s.rxsync()
    return s.rx_rings[0].space()


def test_fresh_tx_ring_reports_pollout_and_cur_eq_tail_does_not():
    with open_emu("netmap:a{1@conf:slots=8") as m:
        assert m.poll(POLLOUT, 0) == POLLOUT
        tx = m.tx_rings[0]
        tx.cur = tx.tail                     # head 0, cur = tail = n-1: wait for more room
        t0 = time.monotonic()
        assert m.poll(POLLOUT, 0.2) == 0
        assert time.monotonic() - t0 >= 0.19


@pytest.mark.parametrize("events", [POLLIN, 0])
def test_poll_flushes_tx_unless_no_tx_poll(events):
    with open_emu("netmap:b{1@conf:slots=8") as m, open_emu("netmap:b}1") as s:
        m.tx_rings[0].advance(2)
        assert m.poll(events, 0) == 0
        assert pending_at(s) == 2
        with open_with_flags("netmap:b{1", abi.NR_NO_TX_POLL) as n:
            assert n.info.flags == abi.NR_NO_TX_POLL
            n.tx_rings[0].advance(2)           # the same ring: head 4, hwcur 2
            n.poll(events, 0)
            assert pending_at(s) == 2
            assert n.poll(POLLOUT, 0) == POLLOUT
            assert pending_at(s) == 4


def test_rx_readiness_follows_cur_and_tail():
    with open_emu("netmap:c{1@conf:slots=8") as m, open_emu("netmap:c}1") as s:
        assert s.poll(POLLIN, 0) == 0
        m.tx_rings[0].advance(3)
        m.txsync()
        assert s.poll(POLLIN, 0) == POLLIN
        rx = s.rx_rings[0]
        assert rx.ts > 0                       # set by poll's rxsync (B16)
        assert m.tx_rings[0].ts == 0
        rx.cur = rx.tail                       # keep the 3 slots, wake only for newer data
        assert s.poll(POLLIN, 0) == 0
        m.tx_rings[0].advance(1)
        m.txsync()
        assert s.poll(POLLIN, 0) == POLLIN


def test_pollout_alone_does_not_release_rx_slots():
    with open_emu("netmap:d{1@conf:slots=8") as m, open_emu("netmap:d}1") as s:
        m.tx_rings[0].advance(7)
        m.txsync()
        s.rxsync()
        s.rx_rings[0].advance(7)
        assert s.poll(POLLOUT, 0) == POLLOUT   # the slave's own TX ring is free
        m.txsync()
        assert m.tx_rings[0].space() == 0      # RX part did not run: nothing released
        s.poll(POLLIN, 0)
        m.txsync()
        assert m.tx_rings[0].space() == 7


def test_pollerr_with_readiness_on_failed_prologue():
    with open_emu("netmap:e{1@conf:slots=8", rules="netmap") as m:
        m.tx_rings[0]._words[5] = 100
        assert m.poll(POLLOUT, 0) == POLLOUT | POLLERR


def test_fileno_is_armed_by_a_poll_that_found_nothing():
    with open_emu("netmap:f{1@conf:slots=8") as m, open_emu("netmap:f}1") as s:
        fd = s.fileno()
        assert s.poll(POLLIN, 0) == 0
        assert select.select([fd], [], [], 0)[0] == []
        m.tx_rings[0].advance(1)
        m.txsync()
        assert select.select([fd], [], [], 1.0)[0] == [fd]
        assert s.poll(POLLIN, 0) == POLLIN
        assert select.select([fd], [], [], 0)[0] == []   # poll drained it


def test_sender_makes_no_wake_write_while_receiver_is_not_sleeping():
    with open_emu("netmap:g{1@conf:slots=8") as m, open_emu("netmap:g}1") as s:
        fd = s.fileno()
        m.tx_rings[0].advance(1)
        m.txsync()                              # nobody armed: no byte written
        assert select.select([fd], [], [], 0.05)[0] == []


def test_asyncio_wait_with_a_sender_thread():
    ready = threading.Event()
    sent: list[float] = []

    async def main(s):
        ready.set()
        revents = await s.wait(POLLIN)
        return revents, time.monotonic()

    with open_emu("netmap:h{1@conf:slots=8") as m, open_emu("netmap:h}1") as s:
        def send():
            ready.wait(WAKE_TIMEOUT)            # the loop runs (starting it can take long)
            time.sleep(0.1)                     # let wait() block
            sent.append(time.monotonic())
            m.tx_rings[0].advance(1)
            m.txsync()

        th = threading.Thread(target=send)
        th.start()
        # wait() has no sleep slices: only the wake byte ends it before wait_for's timeout
        revents, woke = asyncio.run(asyncio.wait_for(main(s), WAKE_TIMEOUT))
        th.join()
        assert revents == POLLIN
        assert woke >= sent[0]                  # not before the sender's txsync


# --- across processes ----------------------------------------------------------------------------

def _long_slices():
    """Make the bounded sleep slices longer than any poll timeout of these tests."""
    import netmap_emu.binding

    netmap_emu.binding.SLEEP_SLICE = NO_SLICE


def _receiver(q, events, timeout):
    _long_slices()
    with open_emu("netmap:x}1") as s:
        q.put("ready")
        r0 = time.process_time()
        revents = s.poll(events, timeout)
        q.put((revents, time.time(), time.process_time() - r0))


def test_blocking_poll_woken_by_a_peer_process():
    with open_emu("netmap:x{1@conf:slots=8") as m:
        q = CTX.Queue()
        p = CTX.Process(target=_receiver, args=(q, POLLIN, WAKE_TIMEOUT))
        p.start()
        assert q.get(timeout=WAKE_TIMEOUT) == "ready"
        time.sleep(0.3)                         # let it go to sleep
        sent = time.time()
        m.tx_rings[0].advance(1)
        m.txsync()
        revents, woke, _ = q.get(timeout=2 * WAKE_TIMEOUT)
        p.join(WAKE_TIMEOUT)
        assert revents == POLLIN                # before its timeout, with no slice: the wake byte
        assert woke >= sent


def test_idle_receiver_uses_no_cpu():
    with open_emu("netmap:x{1@conf:slots=8"):
        q = CTX.Queue()
        p = CTX.Process(target=_receiver, args=(q, POLLIN, 0.6))
        p.start()
        assert q.get(timeout=WAKE_TIMEOUT) == "ready"
        revents, _, cpu = q.get(timeout=WAKE_TIMEOUT)
        p.join(WAKE_TIMEOUT)
        assert revents == 0
        # a spinning poll burns the whole 0.6 s; a sleeping one only its set-up (a few ms, up to
        # ~20x that in the lab's emulated CPU)
        assert cpu < 0.2, f"receiver burnt {cpu:.3f} s of CPU in 0.6 s of idle poll"


def _drainer(q):
    with open_emu("netmap:y}1") as s:
        q.put("ready")
        time.sleep(0.3)
        s.rxsync()
        s.rx_rings[0].advance(s.rx_rings[0].space())
        q.put(time.time())
        s.rxsync()
        time.sleep(0.5)


def test_pollout_on_full_master_woken_by_release_in_another_process(monkeypatch):
    import netmap_emu.binding

    monkeypatch.setattr(netmap_emu.binding, "SLEEP_SLICE", NO_SLICE)
    with open_emu("netmap:y{1@conf:slots=8") as m:
        tx = m.tx_rings[0]
        tx.advance(7)
        m.txsync()
        q = CTX.Queue()
        p = CTX.Process(target=_drainer, args=(q,))
        p.start()
        assert q.get(timeout=WAKE_TIMEOUT) == "ready"
        assert m.poll(POLLOUT, WAKE_TIMEOUT) == POLLOUT   # woken by the release, not a slice
        woke = time.time()
        released = q.get(timeout=WAKE_TIMEOUT)
        p.join(WAKE_TIMEOUT)
        assert woke >= released
        assert tx.space() == 7


def test_poll_retries_tx_after_pollerr_and_sends_the_adopted_range():
    """netmap's poll scans the TX rings again when POLLOUT is wanted and none is ready, even
    after POLLERR: a head moved back behind hwcur is adopted by the first scan (B8) and sent by
    the second, inside one poll call."""
    with open_emu("netmap:g{1@conf:slots=8", rules="netmap") as m, \
            open_emu("netmap:g}1", rules="netmap") as s:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        tx.advance(3)
        m.txsync()
        tx.slots["len"][3:8] = 33             # slots 3..7 marked so their hand-over shows
        tx._words[5], tx._words[6] = 0, 7     # head back to 0, cur = tail: not ready
        assert m.poll(POLLOUT, 0) == POLLERR
        assert (tx.head, tx.cur, tx.tail) == (0, 7, 7)
        assert m._binding.kring("tx").hwcur == 0  # slots 3..7 handed over by the second scan
        assert list(rx.slots["len"][3:8]) == [33] * 5
        s.rxsync()
        assert rx.space() == 0                # all 8 slots in flight: the receiver sees none


def test_poll_on_a_vale_port():
    """VALE bindings share EmuBinding.poll: nothing ready (both scans, the spin, the armed
    sleep), then a flooded frame from another port."""
    with open_emu("vale0:pa", rules="netmap") as a, open_emu("vale0:pb", rules="netmap") as b:
        assert a.poll(POLLIN, 0) == 0
        t0 = time.monotonic()
        assert a.poll(POLLIN, 0.05) == 0
        assert time.monotonic() - t0 >= 0.04
        tx = b.tx_rings[0]
        i = tx.head
        tx.buf(i)[:60] = memoryview(b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + bytes(48))  # broadcast
        tx.slots["len"][i] = 60
        tx.advance(1)
        b.txsync()
        assert a.poll(POLLIN, 1.0) == POLLIN
        assert a.rx_rings[0].space() == 1


def test_close_from_another_thread_ends_a_blocked_poll_with_closed_port_error():
    """Before: the poll thread read a closed (or reused) descriptor and got a raw EBADF, or
    spun on POLLNVAL; now it ends with ClosedPortError within one sleep slice."""
    import threading

    from netmap_core import ClosedPortError

    with isolated_namespace():
        m = open_emu("netmap:cl{1")
        s = open_emu("netmap:cl}1")
        got: list = []

        def waiter() -> None:
            try:
                s.poll(POLLIN, None)
                got.append("returned")
            except ClosedPortError as exc:
                got.append(exc)
            except Exception as exc:  # noqa: BLE001 - any other type is the failure under test
                got.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.2)
        s.close()
        t.join(2.0)
        assert not t.is_alive(), "poll kept blocking after the port was closed"
        assert len(got) == 1 and isinstance(got[0], ClosedPortError), got
        m.close()


# --- the spin policy ------------------------------------------------------------------------------

def test_spin_policy_stays_within_its_bounds_and_follows_the_waits():
    from netmap_emu.binding import SPIN_FLOOR, SPIN_SECONDS, SpinPolicy

    p = SpinPolicy()
    assert p.budget == SPIN_SECONDS
    for _ in range(40):                       # waits far longer than a spin: shrink to the floor
        p.waited(1.0, True)
        assert SPIN_FLOOR <= p.budget <= SPIN_SECONDS
    assert p.budget == SPIN_FLOOR
    p.waited(SPIN_SECONDS / 10, False)         # a poll that gave up never grows it
    assert p.budget == SPIN_FLOOR
    short = SPIN_SECONDS / 4                   # a wait a longer spin would have caught: grow to it
    p.waited(short, True)
    assert p.budget == max(2 * SPIN_FLOOR, short)
    for _ in range(40):
        p.waited(SPIN_SECONDS / 2, True)
        assert SPIN_FLOOR <= p.budget <= SPIN_SECONDS
    assert p.budget == SPIN_SECONDS


def _floor_receiver(q):
    _long_slices()
    with open_emu("netmap:z}1") as s:
        for _ in range(12):                   # idle polls that time out shrink the spin
            assert s.poll(POLLIN, 0.002) == 0
        q.put(("ready", s._binding.spin.budget))
        revents = s.poll(POLLIN, WAKE_TIMEOUT)
        q.put((revents, time.time(), s.rx_rings[0].space()))


def test_a_binding_spinning_at_the_floor_is_still_woken_by_a_peer_process():
    """Polls that time out bring the spin budget to its floor; the sleep protocol still gets
    the peer's wake byte (no slice can end the poll before WAKE_TIMEOUT)."""
    from netmap_emu.binding import SPIN_FLOOR

    with open_emu("netmap:z{1@conf:slots=8") as m:
        q = CTX.Queue()
        p = CTX.Process(target=_floor_receiver, args=(q,))
        p.start()
        what, budget = q.get(timeout=WAKE_TIMEOUT)
        assert what == "ready" and budget == SPIN_FLOOR
        time.sleep(0.3)                       # let it go to sleep
        sent = time.time()
        m.tx_rings[0].advance(1)
        m.txsync()
        revents, woke, space = q.get(timeout=2 * WAKE_TIMEOUT)
        p.join(WAKE_TIMEOUT)
        assert revents == POLLIN and space == 1
        assert woke >= sent


def test_poll_drains_every_pending_wake_byte():
    """A FIFO holding more wake bytes than one read takes is emptied by the next poll (the
    drain reads until a short read)."""
    import os

    with open_emu("netmap:dr{1@conf:slots=8") as m, open_emu("netmap:dr}1") as s:
        assert s.poll(POLLIN, 0) == 0          # armed
        fd = s.fileno()
        w = os.open(s._binding._ns.fifo_path(s._binding.bid), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(w, b"\x01" * 5000)
        finally:
            os.close(w)
        m.tx_rings[0].advance(1)
        m.txsync()
        assert s.poll(POLLIN, 0) == POLLIN
        assert select.select([fd], [], [], 0)[0] == []
