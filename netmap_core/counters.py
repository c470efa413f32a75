"""Per-ring traffic counters as a backend reports them (running totals since the ring was
created): the record a backend's ``pynetmap.stats`` snapshot holds and ``pynetmap top`` reads.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RingCounters"]


@dataclass(frozen=True)
class RingCounters:
    """One ring's counters since the ring was created. ``port``: a pipe end (``pipeA{1``) or a
    VALE port (``vale0:p1``, its interface name after the colon); ``kind``: ``pipe`` or
    ``vale``; ``dir``: ``tx`` (slots the ring's txsyncs handed over) or ``rx`` (slots the ring
    was given); ``drops``: RX only, packets a switch meant for this ring that did not fit."""

    port: str
    kind: str
    switch: str | None
    dir: str
    ring: int
    slots: int
    bytes: int
    drops: int
