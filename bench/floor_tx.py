"""``python -m bench.floor_tx``: the fewest Python steps a netmap sender can take per batch, as
a yardstick for ``pynetmap pkt-gen -f tx`` on the same port (real netmap only).

Per batch it reads head and tail, writes head and cur and makes one NIOCTXSYNC: no slot and no
buffer is touched in the loop. Every slot's len and buffer were written once before it, and
stay valid only because the peers it is measured with leave them as they were (a pipe hands
back the receiver's slots, which held the same frames; a VALE port keeps its own). So it is not
a tool, it is a ceiling: no Python sender of this batch size beats it on this CPU, and what
``pynetmap pkt-gen`` loses against it is the library's share; what it loses against C pkt-gen
is the interpreter's. Accepts the pkt-gen options the bench passes and prints pkt-gen's
summary lines.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import select
import time

import numpy as np

import netmap_core
from netmap_core import abi


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor_tx", description=__doc__.splitlines()[0])
    p.add_argument("-i", dest="port", required=True)
    p.add_argument("-f", dest="function", choices=("tx",), default="tx")
    p.add_argument("-n", dest="count", type=int, required=True)
    p.add_argument("-b", dest="burst", type=int, default=512)
    p.add_argument("-l", dest="length", type=int, default=60)
    p.add_argument("-a", dest="cpu", type=int, default=None)
    p.add_argument("-w", dest="wait", type=float, default=0)
    p.add_argument("-N", dest="unscaled", action="store_true")
    a = p.parse_args(argv)
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    port = netmap_core.open_port(a.port, backend="netmap")
    try:
        ring = port.tx_rings[0]
        n, burst, count = ring.num_slots, a.burst, a.count
        ring.slots["len"] = a.length            # once, for every slot: the loop writes none
        ring.slots["flags"] = 0
        # a broadcast from a local MAC, which a VALE switch floods to the receiver
        frame = np.zeros(a.length, np.uint8)
        frame[:14] = np.frombuffer(b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01\x08\x00", np.uint8)
        ring.buffers[ring.slots["buf_idx"].astype(np.intp), :a.length] = frame
        fields = abi.netmap_ring.fields
        assert fields is not None
        head, cur, tail = (fields[x][1] // 4 for x in ("head", "cur", "tail"))
        words = ring.region[ring.offset:ring.offset + 4 * (tail + 1)].data.cast("I")
        fd, ioctl, sync = port.fileno(), fcntl.ioctl, abi.NIOCTXSYNC
        sent = 0
        t0 = time.monotonic()
        while sent < count:
            h = words[head]
            room = words[tail] - h
            if room < 0:
                room += n
            k = min(burst, room, count - sent)
            if not k:
                port.poll(select.POLLOUT, 1.0)
                continue
            h += k
            if h >= n:
                h -= n
            words[head] = h
            words[cur] = h
            ioctl(fd, sync)
            sent += k
        while ring.tx_pending():
            port.poll(select.POLLOUT, 0.05)
        dt = time.monotonic() - t0
    finally:
        port.close()
    events = -(-count // burst)
    print(f"Sent {count} packets {count * a.length} bytes {events} events {a.length} bytes each in "
          f"{dt:.2f} seconds.")
    print(f"Speed: {count / dt:.0f} pps Bandwidth: {8 * a.length * count / dt:.0f} bps "
          f"(raw {8 * a.length * count / dt:.0f} bps). Average batch: {count / events:.2f} pkts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
