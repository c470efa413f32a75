"""Smoke test of ``python -m bench``: a tiny run of a few rows prints the table's columns and
positive rates, and writes the JSON (no timing is asserted).
"""
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


def _run(tmp_path, *only: str) -> tuple[str, dict]:
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "bench", "--only", *only, "--sizes", "60", "--work", "seq",
           "--repeat", "1", "--duration", "0.05", "--rounds", "100", "--no-plot", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_peers_and_pingpong(tmp_path):
    stdout, doc = _run(tmp_path, "os-pipe", "unix-dgram-x256", "pingpong-os-pipe")
    header = next(ln for ln in stdout.splitlines() if ln.startswith("scenario") and "Mpps" in ln)
    for col in ("size", "work", "batch", "Mpps", "min", "max", "vs best 1/msg", "vs best batched"):
        assert col in header
    assert "median us" in stdout and "targets:" in stdout
    rows = {(r["id"], r["size"], r["work"]): r for r in doc["rows"]}
    assert set(rows) == {("os-pipe", 60, "seq"), ("os-pipe-x256", 60, "seq"),
                         ("unix-dgram-x256", 60, "seq"), ("pingpong-os-pipe", 60, "none")}
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["mpps_median"] > 0
        assert all(run["bad"] == 0 and run["lost"] == 0 for run in r["runs"])
    assert rows[("pingpong-os-pipe", 60, "none")]["rtt_median_us"] > 0
    # the printed row carries the same median the JSON holds
    line = next(ln for ln in stdout.splitlines() if ln.startswith("os-pipe-x256 "))
    assert float(line.split()[4]) == pytest.approx(rows[("os-pipe-x256", 60, "seq")]["mpps_median"], abs=1e-3)
    # ratios are relative to the best peer of the kind: the best batched row scores exactly 1
    batched = [rows[("os-pipe-x256", 60, "seq")], rows[("unix-dgram-x256", 60, "seq")]]
    assert max(r["ratio_vs_best_batched"] for r in batched) == pytest.approx(1.0)
    assert rows[("os-pipe", 60, "seq")]["ratio_vs_best_per_message"] == pytest.approx(1.0)


@pytest.mark.skipif(not _emu_usable(), reason="emulator backend not usable here")
def test_pynetmap_emu_rows(tmp_path):
    stdout, doc = _run(tmp_path, "pnm-emu-batch-spin", "pnm-emu-per-packet")
    for r in doc["rows"]:
        assert r["status"] == "ok", r
        assert r["mpps_median"] > 0 and r["avg_batch"] >= 1
    assert any(t["target"].startswith("batch API") for t in doc["targets"])
