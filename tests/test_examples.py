"""The README's examples and the VALE router example, run on the chosen backend (--backend,
default emu): documentation that does not run is not documentation. The example network
functions (firewall, lb, nat) are tested in test_examples_nf.py."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

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


def test_readme_ring_example_runs(backend, capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"Three ways to use the slots.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("ways{0", f"ways{os.getpid()}{{0").replace("ways}0", f"ways{os.getpid()}}}0")
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["16", "[0", "0]"]


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
