"""The emulator's attach pump under supervision: it outlives the vale-ctl that started it, `-d`
stops it, a killed pump is restarted (a bounded number of times, then reported), and a killed
supervisor leaves nothing that blocks the next `-a` or `-d`."""
from __future__ import annotations

import io
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

import netmap_core
import netns
from ifnet import unavailable, veth_lab
from netmap_core.errors import NoSuchPortError, NotSupportedError
from netmap_tools import valectl

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def emu(backend_name):
    if backend_name != "emu":
        pytest.skip("netmap.ko attaches interfaces in the kernel: there is no pump to supervise")
    from netmap_emu.attach import supervisor

    return supervisor


@pytest.fixture
def sides(emu):
    why = unavailable()
    if why:
        pytest.skip(why)
    with veth_lab() as lab:
        a, b = lab.side("A"), lab.side("B")
        try:
            netmap_core.open(f"netmap:{a.outer}", backend="emu").close()
        except (NoSuchPortError, NotSupportedError) as exc:
            pytest.skip(f"the emu backend cannot open interface ports here: {exc}")
        names = (f"vale{secrets.token_hex(3)}:{a.outer}", f"vale{secrets.token_hex(3)}:{b.outer}")
        yield lab, a, b, names
        for rec in emu.attachments():   # whatever the test left attached
            emu.detach_interface(None, rec.name)


def vale_ctl(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = valectl.main(["--backend", "emu", *args], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def record(emu, name):
    found = [r for r in emu.attachments() if r.name == name]
    return found[0] if found else None


def wait_for(what, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_pump_outlives_the_tool_and_d_stops_it(sides, emu):
    """`pynetmap vale-ctl -a` in a process of its own returns; its pump keeps the two
    namespaces connected after it exited; `-d` ends the supervisor and the pump."""
    lab, a, b, _names = sides
    sw = f"vale{secrets.token_hex(3)}"
    for side in (a, b):
        r = subprocess.run([sys.executable, "-m", "netmap_tools.valectl", "--backend", "emu", "-a",
                            f"{sw}:{side.outer}"], capture_output=True, text=True, timeout=200)
        assert r.returncode == 0, r.stderr
    recs = [record(emu, f"{sw}:{s.outer}") for s in (a, b)]
    assert all(r is not None and r.state == "running" and r.pump_alive() for r in recs), recs
    assert lab.ping(a, b.addr) and lab.ping(b, a.addr)
    for rec in recs:
        rc, _out, err = vale_ctl("-d", rec.name)
        assert rc == 0, err
        assert not rec.pump_alive() and not rec.supervisor_alive()
    assert emu.attachments() == []
    rc, out, err = vale_ctl()
    assert rc == 0 and sw not in out, (out, err)


def test_killed_pump_is_restarted_then_reported(sides, emu):
    """SIGKILL on the pump: the supervisor starts another (traffic flows again); after
    MAX_RESTARTS the attachment is reported failed by the listing, and `-d` clears it."""
    lab, a, b, (na, nb) = sides
    nb = f"{na.split(':')[0]}:{b.outer}"
    for name in (na, nb):
        rc, _out, err = vale_ctl("-a", name)
        assert rc == 0, err
    first = record(emu, na)
    os.kill(first.pump_pid, signal.SIGKILL)
    again = wait_for("a restarted pump", lambda: (r := record(emu, na)) and r.state == "running"
                     and r.pump_pid != first.pump_pid and r)
    assert again.restarts == 1 and "SIGKILL" in again.detail
    assert lab.ping(a, b.addr)
    rc, _out, err = vale_ctl()
    assert rc == 0, err
    cur = again
    for n in range(emu.MAX_RESTARTS):   # restarts 2..MAX, then one death too many
        os.kill(cur.pump_pid, signal.SIGKILL)
        if n < emu.MAX_RESTARTS - 1:
            cur = wait_for("a restarted pump", lambda k=cur.pump_pid: (r := record(emu, na))
                           and r.state == "running" and r.pump_pid != k and r)
    failed = wait_for("the failed state", lambda: (r := record(emu, na)) and r.state == "failed" and r)
    assert failed.restarts == emu.MAX_RESTARTS
    wait_for("the supervisor to give up", lambda: not failed.supervisor_alive(), timeout=30)
    rc, out, err = vale_ctl()
    assert rc == 1
    assert f"{na} (NIC only): pump failed after {emu.MAX_RESTARTS} restarts" in err
    assert na not in out.split() and nb in out.split()
    for name in (na, nb):
        rc, _out, err = vale_ctl("-d", name)
        assert rc == 0, err
    rc, _out, err = vale_ctl()
    assert rc == 0 and err == ""


def test_killed_supervisor_leaves_nothing_stuck(sides, emu):
    """SIGKILL on the supervisor: its pump notices and exits (the VALE port goes), the listing
    reports the attachment, and the next `-a` of that name works; so does `-d`."""
    _lab, a, _b, (na, _nb) = sides
    rc, _out, err = vale_ctl("-a", na)
    assert rc == 0, err
    rec = record(emu, na)
    os.kill(rec.supervisor_pid, signal.SIGKILL)
    wait_for("the pump to exit", lambda: not rec.pump_alive(), timeout=30)
    rc, out, err = vale_ctl()
    assert rc == 1 and "supervisor gone" in err and na not in out.split()
    rc, _out, err = vale_ctl("-a", na)
    assert rc == 0, err
    fresh = record(emu, na)
    assert fresh.supervisor_pid != rec.supervisor_pid and fresh.pump_alive()
    os.kill(fresh.supervisor_pid, signal.SIGKILL)
    wait_for("the pump to exit", lambda: not fresh.pump_alive(), timeout=30)
    rc, _out, err = vale_ctl("-d", na)
    assert rc == 0, err
    assert emu.attachments() == []


def test_attach_of_a_missing_interface_fails_fast(emu):
    """`-a` of a name that is no VALE interface and no OS interface: EINVAL, as netmap says
    for an unknown interface, and no record is left."""
    rc, _out, err = vale_ctl("-a", f"vale{secrets.token_hex(3)}:nosuchif{secrets.token_hex(2)}")
    assert rc == 1 and "failed to attach" in err
    assert emu.attachments() == []


def test_interface_deleted_under_the_pump(sides, emu):
    """Deleting an attached interface: the pump fails, its restarts cannot open the interface,
    the attachment is reported failed (naming the missing interface) and `-d` clears it."""
    _lab, a, _b, (na, _nb) = sides
    rc, _out, err = vale_ctl("-a", na)
    assert rc == 0, err
    netns.run("ip", "link", "del", a.outer)
    failed = wait_for("the failed state", lambda: (r := record(emu, na)) and r.state == "failed" and r)
    assert a.outer in failed.detail, failed.detail
    rc, _out, err = vale_ctl()
    assert rc == 1 and f"{na} (NIC only): pump failed" in err
    rc, _out, err = vale_ctl("-d", na)
    assert rc == 0, err
    assert emu.attachments() == []
