"""Project-wide pytest set-up: ``--backend`` and the ``netmap_*`` fixtures come from pynetmap's
own plugin (netmap_tools/pytest_plugin.py, installed with the package); here the options of the
project's suite (slow tests, the conformance budget) and one emulator namespace per process."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# with --backend=netmap, netmap's warnings and errors in the kernel log fail the test (see there)
pytest_plugins = ["tests.kernel_log"]

_NAMESPACE = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False,
        help="also run tests marked slow (long stress and 10-million-packet runs)")
    group = parser.getgroup("conformance", "pynetmap conformance suite (spec/)")
    group.addoption("--conformance-examples", type=int, default=None,
                    help="Hypothesis examples per rules mode (default: netmap_core.testing.DEFAULT_BUDGETS)")
    group.addoption("--conformance-steps", type=int, default=None,
                    help="steps per example (default: netmap_core.testing.DEFAULT_BUDGETS)")
    group.addoption("--conformance-thorough", action="store_true",
                    help="many more examples and longer programs (minutes)")


# Hypothesis' per-example deadline measures the machine, not the property: on a loaded CI host
# (or the lab's emulated CPU) an example can take seconds. Tests keep their own settings.
settings.register_profile("pynetmap", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pynetmap")


def pytest_configure(config: pytest.Config) -> None:
    global _NAMESPACE
    # the emulator's bounded lock waits (spec/emulator.md E14) default to 1 s for a sync and 5 s
    # for open/close; a loaded machine can deschedule a holder for longer than that. The suite
    # checks semantics with wider bounds (children inherit them); tests of the bounds themselves
    # set their own (tests/test_stop_procs.py)
    os.environ.setdefault("PYNETMAP_EMU_SYNC_TIMEOUT", "10")
    os.environ.setdefault("PYNETMAP_EMU_LOCK_TIMEOUT", "30")
    # tests never touch a user's emulator: each test process gets a namespace of its own,
    # removed with everything in it when the session ends
    try:
        from netmap_emu.testing import isolated_namespace
    except ImportError:
        os.environ["PYNETMAP_EMU_NS"] = f"pytest{os.getpid()}"
        return
    _NAMESPACE = isolated_namespace("pytest")
    _NAMESPACE.__enter__()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _NAMESPACE
    if _NAMESPACE is not None:
        _NAMESPACE.__exit__(None, None, None)
        _NAMESPACE = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = None if config.getoption("--run-slow") else pytest.mark.skip(reason="slow: run with --run-slow")
    # pure tests give the same answer on every backend; under --backend netmap (the lab's
    # emulated CPU, ~17x slower) they would only repeat the host run
    pure = (pytest.mark.skip(reason="pure (no backend): the host run (--backend emu) covers it")
            if config.getoption("--backend") == "netmap" else None)
    for item in items:
        if slow and "slow" in item.keywords:
            item.add_marker(slow)
        if pure and "pure" in item.keywords:
            item.add_marker(pure)


@pytest.fixture(scope="session")
def backend_name(netmap_backend: str) -> str:
    """The suite's short name for the plugin's ``netmap_backend`` (``--backend``, skipped with
    the reason when it cannot run here)."""
    return netmap_backend
