"""netmap_core.testing as a library: what importing it costs, budgets, run_conformance and the
`pynetmap conformance` command, strategies and ring programs, the traffic generator and sink,
and the pytest plugin's fixtures (used here directly, and by a foreign test file)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import HealthCheck, given, settings

import netmap_core
from netmap_core.errors import InvalidRequestError
from netmap_core.testing import (
    BCAST,
    DEFAULT_BUDGETS,
    RingOp,
    Sink,
    TrafficGenerator,
    budget,
    failure_lines,
    frame,
    mac,
    run_conformance,
    run_ring_ops,
)
from netmap_core.testing.conformance import RunReport
from netmap_core.testing.strategies import port_names, ring_operations
from netmap_tools import cli, conformance as conformance_cmd

_ids = iter(range(10**6))


def _modules_loaded_by(stmt: str) -> list[str]:
    code = (f"import sys, json; {stmt}; print(json.dumps(sorted(m for m in sys.modules "
            f"if m.split('.')[0] in ('hypothesis', 'pytest', '_pytest'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("stmt", ["import netmap_core", "import netmap_core.testing",
                                  "import netmap_core.testing.runner"])
def test_importing_the_core_or_the_kit_needs_neither_hypothesis_nor_pytest(stmt):
    assert _modules_loaded_by(stmt) == []


# --- budgets and run_conformance --------------------------------------------------------------
def test_budgets():
    assert budget("pipe") == DEFAULT_BUDGETS["pipe"] == (300, 60)
    assert budget("vale", thorough=True).examples > budget("vale").examples
    assert budget("pipe", examples=7) == (7, 60)
    examples, steps = budget("vale", steps=3)
    assert (examples, steps) == (100, 3)


@pytest.mark.parametrize("kw,field", [({"examples": 0}, "examples"), ({"steps": -1}, "steps"),
                                      ({"examples": True}, "examples"), ({"examples": 2.5}, "examples")])
def test_a_bad_budget_is_named(kw, field):
    with pytest.raises(InvalidRequestError, match=f"{field}=.*allowed a positive integer"):
        budget("pipe", **kw)


def test_bad_choices_are_named():
    with pytest.raises(InvalidRequestError, match="suite='tcp': allowed 'pipe', 'vale'"):
        budget("tcp")
    with pytest.raises(InvalidRequestError, match="rules='lax': allowed 'netmap', 'strict', 'both'"):
        run_conformance("emu", "lax")
    with pytest.raises(InvalidRequestError, match="suite='x'"):
        run_conformance("emu", suites=["x"])


def test_run_conformance_runs_every_machine_and_reports(backend_name):
    reports = run_conformance(backend_name, examples=5, steps=10, derandomize=True, database=None)
    assert [(r.suite, r.rules) for r in reports] == [("pipe", "netmap"), ("pipe", "strict"),
                                                     ("vale", "default")]
    for r in reports:
        assert r.backend == backend_name and r.conforms, failure_lines(r)
        assert r.examples >= 5 and r.steps > 0 and r.seconds > 0
    only = run_conformance(backend_name, "strict", 3, 5, suites=["pipe"], derandomize=True,
                           database=None)
    assert [(r.suite, r.rules) for r in only] == [("pipe", "strict")]


def test_failure_lines_keep_the_program_and_drop_invariant_checks():
    err = AssertionError("p1 holds [], model [(60, '0x0', '')]")
    err.__notes__ = ["Falsifying example:", "state = ValeMachine()", "state.open_switch()",
                     "state.buffers_conserved()", "state.read_monitor()", "state.teardown()"]
    lines = failure_lines(RunReport("emu", "default", 1, 3, 0.1, err, suite="vale"))
    assert lines[0] == "AssertionError: p1 holds [], model [(60, '0x0', '')]"
    assert "  state.read_monitor()" in lines and "  state.buffers_conserved()" not in lines
    assert failure_lines(RunReport("emu", "netmap", 1, 1, 0.1)) == []


# --- the command ----------------------------------------------------------------------------------
def test_command_conforms(backend_name, capsys):
    rc = cli.main(["conformance", "--backend", backend_name, "--examples", "4", "--steps", "8",
                   "--derandomize"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0, out
    assert [ln.split(":")[0] for ln in out] == [f"{backend_name} pipe rules=netmap",
                                                f"{backend_name} pipe rules=strict",
                                                f"{backend_name} vale"]
    assert all(ln.endswith(": conforms") for ln in out)


def test_command_prints_the_shrunk_program_and_exits_1(monkeypatch, capsys):
    err = AssertionError("<master #1> tx: head/cur/tail (1, 1, 3), the model says (1, 1, 2)")
    err.__notes__ = ["state = PipeMachine_emu_netmap()", "v1 = state.create_pipe(both=False, extra=0)",
                     "state.observed_equals_model()", "state.txsync(h=v1)"]
    bad = RunReport("emu", "netmap", 9, 40, 0.5, err)
    monkeypatch.setattr(conformance_cmd, "run_conformance", lambda *a, **k: [bad])
    assert conformance_cmd.main(["--backend", "emu", "--suite", "pipe"]) == 1
    out = capsys.readouterr().out
    assert "emu pipe rules=netmap: 9 examples, 40 steps in 0.5 s: FAILED" in out
    assert "    state.txsync(h=v1)" in out and "observed_equals_model" not in out


def test_command_exits_2_when_the_backend_cannot_run(capsys):
    ok, why = netmap_core.probe("netmap")
    if ok:
        pytest.skip("/dev/netmap is usable here")
    assert cli.main(["conformance", "--backend", "netmap"]) == 2
    assert f"backend 'netmap' cannot run here: {why}" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--examples", "0"], ["--steps", "x"], ["--rules", "lax"],
                                  ["--backend", "dpdk"]])
def test_command_rejects_bad_options(args, capsys):
    with pytest.raises(SystemExit) as exc:
        conformance_cmd.main(args)
    assert exc.value.code == 2
    assert "pynetmap conformance: error: argument" in capsys.readouterr().err


def test_python_m_spec_is_the_same_command():
    r = subprocess.run([sys.executable, "-m", "spec", "--help"], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0 and "usage: pynetmap conformance" in r.stdout


# --- strategies and ring programs -------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(name=port_names())
def test_port_names_parse_and_round_trip(name):
    spec = netmap_core.parse_portspec(name)
    again = netmap_core.parse_portspec(spec.describe())
    assert again.describe() == spec.describe() and again.name == spec.name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ring_operations())
def test_ring_programs_keep_netmaps_laws(netmap_backend, ops):
    # fresh ends per program (a fixture's pipe would carry state from one example to the next)
    name = f"kitops{os.getpid() % 100000}n{next(_ids)}"
    be = netmap_backend
    with netmap_core.open(f"netmap:{name}{{0@conf:slots=7", backend=be) as a, \
            netmap_core.open(f"netmap:{name}}}0", backend=be) as b:
        result = run_ring_ops(a, b, ops)
    assert 0 <= result.received <= result.sent


def test_ring_programs_catch_a_lost_rxsync(netmap_pipe):
    master, slave = netmap_pipe

    class LosesRxsync:   # a receiver whose rxsync does nothing: nothing ever arrives
        rx_rings = slave.rx_rings

        def rxsync(self):
            pass

        def poll(self, events, timeout):
            return 0

    ops = [RingOp("send", 3), RingOp("txsync"), RingOp("rxsync")]
    with pytest.raises(AssertionError, match=r"step 2 \(rxsync 0\): receiver sees 0, in flight 3"):
        run_ring_ops(master, LosesRxsync(), ops)


def test_ring_op_values_are_checked():
    with pytest.raises(InvalidRequestError, match="RingOp.kind='jump'"):
        RingOp("jump")
    with pytest.raises(InvalidRequestError, match="RingOp.count=-1"):
        RingOp("send", -1)


# --- traffic generator and sink ----------------------------------------------------------------------
def _frames(k: int, size: int = 60) -> list[bytes]:
    return [frame(mac(2), mac(1), size, fill=i) for i in range(k)]


def test_generator_stops_at_a_full_ring_and_the_sink_gets_everything_in_order(backend_name):
    name = f"kittr{os.getpid() % 100000}n{next(_ids)}"
    with netmap_core.open(f"netmap:{name}{{0@conf:slots=8", backend=backend_name) as a, \
            netmap_core.open(f"netmap:{name}}}0", backend=backend_name) as b:
        gen, sink = TrafficGenerator(a), Sink(b)
        frames = _frames(20, 61)
        assert gen.send(frames, timeout=0.05) == 7          # n-1 slots, nobody drains them
        assert sink.collect(20, timeout=0.05) == frames[:7]
        assert gen.send(frames[7:], timeout=0.05) == 7
        assert sink.collect(3) == frames[7:10] and sink.collect(4) == frames[10:14]
        assert sink.received == frames[:14] and gen.sent == 14
        assert sink.collect(1, timeout=0) == []


def test_generator_and_sink_in_two_threads_move_many_batches(backend_name):
    name = f"kitth{os.getpid() % 100000}n{next(_ids)}"
    frames = _frames(50, 128)
    got: list[bytes] = []
    with netmap_core.open(f"netmap:{name}{{0@conf:slots=32", backend=backend_name) as a, \
            netmap_core.open(f"netmap:{name}}}0", backend=backend_name) as b:
        t = threading.Thread(target=lambda: got.extend(Sink(b).collect(1000, timeout=20)))
        t.start()
        sent = TrafficGenerator(a).send(frames, repeat=20, timeout=20)
        t.join(30)
    assert sent == 1000 and got == frames * 20


def test_generator_and_sink_check_their_arguments(netmap_pipe):
    a, b = netmap_pipe
    with pytest.raises(InvalidRequestError, match="does not fit its .*-byte buffers"):
        TrafficGenerator(a).send([bytes(a.tx_rings[0].buf_size + 1)])
    with pytest.raises(InvalidRequestError, match="repeat=-1"):
        TrafficGenerator(a).send([b"x" * 60], repeat=-1)
    with pytest.raises(InvalidRequestError, match="count=-2"):
        Sink(b).collect(-2)
    with pytest.raises(InvalidRequestError, match="timeout=-1"):
        Sink(b).collect(1, timeout=-1)


# --- the plugin's fixtures ----------------------------------------------------------------------------
def test_pipe_fixture_gives_two_connected_ends(netmap_pipe, netmap_traffic, netmap_sink, netmap_backend):
    master, slave = netmap_pipe
    assert master.info.name.endswith("{0") and slave.info.name.endswith("}0")
    assert netmap_traffic(master).send(_frames(3)) == 3
    assert netmap_sink(slave).collect(3) == _frames(3)
    assert os.environ["PYNETMAP_BACKEND"] == netmap_backend


def test_vale_fixture_gives_a_learning_switch(netmap_vale, netmap_sink):
    p0, p1, p2 = netmap_vale(3, slots=64)
    hello = frame(BCAST, mac(0))
    TrafficGenerator(p0).send([hello])
    assert netmap_sink(p1).collect(1) == [hello] and netmap_sink(p2).collect(1) == [hello]
    reply = frame(mac(0), mac(1))          # p0's MAC is learned now: unicast to p0 only
    TrafficGenerator(p1).send([reply])
    assert netmap_sink(p0).collect(1) == [reply]
    assert netmap_sink(p2).collect(1, timeout=0.05) == []
    (other,) = netmap_vale(1)
    assert other.info.name.split(":")[0] != p0.info.name.split(":")[0]


def test_namespace_fixture_isolates_on_the_emulator(netmap_backend, netmap_namespace):
    if netmap_backend != "emu":
        assert netmap_namespace is None
        return
    assert netmap_namespace.startswith("nf") and os.environ["PYNETMAP_EMU_NS"] == netmap_namespace


FOREIGN = """
    import os

    def test_backend(netmap_backend):
        assert netmap_backend == os.environ["PYNETMAP_BACKEND"] == {backend!r}

    def test_pipe(netmap_pipe, netmap_traffic, netmap_sink):
        a, b = netmap_pipe
        netmap_traffic(a).send([bytes(range(60))], repeat=5)
        assert netmap_sink(b).collect(5) == [bytes(range(60))] * 5
"""


def _run_foreign(tmp_path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_nf.py").write_text(textwrap.dedent(FOREIGN.format(backend=args[-1])))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYNETMAP_BACKEND")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_foreign_project_gets_the_plugin_from_the_installed_package(tmp_path, backend_name):
    r = _run_foreign(tmp_path, "--backend", backend_name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout


def test_the_plugin_can_be_disabled(tmp_path, backend_name):
    r = _run_foreign(tmp_path, "-p", "no:pynetmap", "--backend", backend_name)
    assert r.returncode != 0
    assert "unrecognized arguments: --backend" in r.stderr


def test_pynetmap_help_lists_the_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"\n +conformance\s+run netmap's conformance suite against a backend\n", out), out
