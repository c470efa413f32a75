"""bench.pktgen on any machine: pkt-gen's output as captured from netmap's pkt-gen (data/pktgen,
recorded in the netmap lab guest), the skip reasons where /dev/netmap or pkt-gen is missing,
the roles' process handling against a stand-in pkt-gen, and the Python / C comparison.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from bench import harness, pktgen
from bench.harness import Config, Params, Role, Scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pktgen")


def _fixture(name: str) -> str:
    with open(os.path.join(DATA, name)) as f:
        return f.read()


# --- the parser, on real output ----------------------------------------------------------------
@pytest.mark.parametrize("name, kind, packets, events, seconds, pps, avg", [
    ("pipe-tx-N.txt", "Sent", 300000, 587, 0.35, 856680, 511.07),
    ("pipe-rx-N.txt", "Received", 300000, 143, 0.39, 764325, 2097.90),
    ("vale-tx.txt", "Sent", 300000, 586, 0.12, 2.555e6, 511.95),
    ("vale-rx.txt", "Received", 86007, 168, 0.11, 780.173e3, 511.95),
])
def test_parse_real_pktgen_output(name, kind, packets, events, seconds, pps, avg):
    r = pktgen.parse_summary(_fixture(name))
    assert (r.kind, r.packets, r.events, r.size) == (kind, packets, events, 60)
    assert r.bytes == 60 * packets
    assert r.seconds == seconds
    assert r.pps == pytest.approx(pps)
    assert r.avg_batch == avg
    # the precise time comes from the rate (4+ significant digits), not the 2-decimal seconds
    assert r.exact_seconds == pytest.approx(packets / pps)
    assert abs(r.exact_seconds - seconds) <= 0.005 + 1e-9


def test_parse_nothing_received():
    r = pktgen.parse_summary(_fixture("rx-nothing.txt"))
    assert (r.kind, r.packets, r.pps) == ("Received", 0, 0.0)


def test_parse_rejects_output_without_summary():
    text = _fixture("pipe-tx-N.txt")
    cut = text[:text.index("Sent ")]              # pkt-gen killed before its final lines
    with pytest.raises(ValueError, match="no pkt-gen summary"):
        pktgen.parse_summary(cut)


# --- skipped elsewhere, with the reason ---------------------------------------------------------
def _pktgen_rows():
    return {s.id: s for s in pktgen.scenarios(Config())}


def test_rows_exist_for_pipe_and_vale():
    rows = _pktgen_rows()
    assert set(rows) == {f"pktgen-{setup}{sfx}" for setup in ("pipe", "vale")
                         for sfx in ("", "-pytx", "-pyrx")}
    assert all(s.works == ("none",) and not s.quick for s in rows.values())
    assert rows["pktgen-vale"].lossy and not rows["pktgen-pipe"].lossy
    assert rows["pktgen-pipe"].batch == "4095"                   # every free slot, like Python
    assert pktgen.scenarios(Config(batch=512))[0].batch == "512"


def test_skipped_without_dev_netmap(monkeypatch):
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/dev/netmap" else real(p))
    for s in _pktgen_rows().values():
        assert s.available() == "no /dev/netmap"


def test_skipped_without_pktgen(monkeypatch, tmp_path):
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: True if p == "/dev/netmap" else real(p))
    monkeypatch.delenv("PKTGEN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))                    # an empty directory
    assert pktgen.find_pktgen() is None
    rows = _pktgen_rows()
    assert rows["pktgen-pipe"].available().startswith("no pkt-gen")
    assert rows["pktgen-vale-pytx"].available().startswith("no pkt-gen")


@pytest.mark.skipif(os.path.exists("/dev/netmap"), reason="this machine has /dev/netmap")
def test_bench_reports_the_skip(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "bench", "--only", "pktgen", "--sizes", "60", "--repeat", "1",
           "--duration", "0.05", "--no-plot", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 6
    assert all(r["status"] == "skipped" and r["reason"] == "no /dev/netmap" for r in rows)
    assert "pktgen-pipe-pytx" in proc.stdout and "skipped: no /dev/netmap" in proc.stdout


# --- the C roles against a stand-in pkt-gen ------------------------------------------------------
FAKE = """#!/bin/sh
# stands in for pkt-gen: logs like it on stderr, prints a captured summary on stdout
case "$*" in
  *"-f rx"*) echo "000.000001 receiver_body [1939] reading from $2 fd 3 main_fd 3" >&2
             sleep 0.2; cat "{data}/pipe-rx-N.txt" ;;
  *"-f tx"*) echo "$*" > "{log}"; cat "{data}/pipe-tx-N.txt" ;;
