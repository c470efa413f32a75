"""The VALE forwarding engine: one sender's TX slots -> lookup -> copies into destination RX
rings, as pure numpy over arrays (no shared-memory, lock or process knowledge).

What it reproduces (spec E6-E10): packets of up to 64 ``NS_MOREFRAG`` fragments, processed in
batches of up to ``NM_BDG_BATCH`` slots that never split a packet; one lookup call per batch;
unicast to RX ring ``src_ring % num_rx_rings``, floods to RX ring 0 of every active port but
the sender, never back to the sender; per destination ring the packets that fit (a prefix, in
order) are copied and the rest dropped and counted; destination slots keep their ``buf_idx``
and get ``len`` per fragment and ``flags = (nfrags << 8) | NS_MOREFRAG`` (last: no MOREFRAG).

Ownership: the caller owns the sender's TX slots passed in (they are only read); each
destination ring is touched only between its :meth:`RxTarget.lease` and
:meth:`RxTarget.commit`, which is where a backend takes and releases the ring's lock.
Cost: ~30 numpy calls per batch plus ~10 per destination ring, plus the bytes copied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import numpy as np

from netmap_core import abi

from .vale_lookup import (
    HEAD_BYTES, NM_BDG_BROADCAST, NM_BDG_NOPORT, Lookup, LookupBatch, mac_to_int,
)

__all__ = ["RxTarget", "SourceSlots", "Destinations", "ForwardStats", "forward", "packetize",
           "MAX_PORTS", "MAX_RINGS"]

MAX_PORTS = abi.NM_BDG_MAXPORTS          # port slots 0..253
MAX_RINGS = abi.NM_BDG_MAXRINGS
_MF = abi.NS_MOREFRAG
# row-copy width classes: a destination's fragments are copied in groups whose width is the
# class bound, so at most ~2x the bytes in use are moved (netmap copies in 64-byte blocks)
_WIDTHS = np.array([64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536], dtype=np.int64)


class RxTarget(Protocol):
    """One destination RX ring as the engine sees it.

    ``slots``: the ring's ``netmap_slot`` array (writable); ``buffers``: its allocator's buffer
    pool as ``(nbufs, buf_size)`` uint8. ``lease()`` locks the ring and returns (first slot to
    fill, free slots) - free = ``n - 1 - (fill point - hwcur) mod n``; ``commit(k)`` publishes
    ``k`` filled slots from that point, unlocks and wakes the receiver. ``commit`` is always
    called after a successful ``lease`` (with 0 when nothing was written or on error).
    """

    slots: np.ndarray
    buffers: np.ndarray

    def lease(self) -> tuple[int, int]: ...
    def commit(self, filled: int) -> None: ...


@dataclass(frozen=True)
class SourceSlots:
    """The slots ``[hwcur, head)`` of one sender's TX ring, in ring order (copies or views).

    ``buffers``: the sender's buffer pool ``(nbufs, buf_size)``; ``port``/``ring``: the sender's
    switch port index and TX ring id; ``hdr_len``: the port's virtio-net header length;
    ``ptr``: the slots' ``ptr`` words (only needed for ``NS_INDIRECT``).
    """

    buf_idx: np.ndarray
    len: np.ndarray
    flags: np.ndarray
    buffers: np.ndarray
    port: int
    ring: int = 0
    hdr_len: int = 0
    ptr: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Destinations:
    """The switch as the engine needs it: ``active`` port indexes (sorted), ``num_rx_rings[p]``
    (0 where no port), ``hdr_len[p]`` (virtio-net header lengths), and ``ring(p, r)`` giving the
    :class:`RxTarget` of port p's RX ring r, or None when that ring is not bound to any
    registration (netmap skips such destinations: the packets are dropped)."""

    active: np.ndarray
    num_rx_rings: np.ndarray
    ring: Callable[[int, int], Optional[RxTarget]]
    hdr_len: Optional[np.ndarray] = None


@dataclass
class ForwardStats:
    """What one :func:`forward` call did. ``delivered[p]``/``dropped[p]``: packets copied to /
    dropped at port p (full or unbound ring, header-length mismatch); ``no_dest``: packets the
    lookup sent nowhere (NOPORT, own port, empty port slot, short frame, > 64 fragments);
    ``touched``: (port, ring) pairs that received something and need a wakeup."""

    packets: int = 0
    slots: int = 0
    batches: int = 0
    no_dest: int = 0
    delivered: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    touched: set = field(default_factory=set)


def packetize(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split slots into packets by ``NS_MOREFRAG``: returns (first slot, fragment count) per
    packet. A trailing packet whose last slot still has MOREFRAG is closed there (netmap sends
    it truncated, quirk E6)."""
    n = flags.shape[0]
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    more = (flags & _MF) != 0
    more[-1] = False
    ends = np.flatnonzero(~more)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    return starts, ends - starts + 1


