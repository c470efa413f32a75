"""pytest options of the conformance suite: how long it runs. The backend is the project-wide
``--backend`` option (root conftest.py)."""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("conformance", "pynetmap conformance suite (spec/)")
    group.addoption("--conformance-examples", type=int, default=None,
                    help="Hypothesis examples per rules mode (default: spec.conformance.DEFAULTS)")
    group.addoption("--conformance-steps", type=int, default=None,
                    help="steps per example (default: spec.conformance.DEFAULTS)")
    group.addoption("--conformance-thorough", action="store_true",
                    help="many more examples and longer programs (minutes)")


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
