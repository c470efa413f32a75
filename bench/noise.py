"""How much of each CPU a benchmark process actually gets: one busy loop pinned per CPU, all
at once, counting the time it was not running (clock gaps over 50 µs).

On a shared machine this is the honest caveat to print next to the numbers: a row whose two
processes each get 30 % of a CPU measures the neighbours as much as the transport.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time

GAP = 50e-6


def _spin(cpu: int, seconds: float, out) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass
    clock = time.perf_counter
    prev = clock()
    end = prev + seconds
    lost = 0.0
    while prev < end:
        t = clock()
        if t - prev > GAP:
            lost += t - prev
        prev = t
    out.send(max(0.0, 1.0 - lost / seconds))
    out.close()


def cpu_share(seconds: float = 0.3) -> dict[int, float]:
    """CPU -> fraction (0..1) of ``seconds`` a pinned busy loop on it was running."""
    mpc = mp.get_context("fork")
    cpus = sorted(os.sched_getaffinity(0))
    procs = []
    for cpu in cpus:
        rd, wr = mpc.Pipe(duplex=False)
        p = mpc.Process(target=_spin, args=(cpu, seconds, wr), daemon=True)
        p.start()
        wr.close()
        procs.append((cpu, p, rd))
    share = {}
    for cpu, p, rd in procs:
        share[cpu] = rd.recv() if rd.poll(seconds + 10) else 0.0
        p.join(2)
        rd.close()
    return share


def describe(share: dict[int, float]) -> str:
    return ", ".join(f"cpu{c} {100 * f:.0f}%" for c, f in sorted(share.items()))
