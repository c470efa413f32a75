"""``pynetmap capture``: write what a port (or a monitor of one: ``PORT/r``, ``/t``, ``/rt``)
receives to a pcap or pcapng file, each frame with the time its batch was taken.

Frames are taken a batch at a time; writing is per frame through dpkt (a few µs each), so a
capture keeps up with tens to hundreds of thousands of frames per second, not line rate. A
monitor copy (``/r``, ``/t``) never slows the port it watches; frames it cannot take are lost
to the capture only.
"""
from __future__ import annotations

import argparse
import sys
import time

import netmap_core
from netmap_core import POLLIN
from netmap_core.errors import InvalidRequestError, NetmapError

from .nfloop import stopping
from .pcapio import FORMATS, Writer

__all__ = ["HELP", "main"]

HELP = "write what a port or monitor receives to a pcap/pcapng file"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynetmap capture", description=HELP + ".",
                                epilog="Example: pynetmap capture -i netmap:pipeA{0/t -w out.pcapng. "
                                       "Ctrl-C stops; the file is complete up to the last frame.")
    p.add_argument("-i", dest="port", required=True,
                   help="port or monitor (netmap:eth0/rt); a bare name gets netmap: prepended")
    p.add_argument("-w", dest="file", required=True, help="output file")
    p.add_argument("-n", dest="count", type=int, default=0, help="stop after this many frames (0: never)")
    p.add_argument("-F", "--format", dest="fmt", choices=FORMATS, default=None,
                   help="file format (default: pcapng for a .pcapng name, else pcap)")
    p.add_argument("-s", dest="snaplen", type=int, default=65535, help="bytes kept per frame (default 65535)")
    p.add_argument("-T", dest="report", type=int, default=1000,
                   help="progress line every this many ms (0: none)")
    p.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    fmt = a.fmt or ("pcapng" if a.file.endswith(".pcapng") else "pcap")
    try:
        if a.count < 0 or not 1 <= a.snaplen <= 262144:
            raise InvalidRequestError(22, f"capture: -n={a.count} -s={a.snaplen}; allowed: -n 0 or "
                                          "more, -s 1..262144")
        name = a.port if ":" in a.port else f"netmap:{a.port}"
        with netmap_core.open(name, backend=a.backend) as port, \
                Writer(a.file, fmt, a.snaplen) as out:
            if not port.rx_rings:
                raise InvalidRequestError(22, f"capture: {name} binds no RX ring; open one that does")
            print(f"capture: reading from {name} into {a.file} ({fmt})", file=sys.stderr, flush=True)
            n, seconds = _loop(port, out, a)
    except NetmapError as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 1
    print(f"capture: {n} frames written to {a.file} in {seconds:.2f} s", flush=True)
    return 0


def _loop(port: netmap_core.Port, out: Writer, a: argparse.Namespace) -> tuple[int, float]:
    t0 = time.monotonic()
    interval = a.report / 1000
    next_report = t0 + interval if interval else float("inf")
    last_n = 0
    with stopping() as stop:
        while not stop[0] and not (a.count and out.count >= a.count):
            took = 0
            for ring in port.rx_rings:
                left = a.count - out.count if a.count else None
                b = ring.ready(left)
                if not len(b):
                    continue
                ts = time.time()
                snap = min(a.snaplen, int(b.len.max()))
                rows = b.gather(0, snap)
                for row, ln in zip(rows, b.len):
                    out.write(row[:min(int(ln), snap)].tobytes(), ts)
                ring.advance(len(b))
                took += len(b)
            if not took:
                port.poll(POLLIN, 0.1)
            now = time.monotonic()
            if now >= next_report:
                print(f"capture: {out.count} frames ({(out.count - last_n) / interval:.0f} pps)",
                      file=sys.stderr, flush=True)
                last_n, next_report = out.count, now + interval
        port.rxsync()
    return out.count, time.monotonic() - t0
