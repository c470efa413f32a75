"""``pynetmap emu ls|gc``: inspect the emulator's namespaces and remove what dead processes left.

``ls`` shows allocators (segments, sizes), pipes, switches (bridge index, ports, segment),
bindings (pipe end, VALE port, monitor or interface) with their owners' pids and whether those
are alive, and interfaces attached to switches (``vale-ctl -a``: pump state and processes),
creating nothing; ``gc`` reclaims bindings of dead processes, finishes interrupted updates,
unlinks orphan segments and removes empty namespaces, printing each removal (or ``clean``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from netmap_core.errors import LockTimeoutError

from .attach import records
from .kernel.core import kernel_for
from .shm.namespace import LOCK_FILE, base_dir, namespace, namespace_name

__all__ = ["main", "ls", "gc", "namespaces"]

#: one-line help of ``pynetmap emu`` (registered in the pynetmap.commands entry-point group)
HELP = "emulator housekeeping: ls, gc"


def namespaces() -> list[str]:
    """Names of the namespaces that exist for this user (creating nothing)."""
    base = base_dir(create=False)
    if not base:
        return []
    try:
        return sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
    except FileNotFoundError:
        return []


def _exists(name: str) -> bool:
    """Whether namespace ``name`` has state (its lock file), looking without creating."""
    base = base_dir(create=False)
    return bool(base) and os.path.isfile(os.path.join(base, namespace_name(name), LOCK_FILE))


def ls(name: str | None = None) -> dict | None:
    """A snapshot of namespace ``name`` (see :meth:`netmap_emu.kernel.core.Kernel.snapshot`),
    None when it does not exist (nothing is created to find out)."""
    if not _exists(name or namespace_name()):
        return None
    ns = namespace(name)
    snap = kernel_for(ns).snapshot()
    snap["attachments"] = [{**dataclasses.asdict(r), "supervisor_alive": r.supervisor_alive(),
                            "pump_alive": r.pump_alive(), "line": r.describe()}
                           for r in records.all_records(ns)]
    return snap


def gc(name: str | None = None, *, remove_empty: bool = True) -> list[str]:
    """Clean namespace ``name``; returns one line per thing removed (empty: it was clean)."""
    base = base_dir(create=False)
    if not base or not os.path.isdir(os.path.join(base, namespace_name(name))):
        return []
    return kernel_for(namespace(name)).gc(remove_empty=remove_empty)


def _print_ls(snap: dict, out) -> None:
    print(f"namespace {snap['namespace']} ({snap['dir']})", file=out)
    if snap.get("locked_by"):
        print(f"  shown without the namespace lock, as last committed: {snap['locked_by']['detail']}",
              file=out)
    if snap["interrupted"]:
        print("  an update was interrupted by a dead process: run gc", file=out)
    for m in snap["mems"]:
        segs = " ".join(f"{s}{'' if ok else ' (MISSING)'}" for s, ok in zip(m["segments"], m["present"]))
        print(f"  mem_id {m['mem_id']}: memsize {m['memsize']}, {m['rings']} rings, {m['ifs']} netmap_ifs, "
              f"segments {segs}", file=out)
    for p in snap["pipes"]:
        print(f"  pipe {p['parent']}{{{p['pipe']} / {p['parent']}}}{p['pipe']}: mem_id {p['mem_id']}, "
              f"rings tx {p['tx_rings']} rx {p['rx_rings']} (master, slave), slots {p['slots']}", file=out)
    for sw in snap.get("switches", ()):
        ports = ", ".join(f"{k} {n}" for k, n in sw["ports"].items()) or "none"
        print(f"  switch {sw['name']}: bridge_idx {sw['bridge_idx']}, ports [{ports}], "
              f"segment {sw['segment']}"
              f"{'' if sw['present'] else ' (MISSING)'}", file=out)
    for b in snap["bindings"]:
        state = "alive" if b["alive"] else "DEAD"
        kinds = {"pipe": f"pipe {b['end']}", "vale": "VALE port", "monitor": "monitor", "nic": "interface"}
        kind = kinds.get(b.get("kind"), b["end"])
        print(f"  binding {b['bid']}: {b['name']} ({kind}) pid {b['pid']} {state}, mem_id {b['mem_id']}, "
              f"tx {b['tx']} rx {b['rx']}, extra_bufs {b['extra_bufs']}", file=out)
    for a in snap.get("attachments", ()):
        print(f"  attachment {a['line']}", file=out)
    for s in snap["orphan_segments"]:
        print(f"  orphan segment {s}", file=out)
    if not (snap["mems"] or snap["bindings"] or snap["orphan_segments"] or snap.get("switches")
            or snap.get("attachments")):
        print("  (empty)", file=out)


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    ap = argparse.ArgumentParser(prog="pynetmap emu", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["ls", "gc"])
    ap.add_argument("--ns", help="namespace (default: $PYNETMAP_EMU_NS or 'default')")
    ap.add_argument("--all", action="store_true", help="every namespace of this user")
    ap.add_argument("--json", action="store_true", help="ls: machine-readable output")
    args = ap.parse_args(argv)
    names = namespaces() if args.all else [namespace_name(args.ns)]
    if args.command == "ls":
        snaps = [snap for snap in map(ls, names) if snap is not None]
        if args.json:
            json.dump(snaps, out, indent=1)
            print(file=out)
        else:
            for snap in snaps:
                _print_ls(snap, out)
            if not snaps:
                print("no emulator namespace", file=out)
        return 0
    removed = []
    for n in names:
        try:
            removed += [f"{n}: {line}" for line in gc(n)]
        except LockTimeoutError as exc:   # a holder that is stopped or stuck: say who
            print(f"pynetmap emu gc: {n}: {exc}", file=sys.stderr)
            return 1
    for line in removed:
        print(line, file=out)
    if not removed:
        print("clean", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