esac
"""


@pytest.fixture
def fake_pktgen(tmp_path, monkeypatch):
    exe = tmp_path / "pkt-gen"
    log = tmp_path / "tx-args"
    exe.write_text(FAKE.format(data=DATA, log=log))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PKTGEN", str(exe))
    return log


def _params(packets=300000, batch=512):
    return Params(size=60, work="none", packets=packets, run="t1",
                  extra={"slots": 4096, "batch": batch, "backend": "netmap"})


def test_c_roles_report_pktgens_own_times(fake_pktgen):
    p = _params()
    port = lambda p: f"netmap:{p.run}{{0"  # noqa: E731
    ready_calls = []
    tx = pktgen.c_sender(port)(p, None, lambda: ready_calls.append("tx"))
    rx = pktgen.c_receiver(port)(p, None, lambda: ready_calls.append("rx"))
    assert ready_calls == ["tx", "rx"]
    assert tx == {"tx_seconds": pytest.approx(300000 / 856680), "sent": 300000, "tx_batches": 587}
    assert rx["packets"] == 300000 and rx["batches"] == 143
    assert rx["rx_seconds"] == pytest.approx(300000 / 764325)
    args = fake_pktgen.read_text().split()
    for flag, value in (("-f", "tx"), ("-n", "300000"), ("-l", "60"), ("-b", "512"), ("-w", "0")):
        assert args[args.index(flag) + 1] == value
    assert "-N" in args


def test_c_sender_fails_on_a_short_count(fake_pktgen):
    with pytest.raises(RuntimeError, match="sent 300000 of 400000"):
        pktgen.c_sender(lambda p: "netmap:x{0")(_params(packets=400000), None, lambda: None)


def test_c_receiver_reports_a_pktgen_that_dies_before_opening(tmp_path, monkeypatch):
    exe = tmp_path / "pkt-gen"
    exe.write_text("#!/bin/sh\necho '000.1 main [3036] Unable to open netmap:x}0' >&2\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PKTGEN", str(exe))
    with pytest.raises(RuntimeError, match="exited \\(1\\) before 'reading from'"):
        pktgen.c_receiver(lambda p: "netmap:x}0")(_params(), None, lambda: None)


# --- the harness with a side that has no common clock, and the comparison --------------------
def test_sample_without_common_clock_uses_receivers_own_time():
    scn = Scenario("x", "x", "pktgen", "batched", "512", roles=(Role("s", None), Role("r", None)))
    p = _params(packets=1000)
    s = harness._sample(scn, p, {"s": {"tx_seconds": 0.004}, "r": {"t_end": 10.0, "t_first": 9.998,
                                                                    "packets": 1000}})
    assert s.seconds == pytest.approx(0.002) and s.mpps == pytest.approx(0.5)
    assert s.tx_mpps == pytest.approx(0.25) and s.rx_mpps == pytest.approx(0.5)
    # both sides with CLOCK_MONOTONIC stamps: the usual receiver end - sender start
    s = harness._sample(scn, p, {"s": {"t_start": 1.0, "t_sent": 1.5},
                                 "r": {"t_end": 2.0, "t_first": 1.1, "packets": 1000}})
    assert s.seconds == pytest.approx(1.0)
    assert s.tx_mpps == pytest.approx(0.002) and s.rx_mpps == pytest.approx(1000 / 0.9 / 1e6)


def _row(rid, txs, rxs):
    return {"id": rid, "size": 60, "work": "none", "status": "ok",
            "runs": [{"tx_mpps": t, "rx_mpps": r, "expected": 10, "lost": 0} for t, r in zip(txs, rxs)]}


def test_comparison_ratios_and_pooling():
    rows = [_row("pnm-dev-batch-poll", [1, 1, 1], [0.5, 0.5, 0.5]),
            _row("pktgen-pipe-pytx", [1, 2, 3], [9, 9, 9]),
            _row("pktgen-pipe-pyrx", [9, 9, 9], [2, 2, 2]),
            _row("pktgen-pipe", [4, 4, 4], [4, 5, 6])]
    (c,) = pktgen.comparison(rows)
    assert (c["setup"], c["size"], c["work"]) == ("pipe", 60, "none")
    assert c["pairs"]["py->c"]["tx"] == {"median": 2, "min": 1, "max": 3}
    assert c["tx_ratio"] == pytest.approx(0.5)       # (Python -> C).tx / (C -> C).tx
    assert c["rx_ratio"] == pytest.approx(0.4)       # (C -> Python).rx / (C -> C).rx
    assert c["both_ratio"] == pytest.approx(0.1)
    # the same row from a second file: runs pooled
    (c2,) = pktgen.comparison(rows + [_row("pktgen-pipe-pytx", [10, 10], [9, 9])])
    assert c2["pairs"]["py->c"]["runs"] == 5 and c2["pairs"]["py->c"]["tx"]["median"] == 3
    ((text, measured, met),) = pktgen.tx_targets(rows)
    assert "pipe" in text and measured.startswith("0.50x") and met is True
    assert "0.50x" in pktgen.comparison_text([c]) and "0.50x" in pktgen.comparison_markdown([c])


def test_c_receiver_tries_again_after_the_pipe_open_race(tmp_path, monkeypatch):
    """A pkt-gen that loses the race to create a new pipe exits with ENOMEM before registering;
    the role starts it again (set-up, untimed)."""
    exe = tmp_path / "pkt-gen"
    count = tmp_path / "count"
    exe.write_text(f"""#!/bin/sh
