"""Batch parsing of the common packet headers: Ethernet, up to two VLAN tags, ARP, IPv4, IPv6
and the TCP/UDP ports, for a whole batch at once into a frozen struct of arrays.

Pure numpy, no I/O and no Python loop per packet: :func:`parse` costs a few µs per call plus
tens of ns per frame (bench: ``python -m bench.nf --parse``). Bad bytes never raise: each
frame gets an ``error`` code (:data:`OK`, :data:`TRUNCATED`, ...) and ``valid`` is ``error == OK``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .ring import Batch

__all__ = [
    "Headers", "parse", "parse_batch", "tuple_hash", "ERRORS",
    "OK", "TRUNCATED", "BAD_VERSION", "BAD_IHL", "BAD_LENGTH", "TOO_DEEP",
    "ETH_IPV4", "ETH_IPV6", "ETH_ARP", "ETH_VLAN", "ETH_QINQ", "PROTO_TCP", "PROTO_UDP",
    "DEFAULT_WIDTH",
]

#: error codes, one per frame (``Headers.error``)
OK = 0
TRUNCATED = 1     # the frame ends before a header, or before the length a header claims
BAD_VERSION = 2   # the IP version nibble does not match the EtherType
BAD_IHL = 3       # IPv4 header length below 5 words
BAD_LENGTH = 4    # a length field smaller than its header, or an L4 header outside its datagram
TOO_DEEP = 5      # the headers run past the parse window (``width``): parse with a wider one
ERRORS = {OK: "ok", TRUNCATED: "truncated", BAD_VERSION: "bad IP version", BAD_IHL: "bad IHL",
          BAD_LENGTH: "bad length", TOO_DEEP: "headers beyond the parse window"}

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8
PROTO_TCP, PROTO_UDP = 6, 17
_IPV6_EXT = (0, 43, 60)   # hop-by-hop, routing, destination options: (next, len8, ...) headers
_IPV6_FRAG = 44
_MAX_EXT = 4              # IPv6 extension headers followed before giving up (TOO_DEEP)

#: bytes of each frame :func:`parse_batch` reads by default: enough for two VLAN tags, an IPv4
#: header with 40 bytes of options, or IPv6 with 56 bytes of extension headers, plus the ports
DEFAULT_WIDTH = 128


@dataclass(frozen=True)
class Headers:
    """Parsed headers of ``k`` frames, one array entry per frame (all arrays have length k).

    Fields a frame does not have are 0 (addresses, ports, proto), -1 (``vlan``, ``vlan2``,
    ``l3``, ``l4``) or all-zero rows (``src6``/``dst6``). A frame with an error keeps what was
    parsed before the error (EtherType, VLAN, ``l3``) and zeroes the rest.

    ``hash`` is a symmetric 5-tuple hash (both directions of a flow hash alike; frames without
    ports hash by addresses and protocol; frames that are not valid IP hash to 0): use it to
    keep a flow on one worker or backend. The arrays are new (not views of the ring).
    """

    ethertype: np.ndarray   # u16, after the VLAN tags
    vlans: np.ndarray       # u8, VLAN tags seen (0..2)
    vlan: np.ndarray        # i32, outer tag's VLAN id, -1 without
    vlan2: np.ndarray       # i32, inner tag's VLAN id, -1 without
    l3: np.ndarray          # i32, offset of the L3 header
    ip_version: np.ndarray  # u8, 4, 6 or 0
    proto: np.ndarray       # u8, IPv4 protocol / IPv6 next header after extension headers
    src4: np.ndarray        # u32, IPv4 source address (host order)
    dst4: np.ndarray        # u32
    src6: np.ndarray        # (k, 16) u8, IPv6 source address (network order)
    dst6: np.ndarray        # (k, 16) u8
    sport: np.ndarray       # u16, TCP/UDP source port
    dport: np.ndarray       # u16
    l4: np.ndarray          # i32, offset of the TCP/UDP/ICMP header, -1 without one
    ip_end: np.ndarray      # i32, offset just past the IP datagram (its total length), -1 if not IP
    error: np.ndarray       # u8, OK or the first problem found
    hash: np.ndarray        # u32, symmetric 5-tuple hash

    def __len__(self) -> int:
        return int(self.error.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """True for frames whose headers parsed without error."""
        return self.error == OK

    @property
    def ipv4(self) -> np.ndarray:
        """True for valid IPv4 frames."""
        return (self.error == OK) & (self.ip_version == 4)

    @property
    def ipv6(self) -> np.ndarray:
        """True for valid IPv6 frames."""
        return (self.error == OK) & (self.ip_version == 6)

    @property
    def has_ports(self) -> np.ndarray:
        """True for valid TCP/UDP frames that carry an L4 header (not later fragments)."""
        return ((self.error == OK) & (self.l4 >= 0)
                & ((self.proto == PROTO_TCP) | (self.proto == PROTO_UDP)))


class _Frames:
    """Bounds-checked byte reads at a per-frame offset: a read past the window gives 0."""

    def __init__(self, f: np.ndarray) -> None:
        self.f = f
        self.rows = np.arange(f.shape[0])
        self.w = f.shape[1]

    def u8(self, off: np.ndarray) -> np.ndarray:
        return self.f[self.rows, np.clip(off, 0, self.w - 1)].astype(np.uint32)

    def u16(self, off: np.ndarray) -> np.ndarray:
        return self.u8(off) << 8 | self.u8(off + 1)

    def u32(self, off: np.ndarray) -> np.ndarray:
        return self.u16(off) << 16 | self.u16(off + 2)


def parse(frames: ArrayLike, lengths: ArrayLike | None = None) -> Headers:
    """Parse a ``(k, w)`` uint8 array of frames starting at the Ethernet header.

    ``lengths``: each frame's length in bytes (default: ``w`` for all); only the first
    ``min(length, w)`` bytes of a row are read, and a header needing bytes past ``w`` but within
    the frame gives :data:`TOO_DEEP` (parse a wider window). Never raises on frame contents.
    Cost: a few µs per call plus tens of ns per frame; allocates a few arrays of k entries.
    """
    f = np.asarray(frames)
    if f.dtype != np.uint8 or f.ndim != 2:
        raise InvalidRequestError(
            22, f"parse: frames must be a 2-D uint8 array (k frames, w bytes), got "
            f"{f.dtype} with shape {f.shape}")
    k, w = f.shape
    if lengths is None:
        ln = np.full(k, w, dtype=np.int64)
    else:
        ln = np.asarray(lengths).astype(np.int64)
        if ln.shape != (k,):
            raise InvalidRequestError(
                22, f"parse: lengths must have one entry per frame ({k}), got shape {ln.shape}")
        if k and int(ln.min()) < 0:
            raise InvalidRequestError(22, f"parse: lengths[{int(np.argmin(ln))}]={int(ln.min())} "
                                      "is negative; allowed: 0 or more")
    if w == 0:
        f = np.zeros((k, 1), np.uint8)   # every read is then past the window
    rd = _Frames(f)
    err = np.zeros(k, np.uint8)

    def need(upto: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Flag frames (in ``where``, still OK) whose bytes [.., upto) are missing; True = ok."""
        short = where & (err == OK) & (upto > ln)
        err[short] = TRUNCATED
        deep = where & (err == OK) & (upto > w)
        err[deep] = TOO_DEEP
        return where & (err == OK)

    # --- Ethernet and VLAN tags
    ok = need(np.full(k, 14), np.ones(k, bool))
    et = np.where(ok, rd.u16(np.full(k, 12)), 0)
    l3 = np.where(ok, 14, -1)
    vlans = np.zeros(k, np.uint8)
    vid = [np.full(k, -1, np.int32), np.full(k, -1, np.int32)]
    for j in range(2):
        tag = ok & ((et == ETH_VLAN) | (et == ETH_QINQ))
        tag = need(l3 + 4, tag)
        vid[j] = np.where(tag, rd.u16(l3) & 0x0FFF, vid[j]).astype(np.int32)
        et = np.where(tag, rd.u16(l3 + 2), et)
        vlans += tag
        l3 = np.where(tag, l3 + 4, l3)
        ok &= err == OK
    l3 = np.where(ok, l3, -1)

    # --- ARP: only its fixed size is checked (Ethernet/IPv4 ARP is 28 bytes)
    need(l3 + 28, ok & (et == ETH_ARP))

    # --- IPv4
    v4 = need(l3 + 20, ok & (et == ETH_IPV4))
    ver = rd.u8(l3) >> 4
    err[v4 & (ver != 4)] = BAD_VERSION
    v4 &= err == OK
    ihl = (rd.u8(l3) & 0x0F).astype(np.int64) * 4
    err[v4 & (ihl < 20)] = BAD_IHL
    v4 &= err == OK
    tot = rd.u16(l3 + 2).astype(np.int64)
    err[v4 & (tot < ihl)] = BAD_LENGTH
    v4 &= err == OK
    v4 = need(l3 + ihl, v4)
    ip_end = np.where(v4, l3 + tot, -1)
    short = v4 & (ip_end > ln)
    err[short] = TRUNCATED
    v4 &= ~short
    frag_off = rd.u16(l3 + 6) & 0x1FFF
    proto = np.where(v4, rd.u8(l3 + 9), 0)
    src4 = np.where(v4, rd.u32(l3 + 12), 0).astype(np.uint32)
    dst4 = np.where(v4, rd.u32(l3 + 16), 0).astype(np.uint32)
    l4 = np.where(v4 & (frag_off == 0), l3 + ihl, -1)

    # --- IPv6, following hop-by-hop / routing / destination options and a fragment header
    v6 = need(l3 + 40, ok & (et == ETH_IPV6))
    ver = rd.u8(l3) >> 4
    err[v6 & (ver != 6)] = BAD_VERSION
    v6 &= err == OK
    ip_end = np.where(v6, l3 + 40 + rd.u16(l3 + 4).astype(np.int64), ip_end)
    short = v6 & (ip_end > ln)
    err[short] = TRUNCATED
    v6 &= ~short
    nh = np.where(v6, rd.u8(l3 + 6), 0)
    off = l3 + 40
    later_frag = np.zeros(k, bool)
    for _ in range(_MAX_EXT):
        ext = v6 & np.isin(nh, _IPV6_EXT)
        frag = v6 & (nh == _IPV6_FRAG)
        hdr = ext | frag
        if not hdr.any():
            break
        err[hdr & (off + 8 > ip_end)] = BAD_LENGTH
        hdr = need(off + 8, hdr & (err == OK))
        size = np.where(frag, 8, (rd.u8(off + 1).astype(np.int64) + 1) * 8)
        err[hdr & (off + size > ip_end)] = BAD_LENGTH
        hdr = need(off + size, hdr & (err == OK))
        later_frag |= hdr & frag & ((rd.u16(off + 2) >> 3) != 0)
        nh = np.where(hdr, rd.u8(off), nh)
        off = np.where(hdr, off + size, off)
        v6 &= err == OK
    err[v6 & np.isin(nh, (*_IPV6_EXT, _IPV6_FRAG))] = TOO_DEEP
    v6 &= err == OK
    proto = np.where(v6, nh, proto)
    l4 = np.where(v6 & ~later_frag, off, l4)
    rows6 = np.nonzero(v6)[0]
    src6 = np.zeros((k, 16), np.uint8)
    dst6 = np.zeros((k, 16), np.uint8)
    if rows6.size:
        cols = l3[rows6, None] + np.arange(8, 24)
        src6[rows6] = f[rows6[:, None], cols]
        dst6[rows6] = f[rows6[:, None], cols + 16]

    # --- TCP / UDP: the header must lie inside the datagram
    ip = v4 | v6
    tcp = ip & (l4 >= 0) & (proto == PROTO_TCP)
    udp = ip & (l4 >= 0) & (proto == PROTO_UDP)
    err[tcp & (l4 + 20 > ip_end)] = BAD_LENGTH
    err[udp & (l4 + 8 > ip_end)] = BAD_LENGTH
    tcp = need(l4 + 20, tcp & (err == OK))
    udp = need(l4 + 8, udp & (err == OK))
    doff = (rd.u8(l4 + 12) >> 4).astype(np.int64) * 4
    err[tcp & ((doff < 20) | (l4 + doff > ip_end))] = BAD_LENGTH
    ulen = rd.u16(l4 + 4).astype(np.int64)
    err[udp & ((ulen < 8) | (l4 + ulen > ip_end))] = BAD_LENGTH
    good = err == OK
    ports = (tcp | udp) & good
    sport = np.where(ports, rd.u16(l4), 0).astype(np.uint16)
    dport = np.where(ports, rd.u16(l4 + 2), 0).astype(np.uint16)

    ipok = ip & good
    ip_version = np.where(ipok, np.where(v4, 4, 6), 0).astype(np.uint8)
    proto = np.where(ipok, proto, 0).astype(np.uint8)
    src4 = np.where(ipok, src4, 0).astype(np.uint32)
    dst4 = np.where(ipok, dst4, 0).astype(np.uint32)
    src6[~ipok] = 0
    dst6[~ipok] = 0
    l4 = np.where(ipok, l4, -1).astype(np.int32)
    ip_end = np.where(ipok, ip_end, -1).astype(np.int32)
    h = Headers(
        ethertype=et.astype(np.uint16), vlans=vlans, vlan=vid[0], vlan2=vid[1],
        l3=l3.astype(np.int32), ip_version=ip_version, proto=proto, src4=src4, dst4=dst4,
        src6=src6, dst6=dst6, sport=sport, dport=dport, l4=l4, ip_end=ip_end, error=err,
        hash=np.zeros(k, np.uint32))
    object.__setattr__(h, "hash", tuple_hash(h))
    return h


