"""netmap_core.headers: the batch parser against frames whose fields are known by construction
(netmap_core.testing.frames), against dpkt, and on bad input. Pure: no backend."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netmap_core import headers as hd
from netmap_core.errors import InvalidRequestError
from netmap_core.testing import frames as fr

pytestmark = pytest.mark.pure   # bytes in, arrays out: no backend


def pack(frames: list[bytes], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames as a (k, width) array (zero-padded, as buffers are) plus their lengths."""
    w = width if width is not None else max([len(f) for f in frames] + [1])
    arr = np.zeros((len(frames), w), np.uint8)
    for i, f in enumerate(frames):
        b = np.frombuffer(f[:w], np.uint8)
        arr[i, :b.size] = b
    return arr, np.array([len(f) for f in frames])


def check_row(h: hd.Headers, i: int, e: fr.Expected, kind: str) -> None:
    got = int(h.error[i])
    assert got == e.error, f"{kind}: error {hd.ERRORS[got]!r}, expected {hd.ERRORS[e.error]!r}"
    if e.error != hd.OK:
        assert not h.valid[i] and h.ip_version[i] == 0 and h.sport[i] == 0 and h.hash[i] == 0
        return
    assert int(h.ethertype[i]) == e.ethertype, kind
    assert int(h.vlans[i]) == len(e.vlans)
    assert [int(h.vlan[i]), int(h.vlan2[i])] == (list(e.vlans) + [-1, -1])[:2]
    assert int(h.l3[i]) == e.l3
    assert int(h.ip_version[i]) == e.ip_version
    assert int(h.proto[i]) == e.proto
    if e.ip_version == 4:
        assert int(h.src4[i]).to_bytes(4, "big") == e.src
        assert int(h.dst4[i]).to_bytes(4, "big") == e.dst
        assert not h.src6[i].any()
    elif e.ip_version == 6:
        assert h.src6[i].tobytes() == e.src and h.dst6[i].tobytes() == e.dst
        assert h.src4[i] == 0
    assert (int(h.sport[i]), int(h.dport[i])) == (e.sport, e.dport), kind
    assert int(h.l4[i]) == e.l4, kind
    assert int(h.ip_end[i]) == e.ip_end
    assert (h.hash[i] != 0) == (e.ip_version != 0) or h.hash[i] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fr.frames(malformed=0.4), min_size=1, max_size=40))
def test_parse_finds_the_fields_each_frame_was_built_with(drawn):
    arr, lens = pack([f.data for f in drawn])
    h = hd.parse(arr, lens)
    assert len(h) == len(drawn)
    for i, f in enumerate(drawn):
        check_row(h, i, f.expected, f.kind)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fr.frames(malformed=0.4), min_size=1, max_size=20), st.integers(0, 64))
def test_a_row_parses_alike_alone_or_in_any_batch_with_any_padding(drawn, pad):
    """Bytes past a frame's length (stale buffer contents) never change the result."""
    arr, lens = pack([f.data for f in drawn])
    junk = np.concatenate([arr, np.full((len(drawn), pad), 0xAB, np.uint8)], axis=1)
    junk[np.arange(junk.shape[1]) >= lens[:, None]] = 0xCD
    a, b = hd.parse(arr, lens), hd.parse(junk, lens)
    for name in ("error", "ethertype", "sport", "dport", "l4", "src6", "src4", "hash"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    one = hd.parse(arr[-1:], lens[-1:])
    assert one.error[0] == a.error[-1] and one.hash[0] == a.hash[-1]


@settings(deadline=None)
@given(st.lists(st.binary(max_size=90), min_size=1, max_size=30))
def test_random_bytes_never_raise_and_flag_what_they_are(blobs):
    arr, lens = pack(blobs)
    h = hd.parse(arr, lens)
    assert set(np.unique(h.error).tolist()) <= set(hd.ERRORS)
    assert not h.valid[lens < 14].any()
    assert (h.l4[h.valid] < lens[h.valid]).all() or not h.has_ports.any()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fr.valid_frames(), min_size=1, max_size=20))
def test_parse_agrees_with_dpkt(drawn):
    dpkt = pytest.importorskip("dpkt", reason="dpkt (the interop extra) is not installed")
    arr, lens = pack([f.data for f in drawn])
    h = hd.parse(arr, lens)
    for i, f in enumerate(drawn):
        if "frag" in f.kind or "/vlan" in f.kind and f.expected.ethertype not in (0x800, 0x86DD):
            continue   # dpkt does not know later fragments; tags on non-IP are compared above
        if f.expected.ip_version == 6 and f.expected.proto not in (6, 17, 58):
            continue   # dpkt 1.9.8's IPv6 parser raises on some next headers (ESP: AttributeError)
        eth = dpkt.ethernet.Ethernet(f.data)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP):
            assert int(h.src4[i]).to_bytes(4, "big") == ip.src and h.proto[i] == ip.p
        elif isinstance(ip, dpkt.ip6.IP6):
            assert h.src6[i].tobytes() == ip.src and h.dst6[i].tobytes() == ip.dst
            if f.expected.proto in (6, 17):   # dpkt follows the extension headers too
                assert h.proto[i] == ip.p
        else:
            continue
        l4 = ip.data
        if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            assert (int(h.sport[i]), int(h.dport[i])) == (l4.sport, l4.dport), f.kind


