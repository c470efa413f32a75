"""Where a pynetmap batch sender's time goes, step by step, on either backend
(``python -m bench.profile_tx [--backend netmap] [--setup vale|pipe] [--batch 512]``).

One process sends 60-byte frames from ``valeX:s`` to ``valeX:r`` (or into a pipe) in batches,
timing each step of the loop the bench's senders run (``space``, ``ready``, setting ``len``,
``advance``, ``txsync``); between two batches it drains the receiving port, untimed, so the
switch delivers every frame (a full ring would make VALE drop, which costs less). Also the cost
of a sync with nothing to do: the fixed price of one ioctl through the binding.

Nothing here is a benchmark row; it explains the ``pktgen`` comparison (see bench/README.md).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from .harness import unique_name
from .msgloop import frame


def _ports(backend: str, setup: str, slots: int):
    import netmap_core

    name = unique_name("t")
    if setup == "vale":
        specs = (f"vale{name}:s@conf:slots={slots}", f"vale{name}:r@conf:slots={slots}")
    else:
        specs = (f"netmap:{name}{{0@conf:slots={slots}", f"netmap:{name}}}0@conf:slots={slots}")
    a = netmap_core.open(specs[0], backend=backend)
    b = netmap_core.open(specs[1], backend=backend)
    return a, b


def profile(backend: str, setup: str, slots: int, batch: int, batches: int) -> list[tuple[str, float]]:
    """(step, median µs per batch) over ``batches`` batches, then the fixed costs."""
    a, b = _ports(backend, setup, slots)
    try:
        tx, rx = a.tx_rings[0], b.rx_rings[0]
        tx.buffers[tx.slots["buf_idx"].astype(np.int64), :60] = np.frombuffer(frame(60), np.uint8)
        lens = tx.slots["len"]
        steps = {k: [] for k in ("space()", "ready(k)", "len[slot_idx] = 60", "advance(k)",
                                 "txsync()", "whole batch")}
        pc = time.perf_counter_ns
        for i in range(batches + 20):
            t0 = pc()
            k = tx.space()
            t1 = pc()
            bt = tx.ready(min(k, batch))
            t2 = pc()
            lens[bt.slot_idx] = 60
            t3 = pc()
            tx.advance(len(bt))
            t4 = pc()
            a.txsync()
            t5 = pc()
            if i >= 20:   # warm-up batches are not counted
                for key, d in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
                    d_us = d / 1e3
                    steps[key].append(d_us)
            b.rxsync()                       # drain the receiver, untimed
            rx.advance(len(rx.ready()))
            b.rxsync()
            a.txsync()                       # take back the sent slots (pipe: released by rx)
        out = [(k, statistics.median(v)) for k, v in steps.items()]
        out.append((f"  per packet ({batch} per batch)", statistics.median(steps["whole batch"]) / batch))
        out.append(("txsync(), nothing to send", _per_call(a.txsync, 2000)))
        out.append(("rxsync(), nothing received", _per_call(b.rxsync, 2000)))
        return out
    finally:
        a.close()
        b.close()


def _per_call(f, n: int) -> float:
    for _ in range(20):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_tx", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="netmap or emu (default: what open picks)")
    ap.add_argument("--setup", choices=("vale", "pipe"), default="vale")
    ap.add_argument("--slots", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--batches", type=int, default=2000)
    a = ap.parse_args(argv)
    print(f"{a.setup}, backend {a.backend or 'default'}, {a.slots}-slot rings, batches of "
          f"{a.batch} frames of 60 B; median us per batch over {a.batches} batches:")
    for step, us in profile(a.backend, a.setup, a.slots, a.batch, a.batches):
        print(f"  {step:32s} {us:10.3f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