def parse_batch(batch: Batch, width: int = DEFAULT_WIDTH) -> Headers:
    """Parse the frames of a received :class:`~netmap_core.ring.Batch`.

    Copies the first ``width`` bytes of each buffer (one gather) and parses them with the
    slots' ``len``; the ring's slots are not consumed (``head`` does not move). Cost: the
    gather (a few ns per byte copied) plus :func:`parse`.
    """
    if not 14 <= width <= batch.ring.buf_size:
        raise InvalidRequestError(
            22, f"parse_batch: width={width} is out of range; allowed: 14..{batch.ring.buf_size} "
            "(an Ethernet header up to the buffer size)")
    return parse(batch.gather(0, width), batch.len)


def _mix(x: np.ndarray) -> np.ndarray:
    """A 32-bit finaliser (xor-shift-multiply): spreads every input bit over the output."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def tuple_hash(h: Headers, *, symmetric: bool = True) -> np.ndarray:
    """A 32-bit hash of each frame's (addresses, protocol, ports); 0 for frames not valid IP.

    ``symmetric``: both directions of a flow hash alike (source and destination are combined
    with xor). Stable across processes and runs (no per-process seed), so every process that
    dispatches a flow agrees. Cost: tens of ns per frame.
    """
    def fold(a6: np.ndarray) -> np.ndarray:
        w = a6.view(">u4").astype(np.uint32)  # (k, 4) words
        return w[:, 0] ^ _mix(w[:, 1]) ^ _mix(w[:, 2] + np.uint32(1)) ^ _mix(w[:, 3] + np.uint32(2))

    with np.errstate(over="ignore"):
        src = np.where(h.ip_version == 6, fold(h.src6), h.src4).astype(np.uint32)
        dst = np.where(h.ip_version == 6, fold(h.dst6), h.dst4).astype(np.uint32)
        sp = h.sport.astype(np.uint32)
        dp = h.dport.astype(np.uint32)
        if symmetric:
            a = _mix(src) ^ _mix(dst)
            p = _mix(sp ^ dp | np.uint32(0x10000)) + _mix(sp & dp)
        else:
            a = _mix(src) + _mix(dst ^ np.uint32(0x9E3779B9))
            p = _mix(sp << np.uint32(16) | dp)
        out = _mix(a + p * np.uint32(0x9E3779B1) + h.proto.astype(np.uint32))
    return np.where(h.ip_version > 0, out, 0).astype(np.uint32)
