"""Shared memory is not trusted: hostile values in ring headers and slots (issue #10).

A peer process (or a bug) can write anything into a ring's header or slots. Whatever it
writes, the library answers with a NetmapError subclass in bounded time and memory: it never
returns an absurd count, never allocates in proportion to a hostile value, and never names a
buffer twice. In strict mode a bad slot is refused by the sync of the ring that wrote it (the
sender's txsync, the releasing receiver's rxsync), not by the peer that would read it.
A Ring dies with its Port, and poll's timeout is always honoured.
"""
from __future__ import annotations

import gc
import itertools
import resource
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netmap_core import (
    POLLIN,
    POLLOUT,
    ClosedPortError,
    CorruptRingError,
    InvalidRequestError,
    NetmapError,
    RingProtocolError,
)
from netmap_emu.testing import isolated_namespace, open_emu

SLOTS = 8
_NAMES = itertools.count()


@pytest.fixture(scope="module")
def ns():
    with isolated_namespace("hostile") as name:
        yield name


@pytest.fixture(params=["netmap", "strict"])
def mode(request):
    return request.param


def pipe(mode: str, slots: int = SLOTS):
    """Both ends of a fresh pipe (unique name), in ``mode``."""
    name = f"hp{next(_NAMES)}"
    m = open_emu(f"netmap:{name}{{1@conf:slots={slots}", rules=mode)
    try:
        s = open_emu(f"netmap:{name}}}1", rules=mode)
    except BaseException:
        m.close()
        raise
    return m, s


def close_all(*ports) -> None:
    for p in ports:
        p.close()


def send(m, s, k: int = 3) -> None:
    """Send ``k`` frames from m to s and pick them up."""
    assert m.tx_rings[0].fill(k, template=b"frame-%d" % k) == k
    m.txsync()
    s.rxsync()


def kring_words(port, kind):
    k = port._binding.kring(kind)
    return (k.hwcur, k.hwtail, k.rhead, k.rcur, k.rtail)


def buffers_named_twice(m, s, nbufs: int) -> dict[int, set]:
    """Buffers (2..nbufs-1) named at more than one place. A pipe copies a slot between the
    two rings of one direction at the same position, so (direction, position) is one place."""
    places: dict[int, set] = {}
    for direction, rings in enumerate(((m.tx_rings[0], s.rx_rings[0]), (s.tx_rings[0], m.rx_rings[0]))):
        for ring in rings:
            for pos, b in enumerate(ring.slots["buf_idx"].tolist()):
                if 2 <= b < nbufs:
                    places.setdefault(b, set()).add((direction, pos))
    return {b: p for b, p in places.items() if len(p) > 1}


# --- strict blames the writer ---------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("buf_idx", 10**6), ("buf_idx", 0xFFFFFFFF), ("buf_idx", "nbufs"),
                                         ("buf_idx", 0x10000), ("buf_idx", 0x1_0001), ("len", 2049),
                                         ("len", 0xFFFF)])
def test_strict_sender_txsync_refuses_its_own_bad_slot(ns, field, value):
    """Before: the sender's txsync passed the slot on and the receiver got the error."""
    m, s = pipe("strict")
    try:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        assert tx.nbufs < 0x10000, "0x10000 and 0x10001 must lie outside the pool"
        value = tx.nbufs if value == "nbufs" else value
        tx.fill(3, template=b"abc")
        tx.slots[field][1] = value
        before = kring_words(m, "tx")
        with pytest.raises(RingProtocolError) as e:
            m.txsync()
        err = e.value
        assert (err.ring, err.field, err.value) == (tx.name, f"slot[1].{field}", value)
        assert "handed to the peer by txsync" in err.allowed
        assert kring_words(m, "tx") == before, "strict changes nothing when it raises"
        s.rxsync()
        assert rx.space() == 0, "nothing reached the receiver"
        # repair: the pipe's RX ring names the sender's original buffer at the same position
        tx.slots[field][1] = tx.slots[field][0] if field == "len" else rx.slots["buf_idx"][1]
        m.txsync()   # repaired: the same three slots go out
        s.rxsync()
        assert rx.space() == 3 and len(rx.ready()) == 3
    finally:
        close_all(s, m)