def _rowcopy(dst: np.ndarray, dbuf: np.ndarray, src: np.ndarray, sbuf: np.ndarray, w: int) -> None:
    """dst[dbuf, :w] = src[sbuf, :w]; when w divides both row sizes the rows are viewed as
    w-byte void elements, so numpy moves one memcpy per row instead of w bytes one by one."""
    if w > 0 and dst.shape[1] % w == 0 and src.shape[1] % w == 0 and dst.strides[1] == 1 and src.strides[1] == 1:
        vt = np.dtype((np.void, w))
        dst.view(vt)[dbuf, 0] = src.view(vt)[sbuf, 0]
    else:
        dst[dbuf, :w] = src[sbuf, :w]


def _copy_rows(dst_bufs: np.ndarray, dbuf: np.ndarray, src_bufs: np.ndarray, sbuf: np.ndarray,
               lens: np.ndarray) -> None:
    """dst_bufs[dbuf[i], :lens[i]] = src_bufs[sbuf[i], :lens[i]] for all i, in few numpy copies."""
    if lens.size == 0:
        return
    limit = min(dst_bufs.shape[1], src_bufs.shape[1])
    cls = np.searchsorted(_WIDTHS, lens, side="left")
    lo, hi = int(cls.min()), int(cls.max())
    if lo == hi:
        w = min(int(_WIDTHS[lo]), limit) if lo < _WIDTHS.size else limit
        _rowcopy(dst_bufs, dbuf, src_bufs, sbuf, w)
        return
    for c in np.unique(cls):
        sel = cls == c
        w = min(int(_WIDTHS[c]), limit) if c < _WIDTHS.size else limit
        _rowcopy(dst_bufs, dbuf[sel], src_bufs, sbuf[sel], w)


