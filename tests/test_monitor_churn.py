"""Monitors opened and closed while another process keeps sending, on the chosen backend:
deliveries never reach a monitor that is going away, the monitored traffic is neither lost nor
reordered, and every frame a monitor shows is one that was sent."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

import netmap_core
from netmap_core.testing import BCAST, mac, recv, recv_slots, unique_switch


def seq_of(f: bytes) -> int:
    return int.from_bytes(f[14:18], "little")


SENDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import netmap_core
    from netmap_core import abi
    name, seconds, backend = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    p = netmap_core.open(name, backend=backend)
    t = p.tx_rings[0]
    print("ready", flush=True)
    seq, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        k = min(t.space(), 8)
        for _ in range(k):
            i = t.head
            b = t.buf(i)
            b[:6] = 0xFF
            b[6:12] = np.frombuffer(bytes([2, 0, 0, 0, 0, 1]), np.uint8)
            b[12:14] = (0x88, 0xB5)
            b[14:18] = np.frombuffer(seq.to_bytes(4, "little"), np.uint8)
            t.slots["len"][i] = 60
            t.slots["flags"][i] = 0
            t.advance(1)
            seq += 1
        p.txsync()
        if not k:
            time.sleep(0.0005)
    # a pipe drops what its TX ring still holds when the port closes: wait (bounded) until the
    # receiver has taken everything, so that "sent" is what a lossless pipe must deliver
    end = time.monotonic() + 20
    while t.tx_pending() and time.monotonic() < end:
        time.sleep(0.001)
        p.txsync()
    p.close()
    print(seq)
""")


@pytest.mark.parametrize("kind", ["pipe", "vale"])
def test_monitors_churn_under_traffic(backend_name, kind):
    if kind == "pipe":
        base = f"netmap:{unique_switch('ch')}"
        rx_name, tx_name, mon_of = f"{base}{{1@conf:slots=64", f"{base}}}1", f"{base}{{1"
    else:
        sw = unique_switch()
        rx_name, tx_name, mon_of = f"{sw}:r@conf:slots=64", f"{sw}:t", f"{sw}:r"
    rx = netmap_core.open(rx_name, backend=backend_name, rules="netmap")
    keep = [netmap_core.open(f"{mon_of}/z", backend=backend_name)]       # one zero-copy monitor stays
    if kind == "vale":
        keep.append(netmap_core.open(tx_name, backend=backend_name))       # the port exists before the child
    child = subprocess.Popen([sys.executable, "-c", SENDER, tx_name, "1.5", backend_name],
                             stdout=subprocess.PIPE, env=dict(os.environ))
    # churn while the child sends, not while it starts (seconds on a loaded machine)
    ready, _, _ = select.select([child.stdout], [], [], 60)
    assert ready and child.stdout.readline() == b"ready\n", "the sender did not start"
    got: list[int] = []
    seen = 0
    end = time.monotonic() + 30
    flags = ["rt", "z", "r", "z"]
    k = 0
    try:
        while child.poll() is None and time.monotonic() < end:
            m = netmap_core.open(f"{mon_of}/{flags[k % 4]}", backend=backend_name)
            k += 1
            # at least 5 receive rounds; until this run's first monitored frame (up to 0.2 s),
            # since the sender may take longer than 5 rounds to notice the room they make
            window = time.monotonic() + 0.2
            rounds = 0
            while rounds < 5 or (not seen and time.monotonic() < window):
                got += [seq_of(f) for f in recv(rx)]
                rx.rxsync()
                for d, _fl in recv_slots(m):
                    assert d[:6] == BCAST and d[6:12] == mac(0, 0)[:5] + b"\x01", d[:18]
                    seen += 1
                rounds += 1
            m.close()
        child.wait(30)
        for _ in range(3):
            got += [seq_of(f) for f in recv(rx)]
            rx.rxsync()
        for z in keep[:1]:
            for d, _fl in recv_slots(z):
                assert d[:6] == BCAST
    finally:
        if child.poll() is None:
            child.kill()
        for p in keep:
            p.close()
        rx.close()
    sent = int(child.stdout.read().decode().strip() or 0)
    assert child.returncode == 0 and k >= 4 and sent > 0
    if kind == "pipe":                 # pipes are lossless and in order
        assert got == list(range(sent))
    else:                              # VALE drops when the receiver is full, never reorders
        assert got == sorted(set(got)) and got
    assert seen > 0
