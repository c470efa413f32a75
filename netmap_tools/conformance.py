"""``pynetmap conformance``: run netmap's conformance machines (pipes in both rules modes, VALE)
against a backend from an installed pynetmap, and say whether it conforms.

Prints one line per machine run (examples, steps, time, verdict) and, for a failure, the
shrunk program Hypothesis found. Exit status: 0 conforms, 1 a failure, 2 the backend cannot run
here (or Hypothesis, the ``testing`` extra, is missing).
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

import netmap_core
from netmap_core.testing import (
    DEFAULT_BUDGETS,
    RULES,
    SUITES,
    THOROUGH_BUDGETS,
    failure_lines,
    run_conformance,
)

__all__ = ["main", "build_parser"]

HELP = "run netmap's conformance suite against a backend"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = ", ".join(f"{s} {b.examples}x{b.steps}" for s, b in DEFAULT_BUDGETS.items())
    t = ", ".join(f"{s} {b.examples}x{b.steps}" for s, b in THOROUGH_BUDGETS.items())
    p = argparse.ArgumentParser(prog="pynetmap conformance", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=sorted(netmap_core.BACKENDS), default=None,
                   help="backend under test (default: $PYNETMAP_BACKEND, else netmap if usable, else emu)")
    p.add_argument("--rules", choices=[*RULES, "both"], default="both",
                   help="sync-rule mode(s) of the pipe machine (default both)")
    p.add_argument("--suite", choices=[*SUITES, "all"], default="all",
                   help="which machine(s) to run (default all)")
    p.add_argument("--examples", type=_positive, default=None,
                   help=f"examples per run, every machine (default per machine: {d})")
    p.add_argument("--steps", type=_positive, default=None, help="steps per example, every machine")
    p.add_argument("--thorough", action="store_true", help=f"the long budget ({t}) unless given")
    p.add_argument("--derandomize", action="store_true",
                   help="the same examples on every run (and no example database)")
    return p


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    backend = args.backend or netmap_core.default_backend_name()
    ok, why = netmap_core.probe(backend)
    if not ok:
        print(f"backend {backend!r} cannot run here: {why}", file=err)
        return 2
    try:
        import hypothesis  # noqa: F401 - only to say precisely what is missing
    except ImportError as exc:
        print(f"the conformance machines need Hypothesis ({exc}): pip install 'pynetmap[testing]'",
              file=err)
        return 2
    extra = {"derandomize": True, "database": None} if args.derandomize else {}
    suites = SUITES if args.suite == "all" else (args.suite,)
    failed = False
    for report in run_conformance(backend, args.rules, args.examples, args.steps, suites=suites,
                                  thorough=args.thorough, **extra):
        mode = f" rules={report.rules}" if report.suite == "pipe" else ""
        verdict = "conforms" if report.conforms else "FAILED"
        print(f"{report.backend} {report.suite}{mode}: {report.examples} examples, {report.steps} "
              f"steps in {report.seconds:.1f} s: {verdict}", file=out, flush=True)
        for line in failure_lines(report):
            print("  " + line, file=out)
        failed |= not report.conforms
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
