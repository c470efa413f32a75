"""``pynetmap capture`` and ``pynetmap replay`` end to end: the tool runs in its own process,
this test sends or receives on the other end of a pipe; files are read and written with scapy,
a pcap library independent of the one the tools use (dpkt)."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

from toolproc import BOUND, unique_name

scapy_utils = pytest.importorskip("scapy.utils", reason="the test extra's scapy reads the files")


def _frames(n: int, seed: int) -> list[bytes]:
    """Distinct frames of varied lengths (60..1514 bytes), random content after a fixed header."""
    rng = np.random.default_rng(seed)
    head = bytes.fromhex("020000000002" "020000000001" "88b5")
    return [head + i.to_bytes(4, "big") + rng.bytes(int(rng.integers(42, 1497)))
            for i in range(n)]


def _send(port, frames: list[bytes]) -> None:
    ring = port.tx_rings[0]
    i = 0
    end = time.monotonic() + BOUND
    while i < len(frames):
        assert time.monotonic() < end, "the receiver took nothing"
        k = min(ring.space(), len(frames) - i)
        if not k:
            port.poll(timeout=0.5)
            continue
        b = ring.ready(k)
        for slot, f in zip(b.slot_idx, frames[i:i + k]):
            ring.buf(int(slot))[:len(f)] = np.frombuffer(f, np.uint8)
            ring.set_len(int(slot), len(f))
        ring.advance(k)
        port.txsync()
        i += k


# A frame is seen by the receiver up to one wake-up late: on an emulated CPU under load that
# reaches ~0.1 s, so the receiver's span of a paced replay may fall short of the schedule by
# that much. The replay's own "in X s" has no such term: it cannot end before the last frame
# was due. Both would show a replay that ignored its schedule (a span of milliseconds).
LATE = 0.2


def _paced(rep, when: list[float], span: float) -> None:
    """The replay took at least ``span`` seconds by its own clock and the receiver's."""
    m = re.search(r" in ([0-9.]+) s ", rep.stdout)
    assert m and float(m.group(1)) >= span - 0.001, rep.stdout
    assert when[-1] - when[0] >= span - LATE


def _receive(port, n: int) -> tuple[list[bytes], list[float]]:
    ring = port.rx_rings[0]
    got, when = [], []
    end = time.monotonic() + BOUND
    while len(got) < n and time.monotonic() < end:
        if ring.empty:
            port.poll(timeout=0.5)
            continue
        b = ring.ready()
        now = time.monotonic()
        got += [bytes(ring.payload(int(s))) for s in b.slot_idx]
        when += [now] * len(b)
        ring.advance(len(b))
    return got, when


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_capture_writes_what_the_port_received(opener, tool, tmp_path, fmt):
    pipe = unique_name("cap")
    path = tmp_path / f"out.{fmt}"
    cap = tool("capture", "-i", f"netmap:{pipe}}}0", "-w", str(path), "-n", "300", "-T", "0")
    cap.wait_ready("capture: reading")
    frames = _frames(300, 1)
    t_before = time.time()
    _send(opener(f"netmap:{pipe}{{0"), frames)
    assert cap.finish() == 0, cap.stderr
    t_after = time.time()
    pkts = scapy_utils.rdpcap(str(path))
    assert [bytes(p) for p in pkts] == frames              # byte for byte, in order
    stamps = [float(p.time) for p in pkts]
    assert stamps == sorted(stamps) and t_before - 1 <= stamps[0] and stamps[-1] <= t_after + 1


def test_capture_of_a_tx_monitor(opener, tool, tmp_path):
    pipe = unique_name("mon")
    tx = opener(f"netmap:{pipe}{{0")
    rx = opener(f"netmap:{pipe}}}0")
    path = tmp_path / "mon.pcap"
    cap = tool("capture", "-i", f"netmap:{pipe}{{0/t", "-w", str(path), "-n", "50", "-T", "0")
    cap.wait_ready("capture: reading")
    frames = _frames(50, 2)
    _send(tx, frames)
    got, _ = _receive(rx, 50)
    assert got == frames
    assert cap.finish() == 0, cap.stderr
    assert [bytes(p) for p in scapy_utils.rdpcap(str(path))] == frames


def test_replay_keeps_the_original_timing(opener, tool, tmp_path):
    from scapy.layers.l2 import Ether

    frames = _frames(40, 3)
    pkts = [Ether(f) for f in frames]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.02          # 20 ms apart: 0.78 s from first to last
    path = tmp_path / "in.pcap"
    scapy_utils.wrpcap(str(path), pkts)
    pipe = unique_name("rep")
    rx = opener(f"netmap:{pipe}}}0")
    rep = tool("replay", "-i", f"netmap:{pipe}{{0", "-r", str(path))
    got, when = _receive(rx, 40)
    assert rep.finish() == 0, rep.stderr
    assert got == frames
    _paced(rep, when, 0.78)        # a lower bound, not a speed
    assert "sent 40 packets" in rep.stdout


def test_replay_loops_at_top_speed_and_reads_pcapng(opener, tool, tmp_path):
    from scapy.layers.l2 import Ether

    frames = _frames(25, 4)
    path = tmp_path / "in.pcapng"
    scapy_utils.wrpcapng(str(path), [Ether(f) for f in frames])
    pipe = unique_name("rpl")
    rx = opener(f"netmap:{pipe}}}0")
    rep = tool("replay", "-i", f"netmap:{pipe}{{0", "-r", str(path), "--topspeed", "--loop", "3")
    got, _ = _receive(rx, 75)
    assert rep.finish() == 0, rep.stderr
    assert got == frames * 3


def test_replay_at_a_fixed_rate(opener, tool, tmp_path):
    from scapy.layers.l2 import Ether

    frames = _frames(30, 5)
    path = tmp_path / "in.pcap"
    scapy_utils.wrpcap(str(path), [Ether(f) for f in frames])
    pipe = unique_name("rpp")
    rx = opener(f"netmap:{pipe}}}0")
    rep = tool("replay", "-i", f"netmap:{pipe}{{0", "-r", str(path), "--pps", "50")
    got, when = _receive(rx, 30)
    assert rep.finish() == 0, rep.stderr
    assert got == frames
    _paced(rep, when, 29 / 50)


def test_replay_of_a_missing_file_is_one_line(backend_name, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "netmap_tools", "replay", "-i", "x{0", "-r",
                        str(tmp_path / "nope.pcap"), "--backend", backend_name],
                       capture_output=True, text=True, timeout=BOUND)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "nope.pcap" in r.stderr
