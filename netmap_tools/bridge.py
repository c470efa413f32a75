"""``pynetmap bridge``: netmap's bridge, forwarding everything between two ports, both ways.

Zero copy (buffer swap + NS_BUF_CHANGED) when the two ports share a buffer pool, a copy of
the bytes otherwise; ``Ring.forward`` decides, ``-c`` forces the copy. A batch per ring pair
per round; cost a few µs per batch plus a few ns per slot.
"""
from __future__ import annotations

import argparse
import sys
import time

import netmap_core
from netmap_core import POLLOUT
from netmap_core.errors import InvalidRequestError, NetmapError

from .nfloop import Rates, stopping, wait_any

__all__ = ["HELP", "main", "forward_all"]

HELP = "forward between two ports both ways, zero copy when they share memory (netmap's bridge)"
MAX_BURST = 8192


def _port_name(text: str) -> str:
    return text if ":" in text else f"netmap:{text}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynetmap bridge", description=HELP + ".",
                                epilog="Positional form as netmap's bridge: A B [BURST]. Ctrl-C "
                                       "stops with a summary.")
    p.add_argument("-i", dest="ports", action="append", default=[], metavar="PORT",
                   help="a port (twice); a bare name gets netmap: prepended")
    p.add_argument("positional", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("-b", dest="burst", type=int, default=1024, help=f"slots per batch, 1..{MAX_BURST} "
                   "(default 1024)")
    p.add_argument("-w", dest="wait", type=float, default=0.0, help="seconds to wait before starting")
    p.add_argument("-c", dest="copy", action="store_true", help="copy even when zero copy is possible")
    p.add_argument("-n", dest="count", type=int, default=0, help="stop after this many packets (0: never)")
    p.add_argument("-T", dest="report", type=int, default=1000, help="rate line every this many ms (0: none)")
    p.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    return p


def forward_all(src: netmap_core.Port, dst: netmap_core.Port, burst: int, copy: bool | None) -> int:
    """Move what ``src``'s RX rings hold into ``dst``'s TX rings (ring i to ring i mod n)."""
    moved = 0
    txr = dst.tx_rings
    for i, r in enumerate(src.rx_rings):
        moved += r.forward(txr[i % len(txr)], burst, copy=copy)
    return moved


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    names = a.ports + a.positional
    burst = a.burst
    if not a.ports and len(a.positional) == 3:
        names, burst = a.positional[:2], int(a.positional[2])
    try:
        if len(names) != 2:
            raise InvalidRequestError(22, f"bridge: {len(names)} ports given; allowed: exactly two "
                                          "(-i A -i B, or A B)")
        if not 1 <= burst <= MAX_BURST:
            raise InvalidRequestError(22, f"bridge: -b={burst} is out of range; allowed: 1..{MAX_BURST}")
        return _run([_port_name(n) for n in names], burst, a)
    except NetmapError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1


def _run(names: list[str], burst: int, a: argparse.Namespace) -> int:
    with netmap_core.open(names[0], backend=a.backend) as pa, \
            netmap_core.open(names[1], backend=a.backend) as pb:
        for p in (pa, pb):
            if not p.rx_rings or not p.tx_rings:
                raise InvalidRequestError(22, f"bridge: {p.spec.text} must bind RX and TX rings")
        zero = pa.rx_rings[0].same_pool(pb.tx_rings[0]) and not a.copy
        print(f"bridge: {names[0]} <-> {names[1]}: {'zero copy' if zero else 'copy'}, burst {burst}",
              file=sys.stderr, flush=True)
        if a.wait:
            time.sleep(a.wait)
        copy = True if a.copy else None
        rates = Rates(["A->B", "B->A"], a.report / 1000)
        with stopping() as stop:
            while not stop[0] and not (a.count and sum(rates.counts.values()) >= a.count):
                ab = forward_all(pa, pb, burst, copy)
                ba = forward_all(pb, pa, burst, copy)
                rates.counts["A->B"] += ab
                rates.counts["B->A"] += ba
                if ab:
                    pb.txsync()
                if ba:
                    pa.txsync()
                if ab or ba:
                    pa.rxsync()
                    pb.rxsync()
                else:
                    full = [p for p, q in ((pb, pa), (pa, pb))
                            if any(not r.empty for r in q.rx_rings)
                            and all(t.space() == 0 for t in p.tx_rings)]
                    if full:
                        full[0].poll(POLLOUT, 0.1)
                    else:
                        wait_any([pa, pb], 0.1)
                rates.tick()
            for p in (pa, pb):   # let what was handed over leave before closing
                end = time.monotonic() + 1.0
                while any(r.tx_pending() for r in p.tx_rings) and time.monotonic() < end:
                    p.poll(POLLOUT, 0.05)
    c = rates.counts
    print(f"bridge: forwarded {c['A->B'] + c['B->A']} packets (A->B {c['A->B']}, B->A {c['B->A']}) "
          f"in {time.monotonic() - rates.t0:.2f} s, {'zero copy' if zero else 'copy'}", flush=True)
    return 0
