"""Hypothesis strategies for Ethernet frames (VLAN, ARP, IPv4, IPv6, UDP, TCP), valid and
malformed, each drawn with the header fields a parser must find in it (:class:`Expected`).

Builders (:func:`ethernet`, :func:`ipv4`, :func:`ipv6`, :func:`udp`, :func:`tcp`, :func:`arp`)
are plain functions that also serve tests directly; checksums they write are correct.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..headers import (
    BAD_IHL,
    BAD_LENGTH,
    BAD_VERSION,
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_QINQ,
    ETH_VLAN,
    OK,
    PROTO_TCP,
    PROTO_UDP,
    TRUNCATED,
)

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

__all__ = [
    "Expected", "Frame", "inet_checksum", "ethernet", "ipv4", "ipv6", "udp", "tcp", "arp",
    "valid_frames", "malformed_frames", "frames", "macs", "ipv4_addrs", "ipv6_addrs",
]

MIN_FRAME = 60   # an Ethernet frame without FCS is padded to this


@dataclass(frozen=True)
class Expected:
    """What a parser must report for a frame (as :class:`netmap_core.headers.Headers` does).

    ``src``/``dst``: 4 or 16 address bytes, empty when not IP. For a frame with ``error != OK``
    only ``error`` (and the fields before the fault: ``ethertype``, ``vlans``) are meaningful.
    """

    ethertype: int
    vlans: tuple[int, ...] = ()      # VLAN ids, outer first
    l3: int = -1
    ip_version: int = 0
    proto: int = 0
    src: bytes = b""
    dst: bytes = b""
    sport: int = 0
    dport: int = 0
    l4: int = -1
    ip_end: int = -1
    error: int = OK


@dataclass(frozen=True)
class Frame:
    """A drawn frame: its bytes, what a parser must find, and a label (``kind``) for reports."""

    data: bytes
    expected: Expected
    kind: str


# --- builders --------------------------------------------------------------------------------
def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: one's complement of the one's complement
    sum of its 16-bit words (an odd byte is padded with zero)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ethernet(ethertype: int, payload: bytes, *, dst: bytes = b"\x02\0\0\0\0\x01",
             src: bytes = b"\x02\0\0\0\0\x02", vlans: tuple[tuple[int, int], ...] = (),
             pad: bool = True) -> bytes:
    """An Ethernet frame; ``vlans``: (TPID, TCI) tags, outer first; padded to 60 bytes."""
    tags = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in vlans)
    f = dst + src + tags + struct.pack("!H", ethertype) + payload
    return f.ljust(MIN_FRAME, b"\0") if pad else f


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def udp(sport: int, dport: int, payload: bytes = b"", *, src: bytes = b"", dst: bytes = b"",
        length: int | None = None) -> bytes:
    """A UDP datagram; with ``src``/``dst`` addresses its checksum is filled in (else 0)."""
    ln = 8 + len(payload) if length is None else length
    seg = struct.pack("!HHHH", sport, dport, ln, 0) + payload
    if src:
        c = inet_checksum(_pseudo(src, dst, PROTO_UDP, len(seg)) + seg) or 0xFFFF
        seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return seg


def tcp(sport: int, dport: int, payload: bytes = b"", *, src: bytes = b"", dst: bytes = b"",
        options: bytes = b"", doff: int | None = None, seq: int = 1, flags: int = 0x18) -> bytes:
    """A TCP segment (``options`` padded to 4 bytes); checksum filled in given addresses."""
    options = options.ljust(-(-len(options) // 4) * 4, b"\0")
    words = (20 + len(options)) // 4 if doff is None else doff
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, words << 4, flags, 8192, 0, 0)
    seg += options + payload
    if src:
        c = inet_checksum(_pseudo(src, dst, PROTO_TCP, len(seg)) + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return seg


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, options: bytes = b"",
         ihl: int | None = None, total_length: int | None = None, frag_offset: int = 0,
         version: int = 4, ttl: int = 64) -> bytes:
    """An IPv4 datagram with a correct header checksum (``ihl``/``total_length`` override)."""
    options = options.ljust(-(-len(options) // 4) * 4, b"\0")
    words = (20 + len(options)) // 4 if ihl is None else ihl
    tot = 20 + len(options) + len(payload) if total_length is None else total_length
    hdr = struct.pack("!BBHHHBBH4s4s", version << 4 | words, 0, tot, 0x1234, frag_offset,
                      ttl, proto, 0, src, dst) + options
    c = inet_checksum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def ipv6(src: bytes, dst: bytes, nh: int, payload: bytes, *,
         ext: tuple[tuple[int, bytes], ...] = (), version: int = 6) -> bytes:
    """An IPv6 packet; ``ext``: (type, body) extension headers in order, each body padded so
    the header is a multiple of 8 bytes (type 44, fragment: body is the 6 bytes after it)."""
    chain = b""
    types = [t for t, _ in ext] + [nh]
    for (t, body), nxt in zip(ext, types[1:]):
        if t == 44:
            chain += struct.pack("!BB", nxt, 0) + body[:6].ljust(6, b"\0")
        else:
            body = body.ljust(-(-(len(body) + 2) // 8) * 8 - 2, b"\0")
            chain += struct.pack("!BB", nxt, (len(body) + 2) // 8 - 1) + body
    first = types[0]
    hdr = struct.pack("!IHBB16s16s", version << 28, len(chain) + len(payload), first, 64, src, dst)
    return hdr + chain + payload


def arp(sha: bytes, spa: bytes, tha: bytes, tpa: bytes, op: int = 1) -> bytes:
    """An Ethernet/IPv4 ARP message (28 bytes)."""
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, op, sha, spa, tha, tpa)


# --- strategies ------------------------------------------------------------------------------
# Hypothesis is imported when a strategy is first built, not with this module: importing
# netmap_core (all of it) must not pull in a test framework.
def _st() -> Any:
    from hypothesis import strategies

    return strategies


def macs() -> SearchStrategy[bytes]:
    return _st().binary(min_size=6, max_size=6)


def ipv4_addrs() -> SearchStrategy[bytes]:
    return _st().binary(min_size=4, max_size=4)


def ipv6_addrs() -> SearchStrategy[bytes]:
    return _st().binary(min_size=16, max_size=16)


def _ports() -> SearchStrategy[int]:
    return _st().integers(0, 0xFFFF)


def _tags() -> SearchStrategy[list[tuple[int, int]]]:
    st = _st()
    return st.lists(st.tuples(st.sampled_from([ETH_VLAN, ETH_QINQ]), st.integers(0, 0xFFFF)),
                    max_size=2)


def _l4(draw: DrawFn, src: bytes, dst: bytes) -> tuple[int, bytes, int, int]:
    """(proto, segment, sport, dport); ports are 0 for protocols without them."""
    st = _st()
    kind = draw(st.sampled_from(["udp", "tcp", "icmp", "other"]))
    payload = draw(st.binary(max_size=64))
    if kind == "udp":
        sp, dp = draw(_ports()), draw(_ports())
        return PROTO_UDP, udp(sp, dp, payload, src=src, dst=dst), sp, dp
    if kind == "tcp":
        sp, dp = draw(_ports()), draw(_ports())
        opts = draw(st.binary(max_size=12))
        return PROTO_TCP, tcp(sp, dp, payload, src=src, dst=dst, options=opts), sp, dp
    proto = 1 if kind == "icmp" else draw(st.sampled_from([47, 50, 132, 253]))
    return proto, payload, 0, 0


def valid_frames() -> SearchStrategy[Frame]:
    """A well-formed frame: ARP, IPv4 (options, fragments), IPv6 (extension headers), or an
    unknown EtherType; 0..2 VLAN tags; padded to 60 bytes, sometimes with trailing bytes."""
    return _st().composite(_valid)()


def _valid(draw: DrawFn) -> Frame:
    st = _st()
    tags = tuple(draw(_tags()))
    l3 = 14 + 4 * len(tags)
    vids = tuple(tci & 0x0FFF for _, tci in tags)
    kind = draw(st.sampled_from(["ipv4", "ipv4", "ipv6", "ipv6", "arp", "other"]))
    if kind == "ipv4":
        s, d = draw(ipv4_addrs()), draw(ipv4_addrs())
        proto, seg, sp, dp = _l4(draw, s, d)
        opts = draw(st.binary(max_size=40))
        frag = draw(st.sampled_from([0, 0, 0, 0x2000, 0x0010]))  # MF only; or a later fragment
        if frag & 0x1FFF:
            sp = dp = 0
        pkt = ipv4(s, d, proto, seg, options=opts, frag_offset=frag)
        ihl = pkt[0] & 0x0F
        later = bool(frag & 0x1FFF)
        exp = Expected(ETH_IPV4, vids, l3, 4, proto, s, d, sp, dp,
                       -1 if later else l3 + ihl * 4, l3 + len(pkt))
        et, what = ETH_IPV4, f"ipv4/{proto}" + ("/frag" if later else "")
    elif kind == "ipv6":
        s, d = draw(ipv6_addrs()), draw(ipv6_addrs())
        proto, seg, sp, dp = _l4(draw, s, d)
        ext = tuple(draw(st.lists(st.tuples(st.sampled_from([0, 43, 60]), st.binary(max_size=20)),
                                  max_size=2)))
        later = False
        if draw(st.booleans()):
            fo = draw(st.sampled_from([0, 1, 185]))
            later = fo != 0
            ext += ((44, struct.pack("!HI", fo << 3, 7)),)
        if later:
            sp = dp = 0
        pkt = ipv6(s, d, proto, seg, ext=ext)
        l4 = l3 + len(pkt) - len(seg)
        exp = Expected(ETH_IPV6, vids, l3, 6, proto, s, d, sp, dp, -1 if later else l4, l3 + len(pkt))
        et, what = ETH_IPV6, f"ipv6/{proto}" + ("/frag" if later else "")
    elif kind == "arp":
        pkt = arp(draw(macs()), draw(ipv4_addrs()), draw(macs()), draw(ipv4_addrs()))
        exp, et, what = Expected(ETH_ARP, vids, l3), ETH_ARP, "arp"
    else:
        et = draw(st.sampled_from([0x88B5, 0x88CC, 0x0842, 0x9000]))
        pkt = draw(st.binary(max_size=64))
        exp, what = Expected(et, vids, l3), f"ether/{et:#06x}"
    frame = ethernet(et, pkt, src=draw(macs()), dst=draw(macs()), vlans=tags)
    frame += draw(st.binary(max_size=16))   # trailing bytes past the datagram: ignored
    return Frame(frame, exp, what + ("/vlan" * len(tags)))


def _required_end(f: Frame) -> int:
    """Bytes the parser needs: through the IP datagram, the ARP message or the L2 header."""
    e = f.expected
    if e.ip_end >= 0:
        return e.ip_end
    return e.l3 + (28 if e.ethertype == ETH_ARP else 0)


def _put(b: bytes, at: int, chunk: bytes) -> bytes:
    return b[:at] + chunk + b[at + len(chunk):]


def malformed_frames() -> SearchStrategy[Frame]:
    """A valid frame with one fault: cut short, a bad IP version, a bad IHL, an IP total
    length below its header, a UDP length or TCP data offset that does not fit."""
    return _st().composite(_malformed)()


def _malformed(draw: DrawFn) -> Frame:
    st = _st()
    f = draw(valid_frames())
    e = f.expected
    faults = ["truncate"]
    if e.ip_version == 4:
        faults += ["version", "ihl", "total_length"]
    if e.ip_version == 6:
        faults += ["version"]
    if e.l4 >= 0 and e.proto == PROTO_UDP:
        faults += ["udp_length"]
    if e.l4 >= 0 and e.proto == PROTO_TCP:
        faults += ["tcp_doff"]
    fault = draw(st.sampled_from(faults))
    d, l3 = f.data, e.l3
    if fault == "truncate":
        cut = draw(st.integers(0, _required_end(f) - 1))
        return Frame(d[:cut], replace(e, error=TRUNCATED), f.kind + "/truncated")
    if fault == "version":
        want = 4 if e.ip_version == 4 else 6
        v = draw(st.integers(0, 15).filter(lambda x: x != want))
        d = _put(d, l3, bytes([v << 4 | d[l3] & 0x0F]))
        return Frame(d, replace(e, error=BAD_VERSION), f.kind + "/version")
    if fault == "ihl":
        d = _put(d, l3, bytes([0x40 | draw(st.integers(0, 4))]))
        return Frame(d, replace(e, error=BAD_IHL), f.kind + "/ihl")
    if fault == "total_length":
        ihl = (d[l3] & 0x0F) * 4
        d = _put(d, l3 + 2, struct.pack("!H", draw(st.integers(0, ihl - 1))))
        return Frame(d, replace(e, error=BAD_LENGTH), f.kind + "/total_length")
    room = e.ip_end - e.l4
    if fault == "udp_length":
        bad = draw(st.one_of(st.integers(0, 7), st.integers(room + 1, 0xFFFF)))
        d = _put(d, e.l4 + 4, struct.pack("!H", bad))
        return Frame(d, replace(e, error=BAD_LENGTH), f.kind + "/udp_length")
    words = draw(st.integers(0, 15).filter(lambda w: w < 5 or w * 4 > room))
    d = _put(d, e.l4 + 12, bytes([words << 4 | d[e.l4 + 12] & 0x0F]))
    return Frame(d, replace(e, error=BAD_LENGTH), f.kind + "/tcp_doff")


def frames(malformed: float = 0.3) -> SearchStrategy[Frame]:
    """Valid frames, and malformed ones about ``malformed`` of the time."""
    st = _st()
    if malformed <= 0:
        return valid_frames()
    if malformed >= 1:
        return malformed_frames()
    weight = max(1, round(10 * malformed))
    return st.one_of(*([malformed_frames()] * weight), *([valid_frames()] * (10 - weight)))
