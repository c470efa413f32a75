"""asyncio over a port's rings: ``async for`` over received batches, ``await send`` with back-pressure.

No I/O of its own: waiting is :meth:`Port.wait` (the port's descriptor in the event loop), the
rest is the ring API (:meth:`Ring.ready`, :meth:`Ring.fill`, :meth:`Ring.advance`).

    async for batch in receive(rx_port, limit=256):    # buffers are yours until the next one
        handle(batch.gather(0, 64))
    sent = await send(tx_port, frames)                 # waits for room instead of failing
"""
from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence, Sized
from itertools import islice

import numpy as np

from .errors import InvalidRequestError
from .port import POLLIN, POLLOUT, Port
from .ring import Batch, Ring

__all__ = ["receive", "send", "FillFn"]

#: ``fill(ring, room) -> n``: fill ``n <= room`` slots from ``ring.head``, advance ``head`` over
#: exactly those, return ``n`` (0 ends the send). ``ring.fill(room, template=f)`` is one.
FillFn = Callable[[Ring, int], int]


def _count(what: str, value: object) -> int | None:
    """``value`` as a positive slot count, None for "no limit", else InvalidRequestError."""
    if value is None:
        return None
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidRequestError(
            22, f"{what}={value!r} is not an integer; allowed: None or an int >= 1") from None
    if n < 1:
        raise InvalidRequestError(22, f"{what}={n} is too small; allowed: None or an int >= 1")
    return n


def _rings(port: Port, rings: Sequence[Ring] | None, kind: str) -> tuple[Ring, ...]:
    bound = port.rx_rings if kind == "RX" else port.tx_rings
    chosen = bound if rings is None else tuple(rings)
    if not chosen:
        raise InvalidRequestError(
            22, f"{port.spec.text}: rings=() has no {kind} ring; allowed: rings of the port "
            f"({len(bound)} {kind} bound)")
    return chosen


async def receive(port: Port, *, limit: int | None = None,
                  rings: Sequence[Ring] | None = None) -> AsyncIterator[Batch]:
    """Yield the received slots of ``port`` one ring-batch at a time, waiting without blocking
    the loop (:meth:`Port.wait` for POLLIN) when nothing is there.

    Each batch is :meth:`Ring.ready` of one RX ring: its slots ``[head, head + len)``, at most
    ``limit`` of them (None: every ready slot). Ownership: the batch's slots and buffers belong
    to the consumer from the moment it is yielded until the consumer asks for the next batch;
    then this generator advances ``head`` and ``cur`` over it, which releases the slots to the
    port at the next sync. Leaving the loop (``break``, an exception) releases the last batch
    when the generator is closed: wrap it in ``contextlib.aclosing`` to make that immediate,
    and do not touch the batch afterwards. One receiver per ring at a time.

    ``rings``: which RX rings (default all bound ones, taken in turn). A close of the port
    from another task ends the loop with ClosedPortError. Cost per batch: :meth:`Ring.ready`
    (a few µs) plus one event-loop pass, independent of its size; a wait is a sync and an
    epoll registration.
    """
    import asyncio  # late, as in Port.wait: asyncio loads subprocess, which the core must not

    lim = _count("receive: limit", limit)
    chosen = _rings(port, rings, "RX")
    pending: tuple[Ring, int] | None = None
    try:
        while True:
            got = False
            for ring in chosen:
                if ring.empty:
                    continue
                batch = ring.ready(lim)
                pending = (ring, len(batch))
                got = True
                yield batch
                ring.advance(len(batch))   # the consumer asked for the next one: release
                pending = None
            if not got:
                await port.wait(POLLIN)    # rxsync: hands released slots back, picks up new ones
            else:
                await asyncio.sleep(0)     # a busy port must not starve the other tasks
    finally:
        if pending is not None and not port.closed:
            ring, k = pending
            if k <= ring.space():
                ring.advance(k)


def _filled(n: object, ring: Ring, room: int) -> int:
    """A fill function's answer, checked: the slots it filled and advanced over (0..room)."""
    try:
        k = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        k = -1
    if not 0 <= k <= room:
        raise InvalidRequestError(
            22, f"send: the fill function returned {n!r} for {ring.name} with room={room}; "
            f"allowed: an int 0..{room}, the slots it filled and advanced over")
    return k


