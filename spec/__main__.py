"""Run the pipe conformance suite outside pytest: ``python -m spec --backend emu``.

Prints, per rules mode, how many examples and steps ran and whether the backend conformed; on a
failure prints Hypothesis' shrunk program. Exit status: 0 all passed, 1 a failure, 2 the backend
cannot run here.
"""
from __future__ import annotations

import argparse
import re
import sys

import netmap_core

from .conformance import DEFAULTS, INVARIANT_NAMES, THOROUGH, run_conformance

_INVARIANTS = re.compile(r"^state\.(" + "|".join(INVARIANT_NAMES) + r")\(\)$")


def _program_lines(note: str) -> list[str]:
    """Hypothesis' failing program without the invariant checks it interleaves."""
    return [ln for ln in note.splitlines() if ln.strip() and not _INVARIANTS.match(ln.strip())]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spec", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default=None,
                   help="emu or netmap (default: $PYNETMAP_BACKEND, else netmap if usable, else emu)")
    p.add_argument("--rules", choices=["netmap", "strict", "both"], default="both",
                   help="sync-rule mode(s) to check (default both)")
    p.add_argument("--examples", type=int, default=None, help=f"examples per mode (default {DEFAULTS[0]})")
    p.add_argument("--steps", type=int, default=None, help=f"steps per example (default {DEFAULTS[1]})")
    p.add_argument("--thorough", action="store_true",
                   help=f"{THOROUGH[0]} examples x {THOROUGH[1]} steps per mode unless given")
    p.add_argument("--derandomize", action="store_true",
                   help="the same examples on every run (no example database)")
    args = p.parse_args(argv)

    backend = args.backend or netmap_core.default_backend_name()
    ok, why = netmap_core.probe(backend)
    if not ok:
        print(f"backend {backend!r} cannot run here: {why}", file=sys.stderr)
        return 2
    base = THOROUGH if args.thorough else DEFAULTS
    examples = args.examples or base[0]
    steps = args.steps or base[1]
    extra = {"derandomize": True, "database": None} if args.derandomize else {}
    modes = ["netmap", "strict"] if args.rules == "both" else [args.rules]
    failed = False
    for mode in modes:
        report = run_conformance(backend, mode, examples, steps, **extra)
        verdict = "conforms" if report.error is None else "FAILED"
        print(f"{report.backend} rules={mode}: {report.examples} examples, {report.steps} steps "
              f"in {report.seconds:.1f} s (asked {examples} x {steps}): {verdict}")
        if report.error is not None:
            failed = True
            errors = getattr(report.error, "exceptions", None) or [report.error]
            for err in errors:
                print(f"  {type(err).__name__}: {err}")
                for line in _program_lines("\n".join(getattr(err, "__notes__", []))):
                    print("    " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
