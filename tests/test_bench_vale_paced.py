"""The VALE broadcast rows of ``python -m bench`` account for loss per receiver: a tiny run of
the unpaced and the paced 1 -> 3 rows on the emulator. Unpaced, each receiver's count and the drops
its RX ring's counter recorded never exceed what was sent; paced (the sender waits for room in
every receiver's ring), every packet arrives and nothing is dropped. No rate is asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _emu_usable() -> bool:
    try:
        import netmap_core
    except ImportError:
        return False
    return netmap_core.probe("emu")[0]


pytestmark = pytest.mark.skipif(not _emu_usable(), reason="emulator backend not usable here")


def test_broadcast_loss_is_counted_per_receiver_and_pacing_loses_nothing(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "bench", "--only", "vale-emu-1to3-poll", "vale-emu-1to3-paced-poll",
           "--sizes", "60", "--work", "seq", "--repeat", "2", "--duration", "0.1", "--no-plot",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["id"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"vale-emu-1to3-poll", "vale-emu-1to3-paced-poll"}
    for row in rows.values():
        assert row["status"] == "ok", row
        for run in row["runs"]:
            sent = run["expected"] // 3
            per = run["receivers"]
            assert [r["role"] for r in per] == ["receiver0", "receiver1", "receiver2"]
            assert sum(r["packets"] for r in per) == run["packets"]
            for r in per:   # a packet is received or dropped, never both (the unpaced receivers
                # may stop early: their quiet timeout can pass while the sender is descheduled)
                assert r["packets"] + r["drops"] <= sent, (row["id"], run)
            assert run["bad"] == 0
    for run in rows["vale-emu-1to3-paced-poll"]["runs"]:   # every packet sent arrived
        assert run["lost"] == 0 and all(r["drops"] == 0 for r in run["receivers"]), run
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("vale-emu-1to3-paced-poll "))
    assert "per receiver: r0 0.0%, 0 dropped; r1 0.0%, 0 dropped; r2 0.0%, 0 dropped" in line
