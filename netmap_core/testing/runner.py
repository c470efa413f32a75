"""One call that runs netmap's conformance machines (pipes in both rules modes, VALE) against a
backend and reports, per machine, what ran and whether the backend conformed.

Hypothesis is imported only when a run starts, so this module (and ``netmap_core.testing``)
imports without it; running needs the ``testing`` extra (``pip install pynetmap[testing]``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from netmap_core.errors import InvalidRequestError

from .budget import SUITES, budget

if TYPE_CHECKING:
    from .conformance import RunReport

__all__ = ["RULES", "run_conformance", "failure_lines"]

#: the sync-rule modes the pipe machine runs in
RULES = ("netmap", "strict")


def _check_choice(field: str, value: object, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidRequestError(22, f"{field}={value!r}: allowed {', '.join(map(repr, allowed))}")


def run_conformance(backend: str | None, rules: str = "both", examples: int | None = None,
                    steps: int | None = None, *, suites: Iterable[str] = SUITES,
                    thorough: bool = False, **settings: Any) -> list[RunReport]:
    """Run the conformance machines against ``backend`` (None: the default backend).

    ``rules``: ``"netmap"``, ``"strict"`` or ``"both"`` (the pipe machine runs once per mode);
    ``examples``/``steps`` override every machine's :func:`budget`; ``settings`` go to
    Hypothesis (e.g. ``derandomize=True, database=None``). Never raises for a failing backend:
    each :class:`~netmap_core.testing.conformance.RunReport` carries its shrunk failure.
    Cost: seconds to minutes (the default budget runs about 20 s on the emulator).
    """
    _check_choice("rules", rules, (*RULES, "both"))
    suites = tuple(suites)
    for s in suites:
        _check_choice("suite", s, SUITES)
    from .conformance import run_pipe_conformance
    from .vale_conformance import run_vale_conformance

    reports = []
    if "pipe" in suites:
        b = budget("pipe", thorough=thorough, examples=examples, steps=steps)
        for mode in RULES if rules == "both" else (rules,):
            reports.append(run_pipe_conformance(backend, mode, b.examples, b.steps, **settings))
    if "vale" in suites:
        b = budget("vale", thorough=thorough, examples=examples, steps=steps)
        reports.append(run_vale_conformance(backend, b.examples, b.steps, **settings))
    return reports


def failure_lines(report: RunReport) -> list[str]:
    """The failure of ``report`` as lines to print: each error and Hypothesis' shrunk program
    (without the invariant checks it interleaves). Empty when the backend conformed."""
    if report.error is None:
        return []
    from .conformance import INVARIANT_NAMES
    from .vale_conformance import VALE_INVARIANT_NAMES

    names = "|".join(INVARIANT_NAMES + VALE_INVARIANT_NAMES)
    invariants = re.compile(r"^state\.(" + names + r")\(\)$")
    out = []
    for err in getattr(report.error, "exceptions", None) or [report.error]:
        out.append(f"{type(err).__name__}: {err}")
        for line in "\n".join(getattr(err, "__notes__", [])).splitlines():
            if line.strip() and not invariants.match(line.strip()):
                out.append("  " + line)
    return out
