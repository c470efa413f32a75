"""One record per emulated attachment, a JSON file ``attach.valeSW:IFNAME`` in the namespace
directory, replaced atomically; process identity is (pid, start time), so a reused pid is not alive.

Writers: the attaching tool creates the record (namespace lock held, ``O_EXCL``); from then on
only the supervisor rewrites it; the detaching tool deletes it once the supervisor is gone. A
record whose supervisor is dead is stale: the next attach or detach of that name removes it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from ..shm.namespace import Namespace

__all__ = ["Attachment", "PREFIX", "record_path", "read", "write", "create", "remove", "all_records",
           "proc_start", "alive"]

PREFIX = "attach."


@dataclass(frozen=True)
class Attachment:
    """An interface attached to an emulated switch.

    ``state``: ``starting`` (the supervisor is being started), ``running`` (the pump holds the
    VALE port ``port_idx``), ``restarting`` (the pump died, ``restarts`` so far), ``failed`` (it
    died more often than allowed; ``detail`` says how, the supervisor has exited) or
    ``stopping``.
    """

    name: str                  # valeSW:IFNAME
    host: bool                 # -h: the host stack's rings are pumped too
    peer: str = ""             # the port the pump joins to the VALE port (netmap:IFNAME[*])
    state: str = "starting"
    supervisor_pid: int = 0
    supervisor_start: int = 0  # /proc/PID/stat start time, 0 before the supervisor runs
    pump_pid: int = 0
    pump_start: int = 0
    port_idx: int = -1
    restarts: int = 0
    detail: str = ""

    @property
    def switch(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def ifname(self) -> str:
        return self.name.split(":", 1)[1]

    def supervisor_alive(self) -> bool:
        return alive(self.supervisor_pid, self.supervisor_start)

    def pump_alive(self) -> bool:
        return alive(self.pump_pid, self.pump_start)

    def describe(self) -> str:
        """One line for listings: the state, the processes and their restarts."""
        mode = "with host stack" if self.host else "NIC only"
        if self.state == "running" and not self.supervisor_alive():
            what = "supervisor gone (killed?); vale-ctl -d removes it"
        elif self.state == "failed":
            what = f"pump failed after {self.restarts} restarts: {self.detail}; vale-ctl -d removes it"
        else:
            what = f"{self.state}, supervisor pid {self.supervisor_pid}, pump pid {self.pump_pid}"
            if self.restarts:
                what += f", {self.restarts} restarts (last: {self.detail})"
        return f"{self.name} ({mode}): {what}"


def proc_start(pid: int) -> int:
    """Start time (clock ticks since boot) of process ``pid``; 0 when it does not exist or is
    a zombie."""
    if pid <= 0:
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and start > 0 and proc_start(pid) == start


def record_path(ns: Namespace, name: str) -> str:
    return ns.path(PREFIX + name)


def read(ns: Namespace, name: str) -> Attachment | None:
    """The record of ``name``, None when there is none (or it is unreadable: a torn write is
    impossible with rename, so only a foreign file is)."""
    try:
        with open(record_path(ns, name), encoding="utf-8") as f:
            data = json.load(f)
        return Attachment(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None


def write(ns: Namespace, rec: Attachment) -> None:
    """Replace the record atomically (write a private temporary file, rename it)."""
    path = record_path(ns, rec.name)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(rec), f)
    os.replace(tmp, path)


def create(ns: Namespace, rec: Attachment) -> bool:
    """Create the record unless one exists (False then)."""
    try:
        fd = os.open(record_path(ns, rec.name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(rec), f)
    return True


def remove(ns: Namespace, name: str) -> None:
    try:
        os.unlink(record_path(ns, name))
    except FileNotFoundError:
        pass


def all_records(ns: Namespace) -> list[Attachment]:
    """Every record of the namespace, sorted by name (nothing is created to look)."""
    try:
        leaves = os.listdir(ns.dir)
    except FileNotFoundError:
        return []
    out = []
    for leaf in sorted(leaves):
        if leaf.startswith(PREFIX) and not leaf.endswith(".tmp"):
            rec = read(ns, leaf[len(PREFIX):])
            if rec is not None:
                out.append(rec)
    return out