@pytest.mark.parametrize("field,value", [("buf_idx", 10**6), ("len", 0xFFFF)])
def test_strict_vale_sender_txsync_refuses_its_own_bad_slot(ns, field, value):
    """Before: the switch read the bad slot (it maps a bad buffer to buffer 0 and copies)."""
    from netmap_core.testing import BCAST, frame, mac, recv

    a = open_emu("valehs:a", rules="strict")
    b = open_emu("valehs:b", rules="strict")
    try:
        tx = a.tx_rings[0]
        tx.fill(3, template=frame(BCAST, mac(1), fill=60))
        good = int(tx.slots[field][1])
        tx.slots[field][1] = value
        with pytest.raises(RingProtocolError) as e:
            a.txsync()
        assert (e.value.ring, e.value.field) == (tx.name, f"slot[1].{field}")
        assert "handed to the switch by txsync" in e.value.allowed
        assert recv(b) == [], "nothing crossed the switch"
        tx.slots[field][1] = good
        a.txsync()
        assert len(recv(b)) == 3
    finally:
        close_all(b, a)


def test_strict_receiver_rxsync_refuses_a_bad_slot_it_releases(ns):
    m, s = pipe("strict")
    try:
        rx = s.rx_rings[0]
        send(m, s, 3)
        rx.slots["buf_idx"][0] = 0xB0000000
        rx.advance(2)
        with pytest.raises(RingProtocolError) as e:
            s.rxsync()
        assert (e.value.ring, e.value.field) == (rx.name, "slot[0].buf_idx")
        assert "returned to the sender by rxsync" in e.value.allowed
        assert kring_words(s, "rx")[0] == 0, "nothing released"
    finally:
        close_all(s, m)


def test_strict_receiver_releases_a_bad_slot_the_sender_handed_over_unchanged(ns):
    """Mixed modes: a netmap-mode sender is not checked; the strict receiver is not blamed for
    its slot and can give it back as it came."""
    m, _ = pipe("netmap")
    name = m.spec.text.replace("{", "}").split("@")[0]
    s = open_emu(name, rules="strict")
    try:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        tx.fill(2, template=b"ab")
        tx.slots["buf_idx"][0] = 10**6
        m.txsync()   # netmap's rules do not look at slots
        s.rxsync()
        with pytest.raises(CorruptRingError, match=r"slot\[0\]\.buf_idx=1000000"):
            rx.ready()   # the reader's Ring refuses to use it
        rx.advance(2)
        s.rxsync()   # and it goes back unchanged
        assert rx.space() == 0
    finally:
        close_all(s, m)


def test_netmap_mode_receiver_ring_refuses_what_the_sender_left(ns):
    m, s = pipe("netmap")
    try:
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        tx.fill(3, template=b"abc")
        tx.slots["len"][2] = 0xFFFF
        m.txsync()
        s.rxsync()
        assert len(rx.ready(2)) == 2
        with pytest.raises(CorruptRingError) as e:
            rx.ready()
        assert (e.value.ring, e.value.field, e.value.value) == (rx.name, "slot[2].len", 0xFFFF)
        with pytest.raises(CorruptRingError):
            rx.payload(2)
    finally:
        close_all(s, m)


def test_hostile_rx_tail_is_refused_and_a_sync_restores_it(ns, mode):
    """tail = 0xB0000000: space() returned 2952790016 and ready() allocated 22 GiB."""
    m, s = pipe(mode)
    try:
        send(m, s, 3)
        rx = s.rx_rings[0]
        rx.header["tail"] = 0xB0000000
        for call in (rx.space, rx.ready, lambda: rx.advance(1)):
            with pytest.raises(CorruptRingError, match="tail=2952790016 read from shared memory"):
                call()
        s.rxsync()
        assert rx.tail == 3 and rx.space() == 3
    finally:
        close_all(s, m)


