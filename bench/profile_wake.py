"""Where a blocking ping-pong round trip goes on the emulator: the CPU cost of each step in one
process, then two processes bouncing one frame with every step of poll timed and classified.

``python -m bench.profile_wake [--rounds 2000] [--chunks 30]``. CPU times (thread clock) do not
depend on the machine's load; the two-process wall times do. Nothing here is a benchmark row.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

from .harness import unique_name
from .pingpong import SIZE

_cpu = time.thread_time_ns


def _cost(f, chunks: int, per: int = 200) -> float:
    """Median over ``chunks`` of the thread-CPU ns per call of ``f`` (``per`` calls a chunk)."""
    out = []
    for _ in range(chunks):
        t = _cpu()
        for _ in range(per):
            f()
        out.append((_cpu() - t) / per)
    return statistics.median(out)


def _pair(slots: int = 64):
    import netmap_core

    name = unique_name("w")
    a = netmap_core.open(f"netmap:{name}{{0@conf:slots={slots}", backend="emu")
    b = netmap_core.open(f"netmap:{name}}}0", backend="emu")
    return a, b


def steps(chunks: int) -> list[tuple[str, float]]:
    """(step, CPU ns) of each piece of a blocking round trip, in one process."""
    from netmap_core import POLLIN
    from netmap_emu.shm import wake

    a, b = _pair()
    bb = b._binding   # a profiling tool may look inside
    tx, rx = a.tx_rings[0], b.rx_rings[0]
    out: list[tuple[str, float]] = []
    try:
        def hand_over() -> None:
            tx.advance(1)
            a.txsync()

        def take_back() -> None:   # rxsync sees the slot; the next one releases it
            b.rxsync()
            rx.advance(rx.space())

        # a publishing txsync and the rxsync that takes and releases, alternately timed
        t_tx, t_rx = [], []
        for _ in range(chunks):
            s_tx = s_rx = 0
            for _ in range(200):
                t = _cpu()
                hand_over()
                s_tx += _cpu() - t
                t = _cpu()
                take_back()
                s_rx += _cpu() - t
            t_tx.append(s_tx / 200)
            t_rx.append(s_rx / 200)
        out.append(("txsync publishing 1 slot (lock, copy, publish, fence, no sleeper)",
                     statistics.median(t_tx)))
        out.append(("rxsync taking 1 slot and releasing the previous one", statistics.median(t_rx)))

        def ready_poll() -> None:
            hand_over()
            b.poll(POLLIN, 1.0)
            rx.advance(rx.space())
        out.append(("txsync + poll(POLLIN) finding it at once + advance", _cost(ready_poll, chunks)))
        out.append(("poll(POLLIN, 0) finding nothing (two scans, spin skipped)",
                    _cost(lambda: b.poll(POLLIN, 0), chunks)))
        out.append(("fence (threading.Lock acquire + release)", _cost(wake.fence, chunks, 2000)))
        out.append(("sched_yield + perf_counter (one spin step)",
                    _cost(lambda: (os.sched_yield(), time.perf_counter()), chunks, 1000)))
        ns_dir, bid = bb._ns.dir, bb.bid

        def wake_and_drain() -> None:
            wake.wake_binding(ns_dir, bid)
            bb._drain()
        out.append(("wake byte into the FIFO + the sleeper's drain", _cost(wake_and_drain, chunks)))
        out.append(("drain of an empty FIFO", _cost(bb._drain, chunks)))
    finally:
        a.close()
        b.close()
    return out


def vale_batches(receivers: int, slots: int, chunks: int) -> list[tuple[str, float]]:
    """(step, CPU ns) of one broadcast batch through a VALE switch, in one process: the
    sender's txsync of ``slots - 1`` 60-byte frames to ``receivers`` ports, and one receiver's
    share of it (poll that sees the batch, ``ready``, ``advance``, the rxsync releasing it)."""
    import numpy as np

    import netmap_core
    from netmap_core import POLLIN

    from .msgloop import frame

    sw = unique_name("v")
    spec = f"vale{sw}:{{}}@conf:slots={slots}"
    s = netmap_core.open(spec.format("s"), backend="emu")
    rs = [netmap_core.open(spec.format(f"r{i}"), backend="emu") for i in range(receivers)]
    try:
        tx = s.tx_rings[0]
        tx.buffers[tx.slots["buf_idx"].astype(np.int64), :60] = np.frombuffer(frame(60), np.uint8)
        tx.slots["len"][:] = 60
        t_tx, t_rx = [], []
        for _ in range(chunks):
            k = tx.space()
            tx.advance(k)
            t = _cpu()
            s.txsync()
            t_tx.append(_cpu() - t)
            for i, r in enumerate(rs):
                rx = r.rx_rings[0]
                t = _cpu()
                r.poll(POLLIN, 1.0)
                b = rx.ready()
                rx.advance(len(b))
                r.rxsync()
                if i == 0:
                    t_rx.append(_cpu() - t)
        k = slots - 1
        return [(f"sender's txsync of {k} frames to {receivers} ports", statistics.median(t_tx)),
                (f"one receiver: poll + ready + advance + rxsync of {k} frames", statistics.median(t_rx))]
    finally:
        for p in (s, *rs):
            p.close()


# --- two processes -----------------------------------------------------------------------------
def _instrument(log: dict) -> None:
    """Wrap the steps of EmuBinding.poll to record (step, wall ns, cpu ns) into ``log``."""
    from netmap_emu import binding

    cls = binding.EmuBinding

    def timed(name, f):
        def w(*args, **kw):
            t, c = time.perf_counter_ns(), _cpu()
            r = f(*args, **kw)
            log.setdefault(name, []).append((time.perf_counter_ns() - t, _cpu() - c))
            if name == "spin":
                log.setdefault("spin caught it", []).append((int(bool(r)), 0))
            return r
        return w

    for name, attr in (("scan", "_scan"), ("spin", "_spin"), ("drain (woken)", "_drain")):
        if hasattr(cls, attr):
            setattr(cls, attr, timed(name, getattr(cls, attr)))


def _side(name: str, first: bool, rounds: int, q) -> None:
    import netmap_core
    from netmap_core import POLLIN

    os.sched_setaffinity(0, {0 if first else 1 % os.cpu_count()})
    log: dict = {}
    _instrument(log)
    with netmap_core.open(f"netmap:{name}{'{' if first else '}'}0@conf:slots=64", backend="emu") as p:
        tx, rx = p.tx_rings[0], p.rx_rings[0]
        lens = tx.slots["len"]
        q.put("ready")
        q.get()
        rtts, polls = [], []

        def bounce() -> None:
            lens[tx.head] = SIZE
            tx.advance(1)
            p.txsync()

        for i in range(rounds + 50):
            t0 = time.perf_counter_ns()
            if first:
                bounce()
            while rx.empty:
                t = time.perf_counter_ns()
                p.poll(POLLIN, 1.0)
                polls.append(time.perf_counter_ns() - t)
            rx.advance(1)
            if not first:
                bounce()
            if first and i >= 50:
                rtts.append(time.perf_counter_ns() - t0)
        q.put((first, rtts, {k: v for k, v in log.items()}, len(polls)))


def two_processes(rounds: int) -> None:
    ctx = mp.get_context("fork")
    name = unique_name("w")
    q1, q2 = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_side, args=(name, True, rounds, q1)),
             ctx.Process(target=_side, args=(name, False, rounds, q2))]
    procs[0].start()
    assert q1.get(timeout=30) == "ready"
    procs[1].start()
    assert q2.get(timeout=30) == "ready"
    q1.put("go")
    q2.put("go")
    res = [q1.get(timeout=120), q2.get(timeout=120)]
    for p in procs:
        p.join(10)
    rtts = res[0][1]
    print(f"\ntwo processes, {rounds} round trips, blocking in poll: median round trip "
          f"{statistics.median(rtts) / 1e3:.1f} us (p10 {sorted(rtts)[len(rtts) // 10] / 1e3:.1f},"
          f" p90 {sorted(rtts)[len(rtts) * 9 // 10] / 1e3:.1f})")
    for first, _, log, npolls in res:
        print(f"  {'ping' if first else 'pong'}: {npolls} polls")
        for k, v in log.items():
            if k == "spin caught it":
                print(f"    {k:<22} {sum(x for x, _ in v)} of {len(v)}")
                continue
            wall = statistics.median(x for x, _ in v) / 1e3
            cpu = statistics.median(c for _, c in v) / 1e3
            print(f"    {k:<22} n={len(v):<6} median wall {wall:7.2f} us  cpu {cpu:7.2f} us")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_wake", description=__doc__)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=30)
    args = ap.parse_args(argv)
    print("one process, CPU ns per step (median of chunks), backend emu:")
    for what, ns in steps(args.chunks):
        print(f"  {what:<72} {ns / 1e3:7.2f} us")
    print("\none process, VALE broadcast batch, CPU per step (median of chunks):")
    for what, ns in vale_batches(3, 4096, args.chunks):
        print(f"  {what:<72} {ns / 1e3:7.1f} us")
    two_processes(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
