"""Start, stop and watch the pump of an emulated attachment. The tool calls :func:`attach_interface`
and :func:`detach_interface`; the supervisor process (``python -m netmap_emu.attach.supervisor``)
runs in a session of its own, outlives the tool, restarts a dead pump a bounded number of times
and records every change (see :mod:`.records`).

Crash safety: the pump exits when its supervisor goes (it watches its parent), a killed supervisor
leaves a record whose pid is dead, and the next attach or detach of that name clears it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from netmap_core.errors import NetmapOSError, NoSuchPortError, PortBusyError

from ..kernel import vale as _vk
from ..kernel.core import kernel_for
from ..shm.namespace import namespace, namespace_name
from . import records
from .records import Attachment

__all__ = ["attach_interface", "detach_interface", "attachments", "interface_exists", "main",
           "MAX_RESTARTS", "START_TIMEOUT"]

#: restarts of a dying pump before the supervisor gives up and records ``failed``
MAX_RESTARTS = 3
#: how long attach waits for the pump to hold its VALE port (seconds; Python starts slowly on
#: a loaded or emulated machine)
START_TIMEOUT = 120.0
#: how long a stop waits for a process before SIGKILL (seconds)
STOP_WAIT = 10.0
_LOG = "pump.{}.log"


def interface_exists(ifname: str) -> bool:
    """Whether the OS has a network interface of that name (in this network namespace)."""
    return bool(ifname) and "/" not in ifname and os.path.exists(f"/sys/class/net/{ifname}")


def attachments(ns_name: str | None = None) -> list[Attachment]:
    """The attachments of the namespace with their states (nothing is changed)."""
    return records.all_records(namespace(ns_name))


def _wait_gone(pid: int, start: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while records.alive(pid, start):
        try:   # our own child (the tool that started it is still running): reap it
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stop(pid: int, start: int) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_WAIT`; only the very process (pid and start time)."""
    if not records.alive(pid, start):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, start, STOP_WAIT):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_gone(pid, start, STOP_WAIT)


def _clear_stale(ns_name: str, rec: Attachment) -> None:
    """A record whose supervisor is dead: stop a pump it may have left, drop the record."""
    _stop(rec.pump_pid, rec.pump_start)
    records.remove(namespace(ns_name), rec.name)


