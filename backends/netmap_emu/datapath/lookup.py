"""VALE destination lookup: the batch a lookup sees, the programmable lookup API (mSwitch
style, spec E14) and the default learning bridge (spec E7) over a table that can live in shm.

A lookup is any callable ``fn(batch: LookupBatch) -> ports`` (or ``(ports, rings)``) called
once per forwarding batch (up to ``NM_BDG_BATCH`` slots of one sender). ``ports[i]`` is the
destination of packet ``i``: a port index 0..253, ``NM_BDG_BROADCAST`` (254) to flood it, or
``NM_BDG_NOPORT`` (255) to drop it. ``rings[i]``, when given, replaces the source ring number
from which the destination RX ring is chosen (``ring % num_rx_rings``), as netmap's lookup may
change ``dst_ring``. Everything is vectorised: the cost is a few numpy calls per batch.

A lookup whose ``batch_free`` attribute is true (the learning bridge, :func:`flood_all`,
:func:`drop_all`) answers a run of packets exactly as it would answer the same run cut into
batches, in order (it decides each packet as netmap's one-packet loop does); the engine then
calls it once for all the one-slot packets of a txsync, not once per batch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from netmap_core import abi

from ..shm.switch import TABLE_BUCKETS, TABLE_PORTS

__all__ = [
    "NM_BDG_BROADCAST", "NM_BDG_NOPORT", "HEAD_BYTES", "ETH_HLEN", "LookupBatch", "Lookup",
    "LookupResult", "mac_to_int", "int_to_mac", "mac_hash", "is_multicast", "LearningBridge",
    "flood_all", "drop_all",
]

NM_BDG_BROADCAST = abi.NM_BDG_BROADCAST   # 254: flood to every active port but the sender
NM_BDG_NOPORT = abi.NM_BDG_NOPORT         # 255: drop
HEAD_BYTES = 64                           # frame bytes a lookup sees per packet
ETH_HLEN = 14                             # shorter frames are dropped by the learning bridge

_MAC_MASK = np.uint64((1 << 48) - 1)
_VALID = np.uint64(1 << 63)
_VALID_MAC = _VALID | _MAC_MASK
_PORT_SHIFT = np.uint64(48)
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)   # 2^64 / golden ratio, odd
_HASH_SHIFT = np.uint64(54)                 # keep the top 10 bits: 1024 buckets
_U64 = (1 << 64) - 1
_HASH_MUL_INT, _HASH_SHIFT_INT = int(_HASH_MUL), int(_HASH_SHIFT)
_VALID_INT, _VALID_MAC_INT = int(_VALID), int(_VALID_MAC)


@dataclass(frozen=True, init=False, eq=False)
class LookupBatch:
    """The packets of one forwarding batch, one row per packet, in ring order.

    ``dst``/``src``: MAC addresses as 48-bit integers (``0x0200000000ff`` for
    02:00:00:00:00:ff); ``len``: whole frame length over all fragments (virtio-net header
    excluded); ``head``: the first ``HEAD_BYTES`` bytes of the frame (from the Ethernet
    header on), zero past ``head_len``; ``head_len``: valid bytes in ``head`` (the Ethernet
    header's fragment, capped at 64; < 14 means the frame has no full Ethernet header);
    ``src_port``/``src_ring``: where the batch came from. Arrays are read-only copies.

    ``head`` may be given as a zero-argument function: it is then gathered on first access
    (a lookup that needs only MACs and lengths never pays for it) and kept.
    """

    dst: np.ndarray
    src: np.ndarray
    len: np.ndarray
    head_len: np.ndarray
    src_port: int
    src_ring: int
    _head: np.ndarray | Callable[[], np.ndarray] = field(repr=False)

    def __init__(self, dst: np.ndarray, src: np.ndarray, len: np.ndarray,  # noqa: A002 - the field's name
                 head: np.ndarray | Callable[[], np.ndarray] | None = None,
                 head_len: np.ndarray | None = None, src_port: int = 0, src_ring: int = 0, *,
                 _head=None) -> None:   # _head: what dataclasses.replace passes on
        head = _head if head is None else head
        if head is None or head_len is None:
            raise TypeError("LookupBatch needs head and head_len")
        self.__dict__.update(dst=dst, src=src, len=len, head_len=head_len, src_port=src_port,
                             src_ring=src_ring, _head=head)   # frozen: no __setattr__

    def __len__(self) -> int:
        return int(self.dst.shape[0])

    @property
    def head(self) -> np.ndarray:
        """``(k, HEAD_BYTES)`` uint8, read-only (gathered now if it was deferred)."""
        h = self._head
        if not isinstance(h, np.ndarray):
            h = h()
            h.flags.writeable = False
            self.__dict__["_head"] = h
        return h

    @property
    def ethertype(self) -> np.ndarray:
        """Bytes 12..13 as big-endian integers (0 where the frame is shorter)."""
        h = self.head
        return (h[:, 12].astype(np.uint32) << 8) | h[:, 13]


LookupResult = Union[np.ndarray, "tuple[np.ndarray, np.ndarray]"]
Lookup = Callable[[LookupBatch], LookupResult]


def mac_to_int(macs) -> np.ndarray:
    """``(k, 6)`` uint8 MAC bytes (or one 6-byte ``bytes``) -> ``(k,)`` uint64, byte 0 highest."""
    if isinstance(macs, (bytes, bytearray)):
        macs = np.frombuffer(bytes(macs), dtype=np.uint8).reshape(1, 6)
    macs = np.asarray(macs, dtype=np.uint8)
    wide = np.zeros((macs.shape[0], 8), dtype=np.uint8)
    wide[:, 2:] = macs
    return wide.view(">u8").ravel().astype(np.uint64)


def int_to_mac(value: int) -> bytes:
    """A 48-bit integer as the 6 bytes of a MAC address."""
    return int(value).to_bytes(6, "big")


def is_multicast(macs: np.ndarray) -> np.ndarray:
    """Group bit (bit 0 of the first byte): multicast and broadcast addresses."""
    return ((macs >> np.uint64(40)) & np.uint64(1)).astype(bool)


def mac_hash(macs: np.ndarray) -> np.ndarray:
    """Bucket 0..1023 of each MAC: a multiplicative (Fibonacci) hash of the 48-bit value.

    netmap mixes the six bytes with a Jenkins-style function; that exact mix is not
    reproduced, so which MACs collide differs from the kernel (collisions overwrite in both).
    """
    with np.errstate(over="ignore"):
        return ((np.asarray(macs, dtype=np.uint64) * _HASH_MUL) >> _HASH_SHIFT).astype(np.int64)


def flood_all(batch: LookupBatch) -> np.ndarray:
    """A lookup that floods every packet (a hub)."""
    return np.full(len(batch), NM_BDG_BROADCAST, dtype=np.int64)


def drop_all(batch: LookupBatch) -> np.ndarray:
    """A lookup that drops every packet."""
    return np.full(len(batch), NM_BDG_NOPORT, dtype=np.int64)


flood_all.batch_free = True   # type: ignore[attr-defined]
drop_all.batch_free = True    # type: ignore[attr-defined]


class LearningBridge:
    """netmap's default lookup: source learning into a 1024-entry MAC table, unicast to the
    learned port, flood for multicast/broadcast and unknown destinations (spec E7).

    State, all in one flat uint64 array that may lie in shared memory (``buffer``):
    ``table[1024]`` entries packed as ``valid<<63 | port<<48 | mac`` so that one aligned 8-byte
    store publishes a whole entry (no torn entries between concurrent senders), then
    ``last_src[256]``, the last source MAC learned per port (same packing).

    Rules, as netmap: frames whose Ethernet fragment is shorter than 14 bytes are dropped and
    teach nothing; a unicast source different from the port's previous learned source
    overwrites ``table[hash(src)]`` (collisions overwrite, no ageing); ``NS_NO_LEARN`` is
    ignored (quirk B11). Deliberate differences: an empty bucket never matches (netmap's zeroed
    entry "matches" the all-zero MAC and sends it to port 0); the destination is looked up
    after the packet's own source is learned, exactly as netmap processes packets one by one.
    Cost: ~15 numpy calls per batch regardless of its size; ~5 when the batch is one flow
    (one destination, sources already learned), the common case of a bulk sender.
    """

    NBUCKETS = TABLE_BUCKETS
    NPORTS = TABLE_PORTS
    #: packets are decided one after the other, each seeing the sources learned before it,
    #: so batch boundaries change nothing (see the module docstring)
    batch_free = True
    WORDS = NBUCKETS + NPORTS
    NBYTES = WORDS * 8

    def __init__(self, buffer=None) -> None:
        if buffer is None:
            self._words = np.zeros(self.WORDS, dtype=np.uint64)
        else:
            raw = np.frombuffer(buffer, dtype=np.uint8)
            if raw.shape[0] < self.NBYTES:
                raise ValueError(f"LearningBridge: buffer of {raw.shape[0]} bytes, need {self.NBYTES}")
            self._words = raw[: self.NBYTES].view(np.uint64)
        self.table = self._words[: self.NBUCKETS]
        self.last_src = self._words[self.NBUCKETS:]

    def clear(self) -> None:
        """Forget everything (netmap clears the table when the default lookup is restored)."""
        self._words[:] = 0

    def forget_port(self, port: int) -> None:
        """Reset a port's last-learned source (its slot is being reused by a new port).
        Table entries pointing at the port stay, as in netmap (no ageing)."""
        self.last_src[port] = 0

    def entries(self) -> dict[int, int]:
        """The learned table as {mac: port} (for tests and debugging)."""
        valid = (self.table & _VALID) != 0
        t = self.table[valid]
        return {int(m): int(p) for m, p in zip(t & _MAC_MASK, (t >> _PORT_SHIFT) & np.uint64(0xFF))}

    def _lookup_one(self, mac: int) -> int:
        """The destination of one MAC (a port, or NM_BDG_BROADCAST), as step 2 below."""
        e = int(self.table[((mac * _HASH_MUL_INT) & _U64) >> _HASH_SHIFT_INT])
        if e & _VALID_MAC_INT == mac | _VALID_INT:
            return (e >> 48) & 0xFF
        return NM_BDG_BROADCAST

    def __call__(self, batch: LookupBatch) -> np.ndarray:
        k = len(batch)
        port = int(batch.src_port)
        if k == 0:
            return np.full(0, NM_BDG_NOPORT, dtype=np.int64)
        src, dst, hl = batch.src, batch.dst, batch.head_len
        ok = None                          # None: every frame has an Ethernet header
        if int(np.minimum.reduce(hl)) < ETH_HLEN:
            ok = hl >= ETH_HLEN
            if not ok.any():
                return np.full(k, NM_BDG_NOPORT, dtype=np.int64)
        # 1. which packets learn: unicast sources differing from the previous learned one
        last = self.last_src[port]
        learners = None
        if ok is not None or not (last & _VALID) or not (src == (last & _MAC_MASK)).all():
            mc = is_multicast(src)
            cand = np.flatnonzero(~mc if ok is None else ok & ~mc)
            if cand.size:
                seq = src[cand]
                prev = np.empty_like(seq)
                prev[0] = (last & _MAC_MASK) if (last & _VALID) else _VALID  # _VALID never equals a MAC
                prev[1:] = seq[:-1]
                learners = cand[seq != prev]
                self.last_src[port] = _VALID | seq[-1]
                if not learners.size:
                    learners = None
        # 2. destination of every valid packet, seeing the entries learned up to itself
        if learners is None and ok is None and dst[0] == dst[-1] and (dst == dst[0]).all():
            return np.full(k, self._lookup_one(int(dst[0])), dtype=np.int64)   # one flow
        qh = mac_hash(dst)
        entry = self.table[qh]
        if learners is not None:
            lh = mac_hash(src[learners])
            stride = np.int64(2 * k + 2)
            lkey = lh * stride + learners
            order = np.argsort(lkey, kind="stable")
            skey = lkey[order]
            pos = np.searchsorted(skey, qh * stride + np.arange(k), side="right") - 1
            hit = pos >= 0
            hit[hit] = (skey[pos[hit]] // stride) == qh[hit]
            learned = learners[order[pos[hit]]]
            entry[hit] = _VALID | (np.uint64(port) << _PORT_SHIFT) | src[learned]
        # entries only ever hold MACs learned from unicast sources, so a match is a unicast dst
        known = (entry & _VALID_MAC) == (dst | _VALID)
        out = np.where(known, (entry >> _PORT_SHIFT).view(np.int64) & 0xFF, NM_BDG_BROADCAST)
        if ok is not None:
            out[~ok] = NM_BDG_NOPORT
        # 3. publish the last learner of each bucket with one 8-byte store per entry
        if learners is not None:
            rev_h = lh[::-1]
            buckets, first_in_rev = np.unique(rev_h, return_index=True)
            last = learners[::-1][first_in_rev]
            self.table[buckets] = _VALID | (np.uint64(port) << _PORT_SHIFT) | src[last]
        return out
