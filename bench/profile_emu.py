"""Where the time goes on a pynetmap pipe: the cost of each primitive in one process, the
throughput ceiling without any waiting, and how long syncs/polls take when two processes share
a pipe (``python -m bench.profile_emu [--backend emu] [--slots 4096] [--packets N]``).

Nothing here is a benchmark row; it explains the rows (see bench/README.md).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

from .harness import unique_name
from .msgloop import SEQ, SEQ_OFFSET, frame

SEQ_END = SEQ_OFFSET + 8


def _open_pair(backend: str, slots: int):
    import netmap_core

    name = unique_name("p")
    a = netmap_core.open(f"netmap:{name}{{0@conf:slots={slots}", backend=backend)
    b = netmap_core.open(f"netmap:{name}}}0@conf:slots={slots}", backend=backend)
    return a, b


CHUNKS = 9   # _per_call: median over this many chunks of thread CPU time


def _per_call(f, n: int) -> float:
    """µs of thread CPU time per call of ``f``: the median over CHUNKS chunks of ``n // CHUNKS``
    calls (after 10 warm-up calls), so another process taking the CPU does not count."""
    for _ in range(10):
        f()
    m = max(1, n // CHUNKS)
    per = []
    for _ in range(CHUNKS):
        t = time.thread_time()
        for _ in range(m):
            f()
        per.append((time.thread_time() - t) / m * 1e6)
    return float(np.median(per))


def _per_slot(loop, k: int, n: int) -> float:
    """µs of thread CPU time per slot of ``loop(k)`` (a loop over ``k`` slots), median over
    ``n`` runs."""
    loop(k)
    per = []
    for _ in range(n):
        t = time.thread_time()
        loop(k)
        per.append((time.thread_time() - t) / k * 1e6)
    return float(np.median(per))


def primitives(backend: str, slots: int) -> list[tuple[str, float, str]]:
    """(operation, µs per call, note) measured in one process on an idle pipe."""
    from netmap_core import POLLOUT

    a, b = _open_pair(backend, slots)
    try:
        tx, rx = a.tx_rings[0], b.rx_rings[0]
        k = tx.space()
        lens = tx.slots["len"]
        bt = tx.ready(k)
        seqs = np.arange(k, dtype="<u8").view(np.uint8).reshape(k, 8)
        ramp = np.arange(k, dtype="<u8")
        seqf = tx.field(SEQ_OFFSET, "<u8")
        raw = memoryview(tx.slots.view(np.uint8)).cast("B")
        words, halves = raw.cast("I"), raw.cast("H")
        data = memoryview(tx.buffers.reshape(-1)).cast("B")
        bs = tx.buf_size
        out = [
            ("txsync, nothing to send", _per_call(a.txsync, 5000), "lock + prologue + finalize"),
            ("rxsync, nothing received", _per_call(b.rxsync, 5000), ""),
            ("poll(POLLOUT, 0), ready", _per_call(lambda: a.poll(POLLOUT, 0), 5000), ""),
            ("ring.space()", _per_call(tx.space, 50000), ""),
            (f"ring.ready({k})", _per_call(lambda: tx.ready(k), 2000), f"{k} slots"),
            ("ring.ready(64)", _per_call(lambda: tx.ready(64), 5000), "64 slots"),
            (f"slots['len'][batch.slot_idx] = 60 ({k})",
             _per_call(lambda: lens.__setitem__(bt.slot_idx, 60), 2000), ""),
            (f"write {k} sequence numbers (fancy index)",
             _per_call(lambda: tx.buffers.__setitem__((bt.buf_idx, slice(SEQ_OFFSET, SEQ_END)), seqs), 500),
             ""),
            (f"read {k} sequence numbers (fancy index)",
             _per_call(lambda: tx.buffers[bt.buf_idx, SEQ_OFFSET:SEQ_END], 500), ""),
            (f"write {k} sequence numbers (ring.field)",
             _per_call(lambda: seqf.__setitem__(bt.buf_idx, ramp), 500), "what the rows use"),
            (f"read {k} sequence numbers (ring.field)", _per_call(lambda: seqf[bt.buf_idx], 500),
             "what the rows use"),
            ("ring.advance(0)", _per_call(lambda: tx.advance(0), 20000), ""),
            ("ring.buf(i)", _per_call(lambda: tx.buf(5), 50000), "per-packet API"),
            ("ring.payload(i)", _per_call(lambda: rx.payload(5), 50000), "per-packet API"),
            ("ring.next(i)", _per_call(lambda: tx.next(5), 50000), "per-packet API"),
            ("ring.set_len(i, 60)", _per_call(lambda: tx.set_len(5, 60), 50000), "per-packet API"),
            ("slots['len'][i] = 60 (hoisted field view)", _per_call(lambda: lens.__setitem__(5, 60), 50000),
             ""),
            ("SEQ.pack_into(ring.buf(i), 14, s)",
             _per_call(lambda: SEQ.pack_into(tx.buf(5), SEQ_OFFSET, 7), 50000), ""),
            ("bare: memoryview slot word + buffer slice",
             _per_call(lambda: data[words[4 * 5] * bs:words[4 * 5] * bs + bs], 50000), "baseline"),
            ("bare: halves[8*i+2] = 60", _per_call(lambda: halves.__setitem__(8 * 5 + 2, 60), 50000),
             "baseline"),
        ]
        out += [(f"per slot: {what}", _per_slot(loop, k, 30), note) for what, loop, note in _slot_loops(tx)]
        return out
    finally:
        a.close()
        b.close()


def _slot_loops(ring):
    """(what, loop(k), note): the per-slot loops of the per-packet and bare-loop rows (work
    none; the sender's and the receiver's) over ``k`` slots from ``ring.head``."""
    lens = ring.slots["len"]
    raw = memoryview(ring.slots.view(np.uint8)).cast("B")
    words, halves = raw.cast("I"), raw.cast("H")
    data = memoryview(ring.buffers.reshape(-1)).cast("B")
    bs, nslots = ring.buf_size, ring.num_slots

    def api_send(k):
        for i, _b in ring.bufs(k):
            lens[i] = 60

    def api_send_set_len(k):
        set_len = ring.set_len
        for i, _b in ring.bufs(k):
            set_len(i, 60)

    def api_recv(k):
        for _i, _pk in ring.payloads(k):
            pass

    def old_send(k):
        buf, nxt, i = ring.buf, ring.next, ring.head
        for _ in range(k):
            _b = buf(i)
            lens[i] = 60
            i = nxt(i)

    def old_recv(k):
        payload, nxt, i = ring.payload, ring.next, ring.head
        for _ in range(k):
            _pk = payload(i)
            i = nxt(i)

    def bare_send(k):
        i = ring.head
        for _ in range(k):
            o = words[4 * i] * bs
            _b = data[o:o + bs]
            halves[8 * i + 2] = 60
            i += 1
            if i == nslots:
                i = 0

    def bare_recv(k):
        i = ring.head
        for _ in range(k):
            o = words[4 * i] * bs
            _pk = data[o:o + halves[8 * i + 2]]
            i += 1
            if i == nslots:
                i = 0

    return [
        ("for i, b in ring.bufs(k): lens[i] = 60", api_send, "per-packet row, sender"),
        ("for i, pk in ring.payloads(k): pass", api_recv, "per-packet row, receiver"),
        ("for i, b in ring.bufs(k): ring.set_len(i, 60)", api_send_set_len, ""),
        ("b = ring.buf(i); lens[i] = 60; i = ring.next(i)", old_send, "the row before bufs()"),
        ("pk = ring.payload(i); i = ring.next(i)", old_recv, "the row before payloads()"),
        ("bare sender (memoryview words, halves, pool)", bare_send, "bare-loop row, sender"),
        ("bare receiver", bare_recv, "bare-loop row, receiver"),
    ]


def ceiling(backend: str, slots: int, packets: int) -> list[tuple[str, float]]:
    """Mpps of send-batch, txsync, rxsync, receive-batch done in turn by ONE process (thread
    CPU time, so the rate is what the code costs, whatever else runs): the batch API and the
    loops of the per-packet and bare-loop rows, with no waiting for another process."""
    out = []
    for mode in ("batch", "per-packet", "bare-loop"):
        a, b = _open_pair(backend, slots)
        try:
            tx, rx = a.tx_rings[0], b.rx_rings[0]
            tx.buffers[tx.slots["buf_idx"].astype(np.int64), :60] = np.frombuffer(frame(60), np.uint8)
            lens = tx.slots["len"]
            loops = {what: loop for what, loop, _ in _slot_loops(tx)}
            send_api, send_bare = loops["for i, b in ring.bufs(k): lens[i] = 60"], \
                loops["bare sender (memoryview words, halves, pool)"]
            rloops = {what: loop for what, loop, _ in _slot_loops(rx)}
            recv_api, recv_bare = rloops["for i, pk in ring.payloads(k): pass"], rloops["bare receiver"]
            done = 0
            t = time.thread_time()
            while done < packets:
                k = tx.space()
                if mode == "batch":
                    bt = tx.ready(k)
                    lens[bt.slot_idx] = 60
                else:
                    (send_api if mode == "per-packet" else send_bare)(k)
                tx.advance(k)
                a.txsync()
                b.rxsync()
                if mode == "batch":
                    br = rx.ready()
                    rx.advance(len(br))
                else:
                    got = rx.space()
                    (recv_api if mode == "per-packet" else recv_bare)(got)
                    rx.advance(got)
                b.rxsync()
                a.txsync()
                done += k
            out.append((f"{mode}, both sides", done / (time.thread_time() - t) / 1e6))
        finally:
            a.close()
            b.close()
    return out


def _side(which: str, backend: str, name: str, slots: int, packets: int, blocking: bool, q, bar):
    import netmap_core
    from netmap_core import POLLIN, POLLOUT

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0 if which == "sender" else -1]})
    end = "{0" if which == "sender" else "}0"
    port = netmap_core.open(f"netmap:{name}{end}@conf:slots={slots}", backend=backend)
    ring = port.tx_rings[0] if which == "sender" else port.rx_rings[0]
    sync = port.txsync if which == "sender" else port.rxsync
    ev = POLLOUT if which == "sender" else POLLIN
    lens = ring.slots["len"]
    waits, syncs = [], []
    work = 0.0
    pc = time.perf_counter
    bar.wait()
    t0 = pc()
    done = 0
    while done < packets:
        k = ring.space()
        if k == 0:
            t = pc()
            port.poll(ev, 1.0) if blocking else sync()
            waits.append(pc() - t)
            continue
        t = pc()
        if which == "sender":
            bt = ring.ready(min(k, packets - done))
            k = len(bt)
            lens[bt.slot_idx] = 60
            ring.advance(k)
            t2 = pc()
            sync()
            syncs.append(pc() - t2)
            work += t2 - t
        else:
            br = ring.ready()
            k = len(br)
            ring.advance(k)
            work += pc() - t
        done += k
    elapsed = pc() - t0
    q.put((which, elapsed, np.array(waits), np.array(syncs), work))
    port.close()


def two_process(backend: str, slots: int, packets: int, blocking: bool) -> list[str]:
    mpc = mp.get_context("fork")
    q, bar = mpc.Queue(), mpc.Barrier(2)
    name = unique_name("p")
    procs = [mpc.Process(target=_side, args=(w, backend, name, slots, packets, blocking, q, bar))
             for w in ("sender", "receiver")]
    for p in procs:
        p.start()
    lines = []
    for _ in procs:
        which, el, waits, syncs, work = q.get(timeout=120)
        what = "poll" if blocking else ("txsync" if which == "sender" else "rxsync")
        pct = np.percentile(waits, [50, 90, 99, 99.9]) * 1e6 if waits.size else [0] * 4
        slow = waits[waits > 50e-6].sum()
        lines.append(
            f"{which:8s} {packets / el / 1e6:6.2f} Mpps over {el:.3f} s: batch work {work * 1e3:6.1f} ms "
            f"({work / packets * 1e9:.0f} ns/pkt); {waits.size} {what} calls while the ring was "
            f"{'full' if which == 'sender' else 'empty'}: {waits.sum() * 1e3:.0f} ms, "
            f"p50/p90/p99/p99.9 {pct[0]:.0f}/{pct[1]:.0f}/{pct[2]:.0f}/{pct[3]:.0f} us, "
            f"max {waits.max() * 1e6 if waits.size else 0:.0f} us; calls > 50 us: {slow * 1e3:.0f} ms"
            + (f"; publishing txsyncs: {syncs.sum() * 1e3:.0f} ms, max {syncs.max() * 1e6:.0f} us"
               if syncs.size else ""))
    for p in procs:
        p.join(10)
    return lines


# --- work "seq": one 8-byte field per buffer, the bound of the layout -----------------------
SEQ_LAYOUTS = ("strided", "dense")


def seq_costs(backend: str, slots: int) -> list[tuple[str, float]]:
    """µs of thread CPU time per batch of ``slots - 1`` frames (median of chunks), one process:
    the row's sequence field through ``ring.field(14)[buf_idx]``, the same as a strided slice
    (``buf_idx`` is one or two runs of consecutive buffers on a pipe), the O(k) test that
    would pick the slice, and the same count of 8-byte values stored contiguously."""
    a, b = _open_pair(backend, slots)
    try:
        tx = a.tx_rings[0]
        k = tx.space()
        bidx = tx.ready(k).buf_idx
        seqf = tx.field(SEQ_OFFSET, "<u8")
        ramp = np.arange(k, dtype="<u8")
        dense = np.zeros(k, "<u8")
        b0 = int(bidx[0])
        one_run = bool(b0 + k - 1 == int(bidx[-1]) and (np.diff(bidx) == 1).all())
        run = slice(b0, b0 + k)
        return [
            (f"write {k} seqs: ring.field(14)[buf_idx] = ramp",
             _per_call(lambda: seqf.__setitem__(bidx, ramp), 450)),
            (f"read {k} seqs: ring.field(14)[buf_idx]", _per_call(lambda: seqf[bidx], 450)),
            (f"write {k} seqs: ring.field(14)[a:b] = ramp (one run: {one_run})",
             _per_call(lambda: seqf.__setitem__(run, ramp), 450)),
            (f"read {k} seqs: ring.field(14)[a:b].copy()", _per_call(lambda: seqf[run].copy(), 450)),
            (f"is buf_idx one run? (np.diff(buf_idx) == 1).all(), {k}",
             _per_call(lambda: (np.diff(bidx) == 1).all(), 450)),
            (f"write {k} seqs stored contiguously (no layout)",
             _per_call(lambda: dense.__setitem__(slice(None), ramp), 450)),
        ]
    finally:
        a.close()
        b.close()


def _seq_side(which: int, layout: str, mem, laps: int, q) -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0 if which == 0 else -1]})
    n, bs = SEQ_SLOTS, 2048
    turn = np.frombuffer(mem, np.int64, count=1, offset=n * bs)
    if layout == "strided":
        field = np.ndarray((n,), "<u8", buffer=mem, offset=SEQ_OFFSET, strides=(bs,))
    else:
        field = np.ndarray((n,), "<u8", buffer=mem, offset=0)
    k = n - 1
    work, bad = [], 0
    for lap in range(laps):
        while turn[0] != 2 * lap + which:
            pass
        h = lap * k % n
        idx = (np.arange(h, h + k) % n).astype(np.intp)   # the pipe's slots, wrapping
        t = time.thread_time()
        ramp = np.arange(lap * k, lap * k + k, dtype="<u8")
        if which == 0:
            field[idx] = ramp
        else:
            bad += int(np.count_nonzero(field[idx] != ramp))
        work.append(time.thread_time() - t)
        turn[0] = 2 * lap + which + 1
    q.put((which, float(np.median(work)) * 1e6, bad))


SEQ_SLOTS = 4096


def seq_two_process(laps: int = 1000) -> list[str]:
    """Two processes (CPU 0 and the last CPU) take turns over 4095 of 4096 buffers 2048 B apart
    in shared memory, without pynetmap: the sender writes each buffer's 8-byte sequence field at
    byte 14, the receiver reads and checks it (fancy indexes, as the row). Median thread CPU
    time of that work per lap, against the same values stored contiguously."""
    import mmap

    mpc = mp.get_context("fork")
    lines = []
    for layout in SEQ_LAYOUTS:
        mem = mmap.mmap(-1, SEQ_SLOTS * 2048 + 4096)
        np.frombuffer(mem, np.uint8)[:] = 0
        q = mpc.Queue()
        procs = [mpc.Process(target=_seq_side, args=(w, layout, mem, laps, q)) for w in (0, 1)]
        for p in procs:
            p.start()
        got = sorted(q.get(timeout=300) for _ in procs)
        for p in procs:
            p.join(10)
        (_, snd, _), (_, rcv, bad) = got
        lines.append(f"{layout:8s} sender {snd:6.1f} us, receiver {rcv:6.1f} us per lap of "
                     f"{SEQ_SLOTS - 1} ({(snd + rcv) * 1e3 / (SEQ_SLOTS - 1):.1f} ns/frame both sides); "
                     f"bad {bad}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_emu", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="emu")
    ap.add_argument("--slots", type=int, default=4096)
    ap.add_argument("--packets", type=int, default=4_000_000)
    ap.add_argument("--one-process", action="store_true",
                    help="only the one-process parts (CPU time; meaningful on a busy machine)")
    a = ap.parse_args(argv)
    print(f"one process, idle pipe of {a.slots} slots, backend {a.backend}:")
    for op, us, note in primitives(a.backend, a.slots):
        print(f"  {op:48s} {us:9.3f} us  {note}")
    print("\none process doing both sides in turn (no waiting), 60 B, work none, Mpps of CPU time:")
    rates = dict(ceiling(a.backend, a.slots, min(a.packets, 2_000_000)))
    for mode, mpps in rates.items():
        print(f"  {mode:48s} {mpps:7.2f} Mpps")
    ratio = rates["per-packet, both sides"] / rates["bare-loop, both sides"]
    print(f"  {'per-packet / bare-loop':48s} {ratio:7.2f}")
    print("\nwork seq, one process, µs of CPU time per batch:")
    for op, us in seq_costs(a.backend, a.slots):
        print(f"  {op:64s} {us:8.2f} us")
    print("\nwork seq, two processes taking turns (no pynetmap), CPU time of the work:")
    for line in seq_two_process():
        print("  " + line)
    for blocking in () if a.one_process else (False, True):
        print(f"\ntwo processes, batch API, {'blocking in poll' if blocking else 'spinning on syncs'}:")
        for line in two_process(a.backend, a.slots, a.packets, blocking):
            print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
