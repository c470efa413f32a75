"""``pynetmap demo``: generator, VALE switch, lb and two sinks in separate processes; it ends on
its own with a summary, and a Ctrl-C stops every process it started."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from netmap_tools.switchdemo import run_switch

BOUND = 300.0


def test_demo_runs_to_a_summary(capsys, backend_name):
    assert run_switch(count=20000, batch=256, slots=1024, backend=backend_name) == 0
    out = capsys.readouterr().out
    assert "generator sent          20000" in out
    assert "demo: OK" in out
    for role in ("[   lb]", "[sink0]", "[sink1]", "[  gen]"):
        assert role in out


def _children_of(tag: str) -> list[int]:
    """Processes whose command line names the demo's switch or pipes (``vale<pid>``)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if f"vale{tag}:" in cmd or f"lbdemo{tag}" in cmd:
            found.append(int(pid))
    return found


def test_ctrl_c_stops_every_process(backend_name):
    proc = subprocess.Popen([sys.executable, "-m", "netmap_tools", "demo", "-n", str(10**9),
                             "--backend", backend_name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        end = time.monotonic() + BOUND
        for line in proc.stdout:                 # until the generator runs
            lines.append(line)
            if "[  gen]" in line or time.monotonic() > end:
                break
        assert any("[  gen]" in x for x in lines), "".join(lines)
        assert len(_children_of(str(proc.pid))) == 4
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "demo: interrupted, stopping the tools" in rest
    assert "demo summary" in rest and "incomplete" in rest
    assert proc.returncode == 1
    assert _children_of(str(proc.pid)) == []
