"""Load balancer: spread the flows arriving on one port over N backends (output pipes) with
Maglev consistent hashing; slots move by buffer swap when the ports share a buffer pool.

Each batch is parsed at once and its symmetric 5-tuple hash indexes a Maglev lookup table, so
both directions of a flow reach the same backend, the backends get near-equal shares, and
removing one backend moves only the flows it had:

    python examples/lb.py -i netmap:lbdemo}in -o netmap:lbdemo{0 -o netmap:lbdemo{1

Cost per batch: one header parse, one table lookup per frame and one dispatch (a few µs per
backend): ~1.2-1.5 µs of CPU per frame in batches of 1024 (bench/README.md). Building the
table is pure Python, once: ~1 s per 65537 entries.
"""
from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence

import numpy as np

import netmap_core as nm
from netmap_core.batch import Dispatched, dispatch
from netmap_core.headers import parse_batch

TABLE_SIZE = 65537   # prime, and much larger than the number of backends (Maglev's advice)


def _h(name: str, salt: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, salt=salt).digest(), "big")


def maglev_table(backends: Sequence[str], size: int = TABLE_SIZE) -> np.ndarray:
    """Maglev's lookup table (Eisenbud et al., NSDI 2016): entry -> backend index.

    Each backend walks its own permutation of the entries (offset and skip from two hashes of
    its name) and the backends take turns claiming their next free entry, so each gets
    ``size / N`` entries (+-1) and a table built without one backend differs from the full one
    mostly in that backend's entries. ``size`` must be prime.
    """
    n = len(backends)
    if n == 0:
        raise ValueError("maglev_table: no backends")
    if size < n or any(size % d == 0 for d in range(2, int(size ** 0.5) + 1)):
        raise ValueError(f"maglev_table: size={size} must be a prime >= the {n} backends")
    offset = [_h(b, b"offset") % size for b in backends]
    skip = [_h(b, b"skip") % (size - 1) + 1 for b in backends]
    nxt = [0] * n
    table = [-1] * size
    filled = 0
    while True:
        for i in range(n):
            c = (offset[i] + nxt[i] * skip[i]) % size
            while table[c] >= 0:
                nxt[i] += 1
                c = (offset[i] + nxt[i] * skip[i]) % size
            table[c] = i
            nxt[i] += 1
            filled += 1
            if filled == size:
                return np.array(table, np.int64)


def choose(table: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """The backend of each frame: ``table[hash % len(table)]``. Pure."""
    return table[hashes % np.uint32(len(table))]


def process_batch(rx: nm.Ring, txs: Sequence[nm.Ring], table: np.ndarray,
                  limit: int | None = None) -> Dispatched:
    """Dispatch the frames ready on ``rx`` (at most ``limit``) to ``txs[backend]``; a full
    backend ring drops the frames that do not fit (as a switch does; pass ``limit=min(space)``
    to wait instead). Moves the rings' ``head``; no sync."""
    batch = rx.ready(limit)
    if not len(batch):
        return Dispatched(tuple(0 for _ in txs), 0)
    return dispatch(rx, txs, choose(table, parse_batch(batch).hash))


def balance_once(inp: nm.Port, outs: Sequence[nm.Port], table: np.ndarray,
                 timeout: float | None = 1.0) -> tuple[int, int]:
    """Wait for traffic, move one batch to the outputs; returns (forwarded, dropped)."""
    rx = inp.rx_rings[0]
    if rx.empty:
        inp.poll(nm.POLLIN, timeout)
    done = process_batch(rx, [p.tx_rings[0] for p in outs], table)
    for p, k in zip(outs, done.forwarded):
        if k:
            p.txsync()
    return sum(done.forwarded), done.dropped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", required=True, help="input port")
    ap.add_argument("-o", action="append", required=True, help="output port (repeat)")
    ap.add_argument("-n", type=int, default=0, help="stop after this many packets (0: never)")
    args = ap.parse_args(argv)
    table = maglev_table(args.o)
    total = dropped = 0
    with nm.open(args.i) as inp:
        outs = [nm.open(o) for o in args.o]
        try:
            while not args.n or total + dropped < args.n:
                f, d = balance_once(inp, outs, table)
                total, dropped = total + f, dropped + d
        finally:
            for p in outs:
                p.close()
    print(f"forwarded {total}, dropped {dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
