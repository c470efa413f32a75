"""A netmap ring as a view over any writable memory region: head/cur/tail, slots, buffers.

Pure: no syscalls. The ring owns nothing; the backend that mapped the region keeps it alive,
and a ring keeps its port's registration alive through its :class:`RingOwner` (once the port
is closed, every method raises :class:`~netmap_core.errors.ClosedPortError`).

Shared memory is not trusted: every index and length a method reads from it (head, cur, tail,
a slot's buf_idx and len) is checked against what the ring had when it was mapped (its
``num_slots``, the pool's buffer count, the buffer size) before it is used, and a bad value
is a :class:`~netmap_core.errors.CorruptRingError` naming the ring, the field, the value and
the legal range. A method reads each header word once, so a value changing underneath it
cannot slip past the check.

Ownership (netmap(4))::

    TX ring                                   RX ring
     [head, tail)  free slots: user fills       [head, tail)  received: user reads
     [tail, head)  owned by the kernel          [tail, head)  owned by the kernel
           one slot always stays empty: space() <= num_slots - 1

The user writes ``head`` (first slot it still owns) and ``cur`` (wake-up point); only a sync
moves ``tail``. Every method states its cost: the per-slot ones run a few hundred ns in
CPython; the batch ones cost a few µs per call plus a few ns per slot.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np

from . import abi
from .batch import move_slots
from .errors import ClosedPortError, CorruptRingError, InvalidRequestError, RingProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from mmap import mmap
    from typing import TypeAlias

    from numpy.typing import ArrayLike, DTypeLike

    #: memory a ring (or a port's netmap_if) can be a view of; it must be writable
    Region: TypeAlias = "np.ndarray | mmap | bytearray | memoryview"
    #: slot positions: a slice (no wrap) or an index array
    SlotSel: TypeAlias = "slice | np.ndarray"

_U8 = np.dtype(np.uint8)
_CHANGED_WORD = abi.NS_BUF_CHANGED << 16   # NS_BUF_CHANGED in a slot's len | flags << 16 word

__all__ = ["Ring", "RingOwner", "Batch", "Taken", "as_region"]

_HEAD, _CUR, _TAIL, _FLAGS = 5, 6, 7, 8  # u32 word indexes in the ring header


class RingOwner:
    """What a ring belongs to: ``closed`` turns True when the owner (a port) is closed, and
    ``keep`` (the port's registration) stays alive as long as one of its rings does. ``label``
    names the owner in errors. A ring built without an owner is never closed."""

    __slots__ = ("closed", "keep", "label")

    def __init__(self, keep: object = None, label: str = "") -> None:
        self.closed = False
        self.keep = keep
        self.label = label


_UNOWNED = RingOwner(None, "")


def _index(what: str, value: object) -> int:
    """``value`` as a Python int (numpy integers accepted), or InvalidRequestError."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidRequestError(
            22, f"{what}={value!r} is not an integer; pass an int") from None


