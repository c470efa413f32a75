"""The one-minute demo: a sender and a receiver process exchange sequence-numbered frames
through a netmap pipe, blocking in poll, with the batch API.

Per packet the sender writes an 8-byte sequence number and the receiver reads and checks it;
frames are pre-built once (the pipe swaps buffers, so they stay filled).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np

import netmap_core
from netmap_core import POLLIN, POLLOUT, abi

SEQ = 16  # byte offset of the sequence number: after the Ethernet header, 8-byte aligned
#: argument ranges (the CLI checks them too): a pipe ring keeps one slot empty, so 2 slots
#: carry 1 frame per sync; frames must hold the sequence number
LIMITS = {"count": (1, 1 << 40), "batch": (1, 1 << 20), "size": (SEQ + 8, 2048),
          "slots": (2, abi.NM_PIPE_MAXSLOTS)}
#: seconds without progress after which either side gives up (a stuck peer never hangs the demo)
STALL = 10.0


def _frame(size: int) -> bytes:
    eth = bytes.fromhex("ffffffffffff" "020000000001" "88b5")  # broadcast, local experimental type
    return (eth + bytes(max(0, size - len(eth))))[:size]


def _send(spec: str, count: int, batch: int, size: int, backend: str | None) -> None:
    with netmap_core.open(spec, backend=backend) as port:
        ring = port.tx_rings[0]
        ring.buffers[ring.slots["buf_idx"].astype(np.int64), :size] = np.frombuffer(_frame(size), np.uint8)
        seq = 0
        moved = time.monotonic()
        while seq < count:
            if ring.space() == 0:
                port.poll(POLLOUT, 1.0)
                if time.monotonic() - moved > STALL:
                    raise SystemExit(f"demo sender: no room in the ring for {STALL:.0f} s, giving up")
                continue
            moved = time.monotonic()
            b = ring.ready(min(batch, count - seq))
            k = len(b)
            seqs = np.arange(seq, seq + k, dtype="<u8")
            b.write(SEQ, seqs)
            ring.slots["len"][b.slot_idx] = size
            ring.advance(k)
            ring.cur = ring.tail  # wake me only when more room than now appears
            port.txsync()
            seq += k
        while ring.tx_pending():  # drain: wait until the receiver took everything
            port.poll(POLLOUT, 1.0)
            if time.monotonic() - moved > STALL:
                raise SystemExit(f"demo sender: the receiver took nothing for {STALL:.0f} s, giving up")


def run(count: int = 1_000_000, batch: int = 2048, size: int = 60, backend: str | None = None,
        slots: int = 4096) -> int:
    for what, value in (("count", count), ("batch", batch), ("size", size), ("slots", slots)):
        lo, hi = LIMITS[what]
        if not isinstance(value, int) or not lo <= value <= hi:
            print(f"demo: --{what}={value} out of range; allowed {lo}..{hi}")
            return 2
    spec = f"netmap:demo{os.getpid()}"
    conf = f"@conf:slots={slots}"
    ctx = mp.get_context("fork")
    with netmap_core.open(spec + "}0" + conf, backend=backend) as rx_port:
        ring = rx_port.rx_rings[0]
        print(f"opened {rx_port!r}")
        print(f"  receiver ring {ring.describe(32)}")
        sender = ctx.Process(target=_send, args=(spec + "{0" + conf, count, batch, size, backend),
                             daemon=True)   # never outlives the demo
        t0 = time.perf_counter()
        sender.start()
        expect, bad = 0, 0
        moved = time.monotonic()
        while expect < count:
            if ring.empty:
                rx_port.poll(POLLIN, 1.0)
                if ring.empty and not sender.is_alive():
                    break
                if ring.empty and time.monotonic() - moved > STALL:
                    print(f"  no frame for {STALL:.0f} s: giving up")
                    break
                continue
            moved = time.monotonic()
            b = ring.ready()
            got = b.read(SEQ)
            bad += int(np.count_nonzero(got != np.arange(expect, expect + len(b), dtype="<u8")))
            expect += len(b)
            ring.advance(len(b))
        elapsed = time.perf_counter() - t0
        rx_port.rxsync()
        sender.join(STALL + 5 if expect == count else 1)   # a sender that stalled is stopped
        if sender.is_alive():
            sender.terminate()
            sender.join(5)
    mpps = expect / elapsed / 1e6
    print(f"  received {expect} of {count} frames of {size} B in {elapsed:.3f} s: {mpps:.2f} Mpps "
          f"(batch {batch}; per packet: sender writes a sequence number, receiver checks it)")
    print(f"  sequence errors: {bad}; sender exit code {sender.exitcode}")
    return 0 if (expect == count and bad == 0 and sender.exitcode == 0) else 1
