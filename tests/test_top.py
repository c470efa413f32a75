"""``pynetmap top`` and the emulator's traffic counters: exact slot, byte and drop counts after
known traffic through a pipe and a VALE switch, rates from two snapshots, the tool's output
with traffic from other processes, --plot, and what it shows on the netmap device."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import netmap_core as nm
from netmap_tools import top
from procs import BOUND, Child


def _emu_only(backend_name: str) -> None:
    if backend_name != "emu":
        pytest.skip("per-ring counters are an emulator feature (spec/deviations.md)")


def _by(snap):
    return {(r.port, r.dir, r.ring): r for r in snap.rings}


def _send(port, k: int, size: int) -> None:
    ring = port.tx_rings[0]
    assert ring.fill(k, template=bytes(size)) == k
    port.txsync()


# --- counters -----------------------------------------------------------------------------------
def test_pipe_counts_slots_and_bytes_per_ring(backend_name):
    _emu_only(backend_name)
    from netmap_emu import stats
    from netmap_emu.testing import isolated_namespace

    with (isolated_namespace("top"), nm.open("netmap:cnt{1", backend="emu") as a,
          nm.open("netmap:cnt}1", backend="emu") as b):
        for _ in range(3):
            _send(a, 10, 60)
        _send(a, 5, 100)
        b.rxsync()
        rx = b.rx_rings[0]
        assert len(rx.ready()) == 35
        rx.advance(35)
        b.rxsync()          # releasing counts nothing: only what moves towards a receiver
        _send(b, 4, 200)
        c = _by(stats.snapshot())
    assert (c["cnt{1", "tx", 0].slots, c["cnt{1", "tx", 0].bytes) == (35, 3 * 600 + 500)
    assert (c["cnt}1", "rx", 0].slots, c["cnt}1", "rx", 0].bytes) == (35, 2300)
    assert (c["cnt}1", "tx", 0].slots, c["cnt}1", "tx", 0].bytes) == (4, 800)
    assert (c["cnt{1", "rx", 0].slots, c["cnt{1", "rx", 0].bytes) == (4, 800)
    assert all(r.drops == 0 and r.kind == "pipe" for r in c.values())


def test_vale_counts_drops_per_destination(backend_name):
    _emu_only(backend_name)
    from netmap_core.testing.vale import frame, mac, recv, send, unique_switch
    from netmap_emu import stats
    from netmap_emu.testing.vale import ValeEnv

    bcast = frame(b"\xff" * 6, mac(1), 100)
    with ValeEnv() as env:
        sw = unique_switch()
        p0, p1, p2 = env.switch(sw, 3, slots=8)     # 8-slot rings hold 7 packets
        send(p0, [bcast] * 5)
        send(p0, [bcast] * 5)
        c = _by(stats.snapshot())
        assert (c[f"{sw}:p0", "tx", 0].slots, c[f"{sw}:p0", "tx", 0].bytes) == (10, 1000)
        for p in ("p1", "p2"):   # broadcast: each destination loses what did not fit in it
            r = c[f"{sw}:{p}", "rx", 0]
            assert (r.slots, r.bytes, r.drops) == (7, 700, 3)
        assert len(recv(p1)) == 7    # p1 drains, p2 does not
        p1.rxsync()
        send(p0, [bcast] * 5)
        c = _by(stats.snapshot())
    assert (c[f"{sw}:p0", "tx", 0].slots, c[f"{sw}:p0", "tx", 0].bytes) == (15, 1500)
    r1, r2 = c[f"{sw}:p1", "rx", 0], c[f"{sw}:p2", "rx", 0]
    assert (r1.slots, r1.bytes, r1.drops) == (12, 1200, 3)
    assert (r2.slots, r2.bytes, r2.drops) == (7, 700, 8)
    assert c[f"{sw}:p0", "rx", 0].slots == 0 and c[f"{sw}:p0", "rx", 0].drops == 0
    assert {r.switch for r in c.values()} == {sw}


def test_snapshot_of_missing_namespace_creates_nothing(backend_name, tmp_path, monkeypatch):
    _emu_only(backend_name)
    from netmap_emu import stats

    monkeypatch.setenv("PYNETMAP_EMU_DIR", str(tmp_path / "none"))
    s = stats.snapshot(f"absent{os.getpid()}")
    assert s.rings == () and s.backend == "emu"
    assert not (tmp_path / "none").exists()


# --- rates --------------------------------------------------------------------------------------
def _ring(port, d, slots, nbytes, drops=0, ring=0):
    return SimpleNamespace(port=port, kind="vale", switch="s", dir=d, ring=ring, slots=slots,
                           bytes=nbytes, drops=drops)


def test_rates_are_differences_over_time():
    old = SimpleNamespace(time=10.0, rings=[_ring("s:a", "tx", 100, 6000), _ring("s:b", "rx", 50, 3000, 5),
                                           _ring("s:c", "tx", 900, 9000)])
    new = SimpleNamespace(time=12.0, rings=[_ring("s:a", "tx", 300, 18000), _ring("s:b", "rx", 90, 5400, 9),
                                           _ring("s:b", "rx", 4, 40, ring=1), _ring("s:c", "tx", 10, 100)])
    r = {(x.port, x.ring): x for x in top.rates(old, new)}
    assert (r["s:a", 0].pps, r["s:a", 0].bps, r["s:a", 0].dps) == (100.0, 6000.0, 0.0)
    assert (r["s:b", 0].pps, r["s:b", 0].bps, r["s:b", 0].dps) == (20.0, 1200.0, 2.0)
    assert r["s:b", 1].pps is None            # a ring the first snapshot did not have
    assert (r["s:c", 0].pps, r["s:c", 0].bps) == (5.0, 50.0)   # counters went down: re-created
    agg = {(x.port, x.dir): x for x in top.ports(top.rates(old, new))}
    assert agg["s:b", "rx"].slots == 94 and agg["s:b", "rx"].pps is None and agg["s:b", "rx"].ring == -1


# --- the tool -----------------------------------------------------------------------------------
SENDER = """
    import sys, time
    import netmap_core as nm
    name = sys.argv[1]
    with nm.open(f"netmap:{name}{{1", backend="emu") as a, nm.open(f"netmap:{name}}}1", backend="emu") as b:
        tx, rx = a.tx_rings[0], b.rx_rings[0]
        print("ready", flush=True)
        while True:
            k = tx.space()
            if k:
                tx.fill(k, template=bytes(60))
            a.txsync()
            b.rxsync()
            rx.advance(len(rx.ready()))
            time.sleep(0.001)