echo x >> "{count}"
if [ $(wc -l < "{count}") -lt 3 ]; then
  echo "000.1 nmport_open_desc [1] NETMAP_REQ_REGISTER: Cannot allocate memory" >&2; exit 1
fi
echo "000.2 receiver_body [1939] reading from $2 fd 3 main_fd 3" >&2
cat "{DATA}/pipe-rx-N.txt"
""")
    exe.chmod(0o755)
    monkeypatch.setenv("PKTGEN", str(exe))
    rx = pktgen.c_receiver(lambda p: "netmap:x}0")(_params(), None, lambda: None)
    assert rx["packets"] == 300000
    assert count.read_text().count("x") == 3


def test_python_open_tries_again_on_enomem(monkeypatch):
    import netmap_core
    from bench import peer_pynetmap

    calls = []

    def fake_open(spec, backend=None):
        calls.append(spec)
        if len(calls) < 3:
            raise netmap_core.OutOfMemoryError(12, "NETMAP_REQ_REGISTER failed with ENOMEM")
        return "port"
    monkeypatch.setattr(netmap_core, "open", fake_open)
    monkeypatch.setattr(peer_pynetmap.time, "sleep", lambda s: None)
    assert peer_pynetmap.open_spec(_params(), "netmap:x}0") == "port" and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(peer_pynetmap, "OPEN_TRIES", 2)
    with pytest.raises(harness.Skip, match="2 tries"):
        peer_pynetmap.open_spec(_params(), "netmap:x}0")
