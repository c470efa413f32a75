"""pytest options of the conformance suite: which backend it runs on and how long.

``--backend NAME`` is shared with the rest of the test suite (registered here only if no other
conftest did); ``--conformance-*`` options are this suite's own.
"""
from __future__ import annotations

import os

import pytest


def _registered(parser, name: str) -> bool:
    groups = [parser._anonymous, *parser._groups]  # pytest keeps no public lookup
    return any(name in opt.names() for g in groups for opt in g.options)


def pytest_addoption(parser):
    if not _registered(parser, "--backend"):
        parser.addoption("--backend", default=None,
                         help="pynetmap backend to test: emu or netmap (default: $PYNETMAP_BACKEND, "
                              "else netmap if /dev/netmap is usable, else emu)")
    group = parser.getgroup("conformance", "pynetmap conformance suite (spec/)")
    group.addoption("--conformance-backend", default=None,
                    help="backend for the conformance suite only (overrides --backend)")
    group.addoption("--conformance-examples", type=int, default=None,
                    help="Hypothesis examples per rules mode (default 200)")
    group.addoption("--conformance-steps", type=int, default=None,
                    help="steps per example (default 50)")
    group.addoption("--conformance-thorough", action="store_true",
                    help="many more examples and longer programs (minutes)")


@pytest.fixture(scope="session")
def conformance_backend(request) -> str:
    """The backend under test, skipped with the backend's own reason if it cannot run here."""
    import netmap_core

    opt = request.config.getoption
    name = (opt("--conformance-backend") or opt("--backend", default=None)
            or os.environ.get(netmap_core.backend.ENV_BACKEND) or netmap_core.default_backend_name())
    ok, why = netmap_core.probe(name)
    if not ok:
        pytest.skip(f"backend {name!r} unavailable: {why}")
    return name


@pytest.fixture(scope="session")
def conformance_budget(request) -> tuple[int, int]:
    """(examples, steps) per rules mode."""
    from spec.conformance import DEFAULTS, THOROUGH

    opt = request.config.getoption
    examples, steps = THOROUGH if opt("--conformance-thorough") else DEFAULTS
    return opt("--conformance-examples") or examples, opt("--conformance-steps") or steps
