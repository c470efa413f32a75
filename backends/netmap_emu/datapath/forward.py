"""The VALE forwarding engine: one sender's TX slots -> lookup -> copies into destination RX
rings, as pure numpy over arrays (no shared-memory, lock or process knowledge).

What it reproduces (spec E6-E10): packets of up to 64 ``NS_MOREFRAG`` fragments, processed in
batches of up to ``NM_BDG_BATCH`` slots that never split a packet; one lookup call per batch
(one for all the batches of one-slot packets when the lookup is ``batch_free``, see lookup.py);
unicast to RX ring ``src_ring % num_rx_rings``, floods to RX ring 0 of every active port but
the sender, never back to the sender; per destination ring the packets that fit (a prefix, in
order) are copied and the rest dropped and counted; destination slots keep their ``buf_idx``
and get ``len`` per fragment and ``flags = (nfrags << 8) | NS_MOREFRAG`` (last: no MOREFRAG).

Ownership: the caller owns the sender's TX slots passed in (they are only read); each
destination ring is touched only between its :meth:`RxTarget.lease` and
:meth:`RxTarget.commit`, which is where a backend takes and releases the ring's lock.
Consecutive batches' runs for the same destination ring are delivered as one (:class:`_Sink`).
Cost: ~30 numpy calls per batch plus ~10 per destination ring, plus the bytes copied (each
row at the batch's widest length rounded up to 64 bytes); one-slot packets to a single
destination ring (the common case) take a fast path of ~40 numpy calls in all per txsync
with the learning bridge (per batch with other lookups, ~10 fewer), none of them per packet
and none per idle port of the switch.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from netmap_core import abi

from .lookup import (
    HEAD_BYTES,
    NM_BDG_BROADCAST,
    NM_BDG_NOPORT,
    Lookup,
    LookupBatch,
    mac_to_int,
)

__all__ = ["RxTarget", "SourceSlots", "Destinations", "ForwardStats", "forward", "packetize",
           "MAX_PORTS", "MAX_RINGS", "LookupResultError", "LookupUnavailable", "lookup_result"]

MAX_PORTS = abi.NM_BDG_MAXPORTS          # port slots 0..253
MAX_RINGS = abi.NM_BDG_MAXRINGS
_MF = abi.NS_MOREFRAG
_ONE_FRAG = 1 << abi.NS_PORT_SHIFT     # flags of a one-fragment packet
_SHIFT16 = np.uint64(16)                # a big-endian 8-byte read >> 16: its first 6 bytes
_MAX = np.maximum.reduce   # as ndarray.max()/min(), without their Python wrappers
_MIN = np.minimum.reduce
_ADD = np.add.reduce
# row-copy width classes, for batches whose lengths differ widely: fragments are then copied
# in groups whose width is the class bound, so at most ~2x the bytes in use are moved
_WIDTHS = np.array([64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536], dtype=np.int64)


class RxTarget(Protocol):
    """One destination RX ring as the engine sees it.

    ``slots``: the ring's ``netmap_slot`` array (writable); ``buffers``: its allocator's buffer
    pool as ``(nbufs, buf_size)`` uint8. ``lease()`` locks the ring and returns (first slot to
    fill, free slots) - free = ``n - 1 - (fill point - hwcur) mod n``; ``commit(k)`` publishes
    ``k`` filled slots from that point, unlocks and wakes the receiver. ``commit`` is always
    called after a successful ``lease`` (with 0 when nothing was written or on error), right
    after ``account(k, bytes, dropped)``, which adds the delivery to the ring's statistics.
    """

    slots: np.ndarray
    buffers: np.ndarray

    def lease(self) -> tuple[int, int]: ...
    def account(self, filled: int, nbytes: int, dropped: int) -> None: ...
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
    ptr: np.ndarray | None = None


@dataclass(frozen=True)
class Destinations:
    """The switch as the engine needs it: ``active`` port indexes (sorted), ``num_rx_rings[p]``
    (0 where no port), ``hdr_len[p]`` (virtio-net header lengths), and ``ring(p, r)`` giving the
    :class:`RxTarget` of port p's RX ring r, or None when that ring is not bound to any
    registration (netmap skips such destinations: the packets are dropped)."""

    active: np.ndarray
    num_rx_rings: np.ndarray
    ring: Callable[[int, int], RxTarget | None]
    hdr_len: np.ndarray | None = None


@dataclass
class ForwardStats:
    """What one :func:`forward` call did. ``delivered[p]``/``dropped[p]``: packets copied to /
    dropped at port p (full or unbound ring, header-length mismatch); ``no_dest``: packets the
    lookup sent nowhere (NOPORT, own port, empty port slot, short frame, > 64 fragments);
    ``touched``: (port, ring) pairs that received something and need a wakeup.
    ``lookup_errors``: batches dropped whole because the lookup raised or answered something
    that is not one integer port per packet (``lookup_dropped`` packets in them);
    ``lookup_error``: what went wrong the last time."""

    packets: int = 0
    slots: int = 0
    batches: int = 0
    no_dest: int = 0
    delivered: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    touched: set = field(default_factory=set)
    lookup_errors: int = 0
    lookup_dropped: int = 0
    lookup_error: str = ""


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


# Packets are named by their first slot: an int64 array, or a ``slice`` for a run of one-slot
# packets in consecutive slots (indexing with it gives views instead of gathered copies).

def _count(sel) -> int:
    return sel.stop - sel.start if isinstance(sel, slice) else int(sel.shape[0])


def _as_array(sel) -> np.ndarray:
    return np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel


def _prefix(sel, n: int):
    return slice(sel.start, sel.start + n) if isinstance(sel, slice) else sel[:n]


_VOID: dict[int, np.dtype] = {}


def _rows(bufs: np.ndarray, w: int) -> np.ndarray:
    """The first ``w`` bytes of every buffer as one ``w``-byte void element per row, so numpy
    moves a row with one memcpy (the rows' bytes must be contiguous)."""
    dt = _VOID.get(w)
    if dt is None:
        dt = _VOID[w] = np.dtype((np.void, w))
    return bufs[:, :w].view(dt)[:, 0]


# From this row width on, looking for runs of consecutive buffers on both sides (the usual
# case: VALE receivers keep their buffers, and a ring wraps at most once per batch) pays: each
# run is copied as one block, without the gathered temporary that doubles the memory traffic.
_RUN_WIDTH = 256
_MAX_RUNS = 8


def _runs(dbuf: np.ndarray, sbuf: np.ndarray) -> list | None:
    """Boundaries [0, ..., m] of the stretches where ``dbuf`` and ``sbuf`` both step by one,
    or None when there are more than ``_MAX_RUNS`` of them."""
    m = dbuf.shape[0]
    brk = np.flatnonzero((np.diff(dbuf) != 1) | (np.diff(sbuf) != 1))
    if brk.shape[0] >= _MAX_RUNS:
        return None
    return [0] + (brk + 1).tolist() + [m]


def _rowcopy(dst: np.ndarray, dbuf: np.ndarray, src: np.ndarray, sbuf, w: int) -> None:
    """dst[dbuf, :w] = src[sbuf, :w], one memcpy per row (or per block of consecutive rows)."""
    if w <= 0:
        return
    if dst.strides[1] == 1 and src.strides[1] == 1:
        drows, srows = _rows(dst, w), _rows(src, w)
        if w >= _RUN_WIDTH and dbuf.shape[0] > 1:
            bounds = _runs(dbuf, sbuf)
            if bounds is not None:
                for a, b in zip(bounds, bounds[1:]):
                    d0, s0 = int(dbuf[a]), int(sbuf[a])
                    drows[d0:d0 + b - a] = srows[s0:s0 + b - a]
                return
        drows[dbuf] = srows[sbuf]
    else:
        dst[dbuf, :w] = src[sbuf, :w]


# Copying a row past its length costs memory bandwidth, every extra numpy call ~2 us: rows are
# copied at the widest length (rounded up to 64 bytes, as netmap copies) unless that moves
# more than this many bytes beyond the lengths.
_SPARE_BYTES = 128 * 1024


def _copy_rows(dst_bufs: np.ndarray, dbuf: np.ndarray, src_bufs: np.ndarray, sbuf,
               lens: np.ndarray, hi: int | None = None) -> None:
    """dst_bufs[dbuf[i], :lens[i]] = src_bufs[sbuf[i], :lens[i]] for all i, in few numpy copies
    (bytes past ``lens[i]`` up to the copy width are overwritten too, as netmap's 64-byte
    copies do). ``hi``: ``lens.max()`` when the caller knows it."""
    m = lens.size
    if m == 0:
        return
    limit = min(dst_bufs.shape[1], src_bufs.shape[1])
    hi = int(lens.max()) if hi is None else hi
    if hi <= 0:
        return
    w = min((hi + 63) & ~63, limit)
    if m * w <= _SPARE_BYTES or m * w - int(lens.sum()) <= _SPARE_BYTES:
        _rowcopy(dst_bufs, dbuf, src_bufs, sbuf, w)
        return
    sbuf = _as_array(sbuf)
    cls = np.searchsorted(_WIDTHS, lens, side="left")
    for c in np.unique(cls).tolist():
        sel = cls == c
        cw = min(int(_WIDTHS[c]), w) if c < _WIDTHS.size else w
        _rowcopy(dst_bufs, dbuf[sel], src_bufs, sbuf[sel], cw)


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
            read_indirect: Callable[[int, int], bytes | None] | None = None,
            stats: ForwardStats | None = None) -> ForwardStats:
    """Forward every packet of ``src`` through ``lookup`` into ``dests``; returns the stats.

    ``dup_broadcast=True`` reproduces netmap's quirk E8 (a flooded packet is delivered again
    in ring k of a multi-ring destination that also gets a unicast for ring k in the same
    batch); the default delivers each flooded packet once, in ring 0. ``read_indirect(ptr,
    len)`` returns the payload of an ``NS_INDIRECT`` slot (None: unreadable -> empty fragment);
    without it such slots are empty fragments. Never raises for bad slot contents: buffer
    indexes outside the pool read buffer 0 and over-long ``len`` becomes an empty fragment,
    as in netmap (spec A6, E10). Nor for a lookup that raises or answers wrongly: that
    batch is dropped and counted (``lookup_errors``), the next one is tried.
    """
    st = stats if stats is not None else ForwardStats()
    nslots = int(src.flags.shape[0])
    if nslots == 0:
        return st
    nb, bsize = src.buffers.shape
    flags = np.asarray(src.flags, dtype=np.uint16)
    raw = np.asarray(src.buf_idx)
    bidx = raw.astype(np.int64)
    if int(_MAX(bidx)) >= nb or (raw.dtype.kind != "u" and int(_MIN(bidx)) < 0):
        bidx[(bidx >= nb) | (bidx < 0)] = 0
    flen = np.asarray(src.len).astype(np.int64)
    multi = False
    indirect = None
    if int(np.bitwise_or.reduce(flags)) & (_MF | abi.NS_INDIRECT):
        multi = bool((flags & _MF).any())
        indirect = (flags & abi.NS_INDIRECT) != 0
        if not indirect.any():
            indirect = None
    if int(_MAX(flen)) > bsize:
        over = flen > bsize
        if indirect is not None:
            over &= ~indirect
        flen[over] = 0
    pool = _Pool(src.buffers, bidx)
    if indirect is not None:
        pool.load_indirect(flen, indirect, src.ptr, read_indirect)
    st.slots += nslots
    hdr = int(src.hdr_len)
    sink = _Sink(st, dests, pool, flen, int(src.hdr_len))
    try:
        if not multi:
            # every packet is one slot (the common case): batches are runs of consecutive slots
            st.packets += nslots
            step = max(1, int(batch_slots))
            count = -(-nslots // step)
            if count > 1 and not dup_broadcast and getattr(lookup, "batch_free", False) is True:
                # a lookup that answers a run as it answers its batches: one call for them all
                st.batches += count
                sink.step = step
                _forward_batch(st, src, pool, flen, slice(0, nslots), None, hdr, lookup, dests,
                               dup_broadcast, sink, count)
                return st
            for a in range(0, nslots, step):
                st.batches += 1
                _forward_batch(st, src, pool, flen, slice(a, min(a + step, nslots)), None, hdr,
                               lookup, dests, dup_broadcast, sink)
            return st
        starts, nfr = packetize(flags)
        st.packets += int(starts.shape[0])
        for a, b in _batches(nfr, batch_slots):
            st.batches += 1
            _forward_batch(st, src, pool, flen, starts[a:b], nfr[a:b], hdr, lookup, dests,
                           dup_broadcast, sink)
        return st
    finally:
        sink.flush()


class _Pool:
    """Where each source slot's bytes are: row ``idx[i]`` of the sender's buffer pool, or row
    ``srow[i]`` of a scratch pool holding ``NS_INDIRECT`` payloads (``srow[i] >= 0``)."""

    def __init__(self, buffers: np.ndarray, idx: np.ndarray) -> None:
        self.main = buffers
        self.idx = idx
        self.scratch: np.ndarray | None = None
        self.srow: np.ndarray | None = None

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

    def direct(self, end: int) -> bool:
        """Whether bytes [0, end) of every packet can be read straight from the main pool
        through strided views (no NS_INDIRECT scratch, contiguous rows, long enough)."""
        return self.srow is None and self.main.strides[1] == 1 and end <= self.main.shape[1]

    def macs(self, slots, offset: int) -> tuple[np.ndarray, np.ndarray]:
        """The 6-byte fields at ``offset`` and ``offset + 6`` of each slot's buffer (the
        Ethernet destination and source) as 48-bit integers, byte 0 highest; two gathers of
        one 8-byte word per packet through strided views of the pool (see :meth:`direct`)."""
        rows = self.idx[slots]
        main = self.main
        return (main[:, offset:offset + 8].view(">u8")[:, 0][rows] >> _SHIFT16,
                main[:, offset + 6:offset + 14].view(">u8")[:, 0][rows] >> _SHIFT16)

    def gather(self, slots, start: int, stop: int) -> np.ndarray:
        """Bytes [start, stop) of the given source slots as a (k, stop - start) array."""
        if self.srow is None:
            return self.main[self.idx[slots], start:stop]
        slots = _as_array(slots)
        out = np.empty((slots.size, stop - start), dtype=np.uint8)
        sr = self.srow[slots]
        m = sr >= 0
        out[~m] = self.main[self.idx[slots[~m]], start:stop]
        assert self.scratch is not None   # set together with srow
        out[m] = self.scratch[sr[m], start:stop]
        return out

    def copy_to(self, dst_bufs: np.ndarray, dbuf: np.ndarray, slots, lens: np.ndarray,
                hi: int | None = None) -> None:
        """dst_bufs[dbuf[i], :lens[i]] = bytes of source slot slots[i] (few numpy copies)."""
        if self.srow is None:
            _copy_rows(dst_bufs, dbuf, self.main, self.idx[slots], lens, hi)
            return
        slots = _as_array(slots)
        sr = self.srow[slots]
        m = sr >= 0
        _copy_rows(dst_bufs, dbuf[~m], self.main, self.idx[slots[~m]], lens[~m])
        assert self.scratch is not None
        _copy_rows(dst_bufs, dbuf[m], self.scratch, sr[m], lens[m])


def _head(pool: _Pool, eth, off, head_len: np.ndarray) -> np.ndarray:
    """The first HEAD_BYTES bytes from byte ``off`` (an int, or one per packet) of slots
    ``eth``, zero past ``head_len``."""
    k = _count(eth)
    head = np.zeros((k, HEAD_BYTES), dtype=np.uint8)
    bsize = pool.main.shape[1]
    if isinstance(off, int):
        width = max(0, min(HEAD_BYTES, bsize - off))
        head[:, :width] = pool.gather(eth, off, off + width)
    else:
        for o in np.unique(off).tolist():   # the vnet header's offset and/or 0
            width = max(0, min(HEAD_BYTES, bsize - o))
            sel = np.flatnonzero(off == o)
            head[sel, :width] = pool.gather(eth[sel], o, o + width)
    short = head_len < HEAD_BYTES
    if short.any():
        head[short] *= np.arange(HEAD_BYTES)[None, :] < head_len[short][:, None]
    return head


def _lookup_batch(src, pool, flen, starts, nfr, hdr) -> LookupBatch:
    """The packets' MACs, lengths and (deferred) first bytes; the Ethernet header follows the
    vnet header, or starts the next fragment when the first one holds only the vnet header
    (as netmap)."""
    if nfr is None and pool.direct(hdr + 14):
        # one slot per packet: the Ethernet header is at byte ``hdr`` of every slot
        total = flen[starts]      # flen is private and no longer changes: a view will do
        if hdr:
            total = np.maximum(total - hdr, 0)
        head_len = np.minimum(total, HEAD_BYTES)
        head: np.ndarray | Callable[[], np.ndarray]
        if int(_MIN(head_len)) >= 12:
            dst, srcm = pool.macs(starts, hdr)
            head = lambda: _head(pool, starts, hdr, head_len)   # noqa: E731 - deferred gather
        else:   # bytes past a short frame's end read as zero
            head = _head(pool, starts, hdr, head_len)
            dst, srcm = mac_to_int(head[:, 0:6]), mac_to_int(head[:, 6:12])
    else:
        starts = _as_array(starts)
        eth = starts.copy()
        if nfr is None:
            nfr = np.ones(starts.shape, dtype=np.int64)
        off = np.full(starts.shape, hdr, dtype=np.int64)
        if hdr:
            alone = (flen[starts] == hdr) & (nfr > 1)
            eth[alone] += 1
            off[alone] = 0
        head_len = np.clip(flen[eth] - off, 0, HEAD_BYTES)
        cs = np.concatenate([[0], np.cumsum(flen)])
        total = np.maximum(cs[starts + nfr] - cs[starts] - hdr, 0)
        head = _head(pool, eth, off if hdr else 0, head_len)
        dst, srcm = mac_to_int(head[:, 0:6]), mac_to_int(head[:, 6:12])
    for arr in (dst, srcm, total, head_len) + ((head,) if isinstance(head, np.ndarray) else ()):
        arr.flags.writeable = False
    return LookupBatch(dst=dst, src=srcm, len=total, head=head, head_len=head_len,
                       src_port=int(src.port), src_ring=int(src.ring))


class LookupUnavailable(Exception):
    """Raised by the stand-in for a lookup that cannot run here; its text is the report."""


class LookupResultError(ValueError):
    """A lookup answered something other than one integer port (and ring) per packet."""


def _int_array(x, what: str, k: int) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != (k,):
        raise LookupResultError(f"lookup returned {what} of shape {a.shape} for {k} packets; "
                                f"need one integer per packet, shape ({k},)")
    if a.dtype.kind not in "iu" and a.size:
        raise LookupResultError(f"lookup returned {what} of dtype {a.dtype}; need integers")
    return a.astype(np.int64, copy=False)


def lookup_result(res, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A lookup's answer for ``k`` packets as (ports, rings or None), both (k,) int64.
    Anything else (a scalar, another length, floats, booleans) is a
    :class:`LookupResultError`: it is never broadcast."""
    rings = None
    if isinstance(res, tuple):
        if len(res) != 2:
            raise LookupResultError(f"lookup returned a tuple of {len(res)}; need ports or (ports, rings)")
        res, rings = res
        rings = _int_array(rings, "rings", k)
    return _int_array(res, "ports", k), rings


def _forward_batch(st, src, pool, flen, starts, nfr, hdr, lookup, dests, dup_broadcast, sink,
                   batches=1):
    """One batch: lookup, then delivery per destination ring through ``sink`` (``nfr`` None:
    one slot each). ``batches`` > 1: the packets of that many batches, for a ``batch_free``
    lookup (a failure drops them all and counts that many failed batches)."""
    k = _count(starts)
    lb = _lookup_batch(src, pool, flen, starts, nfr, hdr)
    refs = sys.getrefcount(lb)
    try:
        res = lookup(lb)
        ports, rings = lookup_result(res, k)
    except Exception as exc:  # noqa: BLE001 - a lookup's failure drops its batch, never the sync
        st.lookup_errors += batches
        st.lookup_dropped += k
        st.lookup_error = _describe_failure(lookup, exc)
        return
    if sys.getrefcount(lb) > refs:
        _ = lb.head   # the lookup kept the batch: gather its head now, before the buffers change
    if nfr is not None:
        too_long = nfr > abi.NETMAP_MAX_FRAGS
        if too_long.any():
            ports = np.where(too_long, NM_BDG_NOPORT, ports)
    nrx = dests.num_rx_rings
    sp = int(src.port)
    p, p_hi = int(_MIN(ports)), int(_MAX(ports))
    if p == p_hi:   # one destination for the whole batch: no grouping
        if p == NM_BDG_BROADCAST:
            active = np.asarray(dests.active, dtype=np.int64)
            others = active[active != sp].tolist()
            if not others:
                st.no_dest += k
            pre = (_Prepared.of(pool, flen, starts, flood=True)
                   if len(others) > 1 and _Prepared.can(pool, nfr) and not sink.holds(starts, nfr)
                   else None)
            for q in others:
                sink.group(q, 0, starts, nfr, pre)
            return
        if not (0 <= p < MAX_PORTS and p != sp and nrx[p] > 0):
            st.no_dest += k
            return
        if rings is None:
            sink.group(p, int(src.ring) % int(nrx[p]), starts, nfr)
            return
        r = np.mod(rings, int(nrx[p]))
        if int(r.min()) == int(r.max()):
            sink.group(p, int(r[0]), starts, nfr)
            return
    starts = _as_array(starts)
    nr = np.zeros(257, dtype=np.int64)   # RX rings per port number; 256 stands for any invalid one
    nr[:MAX_PORTS] = np.asarray(nrx, dtype=np.int64)[:MAX_PORTS]
    # unicast: a live port other than the sender
    live = nr > 0
    if 0 <= sp < MAX_PORTS:
        live[sp] = False
    pc = ports if p >= 0 and p_hi <= 256 else np.minimum(np.maximum(ports, -1), 256)
    uni_ok = live[pc]                    # (-1 indexes entry 256: not live either)
    bc = ports == NM_BDG_BROADCAST
    active = np.asarray(dests.active, dtype=np.int64)
    others = active[active != sp]
    u_pkt = np.flatnonzero(uni_ok)
    b_pkt = np.flatnonzero(bc)
    st.no_dest += int(k - u_pkt.size - (b_pkt.size if others.size else 0))
    u_port = ports[u_pkt]
    if rings is None:
        u_ring = (int(src.ring) % np.maximum(nr, 1))[u_port]
    else:
        u_ring = np.mod(rings[u_pkt], nr[u_port])
    if b_pkt.size and others.size:
        l_pkt = [u_pkt, np.tile(b_pkt, others.size)]
        l_port = [u_port, np.repeat(others, b_pkt.size)]
        l_ring = [u_ring, np.zeros(b_pkt.size * others.size, dtype=np.int64)]
        if dup_broadcast and u_pkt.size:
            pairs = np.unique(np.stack([u_port, u_ring], axis=1)[u_ring != 0], axis=0)
            for q, r in pairs:
                l_pkt.append(b_pkt)
                l_port.append(np.full(b_pkt.size, q, dtype=np.int64))
                l_ring.append(np.full(b_pkt.size, r, dtype=np.int64))
        d_pkt, d_port, d_ring = np.concatenate(l_pkt), np.concatenate(l_port), np.concatenate(l_ring)
    else:
        d_pkt, d_port, d_ring = u_pkt, u_port, u_ring
    if d_pkt.size == 0:
        return
    # group by destination ring, packets in order within each (only rings present are visited);
    # unicast alone is in packet order already, so a stable sort of the 12-bit group will do
    group = d_port * MAX_RINGS + d_ring
    if d_pkt is u_pkt:
        order = np.argsort(group.astype(np.uint16), kind="stable")
    else:
        order = np.argsort(group * (k + 1) + d_pkt, kind="stable")
    group, d_pkt = group[order], d_pkt[order]
    bounds = np.flatnonzero(np.diff(group)) + 1
    g_start = np.concatenate([[0], bounds])
    g_end = np.concatenate([bounds, [group.size]])
    d_start = starts[d_pkt]
    if _Prepared.can(pool, nfr):   # lengths and source rows of every group in one go
        every = _Prepared.of(pool, flen, d_start)
        his = np.maximum.reduceat(every.lens, g_start).tolist()
        for a, b, hi in zip(g_start.tolist(), g_end.tolist(), his):
            q, r = divmod(int(group[a]), MAX_RINGS)
            sink.group(q, r, d_start[a:b], None, every.part(a, b, hi))
        return
    for a, b in zip(g_start.tolist(), g_end.tolist()):
        q, r = divmod(int(group[a]), MAX_RINGS)
        sink.group(q, r, d_start[a:b], None if nfr is None else nfr[d_pkt[a:b]])


def _describe_failure(lookup, exc: BaseException) -> str:
    name = getattr(lookup, "__qualname__", None) or type(lookup).__name__
    mod = getattr(lookup, "__module__", None)
    who = f"{mod}:{name}" if mod else name
    if isinstance(exc, LookupUnavailable):
        return str(exc)
    if isinstance(exc, LookupResultError):
        return f"lookup {who}: {exc}"
    return f"lookup {who} raised {type(exc).__name__}: {exc}"


class _Prepared:
    """One-slot packets read once for several deliveries: their lengths, their rows in the
    sender's pool and the widest length. A flood (the same packets to several rings) also
    gathers their bytes once (rows at the widest length rounded up to 64) and copies every
    destination from there."""

    __slots__ = ("main", "lens", "src_rows", "hi", "w", "flood", "_data")

    def __init__(self, main: np.ndarray, lens: np.ndarray, src_rows: np.ndarray, hi: int,
                 flood: bool) -> None:
        self.main, self.lens, self.src_rows, self.hi, self.flood = main, lens, src_rows, hi, flood
        self.w = (hi + 63) & ~63
        self._data: np.ndarray | None = None

    @staticmethod
    def can(pool: _Pool, nfr) -> bool:
        """Whether the packets qualify: one slot each, all in the main pool, contiguous rows."""
        return nfr is None and pool.srow is None and pool.main.strides[1] == 1

    @classmethod
    def of(cls, pool: _Pool, flen: np.ndarray, sidx, flood: bool = False) -> _Prepared:
        lens = flen[sidx]
        return cls(pool.main, lens, pool.idx[sidx], int(lens.max()), flood)

    def part(self, a: int, b: int, hi: int) -> _Prepared:
        """Packets [a, b) of these, whose widest length is ``hi``."""
        return _Prepared(self.main, self.lens[a:b], self.src_rows[a:b], hi, self.flood)

    def copy(self, dbufs: np.ndarray, dbuf: np.ndarray, keep: int) -> np.ndarray:
        """Copy the first ``keep`` packets into rows ``dbuf`` of ``dbufs``; returns their
        lengths as the destination slots get them (0 where longer than its buffers)."""
        lens = self.lens[:keep]
        limit = dbufs.shape[1]
        if self.flood and 0 < self.w <= min(limit, self.main.shape[1]) and dbufs.strides[1] == 1:
            if self._data is None:
                self._data = _rows(self.main, self.w)[self.src_rows]
            _rows(dbufs, self.w)[dbuf] = self._data[:keep]
            return lens
        hi = self.hi
        if hi > limit:
            lens = np.where(lens > limit, 0, lens)
            hi = int(lens.max())
        _copy_rows(dbufs, dbuf, self.main, self.src_rows[:keep], lens, hi)
        return lens


class _Sink:
    """Where the packets of one :func:`forward` call go: each group is delivered to its
    destination RX ring in order, except that a run of one-slot packets in consecutive slots is
    held back while the next batch may continue it (same ring, next slots) and delivered as one
    when something else is delivered or the call ends. A bulk sender's txsync of 4095 slots
    then costs one lease, one copy and one publish and wake-up per destination instead of one
    per 1024-slot batch, and its receiver sees one larger batch. What fits is a prefix of the
    merged run: the outcome of netmap's per-batch deliveries when the receiver frees nothing
    in between. Rings with copy monitors are neither held nor given more than one batch at a
    time (netmap notifies their monitors per batch, which copy the most recent that fit).
    ``step``: batch size in slots when the groups come from one lookup call for several
    batches of one-slot packets (slot i is then in batch i // step), else None."""

    __slots__ = ("st", "dests", "pool", "flen", "src_hdr", "held", "step")

    def __init__(self, st: ForwardStats, dests: Destinations, pool: _Pool, flen: np.ndarray,
                 src_hdr: int) -> None:
        self.st, self.dests, self.pool, self.flen, self.src_hdr = st, dests, pool, flen, src_hdr
        self.held: dict[tuple[int, int], list] = {}   # (port, ring) -> [target, start, stop]
        self.step: int | None = None

    def holds(self, pstarts, pnfr) -> bool:
        """Whether packets ``pstarts`` may be held (then a flood need not prepare them)."""
        return pnfr is None and isinstance(pstarts, slice)

    def group(self, port: int, ring: int, pstarts, pnfr, pre=None) -> None:
        """The packets (first slots ``pstarts``, fragment counts ``pnfr`` or None for one slot
        each) of one destination RX ring, in order: copy what fits, count the rest as dropped.
        ``pre``: the same packets read once (:class:`_Prepared`)."""
        st = self.st
        m = _count(pstarts)
        if self.dests.hdr_len is not None and int(self.dests.hdr_len[port]) != self.src_hdr:
            st.dropped[port] += m      # no virtio-net header conversion (deviation)
            return
        target = self.dests.ring(port, ring)
        if target is None:
            st.dropped[port] += m
            return
        monitored = bool(getattr(target, "monitors", None))
        if pre is None and self.holds(pstarts, pnfr) and not monitored:
            run = self.held.get((port, ring))
            if run is not None and run[0] is target and run[2] == pstarts.start:
                run[2] = pstarts.stop
                return
            if run is not None:
                self.flush()
            self.held[(port, ring)] = [target, pstarts.start, pstarts.stop]
            return
        self.flush()
        if monitored and self.step is not None:
            for piece in self._batches(pstarts):
                self._deliver(port, ring, target, piece, pnfr, None)
            return
        self._deliver(port, ring, target, pstarts, pnfr, pre)

    def _batches(self, pstarts) -> list:
        """One-slot packets ``pstarts`` cut where their batch (slot // step) changes."""
        step = self.step
        assert step is not None
        if isinstance(pstarts, slice):
            a, b = pstarts.start, pstarts.stop
            cuts = [a] + list(range((a // step + 1) * step, b, step)) + [b]
            return [slice(x, y) for x, y in zip(cuts, cuts[1:])]
        cut = (np.flatnonzero(np.diff(pstarts // step)) + 1).tolist()
        return [pstarts[x:y] for x, y in zip([0] + cut, cut + [pstarts.shape[0]])]

    def flush(self) -> None:
        """Deliver the held runs; runs of the same packets (a flood) read them once."""
        if not self.held:
            return
        runs = list(self.held.items())
        self.held.clear()
        pre = None
        if len(runs) > 1 and _Prepared.can(self.pool, None):
            spans = {(a, b) for _, (_, a, b) in runs}
            if len(spans) == 1:
                a, b = spans.pop()
                pre = _Prepared.of(self.pool, self.flen, slice(a, b), flood=True)
        for (port, ring), (target, a, b) in runs:
            self._deliver(port, ring, target, slice(a, b), None, pre)

    def _deliver(self, port: int, ring: int, target: RxTarget, pstarts, pnfr, pre) -> None:
        st = self.st
        m = _count(pstarts)
        kept = _deliver(target, self.pool, self.flen, pstarts, pnfr, pre)
        st.delivered[port] += kept
        st.dropped[port] += m - kept
        if kept:
            st.touched.add((port, ring))


def _deliver(target: RxTarget, pool: _Pool, flen, pstarts, pnfr, pre=None) -> int:
    """Copy the packets that fit into ``target`` (a prefix, in order); returns how many.
    ``pre``: the packets' lengths and rows read beforehand (one-slot packets only)."""
    first, space = target.lease()
    filled = kept = nbytes = 0
    try:
        if pnfr is None:
            keep = min(_count(pstarts), int(space))
            if keep <= 0:
                return 0
            sidx = _prefix(pstarts, keep)
            total = keep
            fl: int | np.ndarray = _ONE_FRAG
        else:
            cum = np.cumsum(pnfr)
            keep = int(np.searchsorted(cum, space, side="right"))
            if keep == 0:
                return 0
            sidx, rep_nf, last = _expand(pstarts[:keep], pnfr[:keep])
            total = sidx.size
            fl = (rep_nf << abi.NS_PORT_SHIFT) | np.where(last, 0, _MF)
        slots = target.slots
        n = slots.shape[0]
        first = int(first)
        # destination slots [first, first + total) mod n: one slice, two when the run wraps
        cut = min(total, n - first)
        bi = slots["buf_idx"]
        dbuf = (bi[first:first + total].astype(np.intp) if cut == total else   # a private copy,
                np.concatenate((bi[first:], bi[:total - cut]), dtype=np.intp))  # validated once
        dbufs = target.buffers
        if int(_MAX(dbuf)) >= dbufs.shape[0]:
            dbuf[dbuf >= dbufs.shape[0]] = 0
        if pre is not None:
            lens = pre.copy(dbufs, dbuf, keep)
        else:
            lens = flen[sidx]
            hi = int(_MAX(lens))
            if hi > dbufs.shape[1]:
                lens = np.where(lens > dbufs.shape[1], 0, lens)
                hi = int(lens.max())
            pool.copy_to(dbufs, dbuf, sidx, lens, hi)
        ln, fg = slots["len"], slots["flags"]
        ln[first:first + cut] = lens[:cut]
        fg[first:first + cut] = fl if isinstance(fl, int) else fl[:cut]
        if cut < total:
            ln[:total - cut] = lens[cut:]
            fg[:total - cut] = fl if isinstance(fl, int) else fl[cut:]
        filled = total
        kept = keep
        nbytes = int(_ADD(lens))   # int64 lens: a native sum (a u64 accumulator casts, 10x slower)
        return keep
    finally:
        target.account(filled, nbytes, _count(pstarts) - kept)   # statistics, under the lease
        target.commit(filled)