# --- a Ring dies with its Port, and keeps it alive ---------------------------------------------

def test_a_stale_ring_cannot_write_into_a_new_registration(ns, mode):
    """Before: old.fill() wrote into the reopened port's ring and a2.txsync() sent it."""
    m, s = pipe(mode)
    try:
        old = m.tx_rings[0]
        text = m.spec.text
        m.close()
        m2 = open_emu(text, rules=mode)
        try:
            with pytest.raises(ClosedPortError, match=rf"{old.name}: its port .* is closed"):
                old.fill(3, template=b"stale")
            with pytest.raises(ClosedPortError):
                old.advance(1)
            m2.txsync()
            s.rxsync()
            assert s.rx_rings[0].space() == 0, "nothing was delivered"
        finally:
            m2.close()
    finally:
        s.close()


def test_a_ring_keeps_its_port_registered(ns, mode):
    """Before: ``tx = open(...).tx_rings[0]`` unregistered the port at once."""
    m, s = pipe(mode)
    try:
        text = m.spec.text
        m.close()
        tx = open_emu(text, rules=mode).tx_rings[0]
        gc.collect()
        assert s._binding.peer_bound(), "the ring holds the registration"
        assert tx.fill(2, template=b"hi") == 2
        del tx
        gc.collect()
        assert not s._binding.peer_bound(), "released with the last ring"
    finally:
        s.close()


# --- poll's timeout --------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), 1e300])
def test_poll_refuses_timeouts_that_blocked_forever(ns, timeout):
    m, s = pipe("strict")
    try:
        t0 = time.monotonic()
        with pytest.raises(InvalidRequestError, match="poll: timeout="):
            s.poll(POLLIN, timeout)
        assert time.monotonic() - t0 < 1.0
    finally:
        close_all(s, m)


def test_poll_honours_a_short_timeout(ns):
    m, s = pipe("strict")
    try:
        t0 = time.monotonic()
        assert s.poll(POLLIN, 0.05) == 0
        assert 0.04 <= time.monotonic() - t0 < 2.0
    finally:
        close_all(s, m)


# --- Hypothesis: hostile writes anywhere, both modes ----------------------------------------

HEADER = ("head", "cur", "tail")
SLOT = ("buf_idx", "len", "flags")
RINGS = ("m.tx", "m.rx", "s.tx", "s.rx")


@st.composite
def hostile_writes(draw):
    """1-4 writes of hostile values into any header word or slot field of any of the four
    rings. buf_idx values never name a real buffer of the pool (those would be a user's own
    double use, which netmap does not police either); all other values are anything."""
    writes = []
    for _ in range(draw(st.integers(1, 4))):
        ring = draw(st.sampled_from(RINGS))
        field = draw(st.sampled_from(HEADER + SLOT))
        if field in HEADER:
            value = draw(st.one_of(st.integers(0, SLOTS - 1), st.integers(SLOTS, 0xFFFFFFFF),
                                   st.sampled_from([SLOTS, SLOTS + 1, 0xB0000000, 0xFFFFFFFF])))
            writes.append((ring, field, None, value))
        else:
            slot = draw(st.integers(0, SLOTS - 1))
            if field == "buf_idx":
                value = draw(st.one_of(st.sampled_from([0, 1, 0xB0000000, 0xFFFFFFFF]),
                                       st.integers(1 << 20, 0xFFFFFFFF)))
            else:
                value = draw(st.integers(0, 0xFFFF))
            writes.append((ring, field, slot, value))
    return writes


def _ring(m, s, which):
    port = m if which[0] == "m" else s
    return port, (port.tx_rings[0] if which.endswith("tx") else port.rx_rings[0])


