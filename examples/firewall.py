"""Firewall: drop UDP/TCP frames to blocked destination ports, pass the rest, zero copy.

The rule is evaluated over the whole batch with numpy; passing slots are swapped into the
output ring, blocked ones are released unread.

    python examples/firewall.py -i netmap:fw}0 -o netmap:fw{1 --block 53,123
"""
from __future__ import annotations

import argparse

import numpy as np

import netmap_core as nm
from netmap_core.batch import dispatch


def verdicts(frames: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """0 = pass, -1 = drop, for a (k, >= 38) batch of Ethernet frames."""
    ipv4 = (frames[:, 12] == 0x08) & (frames[:, 13] == 0x00) & ((frames[:, 14] & 0x0F) == 5)
    l4 = (frames[:, 23] == 6) | (frames[:, 23] == 17)
    dport = frames[:, 36].astype(np.uint16) << 8 | frames[:, 37]
    return np.where(ipv4 & l4 & np.isin(dport, blocked), -1, 0)


def filter_once(inp: nm.Port, out: nm.Port, blocked: np.ndarray,
                timeout: float | None = 1.0) -> tuple[int, int]:
    rx, tx = inp.rx_rings[0], out.tx_rings[0]
    if tx.space() == 0:  # back-pressure: wait for room rather than drop
        out.poll(nm.POLLOUT, timeout)
    if rx.empty:
        inp.poll(nm.POLLIN, timeout)
    batch = rx.ready(limit=tx.space())
    if not len(batch):
        return 0, 0
    done = dispatch(rx, [tx], verdicts(batch.gather(0, 38), blocked))
    out.txsync()
    return done.forwarded[0], done.dropped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", required=True)
    ap.add_argument("-o", required=True)
    ap.add_argument("--block", default="53", help="comma-separated destination ports")
    ap.add_argument("-n", type=int, default=0, help="stop after this many packets (0: never)")
    args = ap.parse_args(argv)
    blocked = np.array([int(p) for p in args.block.split(",")], dtype=np.uint16)
    passed = dropped = 0
    with nm.open(args.i) as inp, nm.open(args.o) as out:
        while not args.n or passed + dropped < args.n:
            p, d = filter_once(inp, out, blocked)
            passed, dropped = passed + p, dropped + d
    print(f"passed {passed}, dropped {dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
