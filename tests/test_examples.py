"""The README's first example and the examples/ network functions, run on the chosen backend
(--backend, default emu): documentation that does not run is not documentation."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

import netmap_core as nm

ROOT = Path(__file__).resolve().parent.parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def backend(backend_name, monkeypatch):
    monkeypatch.setenv("PYNETMAP_BACKEND", backend_name)
    return backend_name


def test_readme_first_example_runs(backend, capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## One minute with the emulator\s+```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("demo{1", f"readme{os.getpid()}{{1").replace("demo}1", f"readme{os.getpid()}}}1")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.split()
    assert out[:5] == ["32", "[60", "60", "60", "60]"]
    assert out[5] == "[255"


def udp(src_last: int, dport: int) -> np.ndarray:
    f = np.zeros(60, np.uint8)
    f[12:14], f[14], f[23] = [8, 0], 0x45, 17
    f[26:30], f[30:34] = [10, 0, 0, src_last], [10, 1, 0, 1]
    f[34:36], f[36:38] = [0x40, src_last], [dport >> 8, dport & 255]
    return f


def test_lb_spreads_flows_and_keeps_each_flow_on_one_output(backend):
    lb = load("lb")
    base = f"lb{os.getpid()}"
    with contextlib.ExitStack() as st:
        gen = st.enter_context(nm.open(f"netmap:{base}{{in"))
        inp = st.enter_context(nm.open(f"netmap:{base}}}in"))
        outs = [st.enter_context(nm.open(f"netmap:{base}{{{k}")) for k in range(2)]
        workers = [st.enter_context(nm.open(f"netmap:{base}}}{k}")) for k in range(2)]
        frames = np.stack([udp(i % 16, 80) for i in range(64)])
        assert gen.tx_rings[0].fill(data=frames) == 64
        gen.txsync()
        assert lb.balance_once(inp, outs, timeout=1.0) == (64, 0)
        seen = {}
        for k, w in enumerate(workers):
            w.rxsync()
            b = w.rx_rings[0].ready()
            for src in b.gather(29, 30).ravel().tolist():
                seen.setdefault(src, set()).add(k)
        assert sum(len(v) for v in seen.values()) == 16  # every flow on exactly one output
        assert {k for v in seen.values() for k in v} == {0, 1}


def test_firewall_drops_blocked_ports_and_passes_the_rest(backend):
    fw = load("firewall")
    base = f"fw{os.getpid()}"
    with nm.open(f"netmap:{base}{{0") as gen, nm.open(f"netmap:{base}}}0") as inp, \
            nm.open(f"netmap:{base}{{1") as out, nm.open(f"netmap:{base}}}1") as sink:
        frames = np.stack([udp(i, 53 if i % 3 == 0 else 80) for i in range(30)])
        gen.tx_rings[0].fill(data=frames)
        gen.txsync()
        assert fw.filter_once(inp, out, np.array([53], np.uint16), timeout=1.0) == (20, 10)
        sink.rxsync()
        b = sink.rx_rings[0].ready()
        assert len(b) == 20 and set(b.gather(37, 38).ravel().tolist()) == {80}


def test_vale_l3_router_example_routes_by_subnet(backend_name):
    if backend_name != "emu":
        pytest.skip("programmable lookups are an emulator feature (netmap needs a kernel module)")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "examples" / "vale_l3_router.py")],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "router OK" in r.stdout
    assert "net1 received ['ARP', 'IPv4 to 10.0.1.9']" in r.stdout


def test_readme_vale_example_runs(backend_name):
    if backend_name != "emu":
        pytest.skip("programmable lookups are an emulator feature")
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## VALE switches.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("vale0", f"vale{os.getpid() % 100000}")
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    a, b, c, mon = env["a"], env["b"], env["c"], env["mon"]
    try:
        a.tx_rings[0].fill(1, template=bytes(60))
        a.tx_rings[0].fill(1, template=bytes(61))
        a.txsync()
        for p in (b, c, mon):
            p.rxsync()
        assert list(b.rx_rings[0].ready().len) == [60]   # even length -> port 1 (b)
        assert c.rx_rings[0].space() == 0                # odd length dropped, nothing flooded
        assert mon.rx_rings[0].space() == 1              # the monitor saw what b received
    finally:
        for p in (mon, a, b, c):
            p.close()
