"""Where a pynetmap batch sender's time goes, step by step, on either backend
(``python -m bench.profile_tx [--backend netmap] [--setup vale|pipe] [--batch 512]``).

One process sends 60-byte frames from ``valeX:s`` to ``valeX:r`` (or into a pipe) in batches,
timing each step of three sender loops that take turns batch by batch: the one through a
``Batch`` (``space``, ``ready``, setting ``len``, ``advance``, ``txsync``), ``Ring.fill(k,
lengths=60)`` + ``txsync`` (the bench's senders), and ``Ring.fill(k, template=frame,
changed_only=True)`` + ``txsync`` (``pynetmap pkt-gen``); between two batches it drains the
receiving port, untimed, so the switch delivers every frame (a full ring would make VALE drop,
which costs less). Also the cost of a sync with nothing to do (the fixed price of one ioctl
through the binding) and of a poll that need not wait. With
``--name N --no-drain`` it only sends, from ``valeN:s``, and another process (``pkt-gen -f rx -i
valeN:r``) receives: the two-process case of the bench rows, step by step.

Nothing here is a benchmark row; it explains the ``pktgen`` comparison (see bench/README.md).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from .harness import unique_name
from .msgloop import frame


def _ports(backend: str, setup: str, slots: int, name: str | None = None):
    import netmap_core

    name = name or unique_name("t")
    if setup == "vale":
        specs = (f"vale{name}:s@conf:slots={slots}", f"vale{name}:r@conf:slots={slots}")
    else:
        specs = (f"netmap:{name}{{0@conf:slots={slots}", f"netmap:{name}}}0@conf:slots={slots}")
    a = netmap_core.open(specs[0], backend=backend)
    b = netmap_core.open(specs[1], backend=backend)
    return a, b


def profile(backend: str, setup: str, slots: int, batch: int, batches: int,
            name: str | None = None, drain: bool = True) -> list[tuple[str, float, float, float]]:
    """(step, median, mean and p99 µs per batch) over ``batches`` batches, then the fixed costs
    (mean µs per call). The mean decides throughput; a median far below it means stalls. ``drain``
    False: this process only sends (VALE only: another process, e.g. pkt-gen -f rx on a second
    port of switch ``vale<name>``, receives)."""
    if setup == "vale" and not drain:
        import netmap_core

        a = netmap_core.open(f"vale{name}:s@conf:slots={slots}", backend=backend)
        b = None
    else:
        a, b = _ports(backend, setup, slots, name)
    try:
        tx = a.tx_rings[0]
        rx = b.rx_rings[0] if b is not None else None
        tx.buffers[tx.slots["buf_idx"].astype(np.int64), :60] = np.frombuffer(frame(60), np.uint8)
        lens = tx.slots["len"]
        tmpl = np.frombuffer(frame(60), np.uint8)
        steps: dict[str, list[float]] = {k: [] for k in (
            "space()", "ready(k)", "len[slot_idx] = 60", "advance(k)", "txsync()", "whole batch",
            "fill(k, lengths=60)", "fill(k, template, changed_only)", "txsync() after fill",
            "whole batch with fill", "whole batch with fill(changed_only)")}
        pc = time.perf_counter_ns
        for i in range(3 * (batches + 20)):
            way = i % 3        # the three senders take turns, so a change of load hits them alike
            if way == 0:       # Batch: the loop before Ring.fill's lengths-only path
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
                keys = ("space()", "ready(k)", "len[slot_idx] = 60", "advance(k)", "txsync()",
                        "whole batch")
                times = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)
            else:
                t0 = pc()
                if way == 1:
                    tx.fill(batch, lengths=60)
                else:
                    tx.fill(batch, template=tmpl, changed_only=True)
                t1 = pc()
                a.txsync()
                t2 = pc()
                keys = (("fill(k, lengths=60)", "txsync() after fill", "whole batch with fill")
                        if way == 1 else
                        ("fill(k, template, changed_only)", "txsync() after fill",
                         "whole batch with fill(changed_only)"))
                times = (t1 - t0, t2 - t1, t2 - t0)
            if i >= 60:   # warm-up batches are not counted
                for key, d in zip(keys, times):
                    steps[key].append(d / 1e3)
            if b is not None:
                b.rxsync()                   # drain the receiver, untimed
                rx.release()
                b.rxsync()
                a.txsync()                   # take back the sent slots (pipe: released by rx)
        out = [(k, statistics.median(v), statistics.fmean(v), float(np.percentile(v, 99)))
               for k, v in steps.items()]
        for key in ("whole batch", "whole batch with fill", "whole batch with fill(changed_only)"):
            whole = steps[key]
            out.append((f"  {key}: per packet", statistics.median(whole) / batch,
                        statistics.fmean(whole) / batch, float(np.percentile(whole, 99)) / batch))
        us = _per_call(a.txsync, 2000)
        out.append(("txsync(), nothing to send", us, us, float("nan")))
        from netmap_core import POLLOUT

        us = _per_call(lambda: a.poll(POLLOUT, 0), 2000)
        out.append(("poll(POLLOUT, 0), room", us, us, float("nan")))
        if b is not None:
            us = _per_call(b.rxsync, 2000)
            out.append(("rxsync(), nothing received", us, us, float("nan")))
        return out
    finally:
        a.close()
        if b is not None:
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
    ap.add_argument("--name", default=None, help="switch vale<NAME> / pipe NAME (default: unique)")
    ap.add_argument("--no-drain", action="store_true",
                    help="VALE: only send from vale<NAME>:s; another process receives")
    a = ap.parse_args(argv)
    if a.no_drain and (a.setup != "vale" or not a.name):
        ap.error("--no-drain needs --setup vale and --name")
    print(f"{a.setup}, backend {a.backend or 'default'}, {a.slots}-slot rings, batches of "
          f"{a.batch} frames of 60 B; us per batch over {a.batches} batches:")
    print(f"  {'step':32s} {'median':>10s} {'mean':>10s} {'p99':>10s}")
    for step, med, mean, p99 in profile(a.backend, a.setup, a.slots, a.batch, a.batches, a.name,
                                        not a.no_drain):
        print(f"  {step:32s} {med:10.3f} {mean:10.3f} {p99:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
