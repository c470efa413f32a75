"""Counting what a tool moved and reporting it as netmap's pkt-gen does: a rate line every
report interval, a final ``Sent|Received N packets ...`` / ``Speed: ...`` summary, or JSON/CSV.

Counters are plain ints updated once per batch; the clock is read once per batch.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TextIO

__all__ = ["norm", "Summary", "Meter", "FORMATS"]

FORMATS = ("text", "json", "csv")
_UNITS = ("", "K", "M", "G", "T")


def norm(value: float, scaled: bool = True) -> str:
    """pkt-gen's number format: scaled by 1000 into K/M/G/T and printed ``%.3f`` with the unit
    (``3.844 M``), or ``%.0f`` unscaled (``-N``) with an empty unit (``3844123 ``)."""
    if not scaled:
        return f"{value:.0f} "
    i = 0
    while value >= 1000 and i < len(_UNITS) - 1:
        value /= 1000
        i += 1
    return f"{value:.3f} {_UNITS[i]}"


@dataclass(frozen=True)
class Summary:
    """What a run did, as the final report shows it. ``seconds`` is the span pkt-gen measures
    (TX: start to everything sent and reclaimed; RX: first packet to last)."""

    kind: str                  # "Sent" or "Received"
    packets: int
    bytes: int
    events: int                # batches that moved at least one packet
    size: int                  # the frame length asked for (-l)
    seconds: float
    extra: dict = field(default_factory=dict)   # mode-specific results (seq errors, latency)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def bps(self) -> float:
        return 8 * self.bytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def avg_batch(self) -> float:
        return self.packets / self.events if self.events else 0.0

    def text(self, scaled: bool = True) -> str:
        """pkt-gen's two final lines (``Sent nothing.`` when nothing moved)."""
        if not self.packets:
            return f"{self.kind} nothing."
        raw = self.bps + 8 * 24 * self.pps
        return (f"{self.kind} {self.packets} packets {self.bytes} bytes {self.events} events "
                f"{self.size} bytes each in {self.seconds:.2f} seconds.\n"
                f"Speed: {norm(self.pps, scaled)}pps Bandwidth: {norm(self.bps, scaled)}bps "
                f"(raw {norm(raw, scaled)}bps). Average batch: {self.avg_batch:.2f} pkts")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(pps=self.pps, bps=self.bps, avg_batch=self.avg_batch)
        return d


CSV_HEAD = "time,packets,bytes,pps,bps,avg_batch"


class Meter:
    """Counts packets, bytes and batches; prints a pkt-gen rate line every ``interval`` seconds
    (``0`` never) to ``out`` (text and JSON: stderr, as pkt-gen logs; CSV: a row per
    interval on stdout)."""

    def __init__(self, interval: float, fmt: str = "text", scaled: bool = True,
                 out: TextIO | None = None) -> None:
        self.packets = self.bytes = self.events = 0
        self.interval = interval
        self.fmt = fmt
        self.scaled = scaled
        self.out = out if out is not None else (sys.stdout if fmt == "csv" else sys.stderr)
        self.t0 = time.monotonic()
        self._last_t, self._last_p, self._last_b, self._last_e = self.t0, 0, 0, 0
        self._next = self.t0 + interval if interval > 0 else float("inf")
        # tick() without a time reads the clock every _stride calls, about 16 times an interval
        self._stride = self._skip = 1
        self._read_t = self.t0
        self._min_space: int | None = None
        if fmt == "csv":
            print(CSV_HEAD, file=self.out, flush=True)

    def add(self, packets: int, nbytes: int, space: int | None = None) -> None:
        """One batch of ``packets`` frames and ``nbytes`` bytes (``space``: ring room seen)."""
        self.packets += packets
        self.bytes += nbytes
        self.events += 1
        if space is not None and (self._min_space is None or space < self._min_space):
            self._min_space = space

    def totals(self, packets: int, nbytes: int, events: int, space: int | None = None,
               now: float | None = None) -> int:
        """A sender's or receiver's running totals (not increments), and for a sender its TX
        ring's free slots now; prints the rate line if due. Returns how many batches may pass
        before the next call: the clock stride of :meth:`tick`, so the loop counts in local
        variables and pays one call and one clock read every few batches, not a call every
        batch (each costs microseconds on an emulated CPU). ``min_space`` is then the least
        of these samples. ``now`` (after a wait): as ``tick(now)``; the next batch calls again."""
        self.packets, self.bytes, self.events = packets, nbytes, events
        if space is not None and (self._min_space is None or space < self._min_space):
            self._min_space = space
        if now is not None:
            self.tick(now)
            return 1
        if self.interval <= 0:
            return 1 << 12        # no rate lines: only the totals to keep
        self._skip = 1
        self.tick()
        return self._skip

    def tick(self, now: float | None = None) -> None:
        """Print the rate line when the interval has passed. Called without ``now`` (once a
        batch, by a sender), it reads the clock only every few calls, as many as keep the reads
        near 16 an interval (none without rate lines): in a VM whose clock source is not the
        TSC a clock read is a trip to the hypervisor, and it costs a sender ~10 % at 512-slot
        batches in the lab guest. The line then comes at most ~1/8 interval late."""
        if now is None:
            if self.interval <= 0:
                return
            self._skip -= 1
            if self._skip > 0:
                return
            now = time.monotonic()
            gap, self._read_t = now - self._read_t, now
            if gap < self.interval / 32:
                self._stride = min(self._stride * 2, 4096)
            elif gap > self.interval / 8:
                self._stride = max(self._stride // 2, 1)
            self._skip = self._stride
        else:
            self._stride = self._skip = 1   # after a wait: batches may come slower from now on
            self._read_t = now
        if now < self._next:
            return
        dt = now - self._last_t
        pk, by, ev = self.packets - self._last_p, self.bytes - self._last_b, self.events - self._last_e
        pps, bps = (pk / dt, 8 * by / dt) if dt > 0 else (0.0, 0.0)
        avg = pk / ev if ev else 0.0
        if self.fmt == "csv":
            print(f"{now - self.t0:.3f},{pk},{by},{pps:.0f},{bps:.0f},{avg:.2f}", file=self.out, flush=True)
        else:   # text and json: pkt-gen's line on stderr
            s = self.scaled
            print(f"{norm(pps, s)}pps ({norm(pk, s)}pkts {norm(bps, s)}bps in {dt * 1e6:.0f} usec) "
                  f"{avg:.2f} avg_batch {self._min_space if self._min_space is not None else 0} "
                  "min_space", file=self.out, flush=True)
        self._last_t, self._last_p, self._last_b, self._last_e = now, self.packets, self.bytes, self.events
        self._min_space = None
        self._next = now + self.interval

    def report(self, summary: Summary, out: TextIO | None = None) -> None:
        """The final report in the chosen format, on stdout."""
        out = out if out is not None else sys.stdout
        if self.fmt == "json":
            print(json.dumps(summary.as_dict(), sort_keys=True), file=out, flush=True)
        elif self.fmt == "csv":
            s = summary
            print(f"total,{s.packets},{s.bytes},{s.pps:.0f},{s.bps:.0f},{s.avg_batch:.2f}", file=out,
                  flush=True)
        else:
            print(summary.text(self.scaled), file=out, flush=True)
            for key, value in summary.extra.items():
                print(f"{key}: {value}", file=out, flush=True)
