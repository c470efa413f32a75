"""netmap_core.interop and parse_batch over a real pipe of the chosen backend (--backend): dpkt
parses from the slot without a copy, scapy and dpkt packets are built into TX slots, and the
batch parser finds in received slots what the frames were built with."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netmap_core import headers as hd, interop
from netmap_core.errors import InvalidRequestError
from netmap_core.testing import frames as fr

_names = itertools.count()


@pytest.fixture
def pipe(opener):
    """(sender, receiver): both ends of a new pipe, unique to this process and test."""
    def make():
        base = f"io{os.getpid()}x{next(_names)}"
        return opener(f"netmap:{base}{{0"), opener(f"netmap:{base}}}0")
    return make


def through(tx, rx, frames: list[bytes]):
    """Send ``frames`` from tx's ring 0, receive them on rx: the RX batch (head unmoved)."""
    assert interop.send_packets(tx.tx_rings[0], frames) == len(frames)
    tx.txsync()
    rx.rxsync()
    b = rx.rx_rings[0].ready()
    assert len(b) == len(frames)
    return b


def test_dpkt_parses_the_slot_in_place(pipe):
    dpkt = pytest.importorskip("dpkt", reason="dpkt (the interop extra) is not installed")
    tx, rx = pipe()
    pkts = [dpkt.ethernet.Ethernet(
        src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02", type=0x800,
        data=dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=17,
                        data=dpkt.udp.UDP(sport=1000 + i, dport=53, data=b"query%d" % i)))
            for i in range(8)]
    for p in pkts:
        p.data.len = len(p.data)
    b = through(tx, rx, pkts)
    ring = rx.rx_rings[0]
    got = [interop.to_dpkt(ring, i) for i in b.slot_idx.tolist()]
    assert [g.data.data.sport for g in got] == [1000 + i for i in range(8)]
    assert [bytes(g.data.data.data) for g in got] == [b"query%d" % i for i in range(8)]
    # no copy: the payload dpkt holds is the slot's buffer
    ring.buffers[b.buf_idx[0], 42] = ord("Q")
    assert bytes(got[0].data.data.data) == b"Query0"
    ring.advance(len(b))


def test_scapy_packets_built_into_tx_slots_arrive_and_dissect(pipe):
    pytest.importorskip("scapy", reason="scapy (the interop extra) is not installed")
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    tx, rx = pipe()
    pkts = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.9.0.2")
            / TCP(sport=40000 + i, dport=443, flags="S") for i in range(5)]
    b = through(tx, rx, pkts)
    ring = rx.rx_rings[0]
    got = [interop.to_scapy(ring, i) for i in b.slot_idx.tolist()]
    assert [g[TCP].sport for g in got] == [40000 + i for i in range(5)]
    assert got[0][IP].dst == "10.9.0.2" and bytes(got[0]) == bytes(pkts[0])
    h = hd.parse_batch(b)
    assert h.valid.all() and (h.dport == 443).all() and (h.proto == 6).all()
    ring.advance(len(b))


def test_batch_views_are_the_slots_bytes(pipe):
    tx, rx = pipe()
    frames = [bytes([i]) * (60 + i) for i in range(10)]
    b = through(tx, rx, frames)
    views = interop.batch_views(b)
    assert [bytes(v) for v in views] == frames
    views[3][0] = 0xEE
    assert rx.rx_rings[0].buffers[b.buf_idx[3], 0] == 0xEE
    rx.rx_rings[0].advance(len(b))


def test_a_packet_larger_than_the_buffer_is_refused_naming_the_size(pipe):
    tx, _ = pipe()
    ring = tx.tx_rings[0]
    with pytest.raises(InvalidRequestError, match=rf"exceeds the buffer size {ring.buf_size}"):
        interop.write_packet(ring, ring.head, bytes(ring.buf_size + 1))
    assert interop.write_packet(ring, ring.head, bytes(ring.buf_size)) == ring.buf_size


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(fr.frames(malformed=0.3), min_size=1, max_size=64))
def test_parse_batch_on_received_slots_finds_what_was_sent(backend_name, drawn):
    import netmap_core as nm

    base = f"io{os.getpid()}x{next(_names)}"
    with nm.open(f"netmap:{base}{{0", backend=backend_name) as tx, \
            nm.open(f"netmap:{base}}}0", backend=backend_name) as rx:
        check_parse_batch(tx, rx, drawn)


def check_parse_batch(tx, rx, drawn) -> None:
    b = through(tx, rx, [f.data for f in drawn])
    h = hd.parse_batch(b, width=min(256, rx.rx_rings[0].buf_size))
    assert np.array_equal(b.len, [len(f.data) for f in drawn])
    for i, f in enumerate(drawn):
        e = f.expected
        assert h.error[i] == e.error, f.kind
        if e.error == hd.OK:
            assert (int(h.sport[i]), int(h.dport[i]), int(h.proto[i])) == (e.sport, e.dport, e.proto)
            assert int(h.l4[i]) == e.l4
    rx.rx_rings[0].advance(len(b))