def _as_frame(template: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A frame template as a 1-D uint8 array (a copy only when it is not one already)."""
    if isinstance(template, np.ndarray):
        if template.ndim != 1:
            raise InvalidRequestError(22, f"fill: template must be 1-D (one frame), got shape "
                                      f"{template.shape}")
        return template if template.dtype is _U8 else template.astype(np.uint8)
    return np.frombuffer(bytes(template), dtype=np.uint8)


def as_region(region: Region) -> np.ndarray:
    """A writable 1-D uint8 numpy array over ``region`` (mmap, bytearray, memoryview, ndarray)."""
    if isinstance(region, np.ndarray) and region.dtype == np.uint8 and region.ndim == 1:
        arr = region
    else:
        arr = np.frombuffer(region, dtype=np.uint8)
    if not arr.flags.writeable:
        raise InvalidRequestError(22, "region: read-only memory; a ring needs a writable region")
    return arr


@dataclass(frozen=True)
class Batch:
    """A snapshot of consecutive slots of one ring (taken by :meth:`Ring.ready`).

    ``slot_idx``, ``buf_idx`` and ``len`` are copies made when the batch was taken; payload
    bytes are reached through ``ring.buffers`` (zero copy) or :meth:`gather` (one copy).
    """

    ring: Ring
    slot_idx: np.ndarray
    buf_idx: np.ndarray
    len: np.ndarray

    def __len__(self) -> int:
        return int(self.slot_idx.shape[0])

    def gather(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Bytes ``[start, stop)`` of every buffer as a new ``(k, stop - start)`` array (copies)."""
        self.ring._live()
        stop = self.ring.buf_size if stop is None else stop
        return self.ring.buffers[self.buf_idx, start:stop]

    def read(self, offset: int, dtype: DTypeLike = "<u8") -> np.ndarray:
        """One ``dtype`` value per frame, from byte ``offset`` of each buffer (a new array)."""
        self.ring._live()
        return self.ring.field(offset, dtype)[self.buf_idx]

    def write(self, offset: int, values: ArrayLike, dtype: DTypeLike = "<u8") -> None:
        """Store one ``dtype`` value per frame (or one for all) at byte ``offset``."""
        self.ring._live()
        self.ring.field(offset, dtype)[self.buf_idx] = values

    def scatter(self, data: ArrayLike, start: int = 0) -> None:
        """Write ``data`` (``(k, w)`` or one ``(w,)`` row for all) at byte ``start`` of each buffer."""
        self.ring._live()
        data = np.asarray(data, dtype=np.uint8)
        width = data.shape[-1]
        if start < 0 or start + width > self.ring.buf_size:
            raise InvalidRequestError(
                22, f"scatter: bytes [{start}, {start + width}) exceed buffer size {self.ring.buf_size}")
        self.ring.buffers[self.buf_idx, start:start + width] = data


class Taken(NamedTuple):
    """What :meth:`Ring.take` counted and released."""

    slots: int
    packets: int   # complete packets: slots without NS_MOREFRAG
    nbytes: int    # the sum of the slots' len


class Ring:
    """One ``struct netmap_ring`` at ``offset`` inside ``region``.

    ``name`` only labels errors and ``repr``. All header and slot reads and writes go straight
    to shared memory, so the ring always shows what the kernel (or the emulator) last wrote.
    ``owner`` (a :class:`RingOwner`, given by the port) ties the ring to its port: the ring
    keeps the port's registration alive and refuses every use once the port is closed. The
    raw views (``slots``, ``buffers``, ``header``) are not guarded: after ``close()`` they
    show memory the port no longer owns.
    """

    __slots__ = (
        "name", "region", "offset", "num_slots", "buf_size", "ringid", "dir", "header",
        "slots", "buffers", "_words", "_nbufs", "_pool_off", "_pool_addr", "_bidx", "_lens", "_swords",
        "_shalves", "_owner", "__weakref__",
        "_lenflags", "_flags8", "_pattern",
    )

    def __init__(self, region: Region, offset: int, *, name: str = "ring",
                 owner: RingOwner | None = None) -> None:
        arr = as_region(region)
        size = arr.shape[0]
        if offset < 0 or offset % 8 or offset + abi.NETMAP_RING_SLOTS_OFFSET > size:
            raise InvalidRequestError(
                22, f"{name}: ring offset {offset} outside the {size}-byte region or misaligned")
        self.name = name
        self.region = arr
        self.offset = offset
        self._owner = _UNOWNED if owner is None else owner
        self.header = np.ndarray((), dtype=abi.netmap_ring, buffer=arr, offset=offset)
        n = int(self.header["num_slots"])
        if n < 1 or offset + abi.NETMAP_RING_SLOTS_OFFSET + n * abi.netmap_slot.itemsize > size:
            raise InvalidRequestError(
                22, f"{name}: num_slots={n} does not fit the region (1..max that fits)")
        bsize = int(self.header["nr_buf_size"])
        base = offset + int(self.header["buf_ofs"])
        if bsize < 1 or base < 0 or base + bsize > size:
            raise InvalidRequestError(
                22, f"{name}: buffer pool at region offset {base} (buf_ofs="
                f"{int(self.header['buf_ofs'])}, nr_buf_size={bsize}) lies outside the region")
        self.num_slots = n   # fixed here: a later write to the header's num_slots is ignored
        self.buf_size = bsize
        self.ringid = int(self.header["ringid"])
        self.dir = int(self.header["dir"])
        self.slots = np.ndarray((n,), dtype=abi.netmap_slot, buffer=arr,
                                offset=offset + abi.NETMAP_RING_SLOTS_OFFSET)
        self._nbufs = (size - base) // bsize
        self.buffers = np.ndarray((self._nbufs, bsize), dtype=np.uint8, buffer=arr, offset=base)
        self._pool_off = base
        self._pool_addr = self.buffers.__array_interface__["data"][0]
        self._bidx = self.slots["buf_idx"]
        self._lens = self.slots["len"]
        raw = memoryview(self.slots.view(np.uint8))
        self._swords = raw.cast("I")   # per-slot path: slot i's buf_idx is word 4i
        self._shalves = raw.cast("H")  # ... and its len is half-word 8i + 2
        self._words = arr[offset:offset + 40].data.cast("I")
        # len (low half) and flags (high half) of every slot as one u32: fill() stores both
        # with one numpy call per run of slots
        self._lenflags = np.ndarray((n,), dtype="<u4", buffer=arr,
                                    offset=offset + abi.NETMAP_RING_SLOTS_OFFSET + 4, strides=(16,))
        # the low byte of every slot's flags (NS_BUF_CHANGED, NS_MOREFRAG...): "is any set?" is
        # one strided copy and a bytes.count, far cheaper than a numpy mask and reduction on
        # cores that emulate vector instructions, and no dearer elsewhere
        self._flags8 = np.ndarray((n,), dtype=np.uint8, buffer=arr,
                                  offset=offset + abi.NETMAP_RING_SLOTS_OFFSET + 6, strides=(16,))
        self._pattern: tuple[int, memoryview] = (-1, memoryview(b"").cast("I"))   # see _holds

    # --- guards ----------------------------------------------------------------------------
    def _live(self) -> None:
        """Raise ClosedPortError once the owner (the port) is closed."""
        if self._owner.closed:
            raise self._dead()

    def _dead(self) -> ClosedPortError:
        return ClosedPortError(
            f"{self.name}: its port {self._owner.label!r} is closed, and a ring dies with its "
            "port; use the rings of a port opened again (port.tx_rings / port.rx_rings)")

    def _corrupt(self, field: str, value: int) -> CorruptRingError:
        """The error for header word ``field`` (head, cur or tail) read as ``value``."""
        n = self.num_slots
        if field == "tail":
            hint = ("Only a sync writes tail: txsync(), rxsync() or poll() restores it from "
                    "the kernel's copy.")
        else:
            hint = (f"Set ring.{field} to a slot in 0..{n - 1} (with rules='netmap' the next "
                    "sync resets it), or close and reopen the port.")
        return CorruptRingError(self.name, field, value,
                                f"0..{n - 1} (num_slots={n} when the ring was mapped)", hint)

    def _slot_error(self, field: str, slot: int, value: int) -> CorruptRingError:
        """The error for slot ``slot``'s ``buf_idx`` or ``len`` read as ``value``."""
        if field == "buf_idx":
            allowed = f"0..{self._nbufs - 1} (buffers in the mapping)"
        else:
            allowed = f"0..{self.buf_size} (the buffer size)"
        return CorruptRingError(
            self.name, f"slot[{slot}].{field}", value, allowed,
            "The slot was last written by its owner (this process or the peer that handed it "
            "over); write a valid value into it, or close and reopen the port.")

    def _hroom(self) -> tuple[int, int]:
        """(head, space()) from one read of each header word, both checked."""
        if self._owner.closed:
            raise self._dead()
        w = self._words
        h = w[_HEAD]
        t = w[_TAIL]
        n = self.num_slots
        if h >= n:
            raise self._corrupt("head", h)
        if t >= n:
            raise self._corrupt("tail", t)
        ret = t - h
        return h, (ret + n if ret < 0 else ret)

    def _set_head(self, h: int, k: int) -> None:
        """head = cur = ``h`` + ``k`` (wrapping); ``h`` was read and checked by the caller."""
        h += k
        if h >= self.num_slots:
            h -= self.num_slots
        w = self._words
        w[_HEAD] = h
        w[_CUR] = h

    def _slot_index(self, what: str, value: int) -> int:
        if value.__class__ is not int:
            value = _index(f"{self.name}: {what}", value)
        if not 0 <= value < self.num_slots:
            raise InvalidRequestError(
                22, f"{self.name}: {what}={value} is out of range; allowed: 0..{self.num_slots - 1} "
                f"(the ring has {self.num_slots} slots); pass a slot index, e.g. ring.next(i)")
        return value

    # --- indexes -------------------------------------------------------------------------
    @property
    def head(self) -> int:
        """First slot owned by the user (user-written). As read from shared memory: the
        methods check it, this property shows it as it is."""
        if self._owner.closed:
            raise self._dead()
        return self._words[_HEAD]

    @head.setter
    def head(self, value: int) -> None:
        if self._owner.closed:
            raise self._dead()
        if value.__class__ is not int or not 0 <= value < self.num_slots:
            value = self._slot_index("head", value)
        self._words[_HEAD] = value

    @property
    def cur(self) -> int:
        """Wake-up point: poll reports this ring ready when ``cur != tail`` (user-written)."""
        if self._owner.closed:
            raise self._dead()
        return self._words[_CUR]

    @cur.setter
    def cur(self, value: int) -> None:
        if self._owner.closed:
            raise self._dead()
        if value.__class__ is not int or not 0 <= value < self.num_slots:
            value = self._slot_index("cur", value)
        self._words[_CUR] = value

    @property
    def tail(self) -> int:
        """First slot owned by the kernel (kernel-written; read-only here)."""
        if self._owner.closed:
            raise self._dead()
        return self._words[_TAIL]

    @property
    def flags(self) -> int:
        """Ring flags (``NR_TIMESTAMP``, ``NR_FORWARD``), user-written."""
        if self._owner.closed:
            raise self._dead()
        return self._words[_FLAGS]

    @flags.setter
    def flags(self, value: int) -> None:
        if self._owner.closed:
            raise self._dead()
        self._words[_FLAGS] = self._u32("flags", value)

    @property
    def ts(self) -> float:
        """Timestamp of the last RX sync in seconds (``struct timeval``)."""
        self._live()
        t = self.header["ts"]
        return int(t["tv_sec"]) + int(t["tv_usec"]) * 1e-6

    @property
    def nbufs(self) -> int:
        """Number of buffers addressable through this ring's mapping."""
        return self._nbufs

    @property
    def closed(self) -> bool:
        """True once the ring's port is closed (every method then raises ClosedPortError)."""
        return self._owner.closed

    def _u32(self, field: str, value: int) -> int:
        if not 0 <= value <= 0xFFFFFFFF:
            raise RingProtocolError(self.name, field, value, "an unsigned 32-bit integer")
        return value

    def next(self, i: int) -> int:
        """The slot after ``i`` (wraps at ``num_slots``, which need not be a power of two).
        ``i`` must be a slot index (0..num_slots-1)."""
        if self._owner.closed:
            raise self._dead()
        if not 0 <= i < self.num_slots:
            self._slot_index("next: slot", i)
        i += 1
        return 0 if i == self.num_slots else i

    def space(self) -> int:
        """Slots in ``[head, tail)``: free slots on TX, received slots on RX (0..num_slots-1)."""
        if self._owner.closed:
            raise self._dead()
        w = self._words
        h = w[_HEAD]
        t = w[_TAIL]
        n = self.num_slots
        if h >= n or t >= n:
            raise self._corrupt("head" if h >= n else "tail", h if h >= n else t)
        t -= h
        return t + n if t < 0 else t

    @property
    def empty(self) -> bool:
        """True when ``head == tail`` (nothing to send into / nothing received)."""
        if self._owner.closed:
            raise self._dead()
        return self._words[_HEAD] == self._words[_TAIL]

    def tx_pending(self) -> bool:
        """TX only: slots handed over but not yet reclaimed (``next(tail) != head``)."""
        if self._owner.closed:
            raise self._dead()
        w = self._words
        t = w[_TAIL] + 1
        if t > self.num_slots:
            raise self._corrupt("tail", t - 1)
        return (0 if t == self.num_slots else t) != w[_HEAD]

    def advance(self, k: int) -> None:
        """Move ``head`` and ``cur`` forward by ``k`` slots (at most ``space()``).

        TX: publishes ``k`` filled slots for the next txsync. RX: returns ``k`` read slots.
        """
        if self._owner.closed:
            raise self._dead()
        w = self._words
        h = w[_HEAD]
        t = w[_TAIL]
        n = self.num_slots
        if h >= n or t >= n:
            raise self._corrupt("head" if h >= n else "tail", h if h >= n else t)
        room = t - h
        if room < 0:
            room += n
        if k.__class__ is not int:
            k = _index(f"{self.name}: advance", k)
        if not 0 <= k <= room:
            raise RingProtocolError(self.name, "advance", k, f"0..{room} (space())")
        h += k
        if h >= n:
            h -= n
        w[_HEAD] = h
        w[_CUR] = h

    # --- one slot at a time --------------------------------------------------------------
    # Costs below: CPU time per call in CPython 3.11 / numpy 2.4 on the development VM
    # (``python -m bench.profile_emu``); a bare Python loop over memoryviews of the same slots
    # spends ~0.19 µs per slot.
    def buf(self, i: int) -> np.ndarray:
        """Writable zero-copy view of the whole buffer of slot ``i`` (``buf_size`` bytes, a
        1-D uint8 numpy array). Cost: ~0.17 µs (per-packet path; in a loop :meth:`bufs` is
        cheaper)."""
        if self._owner.closed:
            raise self._dead()
        if i.__class__ is not int or not 0 <= i < self.num_slots:
            i = self._slot_arg(i)
        idx = self._swords[i << 2]
        if idx >= self._nbufs:
            raise self._slot_error("buf_idx", i, idx)
        return self.buffers[idx]

    def payload(self, i: int) -> np.ndarray:
        """Zero-copy view (1-D uint8 numpy array) of the first ``len`` bytes of slot ``i``'s
        buffer. Cost: ~0.3 µs (in a loop :meth:`payloads` is cheaper)."""
        if self._owner.closed:
            raise self._dead()
        if i.__class__ is not int or not 0 <= i < self.num_slots:
            i = self._slot_arg(i)
        idx = self._swords[i << 2]
        ln = self._shalves[(i << 3) + 2]
        if idx >= self._nbufs:
            raise self._slot_error("buf_idx", i, idx)
        if ln > self.buf_size:
            raise self._slot_error("len", i, ln)
        return self.buffers[idx, :ln]

    def bufs(self, k: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(i, buf(i))`` for the slots ``[head, head + k)`` in ring order (at most
        ``space()``; all of them when ``k`` is None): the per-packet loop without ``next()``.

        ``head`` and ``tail`` are read and checked once, by this call; each slot's ``buf_idx``
        is checked when the loop reaches it, and a closed port stops the loop with
        ClosedPortError. ``head`` does not move: ``advance(k)`` after the loop publishes (TX)
        or releases (RX) the slots. Cost: ~0.2 µs per slot (a loop calling ``buf(i)`` and
        ``next(i)``: ~0.28 µs; a bare loop over memoryviews of the slots and pool: ~0.19 µs).
        """
        h, room = self._hroom()
        return self._walk_bufs(h, room if k is None else self._limit("bufs: k", k, room))

    def payloads(self, k: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(i, payload(i))`` for the slots ``[head, head + k)`` in ring order (at most
        ``space()``; all when ``k`` is None): the receive loop without ``next()``. Checks as
        in :meth:`bufs`, plus each slot's ``len`` (at most ``buf_size``). Cost: ~0.3 µs per
        slot (``payload(i)`` plus ``next(i)``: ~0.4 µs; a bare memoryview loop: ~0.2 µs)."""
        h, room = self._hroom()
        return self._walk_payloads(h, room if k is None else self._limit("payloads: k", k, room))

    def _walk_bufs(self, i: int, k: int) -> Iterator[tuple[int, np.ndarray]]:
        """The loop of :meth:`bufs` from slot ``i`` (checked by the caller) over ``k <= space()``
        slots."""
        owner, words, buffers = self._owner, self._swords, self.buffers
        n, nbufs = self.num_slots, self._nbufs
        for _ in range(k):
            if owner.closed:
                raise self._dead()
            idx = words[i << 2]
            if idx >= nbufs:
                raise self._slot_error("buf_idx", i, idx)
            yield i, buffers[idx]
            i += 1
            if i == n:
                i = 0

    def _walk_payloads(self, i: int, k: int) -> Iterator[tuple[int, np.ndarray]]:
        """The loop of :meth:`payloads`, as :meth:`_walk_bufs` plus each slot's ``len``."""
        owner, words, halves, buffers = self._owner, self._swords, self._shalves, self.buffers
        n, nbufs, size = self.num_slots, self._nbufs, self.buf_size
        for _ in range(k):
            if owner.closed:
                raise self._dead()
            idx = words[i << 2]
            ln = halves[(i << 3) + 2]
            if idx >= nbufs:
                raise self._slot_error("buf_idx", i, idx)
            if ln > size:
                raise self._slot_error("len", i, ln)
            yield i, buffers[idx, :ln]
            i += 1
            if i == n:
                i = 0

    def _slot_arg(self, i: object) -> int:
        i = _index(f"{self.name}: slot", i)
        if not 0 <= i < self.num_slots:
            raise RingProtocolError(self.name, "slot", i, f"0..{self.num_slots - 1}")
        return i

    def set_len(self, i: int, length: int) -> None:
        """Per-packet: set slot ``i``'s ``len`` (checked against the buffer size). Cost:
        ~0.12 µs (a store into a hoisted ``slots["len"]`` view: ~0.04 µs, not checked)."""
        if self._owner.closed:
            raise self._dead()
        if i.__class__ is not int or not 0 <= i < self.num_slots:
            i = self._slot_arg(i)
        if length.__class__ is not int:
            length = _index(f"{self.name}: slot[{i}].len", length)
        if not 0 <= length <= self.buf_size:
            raise RingProtocolError(self.name, f"slot[{i}].len", length, f"0..{self.buf_size}")
        self._shalves[(i << 3) + 2] = length

    # --- batches -------------------------------------------------------------------------
    def _span(self, start: int, k: int) -> SlotSel:
        """Slots ``start .. start+k`` (wrapping); ``start < num_slots`` and ``k <= num_slots``."""
        n = self.num_slots
        if start + k <= n:
            return slice(start, start + k)
        return np.concatenate((np.arange(start, n), np.arange(0, start + k - n)))

    def field(self, offset: int, dtype: DTypeLike = "<u8") -> np.ndarray:
        """Zero-copy strided view: element ``i`` is the ``dtype`` value at byte ``offset`` of
        buffer ``i``. ``ring.field(14, "<u8")[batch.buf_idx]`` reads one header field of a
        whole batch (a few ns per frame); assigning through it writes them."""
        self._live()
        dt = np.dtype(dtype)
        if offset < 0 or offset + dt.itemsize > self.buf_size:
            raise InvalidRequestError(
                22, f"field: bytes [{offset}, {offset + dt.itemsize}) exceed buffer size {self.buf_size}")
        return np.ndarray((self._nbufs,), dtype=dt, buffer=self.region,
                          offset=self._pool_off + offset,
                          strides=(self.buf_size,))

    def _limit(self, what: str, limit: object, room: int) -> int:
        lim = limit if isinstance(limit, int) else _index(f"{self.name}: {what}", limit)
        if lim < 0:
            raise InvalidRequestError(
                22, f"{self.name}: {what}={lim} is negative; allowed: 0 or more (None: all)")
        return lim if lim < room else room

    def ready(self, limit: int | None = None) -> Batch:
        """The slots ``[head, tail)`` (at most ``limit``) as arrays; does not move ``head``.
        Every slot's ``buf_idx`` and ``len`` is checked (CorruptRingError names the first bad
        slot). Cost: a few µs per call, independent of the payload.
        """
        h, k = self._hroom()
        if limit is not None:
            k = self._limit("ready: limit", limit, k)
        n = self.num_slots
        if h + k <= n:
            idx = np.arange(h, h + k)
            bidx = self._bidx[h:h + k].astype(np.intp)
            lens = self._lens[h:h + k].copy()
        else:
            r = h + k - n
            idx = np.concatenate((np.arange(h, n), np.arange(r)))
            bidx = np.concatenate((self._bidx[h:], self._bidx[:r]), dtype=np.intp)
            lens = np.concatenate((self._lens[h:], self._lens[:r]))
        self._check_bufs(bidx, idx)
        if k and int(lens.max()) > self.buf_size:
            bad = int(np.argmax(lens > self.buf_size))
            raise self._slot_error("len", int(idx[bad]), int(lens[bad]))
        return Batch(self, idx, bidx, lens)

    def _check_bufs(self, bidx: np.ndarray, sel: SlotSel) -> None:
        if bidx.size and int(bidx.max()) >= self._nbufs:
            bad = int(np.argmax(bidx >= self._nbufs))
            slot = (sel.start + bad) if isinstance(sel, slice) else int(np.asarray(sel)[bad])
            raise self._slot_error("buf_idx", slot, int(bidx[bad]))

    def fill(self, k: int | None = None, *,
             template: bytes | bytearray | memoryview | np.ndarray | None = None,
             data: ArrayLike | None = None, lengths: ArrayLike | None = None,
             flags: int = 0, advance: bool = True, changed_only: bool = False) -> int:
        """Fill up to ``k`` free slots from ``head`` and (by default) publish them.

        Payload comes from ``template`` (one frame copied into every buffer) or ``data`` (a
        ``(k, w)`` uint8 array, row per slot); ``lengths`` (one int for all, or one per slot)
        overrides each slot's ``len`` (default: the payload width); every slot's ``flags``
        become ``flags``. Returns the number of slots filled, ``min(k, space())``.

        ``fill(k, lengths=L)`` publishes k slots of length L and touches no buffer (their
        ``buf_idx`` is neither read nor checked): the sender of frames built once. With
        ``changed_only=True`` the ``template`` is copied only into the buffers the kernel
        replaced (``NS_BUF_CHANGED`` set, e.g. by a pipe's buffer swap), as pkt-gen does; the
        other buffers are taken to hold it still.

        Cost: without payload one numpy store per run of slots (one, or two when the slots
        wrap); ``changed_only`` first compares the run's len and flags words with the ones it
        would write (one strided memoryview compare) and, when all match (a sender's ring after
        a lap: nothing was replaced or changed), writes nothing else; otherwise it looks at the
        run's flags (a strided copy of a byte per slot and a count), stores the words and, only
        if some slot is marked, masks, gathers and checks ``buf_idx`` and copies; a full
        payload adds a gather and check of the slots' ``buf_idx`` and one copy of the bytes.
        """
        # the common calls (an int k, flags 0, a uint8 template or an int length) take the
        # fewest steps: on an emulated CPU each Python line here costs about a microsecond
        h, room = self._hroom()
        if k is not None and k.__class__ is not int:
            k = _index(f"{self.name}: fill: k", k)
        if flags.__class__ is not int or not 0 <= flags <= 0xFFFF:
            flags = _index(f"{self.name}: fill: flags", flags)
            if not 0 <= flags <= 0xFFFF:
                raise InvalidRequestError(22, f"{self.name}: fill: flags={flags} is out of range; "
                                          "allowed: 0..0xffff (NS_* bits of a slot)")
        if data is not None:
            data = np.asarray(data, dtype=np.uint8)
            if data.ndim != 2:
                raise InvalidRequestError(22, f"fill: data must be 2-D (k, width), got shape {data.shape}")
            k = data.shape[0] if k is None else min(k, data.shape[0])
            width = data.shape[1]
        elif template is not None:
            if template.__class__ is not np.ndarray or template.dtype is not _U8:
                template = _as_frame(template)
            width = template.shape[0]
        else:
            width = 0
        if changed_only and (template is None or data is not None):
            raise InvalidRequestError(22, f"{self.name}: fill: changed_only=True refills replaced "
                                      "buffers from a template; pass template= (and no data=)")
        if k is None or k > room:
            k = room
        if width > self.buf_size:
            raise InvalidRequestError(22, f"fill: frame width {width} exceeds buffer size {self.buf_size}")
        if k <= 0:
            return 0
        word = width | flags << 16 if lengths is None else self._len_word(lengths, flags, k)
        n = self.num_slots
        e = h + k
        runs: tuple[tuple[int, int], ...] = ((h, e),) if e <= n else ((h, n), (0, e - n))
        if changed_only:
            if e <= n and word.__class__ is int and not word & _CHANGED_WORD and self._holds(h, e, word):
                runs = ()    # every slot holds this len and flags already, none marked replaced
            for a, b in runs:
                if self._any_flags(a, b):
                    self._refill(a, b, cast(np.ndarray, template), width)
        elif data is not None or template is not None:
            sel = self._span(h, k)
            bidx = self._bidx[sel].astype(np.intp)
            self._check_bufs(bidx, sel)
            self.buffers[bidx, :width] = data[:k] if data is not None else template
        if isinstance(word, int):
            for a, b in runs:
                self._lenflags[a:b] = word
        else:
            self._lenflags[h:min(e, n)] = word[:n - h]
            if e > n:
                self._lenflags[:e - n] = word[n - h:]
        if advance:
            self._set_head(h, k)
        return k

    def prepare_fill(self, template: bytes | bytearray | memoryview | np.ndarray) -> Callable[[int], int]:
        """``fill(k, template=template, changed_only=True)`` as a function of ``k`` alone, with
        the template converted and checked once: the loop of a sender of one frame.

        A call reads head and tail (both checked), compares the len and flags words of the
        ``min(k, space())`` slots from head with the template's (one strided memoryview
        compare) and, when all match and the run does not wrap, publishes them: head and cur
        move past them, nothing else is written. Otherwise it is that ``fill()`` call (the
        first lap, a buffer replaced, a wrap, another length). Returns the slots published.
        Cost: three short Python calls (this one, the header check and the head move fill()
        also makes), half of ``fill()``'s: for 512 slots that hold the word, 1.0 against 1.5 µs
        on an x86 host, 15 against 28 µs on an emulated CPU.
        """
        frame = _as_frame(template)
        width = frame.shape[0]
        if width > self.buf_size:
            raise InvalidRequestError(22, f"{self.name}: prepare_fill: template width {width} "
                                      f"exceeds the buffer size {self.buf_size}")
        n, swords, pattern = self.num_slots, self._swords, self._full_pattern(width)
        hroom, set_head, fill = self._hroom, self._set_head, self.fill

        def fill_k(k: int) -> int:
            h, room = hroom()
            if k.__class__ is not int:
                k = _index(f"{self.name}: fill: k", k)
            if k > room:
                k = room
            if k <= 0:
                return 0
            e = h + k
            if e > n or swords[4 * h + 1:4 * e + 1:4] != pattern[:k]:
                return fill(k, template=frame, changed_only=True)
            set_head(h, k)
            return k

        return fill_k

    def _refill(self, a: int, b: int, template: np.ndarray, width: int) -> None:
        """Copy ``template`` into the buffers of slots ``[a, b)`` marked NS_BUF_CHANGED."""
        changed = self._lenflags[a:b] & _CHANGED_WORD
        if changed.any():
            where = np.flatnonzero(changed) + a
            bidx = self._bidx[where].astype(np.intp)
            self._check_bufs(bidx, where)
            self.buffers[bidx, :width] = template

    def _holds(self, a: int, b: int, word: int) -> bool:
        """True if every slot of ``[a, b)`` has ``len | flags << 16 == word``: one strided
        memoryview compare against ``b - a`` copies of the word, which runs far less code than
        a numpy slice and copy or reduction (on an emulated CPU the code run is what a batch
        costs)."""
        return self._swords[4 * a + 1:4 * b + 1:4] == self._full_pattern(word)[:b - a]

    def _full_pattern(self, word: int) -> memoryview:
        """``num_slots`` copies of the u32 ``word``, kept for the next call with the same word."""
        pat = self._pattern
        if pat[0] != word:
            pat = self._pattern = (word, memoryview(word.to_bytes(4, "little") * self.num_slots).cast("I"))
        return pat[1]

    def _any_flags(self, a: int, b: int) -> bool:
        """True if a slot of ``[a, b)`` has a bit of its flags' low byte set (NS_BUF_CHANGED,
        NS_MOREFRAG, ...); False means none of them needs a closer look."""
        return self._flags8[a:b].tobytes().count(0) != b - a

    def _len_word(self, lengths: ArrayLike, flags: int, k: int) -> int | np.ndarray:
        """``len | flags << 16`` for fill() with ``lengths``: one int, or one u32 per slot;
        lengths checked."""
        bs = self.buf_size
        if type(lengths) is int:
            ln = lengths
        else:
            arr = np.asarray(lengths)
            if arr.ndim == 0:
                ln = _index(f"{self.name}: fill: lengths", arr.item())
            else:
                if arr.ndim != 1 or arr.shape[0] < k or arr.dtype.kind not in "iu":
                    raise InvalidRequestError(
                        22, f"{self.name}: fill: lengths has shape {arr.shape} and dtype "
                        f"{arr.dtype}; allowed: one int, or {k} or more integers (one per slot)")
                arr = arr[:k]
                lo, hi = int(arr.min()), int(arr.max())
                if lo < 0 or hi > bs:
                    raise InvalidRequestError(22, f"{self.name}: fill: lengths holds "
                                              f"{lo if lo < 0 else hi}; allowed: 0..{bs} "
                                              "(the buffer size)")
                word = arr.astype(np.uint32)
                if flags:
                    word |= flags << 16
                return word
        if not 0 <= ln <= bs:
            raise InvalidRequestError(22, f"{self.name}: fill: lengths={ln} is out of range; "
                                      f"allowed: 0..{bs} (the buffer size)")
        return ln | flags << 16

    def release(self, limit: int | None = None) -> int:
        """Move ``head`` and ``cur`` past up to ``limit`` slots of ``[head, tail)`` (all with
        None) without looking at them; returns how many. RX: gives received slots back to the
        kernel at the next rxsync; TX: publishes free slots as they are. One read of head and
        tail, both checked; no numpy call."""
        h, room = self._hroom()
        k = room if limit is None else self._limit("release: limit", limit, room)
        if k:
            self._set_head(h, k)
        return k

    def take(self, limit: int | None = None) -> Taken:
        """RX: count up to ``limit`` received slots from ``head`` (all with None) and release
        them. Returns :class:`Taken`: slots, packets (slots without ``NS_MOREFRAG``, i.e.
        the last slot of each packet, as pkt-gen counts) and bytes (the sum of ``len``; every
        ``len`` is checked against the buffer size). Buffers are not looked at. Cost: about
        six numpy calls per run of slots (one, or two when they wrap), no Batch; when every
        slot of a run that does not wrap has the first one's len and flags 0 (traffic of one
        frame size), one strided memoryview compare instead."""
        h, room = self._hroom()
        k = room if limit is None else self._limit("take: limit", limit, room)
        if k <= 0:
            return Taken(0, 0, 0)
        n = self.num_slots
        e = h + k
        if e <= n:
            word = self._swords[4 * h + 1]          # len | flags << 16 of the first slot
            # flags 0 and len within the buffer, and so every slot of the run
            if word <= self.buf_size and self._holds(h, e, word):
                self._set_head(h, k)
                return Taken(k, k, k * word)
        frags = nbytes = 0
        bit = abi.NS_MOREFRAG << 16
        for a, b in ((h, e),) if e <= n else ((h, n), (0, e - n)):
            lens = self._lens[a:b]
            if int(lens.max()) > self.buf_size:
                bad = int(np.argmax(lens > self.buf_size))
                raise self._slot_error("len", a + bad, int(lens[bad]))
            nbytes += int(lens.sum(dtype=np.int64))
            if self._any_flags(a, b):
                frags += int(np.count_nonzero(self._lenflags[a:b] & bit))
        self._set_head(h, k)
        return Taken(k, k - frags, nbytes)

    def same_pool(self, other: Ring) -> bool:
        """True when both rings address one buffer pool, so buffers can be swapped between them."""
        return self._pool_addr == other._pool_addr and self.buf_size == other.buf_size

    def forward(self, dst: Ring, limit: int | None = None, *, copy: bool | None = None) -> int:
        """Move ready slots of this ring into free slots of ``dst`` and advance both heads.

        Zero copy when both rings share a buffer pool: ``buf_idx`` is swapped, ``len`` copied
        and ``NS_BUF_CHANGED`` set on both slots (netmap's bridge). Otherwise (or with
        ``copy=True``) the payload bytes are copied. Returns the number of slots moved.
        """
        sh, sroom = self._hroom()
        dh, droom = dst._hroom()
        if copy is None:
            copy = not self.same_pool(dst)
        elif not copy and not self.same_pool(dst):
            raise InvalidRequestError(22, f"forward: {self.name} and {dst.name} do not share a buffer pool")
        k = min(sroom, droom)
        if limit is not None:
            k = self._limit("forward: limit", limit, k)
        if k <= 0:
            return 0
        move_slots(self, self._span(sh, k), dst, dst._span(dh, k), copy=copy)
        self._set_head(sh, k)
        dst._set_head(dh, k)
        return k

    # --- pictures ------------------------------------------------------------------------
    def describe(self, width: int = 64) -> str:
        """An ASCII picture of ownership: ``u`` user slots [head, tail), ``.`` kernel slots.
        Indexes out of range are shown as they are (and no slot as the user's)."""
        self._live()
        w = self._words
        n, h, c, t = self.num_slots, w[_HEAD], w[_CUR], w[_TAIL]
        ok = h < n and t < n
        cells = min(n, width)
        row = []
        for j in range(cells):
            i = j * n // cells
            user = ((i - h) % n) < ((t - h) % n) if ok else False
            row.append("u" if user else ".")
        space = (t - h) % n if ok else "? (corrupt)"
        return (f"[{''.join(row)}]  head={h} cur={c} tail={t} space={space} "
                f"of {n} ({'TX' if self.dir == abi.NR_TX else 'RX'})")

    def __repr__(self) -> str:
        kind = "TX" if self.dir == abi.NR_TX else "RX"
        if self._owner.closed:
            return f"<Ring {self.name} {kind}{self.ringid} slots={self.num_slots} closed>"
        w = self._words
        n, h, t = self.num_slots, w[_HEAD], w[_TAIL]
        space = (t - h) % n if h < n and t < n else "?"
        return (f"<Ring {self.name} {kind}{self.ringid} slots={n} head={h} "
                f"cur={w[_CUR]} tail={t} space={space}>")