def attach_interface(ns_name: str | None, name: str, *, host: bool, peer: str | None = None,
                     timeout: float = START_TIMEOUT) -> int:
    """Attach ``valeSW:IFNAME``: start a supervisor whose pump joins the VALE port ``name`` to
    ``peer`` (default ``netmap:IFNAME``, ``netmap:IFNAME*`` with ``host``). Returns the VALE
    port index once the pump holds it. EBUSY when the name or the interface is attached
    already; the pump's own error (the port could not be opened) when it cannot start."""
    ns_name = namespace_name(ns_name)
    ns = namespace(ns_name)
    k = kernel_for(ns)
    sw, ifname = name.split(":", 1)
    peer = peer or f"netmap:{ifname}{'*' if host else ''}"
    with k.op() as reg:
        for rec in records.all_records(ns):
            if rec.name != name and rec.ifname != ifname:
                continue
            if rec.supervisor_alive():
                raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: {rec.ifname!r} is attached "
                                    f"already as {rec.name} (pump supervisor pid {rec.supervisor_pid})")
            _clear_stale(ns_name, rec)
        if _vk.find_port(reg, name):
            raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: a VALE port of that name is "
                                "open already")
        rec = Attachment(name=name, host=host, peer=peer)
        if not records.create(ns, rec):
            raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: attached concurrently")
        try:
            log = os.open(ns.path(_LOG.format(name)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                          | os.O_CLOEXEC, 0o600)
            try:
                child = subprocess.Popen(
                    [sys.executable, "-m", "netmap_emu.attach.supervisor", "--ns", ns_name, name],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    start_new_session=True, close_fds=True, cwd="/")
            finally:
                os.close(log)
            rec = dataclasses.replace(rec, supervisor_pid=child.pid,
                                      supervisor_start=records.proc_start(child.pid))
            records.write(ns, rec)
        except BaseException:
            records.remove(ns, name)
            raise
    return _await_running(ns_name, name, rec, timeout)


def _await_running(ns_name: str, name: str, first: Attachment, timeout: float) -> int:
    ns = namespace(ns_name)
    deadline = time.monotonic() + timeout
    while True:
        rec = records.read(ns, name) or first
        if rec.state == "running" and rec.supervisor_alive():
            return rec.port_idx
        gone = not records.alive(first.supervisor_pid, first.supervisor_start)
        if rec.state == "failed" or gone or time.monotonic() > deadline:
            detail = rec.detail or _log_tail(ns_name, name) or "the supervisor exited"
            if not gone and rec.state != "failed":
                detail = f"no pump after {timeout:.0f} s"
            _stop(first.supervisor_pid, first.supervisor_start)
            _clear_stale(ns_name, rec)
            if "No such device" in detail or "no such interface" in detail:
                raise NoSuchPortError(errno.ENXIO, f"VALE_ATTACH {name!r}: {detail}")
            raise NetmapOSError(errno.EIO, f"VALE_ATTACH {name!r}: the pump did not start: {detail}")
        time.sleep(0.02)


def _log_tail(ns_name: str, name: str) -> str:
    try:
        with open(namespace(ns_name).path(_LOG.format(name)), encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def detach_interface(ns_name: str | None, name: str) -> int | None:
    """Detach an emulated attachment: stop its supervisor and pump, drop the record. Returns the
    VALE port index it had, None when ``name`` is no emulated attachment (``valeSW:IFNAME``, or
    a bare IFNAME)."""
    ns_name = namespace_name(ns_name)
    ns = namespace(ns_name)
    with kernel_for(ns).op():
        found = [r for r in records.all_records(ns) if name in (r.name, r.ifname)]
        if not found:
            return None
        rec = found[0]
        if rec.state != "stopping":
            records.write(ns, dataclasses.replace(rec, state="stopping"))
    # the pump closes its ports under the namespace lock: not held while waiting for it
    _stop(rec.supervisor_pid, rec.supervisor_start)
    _stop(rec.pump_pid, rec.pump_start)
    with kernel_for(ns).op():
        records.remove(ns, rec.name)
        try:
            os.unlink(ns.path(_LOG.format(rec.name)))
        except FileNotFoundError:
            pass
    return rec.port_idx


# --- the supervisor process ----------------------------------------------------------------

class _Stop(Exception):
    pass


def _exit_text(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


@contextlib.contextmanager
def _pump(ns_name: str, rec: Attachment) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the pump; gives (process, the first line it printed); stops it on the way out."""
    cmd = [sys.executable, "-m", "netmap_emu.attach.pump", "--ns", ns_name]
    cmd += [rec.name, rec.peer]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                         close_fds=True)
    try:
        assert p.stdout is not None
        yield p, p.stdout.readline().strip()
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def supervise(ns_name: str, name: str) -> int:
    """The supervisor's life: run the pump, restart it up to :data:`MAX_RESTARTS` times after
    it died (a pump that cannot start the first time fails at once), record each change;
    SIGTERM stops both."""
    ns = namespace(ns_name)

    def on_term(signum: int, frame: object) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    me = os.getpid()
    deadline = time.monotonic() + STOP_WAIT
    try:
        while True:   # the tool writes our pid into the record just after starting us
            rec = records.read(ns, name)
            if rec is not None and rec.supervisor_pid == me:
                break
            if time.monotonic() > deadline:
                print(f"supervisor {name}: no record names pid {me}", file=sys.stderr)
                return 1
            time.sleep(0.01)
        restarts = 0
        ran = False
        while True:
            with _pump(ns_name, rec) as (p, first):
                if first.startswith("ready "):
                    ran = True
                    rec = dataclasses.replace(rec, state="running", pump_pid=p.pid,
                                              pump_start=records.proc_start(p.pid),
                                              port_idx=int(first.split()[1]))
                    records.write(ns, rec)
                    why = f"pump {_exit_text(p.wait())}"
                elif first.startswith("error "):
                    why = first[len("error "):]
                else:
                    why = f"pump {_exit_text(p.wait())} before it was ready"
            print(f"supervisor {name}: {why}", file=sys.stderr, flush=True)
            if not ran or restarts >= MAX_RESTARTS:
                records.write(ns, dataclasses.replace(rec, state="failed", pump_pid=0, pump_start=0,
                                                      restarts=restarts, detail=why))
                return 1
            restarts += 1
            rec = dataclasses.replace(rec, state="restarting", pump_pid=0, pump_start=0,
                                      restarts=restarts, detail=why)
            records.write(ns, rec)
            time.sleep(0.2 * restarts)
    except _Stop:
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netmap_emu.attach.supervisor",
                                 description="supervise the pump of one emulated VALE attachment")
    ap.add_argument("--ns", required=True, help="emulator namespace")
    ap.add_argument("name", help="valeSW:IFNAME")
    args = ap.parse_args(argv)
    return supervise(args.ns, args.name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
