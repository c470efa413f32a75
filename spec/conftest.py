"""Fixtures of the conformance suite: its backend (``--backend``, from pynetmap's pytest plugin)
and how long it runs (``--conformance-*``, in the root conftest.py, so that a run naming only
other paths still accepts them)."""
from __future__ import annotations

import pytest

from netmap_core.testing import budget


@pytest.fixture(scope="session")
def conformance_backend(backend_name: str) -> str:
    """The backend under test (``--backend``), skipped with its own reason if unusable here."""
    return backend_name


@pytest.fixture(scope="session")
def conformance_budget(request: pytest.FixtureRequest) -> tuple[int, int]:
    """(examples, steps) per rules mode of the pipe machine."""
    opt = request.config.getoption
    return budget("pipe", thorough=opt("--conformance-thorough"),
                  examples=opt("--conformance-examples"), steps=opt("--conformance-steps"))
