"""bench.floor_tx, the fewest-steps Python sender of the pkt-gen table, on real netmap: into C
pkt-gen on a pipe and through a VALE switch, every frame it counts as sent arrives (a floor
that lost frames, e.g. to a VALE switch that learned its source MAC as its destination, would
measure nothing). No rate is asserted. Needs /dev/netmap and C pkt-gen (the lab)."""
from __future__ import annotations

import argparse
import os
import uuid

import pytest

from bench import pktgen, pktgen_tool

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/dev/netmap"), reason="needs /dev/netmap (./dev lab)"),
    pytest.mark.skipif(pktgen.find_pktgen() is None, reason="needs netmap's C pkt-gen (./dev lab)"),
]


@pytest.mark.parametrize("setup", ["pipe", "vale"])
def test_floor_sender_delivers_every_frame_to_c_pktgen(setup, monkeypatch):
    monkeypatch.setitem(pktgen_tool.LIMIT, "bound", 60.0)   # a receiver left waiting fails the run
    a = argparse.Namespace(size=60, slots=1024, burst=256, packets=20000)
    tag = f"f{os.getpid() % 1000}x{uuid.uuid4().hex[:6]}"   # a VALE name has at most 15 chars
    tx, rx = (f"netmap:{tag}{{0", f"netmap:{tag}}}0") if setup == "pipe" else (f"vale{tag}:s", f"vale{tag}:r")
    sent, got, received = pktgen_tool.one_run("floor", "c", tx, rx, a, "netmap")
    assert received == a.packets
    assert sent > 0 and got > 0