@settings(max_examples=100, deadline=None)
@given(st.lists(fr.valid_frames(), min_size=1, max_size=20))
def test_hash_is_symmetric_and_per_flow(drawn):
    arr, lens = pack([f.data for f in drawn])
    h = hd.parse(arr, lens)
    swapped = [_swap(f) for f in drawn]
    arr2, lens2 = pack(swapped)
    h2 = hd.parse(arr2, lens2)
    assert np.array_equal(h.hash, h2.hash)
    assert np.array_equal(h.sport, h2.dport) and np.array_equal(h.src4, h2.dst4)
    one_way = hd.tuple_hash(h, symmetric=False)
    assert np.array_equal(one_way == 0, h.hash == 0)


def _swap(f: fr.Frame) -> bytes:
    """The frame with IP addresses and L4 ports exchanged (checksums left as they are)."""
    e, d = f.expected, bytearray(f.data)
    if e.ip_version == 4:
        d[e.l3 + 12:e.l3 + 20] = d[e.l3 + 16:e.l3 + 20] + d[e.l3 + 12:e.l3 + 16]
    elif e.ip_version == 6:
        d[e.l3 + 8:e.l3 + 40] = d[e.l3 + 24:e.l3 + 40] + d[e.l3 + 8:e.l3 + 24]
    if e.sport or e.dport or e.l4 >= 0 and e.proto in (6, 17):
        d[e.l4:e.l4 + 4] = d[e.l4 + 2:e.l4 + 4] + d[e.l4:e.l4 + 2]
    return bytes(d)


def test_distinct_flows_spread_over_the_hash():
    src = b"\x0a\0\0\x01"
    frames = [fr.ethernet(hd.ETH_IPV4, fr.ipv4(src, b"\x0a\0\x01\x01", 17, fr.udp(1000 + i, 80)))
              for i in range(4096)]
    h = hd.parse(*pack(frames))
    assert len(np.unique(h.hash)) == 4096
    counts = np.bincount(h.hash % 8, minlength=8)
    assert counts.min() > 4096 / 8 * 0.8, counts


def test_headers_past_the_window_are_too_deep_not_truncated():
    seg = fr.tcp(1, 2, options=b"\x01" * 40)
    frame = fr.ethernet(hd.ETH_IPV4, fr.ipv4(b"\1\2\3\4", b"\5\6\7\x08", 6, seg, options=b"\x01" * 40),
                       vlans=((hd.ETH_VLAN, 7),))
    arr, lens = pack([frame], width=80)
    h = hd.parse(arr, lens)
    assert h.error[0] == hd.TOO_DEEP and h.vlan[0] == 7 and h.l3[0] == 18
    assert hd.parse(*pack([frame])).valid[0]


@settings(max_examples=50, deadline=None)
@given(st.lists(fr.valid_frames(), min_size=1, max_size=10), st.integers(64, 1400))
def test_a_window_covering_the_headers_is_enough_for_long_frames(drawn, extra):
    """Payload past the parse window is fine (parse_batch reads 128 bytes of 1514-byte frames)."""
    long = [f.data + bytes(extra) for f in drawn]
    arr, lens = pack(long)
    narrow = hd.parse(arr[:, :hd.DEFAULT_WIDTH].copy(), lens)
    wide = hd.parse(arr, lens)
    for i, f in enumerate(drawn):
        if len(f.data) <= hd.DEFAULT_WIDTH - 16:   # headers surely inside the window
            assert narrow.error[i] == hd.OK, f.kind
            assert narrow.hash[i] == wide.hash[i] and narrow.sport[i] == wide.sport[i]


def test_bad_arguments_are_typed_errors_naming_them():
    with pytest.raises(InvalidRequestError, match="2-D uint8"):
        hd.parse(np.zeros(60, np.uint8))
    with pytest.raises(InvalidRequestError, match="2-D uint8"):
        hd.parse(np.zeros((2, 60), np.int32))
    with pytest.raises(InvalidRequestError, match=r"lengths must have one entry per frame \(2\)"):
        hd.parse(np.zeros((2, 60), np.uint8), [60])
    with pytest.raises(InvalidRequestError, match=r"lengths\[1\]=-1 is negative"):
        hd.parse(np.zeros((2, 60), np.uint8), [60, -1])


def test_an_empty_batch_parses_to_empty_arrays():
    h = hd.parse(np.zeros((0, 64), np.uint8))
    assert len(h) == 0 and h.src6.shape == (0, 16) and h.hash.shape == (0,)