def _exercise(m, s) -> None:
    """Every operation on every ring and port: NetmapError or a sane answer, fast."""
    for which in RINGS:
        port, ring = _ring(m, s, which)
        n = ring.num_slots
        ops = [
            ("space", ring.space),
            ("ready", ring.ready),
            ("fill", lambda ring=ring: ring.fill(2, template=b"hostile!")),
            ("advance", lambda ring=ring: ring.advance(1)),
            ("payload", lambda ring=ring, n=n: ring.payload(ring.head % n)),
            ("txsync", port.txsync),
            ("rxsync", port.rxsync),
            ("poll", lambda port=port: port.poll(POLLIN | POLLOUT, 0)),
        ]
        for what, op in ops:
            t0 = time.monotonic()
            try:
                out = op()
            except NetmapError:
                out = None
            assert time.monotonic() - t0 < 2.0, f"{which}.{what} took too long"
            if what == "space" and out is not None:
                assert 0 <= out <= n - 1
            elif what == "ready" and out is not None:
                assert len(out) <= n - 1
                assert out.buf_idx.size == 0 or int(out.buf_idx.max()) < ring.nbufs
                assert out.len.size == 0 or int(out.len.max()) <= ring.buf_size
            elif what == "fill":
                assert out is None or 0 <= out <= n - 1
            elif what == "payload" and out is not None:
                assert out.size <= ring.buf_size


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture],
          database=None)
@given(writes=hostile_writes(), before=st.integers(0, SLOTS - 1), release=st.integers(0, SLOTS - 1))
def test_hostile_writes_to_any_ring_field(ns, mode, writes, before, release):
    m, s = pipe(mode)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        nbufs = m.tx_rings[0].nbufs
        # some honest traffic first, so there are slots in every state
        m.tx_rings[0].fill(before, template=b"honest")
        m.txsync()
        s.rxsync()
        s.rx_rings[0].advance(min(release, s.rx_rings[0].space()))
        s.rxsync()
        for which, field, slot, value in writes:
            _, ring = _ring(m, s, which)
            if slot is None:
                ring.header[field] = value
            else:
                ring.slots[field][slot] = value
        for _ in range(2):   # a second round runs on whatever the first one left
            _exercise(m, s)
        # no hostile buf_idx names a pool buffer, and syncs only copy a slot to the same
        # position of the other ring: whatever was refused or passed, no buffer is named twice
        assert not buffers_named_twice(m, s, nbufs), writes
    finally:
        close_all(s, m)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 200, f"peak RSS grew by {grown_mb:.0f} MB"


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture],
          database=None)
@given(writes=hostile_writes(), before=st.integers(0, SLOTS - 1))
def test_hostile_writes_on_a_vale_switch(ns, mode, writes, before):
    """The same on two ports of a VALE switch (each port has a pool of its own; the switch
    copies): ``m``/``s`` are the ports, the writes land on their first slots."""
    sw = f"valeh{next(_NAMES)}"
    m = open_emu(f"{sw}:a", rules=mode)
    try:
        s = open_emu(f"{sw}:b", rules=mode)
    except BaseException:
        m.close()
        raise
    try:
        m.tx_rings[0].fill(before, template=b"\xff" * 60)   # broadcast: b receives it
        m.txsync()
        s.rxsync()
        for which, field, slot, value in writes:
            _, ring = _ring(m, s, which)
            if slot is None:
                ring.header[field] = value
            else:
                ring.slots[field][slot] = value
        for _ in range(2):
            _exercise(m, s)
        for port in (m, s):
            named = np.concatenate([r.slots["buf_idx"] for r in port.tx_rings + port.rx_rings])
            real = named[(named >= 2) & (named < port.tx_rings[0].nbufs)]
            assert np.unique(real).size == real.size, "a buffer named twice in one port's rings"
    finally:
        close_all(s, m)
