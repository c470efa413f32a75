"""Fixtures of the conformance suite: its backend (the project-wide ``--backend``) and how long
it runs (``--conformance-*``); both options live in the root conftest.py, so that a run naming
only other paths still accepts them."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def conformance_backend(backend_name) -> str:
    """The backend under test (``--backend``), skipped with its own reason if unusable here."""
    return backend_name


@pytest.fixture(scope="session")
def conformance_budget(request) -> tuple[int, int]:
    """(examples, steps) per rules mode."""
    from spec.conformance import DEFAULTS, THOROUGH

    opt = request.config.getoption
    examples, steps = THOROUGH if opt("--conformance-thorough") else DEFAULTS
    return opt("--conformance-examples") or examples, opt("--conformance-steps") or steps
