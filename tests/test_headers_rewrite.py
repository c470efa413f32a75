"""netmap_core.rewrite: NAT rewrites leave frames whose checksums verify from scratch. Pure."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netmap_core import headers as hd
from netmap_core.errors import InvalidRequestError
from netmap_core.rewrite import rewrite_ipv4
from netmap_core.testing import frames as fr

pytestmark = pytest.mark.pure   # bytes in, arrays out: no backend


def pack(frames: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    w = max(len(f) for f in frames)
    arr = np.zeros((len(frames), w), np.uint8)
    for i, f in enumerate(frames):
        arr[i, :len(f)] = np.frombuffer(f, np.uint8)
    return arr, np.array([len(f) for f in frames])


def l4_checksum_ok(frame: bytes, e: hd.Headers, i: int) -> bool:
    """Recompute the TCP/UDP checksum over pseudo-header and segment: it must sum to zero."""
    l3, l4, end = int(e.l3[i]), int(e.l4[i]), int(e.ip_end[i])
    seg = frame[l4:end]
    if e.proto[i] == 17 and seg[6:8] == b"\0\0":
        return True   # no checksum
    pseudo = frame[l3 + 12:l3 + 20] + struct.pack("!BBH", 0, int(e.proto[i]), len(seg))
    return fr.inet_checksum(pseudo + seg) == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fr.valid_frames(), min_size=1, max_size=30), st.data())
def test_rewrite_sets_fields_and_checksums_still_verify(drawn, data):
    arr, lens = pack([f.data for f in drawn])
    h = hd.parse(arr, lens)
    k = len(drawn)
    new_src = np.array(data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=k, max_size=k)))
    new_sport = data.draw(st.integers(0, 0xFFFF))
    where = np.array(data.draw(st.lists(st.booleans(), min_size=k, max_size=k)))
    before = arr.copy()
    n = rewrite_ipv4(arr, np.arange(k), h, src=new_src, sport=new_sport, where=where)
    sel = where & h.ipv4
    assert n == int(sel.sum())
    assert np.array_equal(arr[~sel], before[~sel])      # nothing else touched
    h2 = hd.parse(arr, lens)
    assert np.array_equal(h2.error, h.error)
    assert np.array_equal(h2.src4[sel], new_src[sel].astype(np.uint32))
    assert np.array_equal(h2.dst4, h.dst4)
    ports = sel & h.has_ports
    assert (h2.sport[ports] == new_sport).all()
    assert np.array_equal(h2.sport[~ports], h.sport[~ports])
    for i in np.nonzero(sel)[0]:
        f = arr[i, :lens[i]].tobytes()
        l3 = int(h.l3[i])
        ihl = (f[l3] & 0x0F) * 4
        assert fr.inet_checksum(f[l3:l3 + ihl]) == 0, drawn[i].kind
        if ports[i]:
            assert l4_checksum_ok(f, h2, i), drawn[i].kind


def test_rewrite_agrees_with_dpkt_recomputing_the_checksums():
    dpkt = pytest.importorskip("dpkt", reason="dpkt (the interop extra) is not installed")
    s, d = b"\x0a\0\0\x05", b"\xc0\xa8\x01\x01"
    frames = [fr.ethernet(0x800, fr.ipv4(s, d, 17, fr.udp(5000 + i, 53, b"q" * i, src=s, dst=d)))
              for i in range(8)]
    frames.append(fr.ethernet(0x800, fr.ipv4(s, d, 6, fr.tcp(40000, 443, b"GET", src=s, dst=d))))
    arr, lens = pack(frames)
    h = hd.parse(arr, lens)
    rewrite_ipv4(arr, np.arange(len(frames)), h, src=0xCB007107, sport=np.arange(9) + 61000)
    for i in range(len(frames)):
        eth = dpkt.ethernet.Ethernet(arr[i, :lens[i]].tobytes())
        ours = (eth.data.sum, eth.data.data.sum)
        eth.data.sum = 0
        eth.data.data.sum = 0
        eth.data.len = len(eth.data)   # dpkt recomputes both checksums on serialisation
        again = dpkt.ethernet.Ethernet(bytes(eth))
        assert ours == (again.data.sum, again.data.data.sum)
        assert again.data.src == bytes([203, 0, 113, 7]) and again.data.data.sport == 61000 + i


def test_bad_values_are_typed_errors_naming_them():
    arr, lens = pack([fr.ethernet(0x800, fr.ipv4(b"\1\1\1\1", b"\2\2\2\2", 17, fr.udp(1, 2)))])
    h = hd.parse(arr, lens)
    with pytest.raises(InvalidRequestError, match=r"sport\[0\]=70000 is out of range; allowed: 0..65535"):
        rewrite_ipv4(arr, [0], h, sport=70000)
    with pytest.raises(InvalidRequestError, match=r"src must be one value or one per frame \(1\)"):
        rewrite_ipv4(arr, [0], h, src=[1, 2])
    with pytest.raises(InvalidRequestError, match=r"rows must have one entry per frame \(1\)"):
        rewrite_ipv4(arr, [0, 1], h, src=1)
