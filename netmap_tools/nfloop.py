"""What the packet-forwarding tools (bridge, lb) share: waiting on several ports at once, a stop
flag set by Ctrl-C or SIGTERM, and periodic rate lines.

Waiting sleeps in select() on the ports' descriptors for at most ``tick`` seconds, then syncs;
a wake-up that slipped by costs at most one tick, never a hang.
"""
from __future__ import annotations

import select
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import netmap_core
from netmap_core import POLLIN

__all__ = ["stopping", "wait_any", "Rates"]


@contextmanager
def stopping() -> Iterator[list[bool]]:
    """A one-element flag list that turns True on SIGINT or SIGTERM (restored at exit)."""
    flag = [False]

    def handler(signum: int, frame: object) -> None:
        flag[0] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def wait_any(ports: Sequence[netmap_core.Port], tick: float) -> None:
    """Block until one of ``ports`` may have news (or ``tick`` seconds), then poll each without
    waiting (which syncs its rings)."""
    for p in ports:
        if p.poll(POLLIN, 0):
            return
    try:
        select.select([p.fileno() for p in ports], [], [], tick)
    except InterruptedError:
        pass
    for p in ports:
        p.poll(POLLIN, 0)


class Rates:
    """Rate lines every ``interval`` seconds on stderr: one count per named direction."""

    def __init__(self, names: Sequence[str], interval: float) -> None:
        self.names = list(names)
        self.counts = dict.fromkeys(self.names, 0)
        self.dropped = 0
        self.interval = interval
        self.t0 = self._t = time.monotonic()
        self._last = dict(self.counts)
        self._next = self._t + interval if interval > 0 else float("inf")

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        dt = now - self._t
        parts = [f"{n} {(self.counts[n] - self._last[n]) / dt / 1e3:.1f} Kpps" for n in self.names]
        print(" | ".join(parts) + f" | dropped {self.dropped}", file=sys.stderr, flush=True)
        self._t, self._last, self._next = now, dict(self.counts), now + self.interval
