"""Per-slot interop with packet libraries: dpkt parses straight from a slot's buffer (no copy),
scapy from one copy, and any packet object with ``__bytes__`` is built into a TX slot.

Per-packet path: a few µs per frame on top of what dpkt or scapy themselves cost (tens of µs
for scapy). Classify whole batches with :mod:`netmap_core.headers` and come here for the few
frames that need a full dissection. dpkt and scapy come with the ``interop`` extra and are
imported on first use.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from .ring import Batch, Ring

__all__ = ["slot_view", "batch_views", "to_dpkt", "to_scapy", "write_packet", "send_packets"]


def slot_view(ring: Ring, i: int) -> memoryview:
    """Zero-copy, writable memoryview of slot ``i``'s first ``len`` bytes.

    Valid while the slot is the user's: on RX until ``head`` moves past it (``advance``,
    ``rxsync``), on TX until it is published; after that the kernel may reuse the buffer and
    the view shows whatever is written there next. Cost: ~0.5 µs.
    """
    return ring.payload(i).data


def batch_views(batch: Batch) -> list[memoryview]:
    """:func:`slot_view` of every slot of ``batch`` (per-packet: ~0.5 µs each, no byte copied;
    each slot's ``buf_idx`` and ``len`` are read again and checked)."""
    payload = batch.ring.payload
    return [payload(i).data for i in batch.slot_idx.tolist()]


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"{module} is not installed ({exc}); install the interop extra: "
            "pip install 'pynetmap[interop]'", name=module) from None


def to_dpkt(ring: Ring, i: int, cls: Any = None) -> Any:
    """Slot ``i`` parsed by dpkt (default ``dpkt.ethernet.Ethernet``) without copying the frame.

    dpkt unpacks each header's fields into Python values and keeps the payloads as slices of
    the slot's memoryview, so the packet object shares the slot's lifetime (see
    :func:`slot_view`): finish with it, or take ``bytes(pkt)``, before the slot is released.
    Cost: dpkt's own (~5-10 µs for Ethernet/IP/UDP).
    """
    if cls is None:
        cls = _need("dpkt.ethernet").Ethernet
    return cls(slot_view(ring, i))


def to_scapy(ring: Ring, i: int, cls: Any = None) -> Any:
    """Slot ``i`` dissected by scapy (default ``Ether``). scapy needs ``bytes``: the frame is
    copied once, so the packet outlives the slot. Cost: scapy's own (~50-100 µs)."""
    if cls is None:
        cls = _need("scapy.layers.l2").Ether
    return cls(bytes(ring.payload(i)))


def write_packet(ring: Ring, i: int, pkt: Any) -> int:
    """Build ``pkt`` into slot ``i``'s buffer and set the slot's ``len``; returns the length.

    ``pkt``: bytes-like, or a dpkt/scapy packet (anything with ``__bytes__``). The library
    serialises it to one ``bytes`` object, which is copied once into the buffer. ``head`` does
    not move: publish with ``ring.advance`` (or use :func:`send_packets`).
    """
    data = pkt if isinstance(pkt, (bytes, bytearray, memoryview)) else bytes(pkt)
    n = len(data)
    if n > ring.buf_size:
        raise InvalidRequestError(
            22, f"{ring.name}: packet of {n} bytes for slot[{i}] exceeds the buffer size "
            f"{ring.buf_size}; allowed: 0..{ring.buf_size} bytes")
    ring.buf(i)[:n] = memoryview(data).cast("B")
    ring.set_len(i, n)
    return n


def send_packets(ring: Ring, pkts: Iterable[Any]) -> int:
    """Write packets into the free TX slots from ``head`` on and publish them (``advance``).

    Stops when the ring is full; returns how many were placed (the rest were not consumed from
    a list; from an iterator, one more item may have been taken). Each packet costs one build
    and one copy (:func:`write_packet`); call ``txsync`` afterwards to send.
    """
    room = ring.space()
    if room == 0:
        return 0
    i = ring.head
    k = 0
    for pkt in pkts:
        write_packet(ring, i, pkt)
        k += 1
        if k == room:
            break
        i = ring.next(i)
    ring.advance(k)
    return k
