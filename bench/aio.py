"""asyncio against the plain batch loop over one netmap pipe, in one process and one run:
what ``netmap_core.aio`` (``async for`` batches, ``await send``) costs over calling the rings.

    python -m bench.aio [--backend emu|netmap] [--packets N] [--slots S] [--runs R]

Both variants move the same 60-byte frames through the same pipe: the sender fills whole
ring-fulls from a template (``Ring.fill``), the receiver counts each batch and releases it;
no per-packet work. The sync loop alternates fill+txsync and rxsync+ready+advance; the async
one runs a ``send`` task and a ``receive`` consumer in one event loop. Runs alternate between
the two; the median of the runs is printed (Mpps).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import netmap_core
from netmap_core import aio

FRAME = bytes.fromhex("ffffffffffff020000000001") + b"\x88\xb5" + bytes(46)   # 60 bytes


def sync_loop(tx: netmap_core.Port, rx: netmap_core.Port, n: int) -> float:
    """Seconds to move ``n`` frames with the batch API and explicit syncs."""
    t, r = tx.tx_rings[0], rx.rx_rings[0]
    sent = got = 0
    t0 = time.perf_counter()
    while got < n:
        if sent < n:
            sent += t.fill(n - sent, template=FRAME)
            tx.txsync()
        rx.rxsync()
        k = len(r.ready())
        r.advance(k)
        got += k
    return time.perf_counter() - t0


def async_loop(tx: netmap_core.Port, rx: netmap_core.Port, n: int) -> float:
    """Seconds to move ``n`` frames with ``aio.send`` and ``async for aio.receive``."""
    async def consume() -> int:
        got = 0
        async for batch in aio.receive(rx):
            got += len(batch)
            if got >= n:
                break
        return got

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(consume(), aio.send(tx, lambda ring, room: ring.fill(room, template=FRAME),
                                                 count=n))
        return time.perf_counter() - t0

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.aio", description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--slots", type=int, default=1024, help="pipe ring size")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    backend = a.backend or netmap_core.default_backend_name()
    pipe = f"netmap:aiobench{os.getpid()}"
    rates: dict[str, list[float]] = {"sync batch loop": [], "asyncio send/receive": []}
    with netmap_core.open(f"{pipe}{{1@conf:slots={a.slots}", backend=backend) as tx, \
            netmap_core.open(f"{pipe}}}1", backend=backend) as rx:
        for _ in range(a.runs):
            rates["sync batch loop"].append(a.packets / sync_loop(tx, rx, a.packets) / 1e6)
            rates["asyncio send/receive"].append(a.packets / async_loop(tx, rx, a.packets) / 1e6)
    print(f"backend {backend}, pipe slots {tx.tx_rings[0].num_slots}, {a.packets} x 60 B frames, "
          f"median of {a.runs} runs (alternating)")
    print("| loop | Mpps (median) | runs |")
    print("|---|---:|---|")
    for name, r in rates.items():
        print(f"| {name} | {statistics.median(r):.2f} | {', '.join(f'{x:.2f}' for x in r)} |")
    base = statistics.median(rates["sync batch loop"])
    print(f"asyncio / sync: {statistics.median(rates['asyncio send/receive']) / base:.2f}")


if __name__ == "__main__":
    main()