def _fill_frames(frames: Iterator[bytes | bytearray | memoryview]) -> FillFn:
    """A FillFn taking frames one by one from ``frames`` (per-packet path, ~3 µs a frame)."""
    def fill(ring: Ring, room: int) -> int:
        n = 0
        i = ring.head
        for f in islice(frames, room):
            buf = ring.buf(i)
            view = memoryview(f).cast("B")
            if view.nbytes > buf.shape[0]:
                raise InvalidRequestError(
                    22, f"send: frame of {view.nbytes} bytes exceeds buffer size {buf.shape[0]}; "
                    f"allowed: 0..{buf.shape[0]} bytes per frame")
            buf[:view.nbytes] = np.frombuffer(view, dtype=np.uint8)
            ring.slots["len"][i] = view.nbytes
            ring.slots["flags"][i] = 0
            i = ring.next(i)
            n += 1
        if n:
            ring.advance(n)
        return n
    return fill


def _fill_array(data: np.ndarray, lengths: np.ndarray | None) -> FillFn:
    """A FillFn copying rows of a ``(k, w)`` uint8 array in ring-sized batches."""
    state = [0]

    def fill(ring: Ring, room: int) -> int:
        start = state[0]
        stop = min(start + room, data.shape[0])
        n = ring.fill(data=data[start:stop],
                      lengths=None if lengths is None else lengths[start:stop])
        state[0] = start + n
        return n
    return fill


async def send(port: Port,
               frames: FillFn | np.ndarray | Iterable[bytes | bytearray | memoryview], *,
               count: int | None = None, lengths: np.ndarray | None = None,
               rings: Sequence[Ring] | None = None) -> int:
    """Hand frames to ``port``'s TX rings, awaiting room (POLLOUT) whenever they are full:
    back-pressure instead of a failure or a busy loop. Returns how many slots were handed over
    (txsync done); the kernel sends them on its own schedule.

    ``frames`` is one of: a ``(k, w)`` uint8 array, one row per frame (batched: a few µs per
    ring-full plus the copy, ~0.03 µs a 60 B frame; ``lengths`` may shorten each); an
    iterable of bytes-like frames (per-packet, ~3 µs a frame; an iterator is consumed only as
    far as frames were sent); or a :data:`FillFn` called with each ring's free room (batched,
    the fast path). ``count`` caps the total. An array or a sized collection ends the send
    when its last frame is handed over; an iterator or a FillFn ends when it has nothing
    more (or at ``count``), which the send learns only when a ring has room again: give
    ``count`` to finish at once.

    Ownership: slots ``[head, tail)`` of a TX ring are the sender's; only filled slots are
    advanced over, and each fill is one synchronous step. A cancellation (or a close from
    another task, which raises ClosedPortError) can only land in the wait for room, so the
    ring is then consistent: ``head == cur`` just past the last filled slot and everything
    before it already txsync'ed. Frames keep their order within a ring; with several TX rings
    (default: every bound one, filled in turn) they are spread across them. With ``rings`` a
    subset, a port whose other rings have room reports POLLOUT at once: the send then yields
    to the loop and tries again (a busy wait); bind a single ring instead.
    """
    import asyncio

    total = _count("send: count", count)
    chosen = _rings(port, rings, "TX")
    if callable(frames):
        fill: FillFn = frames
    elif isinstance(frames, np.ndarray):
        if frames.ndim != 2:
            raise InvalidRequestError(
                22, f"send: frames array of shape {frames.shape}; allowed: 2-D (frames, width) uint8")
        data = frames.astype(np.uint8, copy=False)
        lens = None if lengths is None else np.asarray(lengths)
        fill = _fill_array(data, lens)
        total = data.shape[0] if total is None else min(total, data.shape[0])
    elif isinstance(frames, (bytes, bytearray, memoryview)):
        raise InvalidRequestError(
            22, f"send: frames is one {type(frames).__name__} object; allowed: a list (or other "
            "iterable) of frames, a (frames, width) uint8 array or a fill function")
    else:
        if isinstance(frames, Sized):   # known length: end without waiting for room first
            total = len(frames) if total is None else min(total, len(frames))
        fill = _fill_frames(iter(frames))
    if lengths is not None and not isinstance(frames, np.ndarray):
        raise InvalidRequestError(22, "send: lengths= applies only to a frames array; "
                                      "allowed: None with frames given as bytes or a FillFn")
    sent = 0
    while total is None or sent < total:
        progress = False
        for ring in chosen:
            room = ring.space()
            if total is not None:
                room = min(room, total - sent)
            if room <= 0:
                continue
            n = _filled(fill(ring, room), ring, room)
            if n == 0:
                port.txsync()
                return sent
            sent += n
            progress = True
            if total is not None and sent >= total:
                break
        if progress:
            port.txsync()          # hand these over now: the peer works while we wait
            await asyncio.sleep(0)
        else:
            await port.wait(POLLOUT)   # txsync inside: reclaims the slots the peer consumed
    return sent
