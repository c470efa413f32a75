"""Where an interface port's receive side spends its time: CPU time per frame of rxsyncs that
empty a TPACKET_V3 ring written here in the kernel's layout (no sender, no scheduler noise).

    python -m bench.profile_ifport [--frames-per-block N,...] [--sizes B,...] [--repeat R] [--cold]

A ``netmap:IF/R`` port is opened on a veth pair made for the run; its AF_PACKET ring is then
swapped for an anonymous mapping of the same shape, which this tool fills with blocks of
frames (full: as many as a 256 KiB block holds; part-filled: N per block, as a 1 ms block
timeout retires them from a slow sender) and marks ready, as the kernel would. Each round
drains all 16 blocks into a 2048-slot RX ring; printed: median (min) CPU ns per frame over R
rounds (``time.thread_time``), and frames per CPU second. ``--sizes`` with several values
cycles through them frame by frame (the chain then has no equal-stride runs).
"""
from __future__ import annotations

import argparse
import mmap
import statistics
import time

import numpy as np

from .ifport import Veth, empty_rx

BLOCK = 1 << 18
NBLOCKS = 16
FIRST = 48      # BLK_PLUS_PRIV(0): the block descriptor, 8-aligned
MAC = 82        # tp_mac of an Ethernet frame: TPACKET_ALIGN(68 + 16) - 14
HOST = 0        # sll_pkttype PACKET_HOST


def _fill(mm: np.ndarray, per_block: int, sizes: list[int]) -> int:
    """Write NBLOCKS ready blocks of frames (at most ``per_block`` each, 0: as many as fit);
    returns the number of frames written."""
    total = 0
    w32 = mm.view("<u4")
    k = 0
    for b in range(NBLOCKS):
        base = b * BLOCK
        o = FIRST
        n = 0
        prev = -1
        while per_block == 0 or n < per_block:
            size = sizes[k % len(sizes)]
            step = (MAC + size + 7) & ~7   # TOTAL_PKT_LEN_INCL_ALIGN: 8-byte aligned
            if o + step > BLOCK:
                break
            a = base + o
            w32[a // 4 + 3] = size            # tp_snaplen
            w32[a // 4 + 4] = size            # tp_len
            mm[a + 24: a + 26].view("<u2")[0] = MAC
            mm[a + 58] = HOST
            mm[a + MAC: a + MAC + size] = k & 0xFF
            if prev >= 0:
                w32[prev // 4] = a - prev     # tp_next_offset
            prev = a
            o += step
            n += 1
            k += 1
        w32[prev // 4] = 0
        w32[base // 4 + 3] = n                # num_pkts
        w32[base // 4 + 4] = FIRST            # offset_to_first_pkt
        w32[base // 4 + 2] = 1                # block_status: TP_STATUS_USER, last
        total += n
    return total


def _rebuild(mm: np.ndarray, saved: np.ndarray) -> None:
    mm[:] = saved


def profile(per_block: int, sizes: list[int], repeat: int, veth: Veth,
            cold: bool) -> tuple[float, float, int]:
    """(median ns per frame, min ns per frame, frames per round)."""
    import netmap_core

    scratch = np.zeros(64 << 20, dtype=np.uint8) if cold else None

    port = netmap_core.open(f"netmap:{veth.b}/R@conf:rx-slots=2048", backend="emu")
    try:
        sock = port._binding.nic.sock
        anon = mmap.mmap(-1, BLOCK * NBLOCKS)
        arr = np.frombuffer(anon, dtype=np.uint8)
        frames = _fill(arr, per_block, sizes)
        saved = arr.copy()
        if hasattr(sock, "rx"):
            from netmap_emu.datapath.afpacket import RxBlocks

            walk = sock.rx = RxBlocks(anon, BLOCK, NBLOCKS, "a ring filled by bench.profile_ifport")
        else:   # the code before RxBlocks: the walk's state was the socket's
            walk = sock
            sock.ring, sock.r32 = arr, np.frombuffer(anon, dtype="<u4")
            sock.w32 = memoryview(anon).cast("I")
        rx = port.rx_rings[0]
        per: list[float] = []
        for r in range(repeat + 1):
            _rebuild(arr, saved)
            walk.block, walk.pending = 0, None
            if cold:
                scratch += 1   # evicts the ring from the caches, as a sender's run does
            c0 = time.thread_time()
            n = empty_rx(port, rx)
            cpu = time.thread_time() - c0
            assert n == frames, (n, frames)
            if r:   # the first round touches the buffers
                per.append(cpu / n * 1e9)
    finally:
        port.close()
    return statistics.median(per), min(per), frames


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_ifport", description=__doc__.split("\n")[0])
    ap.add_argument("--frames-per-block", default="0,270,32", help="0: full blocks")
    ap.add_argument("--sizes", default="60", help="frame sizes, cycled frame by frame")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--cold", action="store_true", help="write 64 MiB elsewhere before each round")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",")]
    with Veth() as v:
        for fpb in (int(x) for x in a.frames_per_block.split(",")):
            med, low, frames = profile(fpb, sizes, a.repeat, v, a.cold)
            what = "full blocks" if fpb == 0 else f"{fpb} frames/block"
            print(f"  {what:18s} sizes {a.sizes:12s} {frames:6d} frames: {med:6.0f} ns/frame "
                  f"(min {low:.0f})  {1e3 / med:5.2f} Mpps per CPU second")


if __name__ == "__main__":
    main()
