"""How long the conformance machines run: Hypothesis examples per run and steps per example,
the default (CI) and the ``thorough`` budget of each machine.

Kept apart from the machines so that a budget can be chosen without importing Hypothesis.
"""
from __future__ import annotations

from typing import NamedTuple

from netmap_core.errors import InvalidRequestError

__all__ = ["Budget", "SUITES", "DEFAULT_BUDGETS", "THOROUGH_BUDGETS", "budget"]

#: the machines, in the order they run
SUITES = ("pipe", "vale")


class Budget(NamedTuple):
    """Examples per run and steps per example (a tuple: ``examples, steps = budget``)."""

    examples: int
    steps: int


#: about 8 s per rules mode (pipe) and 5 s (vale) on the emulator
DEFAULT_BUDGETS = {"pipe": Budget(300, 60), "vale": Budget(100, 30)}
#: minutes: many more examples and longer programs
THOROUGH_BUDGETS = {"pipe": Budget(3000, 100), "vale": Budget(1000, 50)}


def budget(suite: str, *, thorough: bool = False, examples: int | None = None,
           steps: int | None = None) -> Budget:
    """The budget of ``suite``: its default (or ``thorough``) one, with ``examples`` and
    ``steps`` overriding when given."""
    if suite not in SUITES:
        raise InvalidRequestError(22, f"suite={suite!r}: allowed {', '.join(map(repr, SUITES))}")
    for name, value in (("examples", examples), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidRequestError(22, f"{name}={value!r}: allowed a positive integer (or None)")
    base = (THOROUGH_BUDGETS if thorough else DEFAULT_BUDGETS)[suite]
    return Budget(examples or base.examples, steps or base.steps)
