"""What a backend supplies (memory, sync, poll, close) and how one is chosen.

A backend turns a parsed port name into a :class:`Binding` - one registration, as one file
descriptor is in netmap - and the core builds every Port and Ring on top of it.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import BackendUnavailable, InvalidRequestError

if TYPE_CHECKING:
    from .control import Control
    from .portspec import PortSpec
    from .ring import Region

__all__ = [
    "RegisterInfo", "Binding", "Backend", "BACKENDS", "ENV_BACKEND",
    "get_backend", "default_backend_name", "probe",
]

#: backend name -> module exposing ``BACKEND`` (a :class:`Backend`)
BACKENDS = {"netmap": "netmap_dev", "emu": "netmap_emu"}
ENV_BACKEND = "PYNETMAP_BACKEND"


@dataclass(frozen=True)
class RegisterInfo:
    """What REGISTER returned (``struct nmreq_register`` outputs), identical on both backends."""

    name: str            # what the kernel was given (nr_name)
    mode: int            # NR_REG_*
    ringid: int
    flags: int           # NR_* flags as echoed
    mem_id: int
    memsize: int
    offset: int          # netmap_if offset in the region
    tx_rings: int
    rx_rings: int
    tx_slots: int
    rx_slots: int
    host_tx_rings: int
    host_rx_rings: int
    extra_bufs: int      # granted


@runtime_checkable
class Binding(Protocol):
    """One registration of a port. ``region`` is the allocator's whole mapping (writable,
    shared by every binding of that mem_id in the process); the netmap_if is at ``info.offset``.

    Sync and poll follow netmap: ``txsync``/``rxsync`` never block and process every bound
    ring of their direction; ``poll`` may block up to ``timeout`` seconds (None = forever) and
    returns revents (POLLIN/POLLOUT/POLLERR bits of the ``select`` module).

    ``fileno()`` is for event loops. A binding may set ``fileno_reports_events = True`` when
    its descriptor reports the events themselves (readable for POLLIN, writable for POLLOUT,
    as a netmap descriptor does); without it the descriptor is watched for reading only, as a
    signal that readiness may have changed in either direction.
    """

    info: RegisterInfo
    rules: str

    @property
    def region(self) -> Region: ...   # read-only here, so a binding may hold any Region type

    def txsync(self) -> None: ...
    def rxsync(self) -> None: ...
    def poll(self, events: int, timeout: float | None) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    name: str

    def probe(self) -> tuple[bool, str]:
        """(usable, why): whether this machine can run the backend, and precisely why not."""
        ...

    def register(self, spec: PortSpec, *, rules: str, **options: Any) -> Binding: ...

    def control(self) -> Control:
        """This backend's :class:`netmap_core.control.Control` (the non-REGISTER requests)."""
        ...


def _load(name: str) -> Backend:
    if name not in BACKENDS:
        raise InvalidRequestError(22, f"backend={name!r} is unknown; allowed: {sorted(BACKENDS)}")
    try:
        mod = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        raise BackendUnavailable(name, f"cannot import {BACKENDS[name]}: {exc}",
                                 "install the pynetmap distribution (pip install pynetmap)") from exc
    backend = getattr(mod, "BACKEND", None)
    if backend is None:
        raise BackendUnavailable(name, f"{BACKENDS[name]} defines no BACKEND object",
                                 "reinstall the pynetmap distribution")
    return backend


def probe(name: str) -> tuple[bool, str]:
    """Whether backend ``name`` is usable here, and why (never raises)."""
    try:
        return _load(name).probe()
    except BackendUnavailable as exc:
        return False, exc.reason


def default_backend_name() -> str:
    """``$PYNETMAP_BACKEND`` if set, else ``netmap`` when /dev/netmap is usable, else ``emu``."""
    env = os.environ.get(ENV_BACKEND)
    if env:
        return env
    ok, _ = probe("netmap")
    return "netmap" if ok else "emu"


def get_backend(name: str | None = None) -> Backend:
    """The backend object for ``name`` (default: :func:`default_backend_name`), checked usable."""
    name = name or default_backend_name()
    backend = _load(name)
    ok, why = backend.probe()
    if not ok:
        hint = ("use backend='emu' (or PYNETMAP_BACKEND=emu) to run on the emulator"
                if name == "netmap" else "")
        raise BackendUnavailable(name, why, hint)
    return backend
