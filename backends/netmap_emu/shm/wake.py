"""How one process wakes another sleeping in poll on a ring: the sleeper's binding id in the
ring's waiter words (kring record), one byte into the sleeper's FIFO, and a fence between.

Sleep protocol (the sleeper, netmap_emu.binding): arm (write its id), fence, re-check the ring,
then block on its FIFO. Wake protocol (whoever published): publish the ring's indexes, fence,
read the waiter words, clear and wake each. The fences make "I sleep" and "ring published"
visible to each other, so a wakeup is never lost between a check and a block.
"""
from __future__ import annotations

import os
import threading

from . import kring

__all__ = ["fence", "arm", "disarm", "wake_binding", "wake_ring"]

_FENCE = threading.Lock()
#: per-process cache of write ends of other bindings' wake FIFOs: path -> fd
_FIFOS: dict[str, int] = {}


def fence() -> None:
    """A full memory barrier. Acquiring a lock executes a locked instruction, which x86 never
    reorders with later loads; without it a store ("I sleep" / "ring published") could be
    overtaken by the following load of the other side's word and both sides miss the wakeup."""
    _FENCE.acquire()
    _FENCE.release()


def arm(ks, w: int, bid: int) -> None:
    """Enter ``bid`` in a ring's waiter words starting at ``ks[w]`` (no-op if present). With
    all of them taken the sleeper relies on its bounded sleep slices."""
    free = -1
    for i in range(w, w + kring.N_WAITERS):
        v = ks[i]
        if v == bid:
            return
        if v == 0 and free < 0:
            free = i
    if free >= 0:
        ks[free] = bid


def disarm(ks, w: int, bid: int) -> None:
    """Remove ``bid`` from a ring's waiter words."""
    for i in range(w, w + kring.N_WAITERS):
        if ks[i] == bid:
            ks[i] = 0


def wake_binding(ns_dir: str, bid: int) -> None:
    """Write one wake byte into binding ``bid``'s FIFO (never blocks)."""
    path = f"{ns_dir}/wake.{bid}"
    for _ in range(2):  # a cached fd may point to an older FIFO of that name: reopen once
        fd = _FIFOS.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # gone, or no reader: its owner closed or died
                return
            _FIFOS[path] = fd
        try:
            os.write(fd, b"\x01")
            return
        except BlockingIOError:  # FIFO full: plenty of wake bytes already pending
            return
        except OSError:  # EPIPE: that reader is gone
            del _FIFOS[path]
            os.close(fd)


def wake_ring(ks, w: int, ns_dir: str) -> None:
    """Wake the bindings armed on a ring whose waiter words start at ``ks[w]``."""
    fence()
    for i in range(w, w + kring.N_WAITERS):
        bid = ks[i]
        if bid:
            ks[i] = 0
            wake_binding(ns_dir, bid)
