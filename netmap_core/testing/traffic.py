"""A traffic generator and a sink for tests of network functions: send K frames through a port,
collect frames from a port until a count or a timeout; both move whole batches per sync.

Works on any port of any backend (pipe ends, VALE ports, NICs). The generator owns the port's
TX rings while it sends, the sink its RX rings while it collects (no other user may move
their ``head``/``cur`` meanwhile). Frames must fit one buffer (no NS_MOREFRAG chains; see
:func:`netmap_core.testing.vale.send` for those).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from netmap_core.errors import InvalidRequestError
from netmap_core.port import POLLIN, POLLOUT, Port

__all__ = ["TrafficGenerator", "Sink", "frames_array"]


def frames_array(frames: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` as a zero-padded ``(k, widest)`` uint8 array and their lengths (one copy)."""
    lens = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
    rows = np.zeros((len(frames), int(lens.max(initial=0))), dtype=np.uint8)
    for i, f in enumerate(frames):
        rows[i, :len(f)] = np.frombuffer(f, dtype=np.uint8)
    return rows, lens


def _deadline(timeout: float) -> float:
    if not timeout >= 0:
        raise InvalidRequestError(22, f"timeout={timeout!r}: allowed seconds >= 0")
    return time.monotonic() + timeout


class TrafficGenerator:
    """Sends frames through TX ring ``ring`` of ``port``: fills every free slot at once, one
    txsync per batch, and waits (poll POLLOUT) while the ring is full.

    Cost: one copy of the payload into the ring, plus a few µs per batch; building the frame
    array costs one Python step per distinct frame (``repeat`` reuses the array).
    """

    def __init__(self, port: Port, ring: int = 0) -> None:
        self.port = port
        self.ring = port.tx_rings[ring]
        self.sent = 0

    def send(self, frames: Sequence[bytes], *, repeat: int = 1, timeout: float = 1.0) -> int:
        """Send ``frames`` ``repeat`` times in order; returns how many went out, fewer only when
        the ring stayed full for ``timeout`` seconds."""
        if repeat < 0:
            raise InvalidRequestError(22, f"repeat={repeat!r}: allowed 0 or more")
        rows, lens = frames_array(frames)
        if rows.shape[1] > self.ring.buf_size:
            raise InvalidRequestError(
                22, f"{self.ring.name}: a frame of {rows.shape[1]} bytes does not fit its "
                f"{self.ring.buf_size}-byte buffers; allowed up to {self.ring.buf_size}")
        total = len(frames) * repeat
        end = _deadline(timeout)
        done = 0
        while done < total:
            if self.ring.space() == 0:
                left = end - time.monotonic()
                if left <= 0 or not self.port.poll(POLLOUT, left) & POLLOUT:
                    break
                continue
            start = done % len(frames)
            k = min(self.ring.space(), len(frames) - start, total - done)
            self.ring.fill(data=rows[start:start + k], lengths=lens[start:start + k])
            self.port.txsync()
            done += k
        self.sent += done
        return done


class Sink:
    """Collects frames arriving on ``port``'s RX rings (all of them, in ring order per sync):
    takes every ready slot at once, releases them, and waits (poll POLLIN) in between.

    Cost: one copy of the payload out of the ring plus one ``bytes`` object per frame.
    """

    def __init__(self, port: Port) -> None:
        self.port = port
        self.received: list[bytes] = []

    def collect(self, count: int, timeout: float = 1.0) -> list[bytes]:
        """Frames received until ``count`` arrived or ``timeout`` seconds passed (then fewer),
        oldest first; also appended to :attr:`received`. Never takes more than ``count``."""
        if count < 0:
            raise InvalidRequestError(22, f"count={count!r}: allowed 0 or more")
        end = _deadline(timeout)
        got: list[bytes] = []
        self.port.rxsync()
        while True:
            for ring in self.port.rx_rings:
                batch = ring.ready(count - len(got))
                if len(batch):
                    data = batch.gather(0, int(batch.len.max()))
                    got += [bytes(row[:n]) for row, n in zip(data, batch.len.tolist())]
                    ring.advance(len(batch))
            if len(got) >= count:
                break
            left = end - time.monotonic()
            if left <= 0 or not self.port.poll(POLLIN, left) & POLLIN:
                break
        self.port.rxsync()  # hands the slots back now, not at the caller's next sync
        self.received += got
        return got
