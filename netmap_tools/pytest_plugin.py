"""pynetmap's pytest plugin (entry point ``pytest11``: ``pynetmap``): the ``--backend`` option
and fixtures for testing a network function on the emulator or on real netmap.

Fixtures (each skips, with the reason, when the chosen backend cannot run here):

- ``netmap_backend``: the backend name, ``--backend emu|netmap`` (default ``$PYNETMAP_BACKEND``,
  else ``emu``); ports opened without naming a backend get it too;
- ``netmap_namespace``: on the emulator a namespace of the test's own, removed with everything
  in it afterwards (None on netmap);
- ``netmap_pipe``: the two ends ``(master, slave)`` of a fresh pipe, closed afterwards;
- ``netmap_vale``: ``netmap_vale(n, slots=0)`` opens ``n`` ports of a fresh VALE switch;
- ``netmap_traffic`` / ``netmap_sink``: ``netmap_traffic(port).send(frames)`` and
  ``netmap_sink(port).collect(count, timeout)`` (batch-based, see netmap_core.testing.traffic).

It lives in netmap_tools, not in netmap_core.testing: isolating a test needs the emulator (a
backend, which the core never imports) and pytest is a tool, not part of the core.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator

import pytest

import netmap_core
from netmap_core.backend import BACKENDS, ENV_BACKEND
from netmap_core.port import Port
from netmap_core.testing import Sink, TrafficGenerator, ValeEnv, unique_switch

__all__ = ["pytest_addoption", "pytest_configure", "pytest_unconfigure"]

_names = itertools.count()
_SAVED_ENV = pytest.StashKey["str | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", action="store", default=None, choices=sorted(BACKENDS),
        help="pynetmap backend for the netmap_* fixtures and for ports opened without naming one "
             "(default: $PYNETMAP_BACKEND, else emu)")


def _chosen(config: pytest.Config) -> str:
    return config.getoption("--backend") or os.environ.get(ENV_BACKEND) or "emu"


def pytest_configure(config: pytest.Config) -> None:
    name = _chosen(config)
    if name not in BACKENDS:
        raise pytest.UsageError(f"${ENV_BACKEND}={name!r}: allowed {', '.join(sorted(BACKENDS))}")
    # code under test that opens ports without naming a backend gets the chosen one too; the
    # caller's value comes back at the end (an in-process pytest run must not leak its choice)
    config.stash[_SAVED_ENV] = os.environ.get(ENV_BACKEND)
    os.environ[ENV_BACKEND] = name


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SAVED_ENV not in config.stash:
        return
    saved = config.stash[_SAVED_ENV]
    if saved is None:
        os.environ.pop(ENV_BACKEND, None)
    else:
        os.environ[ENV_BACKEND] = saved


@pytest.fixture(scope="session")
def netmap_backend(request: pytest.FixtureRequest) -> str:
    """The backend chosen with ``--backend``; skips (with the reason) when it cannot run here."""
    name = _chosen(request.config)
    ok, why = netmap_core.probe(name)
    if not ok:
        pytest.skip(f"backend {name!r} unavailable here: {why}")
    return name


def _isolation(backend: str) -> Callable[[], contextlib.AbstractContextManager[object]] | None:
    if backend != "emu":
        return None
    from netmap_emu.testing import isolated_namespace

    return lambda: isolated_namespace("nf")


@pytest.fixture
def netmap_namespace(netmap_backend: str) -> Iterator[str | None]:
    """On the emulator: the test runs in a namespace of its own (yields its name), removed
    afterwards with every port and switch left in it. On netmap: None (the kernel is shared)."""
    isolate = _isolation(netmap_backend)
    if isolate is None:
        yield None
        return
    with isolate() as name:
        yield str(name)


@pytest.fixture
def netmap_pipe(netmap_backend: str, netmap_namespace: str | None) -> Iterator[tuple[Port, Port]]:
    """``(master, slave)``: both ends of a fresh pipe (one TX and one RX ring each), closed after
    the test. What one end sends the other receives, in order."""
    name = f"nf{os.getpid() % 100000}p{next(_names)}"
    with netmap_core.open(f"netmap:{name}{{0", backend=netmap_backend) as master, \
            netmap_core.open(f"netmap:{name}}}0", backend=netmap_backend) as slave:
        yield master, slave


@pytest.fixture
def netmap_vale(netmap_backend: str, netmap_namespace: str | None) -> Iterator[Callable[..., list[Port]]]:
    """``netmap_vale(n, slots=0)``: ``n`` ports ``SW:p0`` .. of a fresh VALE switch (a learning
    bridge); several calls give several switches. Everything is closed after the test."""
    with ValeEnv(netmap_backend) as env:
        def switch(n: int, *, slots: int = 0) -> list[Port]:
            return env.switch(unique_switch("valenf"), n, slots=slots)

        yield switch


@pytest.fixture
def netmap_traffic() -> Callable[..., TrafficGenerator]:
    """``netmap_traffic(port, ring=0)``: a :class:`~netmap_core.testing.TrafficGenerator`
    (``.send(frames, repeat=1, timeout=1.0)``, batch by batch)."""
    return TrafficGenerator


@pytest.fixture
def netmap_sink() -> Callable[[Port], Sink]:
    """``netmap_sink(port)``: a :class:`~netmap_core.testing.Sink` (``.collect(count,
    timeout=1.0)`` returns the frames, oldest first)."""
    return Sink
