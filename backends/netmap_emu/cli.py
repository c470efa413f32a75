"""``pynetmap emu ls|gc``: inspect the emulator's namespaces and remove what dead processes left.

``ls`` shows allocators (segments, sizes), pipes and bindings with their owners' pids and whether
those are alive; ``gc`` reclaims bindings of dead processes, finishes interrupted updates,
unlinks orphan segments and removes empty namespaces, printing each removal (or ``clean``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .kernel.core import kernel_for
from .shm.namespace import base_dir, namespace, namespace_name

__all__ = ["main", "ls", "gc", "namespaces"]

#: one-line help of ``pynetmap emu`` (registered in the pynetmap.commands entry-point group)
HELP = "emulator housekeeping: ls, gc"


def namespaces() -> list[str]:
    """Names of the namespaces that exist for this user."""
    try:
        return sorted(d for d in os.listdir(base_dir()) if os.path.isdir(os.path.join(base_dir(), d)))
    except FileNotFoundError:
        return []


def ls(name: str | None = None) -> dict:
    """A snapshot of namespace ``name`` (see :meth:`netmap_emu.kernel.core.Kernel.snapshot`)."""
    return kernel_for(namespace(name)).snapshot()


def gc(name: str | None = None, *, remove_empty: bool = True) -> list[str]:
    """Clean namespace ``name``; returns one line per thing removed (empty: it was clean)."""
    ns = namespace(name)
    if not os.path.isdir(ns.dir):
        return []
    return kernel_for(ns).gc(remove_empty=remove_empty)


def _print_ls(snap: dict, out) -> None:
    print(f"namespace {snap['namespace']} ({snap['dir']})", file=out)
    if snap["interrupted"]:
        print("  an update was interrupted by a dead process: run gc", file=out)
    for m in snap["mems"]:
        segs = " ".join(f"{s}{'' if ok else ' (MISSING)'}" for s, ok in zip(m["segments"], m["present"]))
        print(f"  mem_id {m['mem_id']}: memsize {m['memsize']}, {m['rings']} rings, {m['ifs']} netmap_ifs, "
              f"segments {segs}", file=out)
    for p in snap["pipes"]:
        print(f"  pipe {p['parent']}{{{p['pipe']} / {p['parent']}}}{p['pipe']}: mem_id {p['mem_id']}, "
              f"rings tx {p['tx_rings']} rx {p['rx_rings']} (master, slave), slots {p['slots']}", file=out)
    for b in snap["bindings"]:
        state = "alive" if b["alive"] else "DEAD"
        print(f"  binding {b['bid']}: {b['name']} ({b['end']}) pid {b['pid']} {state}, mem_id {b['mem_id']}, "
              f"tx {b['tx']} rx {b['rx']}, extra_bufs {b['extra_bufs']}", file=out)
    for s in snap["orphan_segments"]:
        print(f"  orphan segment {s}", file=out)
    if not (snap["mems"] or snap["bindings"] or snap["orphan_segments"]):
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
        snaps = [ls(n) for n in names if os.path.isdir(namespace(n).dir)]
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
        removed += [f"{n}: {line}" for line in gc(n)]
    for line in removed:
        print(line, file=out)
    if not removed:
        print("clean", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
