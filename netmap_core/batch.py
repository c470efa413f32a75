"""Batch helpers over rings: move slots between rings (zero copy when they share a buffer pool),
dispatch one ring's batch to many rings, and hash flows of a whole batch at once.

Costs are per call plus per slot; nothing here loops in Python per packet.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import abi
from .errors import InvalidRequestError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .ring import Ring, SlotSel

__all__ = ["move_slots", "dispatch", "Dispatched", "flow_hash"]


def move_slots(src: Ring, spos: SlotSel, dst: Ring, dpos: SlotSel, *, copy: bool) -> None:
    """Move the frames in ``src`` slots ``spos`` into ``dst`` slots ``dpos`` (same length).

    Zero copy (``copy=False``): the two slots exchange ``buf_idx``; both get NS_BUF_CHANGED
    (netmap's rule for a replaced buffer) and ``dst`` keeps the frame's NS_MOREFRAG. With
    ``copy=True`` the bytes in use are copied and each slot keeps its buffer. Neither ring's
    ``head`` moves. Validates every buffer index and length read from shared memory.
    """
    sbuf = src.slots["buf_idx"][spos].astype(np.int64)
    dbuf = dst.slots["buf_idx"][dpos].astype(np.int64)
    if sbuf.size == 0:
        return
    for ring, bufs, pos in ((src, sbuf, spos), (dst, dbuf, dpos)):
        if int(bufs.max()) >= ring.nbufs:
            bad = int(np.argmax(bufs >= ring.nbufs))
            raise ring._slot_error("buf_idx", _nth(pos, bad), int(bufs[bad]))
    lens = src.slots["len"][spos]
    limit = min(src.buf_size, dst.buf_size)
    if int(lens.max()) > limit:
        bad = int(np.argmax(lens > limit))
        if lens[bad] > src.buf_size:
            raise src._slot_error("len", _nth(spos, bad), int(lens[bad]))
        raise InvalidRequestError(
            22, f"{src.name}: slot[{_nth(spos, bad)}].len={int(lens[bad])} does not fit "
            f"{dst.name}'s {dst.buf_size}-byte buffers; shorten the frame or use copy=False "
            "into a ring of the same pool")
    frag = src.slots["flags"][spos] & abi.NS_MOREFRAG
    if copy:
        width = int(lens.max())
        dst.buffers[dbuf, :width] = src.buffers[sbuf, :width]
        dst.slots["flags"][dpos] = frag
    else:
        src.slots["buf_idx"][spos] = dbuf
        dst.slots["buf_idx"][dpos] = sbuf
        src.slots["flags"][spos] |= abi.NS_BUF_CHANGED
        dst.slots["flags"][dpos] = frag | abi.NS_BUF_CHANGED
    dst.slots["len"][dpos] = lens


def _nth(sel: SlotSel, i: int) -> int:
    """The slot at position ``i`` of a selection (a slice or an index array)."""
    if isinstance(sel, slice):
        return int(sel.start or 0) + i
    return int(np.asarray(sel)[i])


@dataclass(frozen=True)
class Dispatched:
    """What :func:`dispatch` did: frames moved into each destination, and frames dropped."""

    forwarded: tuple[int, ...]
    dropped: int


def dispatch(src: Ring, dsts: Sequence[Ring], choice: ArrayLike, *,
             copy: bool | None = None) -> Dispatched:
    """Send the first ``len(choice)`` ready slots of ``src`` to ``dsts[choice[i]]``.

    ``choice[i] < 0`` drops slot i. A destination without room drops the frames that do not
    fit (the first ones are kept, as a VALE switch does). All ``len(choice)`` source slots are
    consumed: ``src.head`` advances past them. Order is kept per destination. Zero copy when
    source and destination share a buffer pool (unless ``copy=True``).

    Cost: a few µs per destination plus a few ns per slot.
    """
    choice = np.asarray(choice)
    k = int(choice.shape[0])
    shead, sroom = src._hroom()   # one read of head and tail each, checked
    if k > sroom:
        raise InvalidRequestError(22, f"dispatch: {k} choices but only {sroom} ready slots")
    if k and int(choice.max()) >= len(dsts):
        raise InvalidRequestError(22, f"dispatch: choice {int(choice.max())} but only {len(dsts)} rings")
    spos_all = (shead + np.arange(k)) % src.num_slots
    forwarded = []
    for j, dst in enumerate(dsts):
        spos = spos_all[choice == j]
        dhead, droom = dst._hroom()
        m = min(int(spos.shape[0]), droom)
        if m:
            dpos = (dhead + np.arange(m)) % dst.num_slots
            same = src.same_pool(dst)
            if copy is False and not same:
                raise InvalidRequestError(
                    22, f"dispatch: {src.name} and {dst.name} do not share a buffer pool")
            move_slots(src, spos[:m], dst, dpos, copy=bool(copy) or not same)
            dst._set_head(dhead, m)
        forwarded.append(m)
    src._set_head(shead, k)
    return Dispatched(tuple(forwarded), k - sum(forwarded))


def flow_hash(frames: np.ndarray) -> np.ndarray:
    """A symmetric hash of each IPv4 frame's (addresses, protocol, ports), batch at once.

    ``frames``: a ``(k, >= 38)`` uint8 array of frames starting at the Ethernet header (e.g.
    ``batch.gather(0, 38)``). Both directions of a flow hash alike; non-IPv4 frames hash by
    their MAC addresses. Returns uint32 per frame. Cost: tens of ns per frame.
    """
    f = np.asarray(frames, dtype=np.uint8)
    if f.ndim != 2 or f.shape[1] < 38:
        raise InvalidRequestError(22, f"flow_hash: frames must be (k, >= 38) bytes, got {f.shape}")
    u32 = lambda c: (f[:, c].astype(np.uint32) << 24 | f[:, c + 1].astype(np.uint32) << 16  # noqa: E731
                     | f[:, c + 2].astype(np.uint32) << 8 | f[:, c + 3].astype(np.uint32))
    u16 = lambda c: f[:, c].astype(np.uint32) << 8 | f[:, c + 1].astype(np.uint32)  # noqa: E731
    ipv4 = (f[:, 12] == 0x08) & (f[:, 13] == 0x00)
    ihl = (f[:, 14] & 0x0F).astype(np.int64) * 4
    proto = f[:, 23].astype(np.uint32)
    ports_ok = ipv4 & (ihl == 20) & ((proto == 6) | (proto == 17))
    addrs = u32(26) ^ u32(30)  # xor is symmetric in src/dst
    ports = np.where(ports_ok, u16(34) ^ u16(36), 0).astype(np.uint32)
    macs = u32(0) ^ u32(6) ^ u16(4) ^ u16(10)
    h = np.where(ipv4, addrs ^ (ports * np.uint32(0x9E3779B1)) ^ proto, macs).astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    return h
