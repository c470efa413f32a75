"""Load balancer: spread the flows arriving on one port over N output pipes, zero copy.

Like netmap's lb: each batch is hashed at once (symmetric 5-tuple), and slots are moved into
the output rings by buffer swap when the ports share an allocator (pipes of one parent do).

    python examples/lb.py -i netmap:lbdemo}in -o netmap:lbdemo{0 -o netmap:lbdemo{1
"""
from __future__ import annotations

import argparse

import netmap_core as nm
from netmap_core.batch import dispatch, flow_hash


def balance_once(inp: nm.Port, outs: list[nm.Port], timeout: float | None = 1.0) -> tuple[int, int]:
    """Wait for traffic, move one batch to the outputs; returns (forwarded, dropped)."""
    rx = inp.rx_rings[0]
    if rx.empty:
        inp.poll(nm.POLLIN, timeout)
    batch = rx.ready()
    if not len(batch):
        return 0, 0
    choice = flow_hash(batch.gather(0, 38)) % len(outs)
    done = dispatch(rx, [p.tx_rings[0] for p in outs], choice)
    for p in outs:
        p.txsync()
    return sum(done.forwarded), done.dropped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", required=True, help="input port")
    ap.add_argument("-o", action="append", required=True, help="output port (repeat)")
    ap.add_argument("-n", type=int, default=0, help="stop after this many packets (0: never)")
    args = ap.parse_args(argv)
    total = dropped = 0
    with nm.open(args.i) as inp:
        outs = [nm.open(o) for o in args.o]
        try:
            while not args.n or total + dropped < args.n:
                f, d = balance_once(inp, outs)
                total, dropped = total + f, dropped + d
        finally:
            for p in outs:
                p.close()
    print(f"forwarded {total}, dropped {dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