"""


def _top(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netmap_tools", "top", *args], capture_output=True,
                          text=True, timeout=BOUND, env=dict(os.environ))


def test_once_json_and_table_with_traffic_from_another_process(backend_name):
    _emu_only(backend_name)
    from netmap_emu.testing import isolated_namespace

    name = f"tj{os.getpid()}"
    with isolated_namespace("top") as ns_name, Child(SENDER, name) as child:
        child.expect("ready")
        res = _top("--backend", "emu", "--once", "--json", "-i", "0.5")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == 1
        rec = json.loads(lines[0])
        text = _top("--backend", "emu", "-n", "2", "-i", "0.2")
    assert rec["backend"] == "emu" and rec["namespace"] == ns_name
    assert rec["interval"] >= 0.5
    rings = {(r["port"], r["dir"]): r for r in rec["rings"]}
    assert set(rings) == {(f"{name}{end}1", d) for end in "{}" for d in ("tx", "rx")}
    sent = rings[f"{name}{{1", "tx"]
    assert sent["pps"] > 0 and sent["bps"] == pytest.approx(60 * sent["pps"])
    assert sent["bytes"] == 60 * sent["slots"]
    assert rings[f"{name}}}1", "tx"]["slots"] == 0 and rings[f"{name}}}1", "tx"]["pps"] == 0
    ports = {(p["port"], p["dir"]): p for p in rec["ports"]}
    assert ports[f"{name}{{1", "tx"]["ring"] == -1 and ports[f"{name}{{1", "tx"]["slots"] == sent["slots"]
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("PORT ") == 2 and f"{name}{{1" in text.stdout


def test_plot_writes_png(backend_name, tmp_path):
    _emu_only(backend_name)
    pytest.importorskip("matplotlib", reason="the plot extra (pip install 'pynetmap[plot]') is not installed")
    from netmap_emu.testing import isolated_namespace

    png = tmp_path / "rates.png"
    with isolated_namespace("top"), nm.open("netmap:tp{1", backend="emu") as a:
        _send(a, 8, 60)
        out = io.StringIO()
        assert top.main(["--backend", "emu", "-n", "2", "-i", "0.05", "--plot", str(png)], out=out) == 0
    assert out.getvalue().count("emu namespace ") == 2 and "tp{1" in out.getvalue()
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    err = io.StringIO()
    assert top.main(["--backend", "emu", "--once", "--plot", "x.png"], out=io.StringIO(), err=err) == 2
    assert err.getvalue().strip() == top.PLOT_EXTRA and "pynetmap[plot]" in err.getvalue()


@pytest.mark.parametrize("args, words", [(["-i", "0"], "0.0 is not > 0"), (["-n", "0"], "0 is below 1"),
                                         (["-i", "x"], "'x' is not a number")])
def test_bad_arguments_are_named(args, words, capsys):
    with pytest.raises(SystemExit) as e:
        top.main(args)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_device_lists_vale_ports_and_says_counters_are_emulated(backend_name, opener):
    if backend_name != "netmap":
        pytest.skip("the netmap device's view: run with --backend netmap (./dev lab tests/test_top.py)")
    sw = f"vale{os.getpid() % 1000}"
    opener(f"{sw}:top0")
    opener(f"{sw}:top1")
    out = io.StringIO()
    assert top.main(["--backend", "netmap", "--once"], out=out) == 0
    text = out.getvalue()
    assert top.NO_COUNTERS in text
    assert f"{sw}:top0" in text and f"{sw}:top1" in text
    out = io.StringIO()
    assert top.main(["--backend", "netmap", "--once", "--json"], out=out) == 0
    rec = json.loads(out.getvalue())
    assert rec["rings"] == [] and rec["note"] == top.NO_COUNTERS
    assert {f"{sw}:top0", f"{sw}:top1"} <= {p["port"] for p in rec["vale_ports"]}
    err = io.StringIO()
    assert top.main(["--backend", "netmap", "--plot", "x.png"], out=io.StringIO(), err=err) == 2
    assert top.NO_COUNTERS in err.getvalue()
