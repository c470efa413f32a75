"""pynetmap: netmap's rings, ports, VALE switches, pipes and monitors from Python.

One API, two backends: ``netmap`` (/dev/netmap) and ``emu`` (a shared-memory emulator with the
same byte layout). ``netmap_core`` itself does no I/O: a Ring is a view over a memory region and
a backend supplies memory, sync, poll and close.
"""
from __future__ import annotations

from . import abi, aio, batch, headers, rules
from .backend import BACKENDS, Backend, Binding, RegisterInfo, default_backend_name, get_backend, probe
from .errors import (
    BackendUnavailable,
    ClosedPortError,
    CorruptRingError,
    InvalidRequestError,
    LockTimeoutError,
    NetmapError,
    NetmapOSError,
    NoSuchPortError,
    NotSupportedError,
    OutOfMemoryError,
    PortBusyError,
    PortSpecError,
    RingProtocolError,
    error_from_errno,
)
from .port import POLLERR, POLLIN, POLLOUT, Port, open_port
from .portspec import Conf, ExtMem, Offset, PortSpec, parse_portspec
from .ring import Batch, Ring

__version__ = "0.1.0"  # the only place the version is written (pyproject.toml reads it)

open = open_port  # noqa: A001 - netmap_core.open(portspec) is the public entry point

__all__ = [
    "__version__", "abi", "aio", "batch", "headers", "rules", "open", "open_port", "Port",
    "Ring", "Batch",
    "PortSpec", "Conf", "ExtMem", "Offset", "parse_portspec",
    "RegisterInfo", "Binding", "Backend", "BACKENDS", "get_backend", "default_backend_name", "probe",
    "POLLIN", "POLLOUT", "POLLERR",
    "NetmapError", "PortSpecError", "RingProtocolError", "CorruptRingError", "NetmapOSError",
    "InvalidRequestError", "NoSuchPortError", "PortBusyError", "OutOfMemoryError", "NotSupportedError",
    "LockTimeoutError", "ClosedPortError", "BackendUnavailable", "error_from_errno",
]
