"""``pynetmap replay``: send the frames of a pcap/pcapng file out of a port at their original
timing (optionally sped up), at a fixed packet or bit rate, or at top speed, once or in loops.

The file is read once into one numpy array (a row per frame); each round sends, in one batch,
every frame whose time has come (``Ring.fill`` copies the rows into the slots). Timing is as
good as the sleep between rounds (about 0.1 ms); frames due together leave together.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import netmap_core
from netmap_core import POLLOUT
from netmap_core.errors import InvalidRequestError, NetmapError

from .nfloop import stopping
from .pcapio import read_frames

__all__ = ["HELP", "schedule", "main"]

HELP = "send a pcap/pcapng file out of a port: original timing, fixed rate, or top speed"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynetmap replay", description=HELP + ".",
                                epilog="Ctrl-C stops with a summary.")
    p.add_argument("-i", dest="port", required=True, help="port; a bare name gets netmap: prepended")
    p.add_argument("-r", dest="file", required=True, help="pcap or pcapng file")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--multiplier", type=float, default=1.0,
                      help="original timing sped up this many times (default 1)")
    rate.add_argument("--pps", type=float, default=0.0, help="fixed packets per second")
    rate.add_argument("--mbps", type=float, default=0.0, help="fixed megabits per second (frame bytes)")
    rate.add_argument("-t", "--topspeed", action="store_true", help="as fast as the port takes them")
    p.add_argument("-l", "--loop", type=int, default=1, help="times through the file (0: until Ctrl-C)")
    p.add_argument("-b", dest="burst", type=int, default=512, help="slots per sync at most (default 512)")
    p.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    return p


def schedule(ts: np.ndarray, lens: np.ndarray, *, multiplier: float = 1.0, pps: float = 0.0,
             mbps: float = 0.0, topspeed: bool = False) -> tuple[np.ndarray, float]:
    """Send times of one pass (seconds from its start) and the pass's length, for the
    original timestamps ``ts`` and frame lengths ``lens``. A loop starts one mean gap after the
    previous pass's last frame (original timing)."""
    n = len(ts)
    if topspeed:
        return np.zeros(n), 0.0
    if pps:
        return np.arange(n) / pps, n / pps
    if mbps:
        bits = np.cumsum(lens.astype(np.float64) * 8)
        return np.concatenate(([0.0], bits[:-1])) / (mbps * 1e6), float(bits[-1]) / (mbps * 1e6)
    rel = (ts - ts[0]) / multiplier
    rel = np.maximum.accumulate(np.maximum(rel, 0.0))   # a file out of order never sends back in time
    gap = float(rel[-1]) / (n - 1) if n > 1 else 0.0
    return rel, float(rel[-1]) + gap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for opt, v in (("--multiplier", a.multiplier), ("--pps", a.pps), ("--mbps", a.mbps)):
            if v < 0 or (opt == "--multiplier" and v == 0):
                raise InvalidRequestError(
                    22, f"replay: {opt}={v} is out of range; allowed: a positive number")
        if a.loop < 0 or not 1 <= a.burst <= 8192:
            raise InvalidRequestError(22, f"replay: -l={a.loop} -b={a.burst}; allowed: -l 0 or more, "
                                          "-b 1..8192")
        records = list(read_frames(a.file))
        if not records:
            raise InvalidRequestError(22, f"replay: {a.file!r} holds no frame")
        ts = np.array([t for t, _ in records])
        lens = np.array([len(f) for _, f in records], np.int64)
        rows = np.zeros((len(records), int(lens.max())), np.uint8)
        for i, (_, f) in enumerate(records):
            rows[i, :len(f)] = np.frombuffer(f, np.uint8)
        when, period = schedule(ts, lens, multiplier=a.multiplier, pps=a.pps, mbps=a.mbps,
                                topspeed=a.topspeed)
        name = a.port if ":" in a.port else f"netmap:{a.port}"
        with netmap_core.open(name, backend=a.backend) as port:
            if not port.tx_rings:
                raise InvalidRequestError(22, f"replay: {name} binds no TX ring; open one that does")
            ring = port.tx_rings[0]
            if int(lens.max()) > ring.buf_size:
                raise InvalidRequestError(
                    22, f"replay: a {int(lens.max())}-byte frame in {a.file!r} does not fit "
                    f"{ring.name}'s {ring.buf_size}-byte buffers; allowed: up to {ring.buf_size}")
            print(f"replay: {len(records)} frames from {a.file} to {name}", file=sys.stderr, flush=True)
            sent, nbytes, seconds = _send(port, rows, lens, when, period, a)
    except NetmapError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    rate = sent / seconds if seconds > 0 else 0.0
    print(f"replay: sent {sent} packets {nbytes} bytes in {seconds:.3f} s ({rate:.0f} pps)", flush=True)
    return 0


def _send(port: netmap_core.Port, rows: np.ndarray, lens: np.ndarray, when: np.ndarray,
          period: float, a: argparse.Namespace) -> tuple[int, int, float]:
    ring = port.tx_rings[0]
    n = len(rows)
    total = n * a.loop if a.loop else None
    sent = nbytes = 0
    t0 = time.monotonic()
    with stopping() as stop:
        while not stop[0] and (total is None or sent < total):
            loop, i = divmod(sent, n)
            now = time.monotonic() - t0 - loop * period
            due = int(np.searchsorted(when, now, side="right")) - i   # due in this pass
            if due <= 0:
                time.sleep(min(0.05, max(0.0001, float(when[i]) - now)))
                continue
            k = min(due, a.burst)
            if ring.space() == 0:
                ring.cur = ring.tail
                port.poll(POLLOUT, 0.1)
                continue
            k = ring.fill(k, data=rows[i:i + k], lengths=lens[i:i + k])
            port.txsync()
            nbytes += int(lens[i:i + k].sum())
            sent += k
        end = time.monotonic() + 5.0
        while ring.tx_pending() and time.monotonic() < end and not stop[0]:
            port.poll(POLLOUT, 0.05)
    return sent, nbytes, time.monotonic() - t0