def _expand(starts: np.ndarray, nfr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot indexes of every fragment of the given packets, the packet's fragment count per
    fragment, and whether the fragment is its packet's last."""
    total = int(nfr.sum())
    rep_nf = np.repeat(nfr, nfr)
    first = np.repeat(np.cumsum(nfr) - nfr, nfr)
    intra = np.arange(total, dtype=np.int64) - first
    return np.repeat(starts, nfr) + intra, rep_nf, intra == rep_nf - 1


def _batches(nfr: np.ndarray, limit: int):
    """Packet ranges [a, b) whose slot count first reaches ``limit`` (never splitting one)."""
    cum = np.cumsum(nfr)
    a, base = 0, 0
    while a < nfr.shape[0]:
        b = int(np.searchsorted(cum, base + limit, side="left")) + 1
        b = min(b, nfr.shape[0])
        yield a, b
        base = int(cum[b - 1])
        a = b


def forward(src: SourceSlots, lookup: Lookup, dests: Destinations, *,
            batch_slots: int = abi.NM_BDG_BATCH, dup_broadcast: bool = False,
            read_indirect: Optional[Callable[[int, int], Optional[np.ndarray]]] = None,
            stats: Optional[ForwardStats] = None) -> ForwardStats:
    """Forward every packet of ``src`` through ``lookup`` into ``dests``; returns the stats.

    ``dup_broadcast=True`` reproduces netmap's quirk E8 (a flooded packet is delivered again
    in ring k of a multi-ring destination that also gets a unicast for ring k in the same
    batch); the default delivers each flooded packet once, in ring 0. ``read_indirect(ptr,
    len)`` returns the payload of an ``NS_INDIRECT`` slot (None: unreadable -> empty fragment);
    without it such slots are empty fragments. Never raises for bad slot contents: buffer
    indexes outside the pool read buffer 0 and over-long ``len`` becomes an empty fragment,
    as in netmap (spec A6, E10).
    """
    st = stats if stats is not None else ForwardStats()
    nslots = int(src.flags.shape[0])
    if nslots == 0:
        return st
    nb, bsize = src.buffers.shape
    flags = np.asarray(src.flags, dtype=np.uint16)
    bidx = np.asarray(src.buf_idx, dtype=np.int64)
    bidx = np.where((bidx >= nb) | (bidx < 0), 0, bidx)
    flen = np.asarray(src.len, dtype=np.int64).copy()
    indirect = (flags & abi.NS_INDIRECT) != 0
    flen[(flen > bsize) & ~indirect] = 0
    pool = _Pool(src.buffers, bidx)
    if indirect.any():
        pool.load_indirect(flen, indirect, src.ptr, read_indirect)
    starts, nfr = packetize(flags)
    st.slots += nslots
    st.packets += int(starts.shape[0])
    hdr = int(src.hdr_len)
    for a, b in _batches(nfr, batch_slots):
        st.batches += 1
        _forward_batch(st, src, pool, flen, starts[a:b], nfr[a:b], hdr, lookup, dests,
                       dup_broadcast)
    return st


class _Pool:
    """Where each source slot's bytes are: row ``idx[i]`` of the sender's buffer pool, or row
    ``srow[i]`` of a scratch pool holding ``NS_INDIRECT`` payloads (``srow[i] >= 0``)."""

    def __init__(self, buffers: np.ndarray, idx: np.ndarray) -> None:
        self.main = buffers
        self.idx = idx
        self.scratch: Optional[np.ndarray] = None
        self.srow: Optional[np.ndarray] = None

    def load_indirect(self, flen, indirect, ptr, read_indirect) -> None:
        """Copy NS_INDIRECT payloads (at most one buffer each) into the scratch pool; an
        unreadable or longer payload becomes an empty fragment."""
        rows = np.flatnonzero(indirect)
        width = self.main.shape[1]
        self.scratch = np.zeros((rows.size, width), dtype=np.uint8)
        self.srow = np.full(self.idx.shape, -1, dtype=np.int64)
        self.srow[rows] = np.arange(rows.size)
        for j, i in enumerate(rows.tolist()):
            data = None
            if read_indirect is not None and ptr is not None:
                data = read_indirect(int(ptr[i]), int(min(flen[i], 65535)))
            if data is None or len(data) > width:
                flen[i] = 0
                continue
            self.scratch[j, :len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
            flen[i] = len(data)

    def gather(self, slots: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Bytes [start, stop) of the given source slots as a (k, stop - start) array."""
        if self.srow is None:
            return self.main[self.idx[slots], start:stop]
        out = np.empty((slots.size, stop - start), dtype=np.uint8)
        sr = self.srow[slots]
        m = sr >= 0
        out[~m] = self.main[self.idx[slots[~m]], start:stop]
        out[m] = self.scratch[sr[m], start:stop]
        return out

    def copy_to(self, dst_bufs: np.ndarray, dbuf: np.ndarray, slots: np.ndarray, lens: np.ndarray) -> None:
        """dst_bufs[dbuf[i], :lens[i]] = bytes of source slot slots[i] (few numpy copies)."""
        if self.srow is None:
            _copy_rows(dst_bufs, dbuf, self.main, self.idx[slots], lens)
            return
        sr = self.srow[slots]
        m = sr >= 0
        _copy_rows(dst_bufs, dbuf[~m], self.main, self.idx[slots[~m]], lens[~m])
        _copy_rows(dst_bufs, dbuf[m], self.scratch, sr[m], lens[m])


def _lookup_batch(src, pool, flen, starts, nfr, hdr) -> LookupBatch:
    """The packets' MACs and first bytes; the Ethernet header follows the vnet header, or
    starts the next fragment when the first one holds only the vnet header (as netmap)."""
    eth = starts.copy()
    off = np.full(starts.shape, hdr, dtype=np.int64)
    if hdr:
        alone = (flen[starts] == hdr) & (nfr > 1)
        eth[alone] += 1
        off[alone] = 0
    head_len = np.clip(flen[eth] - off, 0, HEAD_BYTES)
    k = starts.shape[0]
    head = np.zeros((k, HEAD_BYTES), dtype=np.uint8)
    bsize = pool.main.shape[1]
    for o in (np.unique(off).tolist() if hdr else [0]):  # the vnet header's offset and/or 0
        width = max(0, min(HEAD_BYTES, bsize - o))
        sel = np.flatnonzero(off == o) if hdr else np.arange(k)
        head[sel, :width] = pool.gather(eth[sel], o, o + width)
    short = head_len < HEAD_BYTES
    if short.any():
        head[short] *= np.arange(HEAD_BYTES)[None, :] < head_len[short][:, None]
    cs = np.concatenate([[0], np.cumsum(flen)])
    total = np.maximum(cs[starts + nfr] - cs[starts] - hdr, 0)
    for arr in (head, head_len, total):
        arr.flags.writeable = False
    dst = mac_to_int(head[:, 0:6])
    srcm = mac_to_int(head[:, 6:12])
    dst.flags.writeable = False
    srcm.flags.writeable = False
    return LookupBatch(dst=dst, src=srcm, len=total, head=head, head_len=head_len,
                       src_port=int(src.port), src_ring=int(src.ring))


def _forward_batch(st, src, pool, flen, starts, nfr, hdr, lookup, dests, dup_broadcast):
    k = starts.shape[0]
    too_long = nfr > abi.NETMAP_MAX_FRAGS
    lb = _lookup_batch(src, pool, flen, starts, nfr, hdr)
    res = lookup(lb)
    if isinstance(res, tuple):
        ports, rings = res
        rings = np.broadcast_to(np.asarray(rings, dtype=np.int64), (k,))
    else:
        ports, rings = res, np.full(k, int(src.ring), dtype=np.int64)
    ports = np.broadcast_to(np.asarray(ports, dtype=np.int64), (k,)).copy()
    if ports.shape[0] != k:
        raise ValueError(f"lookup returned {ports.shape[0]} ports for {k} packets")
    ports[too_long] = NM_BDG_NOPORT
    nrx = np.asarray(dests.num_rx_rings, dtype=np.int64)
    sp = int(src.port)
    # unicast: a live port other than the sender
    uni = (ports >= 0) & (ports < MAX_PORTS)
    uni_ok = uni.copy()
    uni_ok[uni] = (ports[uni] != sp) & (nrx[ports[uni]] > 0)
    bc = ports == NM_BDG_BROADCAST
    active = np.asarray(dests.active, dtype=np.int64)
    others = active[active != sp]
    st.no_dest += int(k - np.count_nonzero(uni_ok) - (np.count_nonzero(bc) if others.size else 0))
    u_pkt = np.flatnonzero(uni_ok)
    u_port = ports[u_pkt]
    u_ring = np.mod(rings[u_pkt], nrx[u_port])
    b_pkt = np.flatnonzero(bc)
    if b_pkt.size and others.size:
        d_pkt = [u_pkt, np.tile(b_pkt, others.size)]
        d_port = [u_port, np.repeat(others, b_pkt.size)]
        d_ring = [u_ring, np.zeros(b_pkt.size * others.size, dtype=np.int64)]
        if dup_broadcast and u_pkt.size:
            pairs = np.unique(np.stack([u_port, u_ring], axis=1)[u_ring != 0], axis=0)
            for p, r in pairs:
                d_pkt.append(b_pkt)
                d_port.append(np.full(b_pkt.size, p, dtype=np.int64))
                d_ring.append(np.full(b_pkt.size, r, dtype=np.int64))
        d_pkt, d_port, d_ring = np.concatenate(d_pkt), np.concatenate(d_port), np.concatenate(d_ring)
    else:
        d_pkt, d_port, d_ring = u_pkt, u_port, u_ring
    if d_pkt.size == 0:
        return
    group = d_port * MAX_RINGS + d_ring
    order = np.argsort(group * (k + 1) + d_pkt, kind="stable")
    group, d_pkt = group[order], d_pkt[order]
    bounds = np.flatnonzero(np.diff(group)) + 1
    g_start = np.concatenate([[0], bounds])
    g_end = np.concatenate([bounds, [group.size]])
    src_hdr = int(src.hdr_len)
    for a, b in zip(g_start.tolist(), g_end.tolist()):
        g = int(group[a])
        port, ring = divmod(g, MAX_RINGS)
        pkts = d_pkt[a:b]
        if dests.hdr_len is not None and int(dests.hdr_len[port]) != src_hdr:
            st.dropped[port] += pkts.size      # no virtio-net header conversion (deviation)
            continue
        target = dests.ring(port, ring)
        if target is None:
            st.dropped[port] += pkts.size
            continue
        kept = _deliver(target, pool, flen, starts[pkts], nfr[pkts])
        st.delivered[port] += kept
        st.dropped[port] += pkts.size - kept
        if kept:
            st.touched.add((port, ring))


def _deliver(target: RxTarget, pool: "_Pool", flen, pstarts, pnfr) -> int:
    """Copy the packets that fit into ``target`` (a prefix, in order); returns how many."""
    first, space = target.lease()
    filled = 0
    try:
        cum = np.cumsum(pnfr)
        keep = int(np.searchsorted(cum, space, side="right"))
        if keep == 0:
            return 0
        sidx, rep_nf, last = _expand(pstarts[:keep], pnfr[:keep])
        total = sidx.size
        slots = target.slots
        n = slots.shape[0]
        dslot = np.arange(first, first + total, dtype=np.int64)
        dslot[dslot >= n] -= n
        dbufs = target.buffers
        dbuf = slots["buf_idx"][dslot].astype(np.int64)
        dbuf[(dbuf >= dbufs.shape[0]) | (dbuf < 0)] = 0
        lens = flen[sidx]
        lens = np.where(lens > dbufs.shape[1], 0, lens)
        pool.copy_to(dbufs, dbuf, sidx, lens)
        slots["len"][dslot] = lens
        slots["flags"][dslot] = (rep_nf << abi.NS_PORT_SHIFT) | np.where(last, 0, _MF)
        filled = total
        return keep
    finally:
        target.commit(filled)
