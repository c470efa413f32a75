"""What a VALE switch costs per packet in one process, in CPU time: the sender's txsync (which
forwards, spec E6) and the receivers' rxsyncs, for switches of 2..252 ports and several frame
sizes (``python -m bench.profile_vale [--ports 2,16,64,252] [--sizes 60,1514] [--flood]
[--spread N]``).

Each measurement opens a switch of N ports in a fresh emulator namespace, teaches it port 1's
MAC, fills port 0's TX ring (1023 frames to that MAC, or broadcasts with ``--flood``), and
times ``txsync`` and the receivers' ``rxsync`` with the thread's CPU clock, so time the
process spends descheduled on a busy machine is not counted. The two-process rows of
``python -m bench --only vale`` measure the same path in wall-clock time. The ``row copy``
column is the bound of the switch's copy: a plain numpy copy of as many rows of the same width
between the same two shared-memory pools, timed the same way.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def measure(nports: int, size: int, flood: bool, slots: int = 1024, chunks: int = 15,
            per_chunk: int = 40, spread: int = 0) -> dict:
    """CPU ns per packet sent: txsync (min and median over chunks) and the whole loop.
    ``spread`` > 0: a process-local lookup sends packet i to port 1 + i mod ``spread``."""
    from netmap_core.testing.vale import BCAST, frame, mac, recv, send
    from netmap_emu import vale
    from netmap_emu.testing.vale import ValeEnv

    with ValeEnv("emu") as env:
        ports = env.switch("valeprof", nports, slots=slots)
        a, b = ports[0], ports[1]
        send(b, [frame(BCAST, mac(1))])          # the switch learns mac(1) at port 1
        for p in ports:
            recv(p)
        if spread:
            vale.switch("valeprof").set_lookup(
                lambda batch: 1 + np.arange(len(batch)) % spread, local=True)
        tx = a.tx_rings[0]
        f = np.frombuffer(frame(BCAST if flood else mac(1), mac(0), size=size), np.uint8)
        tx.buffers[tx.slots["buf_idx"].astype(np.int64), :size] = f
        lens = tx.slots["len"]
        rxs = ports[1:] if flood else ports[1:1 + spread] if spread else [b]
        clock = time.thread_time

        def one() -> tuple[int, float, int]:
            k = tx.space()
            lens[tx.ready(k).slot_idx] = size
            tx.advance(k)
            t = clock()
            a.txsync()
            dt = clock() - t
            got = 0
            for r in rxs:
                r.rxsync()
                rr = r.rx_rings[0]
                got += rr.space()
                rr.advance(rr.space())
                r.rxsync()
            return k, dt, got

        for _ in range(20):
            one()
        tx_ns, loop_ns = [], []
        delivered = sent = 0
        for _ in range(chunks):
            n = t_tx = 0
            t0 = clock()
            for _ in range(per_chunk):
                k, dt, got = one()
                n += k
                t_tx += dt
                delivered += got
            loop_ns.append((clock() - t0) / n * 1e9)
            tx_ns.append(t_tx / n * 1e9)
            sent += n
        copy_ns = _copy_bound(tx, b.rx_rings[0], size, chunks, per_chunk, clock)
    return {"ports": nports, "size": size, "flood": flood, "fanout": len(rxs) if flood else 1,
            "tx_min": min(tx_ns), "tx_med": statistics.median(tx_ns),
            "loop_min": min(loop_ns), "delivered": delivered, "expected": sent * (len(rxs) if flood else 1),
            "copy_min": min(copy_ns), "copy_med": statistics.median(copy_ns)}


def _copy_bound(tx, rx, size: int, chunks: int, per_chunk: int, clock) -> list[float]:
    """CPU ns per row of a plain numpy copy of one txsync's worth of rows (``num_slots - 1``,
    ``size`` rounded up to 64 bytes, as the switch copies them) from the sender's buffers
    into the receiver's, between the same shared-memory pools: per chunk, ``per_chunk``
    copies. Consecutive buffers on both sides (the usual layout) are copied as one strided
    block, otherwise gathered and scattered. The switch cannot move its payload faster."""
    m = min(tx.num_slots, rx.num_slots) - 1
    w = min((size + 63) & ~63, tx.buf_size, rx.buf_size)
    row = np.dtype((np.void, w))
    src = tx.buffers[:, :w].view(row)[:, 0]
    dst = rx.buffers[:, :w].view(row)[:, 0]
    sb = tx.slots["buf_idx"][:m].astype(np.int64)
    db = rx.slots["buf_idx"][:m].astype(np.int64)
    if (np.diff(sb) == 1).all() and (np.diff(db) == 1).all():
        s0, d0 = int(sb[0]), int(db[0])

        def copy() -> None:
            dst[d0:d0 + m] = src[s0:s0 + m]
    else:
        def copy() -> None:
            dst[db] = src[sb]
    out = []
    for _ in range(chunks):
        t = 0.0
        for _ in range(per_chunk):
            t0 = clock()
            copy()
            t += clock() - t0
        out.append(t / (per_chunk * m) * 1e9)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_vale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ports", default="2,16,64,252", help="switch sizes (2..252), default 2,16,64,252")
    ap.add_argument("--sizes", default="60,1514", help="frame sizes, default 60,1514")
    ap.add_argument("--flood", action="store_true", help="broadcast frames to every other port")
    ap.add_argument("--slots", type=int, default=1024, help="ring slots (default 1024)")
    ap.add_argument("--spread", type=int, default=0, metavar="N",
                    help="a lookup spreading each batch over ports 1..N (unicast, N < ports)")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.ports.split(",")]
    if any(not 2 <= n <= 252 for n in counts):
        raise SystemExit("profile_vale: --ports values must be in 2..252 (a switch takes 252 ports)")
    if a.spread and (a.flood or any(a.spread >= n for n in counts)):
        raise SystemExit("profile_vale: --spread N needs more than N ports and no --flood")
    what = ("broadcast" if a.flood else f"packet i to port 1 + i mod {a.spread}" if a.spread
            else "learned unicast port 0 -> port 1")
    print(f"CPU ns per packet sent ({what}, "
          f"{a.slots - 1}-slot txsyncs; min / median over 15 chunks of 40 txsyncs); row copy: "
          f"min ns per row of a plain numpy copy of as many rows between the same two pools")
    print(f"{'ports':>5}  {'size':>5}  {'txsync min':>10}  {'txsync med':>10}  {'per copy':>8}  "
          f"{'txsync Mpps':>11}  {'loop min':>8}  {'row copy':>8}  delivered")
    base = {}
    for size in (int(x) for x in a.sizes.split(",")):
        for n in counts:
            r = measure(n, size, a.flood, a.slots, spread=a.spread)
            base.setdefault(size, r["tx_min"])
            print(f"{n:5d}  {size:5d}  {r['tx_min']:10.1f}  {r['tx_med']:10.1f}  "
                  f"{r['tx_min'] / r['fanout']:8.1f}  {1e3 / r['tx_min']:11.2f}  {r['loop_min']:8.1f}  "
                  f"{r['copy_min']:8.1f}  "
                  f"{r['delivered']}/{r['expected']}  (x{r['tx_min'] / base[size]:.2f} of the first)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
