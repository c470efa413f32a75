"""The frames pkt-gen sends: an Ethernet + IPv4 + UDP template built once, address ranges, and
the per-batch numpy writes that vary addresses, sequence numbers and checksums across a batch.

Everything here works on whole batches (a few µs per call plus a few ns per frame); nothing
loops in Python per packet.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from netmap_core.errors import InvalidRequestError

__all__ = ["ETH_LEN", "IP_OFF", "UDP_OFF", "PAYLOAD_OFF", "SEQ_OFF", "TS_OFF", "MIN_LEN",
           "MAX_LEN", "AddrRange", "parse_range", "parse_mac", "build_frame", "ip_checksums"]

ETH_LEN = 14
IP_OFF = ETH_LEN            # IPv4 header (20 bytes, no options)
UDP_OFF = IP_OFF + 20       # UDP header (8 bytes)
PAYLOAD_OFF = UDP_OFF + 8   # 42: first payload byte
SEQ_OFF = PAYLOAD_OFF       # txseq/rxseq and ping/pong: big-endian u32 sequence number
TS_OFF = SEQ_OFF + 4        # ping/pong: the sender's CLOCK_MONOTONIC in ns, big-endian u64
MIN_LEN, MAX_LEN = 16, 65535  # pkt-gen's -l range
_PAYLOAD = b"pynetmap pkt-gen payload\n"


@dataclass(frozen=True)
class AddrRange:
    """``-s``/``-d``: IPv4 addresses ``first..last`` and UDP ports ``port0..port1`` (inclusive).
    Packet ``c`` of a run uses port ``port0 + c % ports`` and address ``first + (c // ports) %
    addrs`` (ports vary fastest, as in pkt-gen)."""

    first: int
    last: int
    port0: int
    port1: int

    @property
    def addrs(self) -> int:
        return self.last - self.first + 1

    @property
    def ports(self) -> int:
        return self.port1 - self.port0 + 1

    @property
    def varies(self) -> bool:
        return self.addrs > 1 or self.ports > 1

    def at(self, counters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(addresses, ports) of packets number ``counters`` (int64 array)."""
        ports = (self.port0 + counters % self.ports).astype(np.uint16)
        addrs = (self.first + (counters // self.ports) % self.addrs).astype(np.uint32)
        return addrs, ports

    def random(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` random (address, port) pairs within the range (``-z``/``-Z``)."""
        addrs = rng.integers(self.first, self.last + 1, k, dtype=np.uint32)
        ports = rng.integers(self.port0, self.port1 + 1, k, dtype=np.uint16)
        return addrs, ports

    def __str__(self) -> str:
        a, b = ipaddress.IPv4Address(self.first), ipaddress.IPv4Address(self.last)
        return f"{a}:{self.port0}-{b}:{self.port1}"


def _addr_port(option: str, text: str, default_port: int) -> tuple[int, int]:
    host, _, port = text.partition(":")
    try:
        addr = int(ipaddress.IPv4Address(host))
    except ValueError:
        raise InvalidRequestError(
            22, f"{option}: {host!r} is not an IPv4 address; allowed: a.b.c.d[:port]") from None
    if not port:
        return addr, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidRequestError(22, f"{option}: port {port!r} is not a number in 0..65535")
    return addr, int(port)


def parse_range(option: str, text: str, default_port: int) -> AddrRange:
    """``ip[:port][-ip[:port]]`` as pkt-gen's ``-s``/``-d`` take it."""
    lo, sep, hi = text.partition("-")
    a0, p0 = _addr_port(option, lo, default_port)
    a1, p1 = _addr_port(option, hi, p0) if sep else (a0, p0)
    if a1 < a0 or p1 < p0:
        raise InvalidRequestError(
            22, f"{option}={text!r}: the range ends before it starts; allowed: low-high")
    return AddrRange(a0, a1, p0, p1)


def parse_mac(option: str, text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` as 6 bytes."""
    parts = text.split(":")
    try:
        if len(parts) != 6:
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise InvalidRequestError(
            22, f"{option}={text!r} is not a MAC address; allowed: six hex bytes aa:bb:cc:dd:ee:ff") from None


def _csum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    s = int(np.frombuffer(data, ">u2").astype(np.uint64).sum())
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_frame(length: int, src: AddrRange, dst: AddrRange, smac: bytes, dmac: bytes) -> bytes:
    """One Ethernet/IPv4/UDP frame of ``length`` bytes from the first addresses of the ranges,
    with valid IPv4 and UDP checksums. Frames shorter than 42 bytes are the template cut short
    (pkt-gen allows 16)."""
    full = max(length, PAYLOAD_OFF)
    payload = (_PAYLOAD * (full // len(_PAYLOAD) + 1))[:full - PAYLOAD_OFF]
    ip_len, udp_len = full - IP_OFF, full - UDP_OFF
    saddr, daddr = src.first.to_bytes(4, "big"), dst.first.to_bytes(4, "big")
    udp = (src.port0.to_bytes(2, "big") + dst.port0.to_bytes(2, "big")
           + udp_len.to_bytes(2, "big") + b"\0\0" + payload)
    pseudo = saddr + daddr + b"\0\x11" + udp_len.to_bytes(2, "big")
    ucs = _csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + ucs.to_bytes(2, "big") + udp[8:]
    ip = (b"\x45\x10" + (ip_len & 0xFFFF).to_bytes(2, "big") + b"\0\0\x40\0\x40\x11\0\0"
          + saddr + daddr)
    ip = ip[:10] + _csum(ip).to_bytes(2, "big") + ip[12:]
    return (dmac + smac + b"\x08\x00" + ip + udp)[:length]


def ip_checksums(headers: np.ndarray) -> np.ndarray:
    """The IPv4 header checksum of every row of a ``(k, 20)`` uint8 array (its checksum bytes
    are taken as zero), as uint16. Cost: tens of ns per frame."""
    words = headers.view(">u2").astype(np.uint32)
    s = words.sum(axis=1) - words[:, 5]
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint16)
