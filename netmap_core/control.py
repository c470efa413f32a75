"""netmap's control requests (NIOCCTRL request types other than REGISTER) as one interface.

Both backends implement :class:`Control`; ``netmap_core.control_for(backend)`` returns it.
Each method is one request with netmap's semantics and errno rules (spec C5): failures raise
the typed errors of :mod:`netmap_core.errors` and change nothing.
"""
from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import NetmapError

__all__ = ["PortInfo", "PoolsInfo", "NewIf", "ListEntry", "Control", "control_for", "vale_ports"]


@dataclass(frozen=True)
class PortInfo:
    """PORT_INFO_GET: allocator and ring geometry of a port (or of allocator ``mem_id``)."""

    memsize: int
    mem_id: int
    tx_rings: int = 0
    rx_rings: int = 0
    tx_slots: int = 0
    rx_slots: int = 0
    host_tx_rings: int = 0
    host_rx_rings: int = 0


@dataclass(frozen=True)
class PoolsInfo:
    """POOLS_INFO_GET: the three pools of a port's allocator (spec A1)."""

    memsize: int
    mem_id: int
    if_pool_offset: int
    if_pool_objtotal: int
    if_pool_objsize: int
    ring_pool_offset: int
    ring_pool_objtotal: int
    ring_pool_objsize: int
    buf_pool_offset: int
    buf_pool_objtotal: int
    buf_pool_objsize: int


@dataclass(frozen=True)
class NewIf:
    """VALE_NEWIF: the effective geometry of a new persistent VALE interface."""

    tx_rings: int
    rx_rings: int
    tx_slots: int
    rx_slots: int
    mem_id: int


@dataclass(frozen=True)
class ListEntry:
    """VALE_LIST: one port of one switch."""

    name: str
    bridge_idx: int
    port_idx: int


@runtime_checkable
class Control(Protocol):
    def port_info(self, name: str = "", *, mem_id: int = 0) -> PortInfo: ...
    def pools_info(self, name: str) -> PoolsInfo: ...
    def vale_attach(self, name: str, *, mode: int = 1, mem_id: int = 0) -> int: ...
    def vale_detach(self, name: str) -> int: ...
    def vale_list(self, name: str = "", *, bridge_idx: int = 0, port_idx: int = 0) -> ListEntry: ...
    def vale_newif(self, name: str, *, tx_rings: int = 0, rx_rings: int = 0, tx_slots: int = 0,
                   rx_slots: int = 0, mem_id: int = 0) -> NewIf: ...
    def vale_delif(self, name: str) -> None: ...
    def port_hdr_set(self, name: str, hdr_len: int) -> None: ...
    def port_hdr_get(self, name: str) -> int: ...
    def close(self) -> None: ...


def control_for(backend: str | None = None) -> Control:
    """The control interface of ``backend`` (default as for :func:`netmap_core.open`)."""
    from .backend import get_backend

    return get_backend(backend).control()


def vale_ports(control: Control) -> Iterator[ListEntry]:
    """Every port of every VALE switch, in VALE_LIST order: the walk ``vale-ctl`` without
    arguments does (next port index of the entry returned, until ENOENT). Other errors raise."""
    bridge, port = 0, 0
    while True:
        try:
            e = control.vale_list("", bridge_idx=bridge, port_idx=port)
        except NetmapError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                return
            raise
        yield e
        bridge, port = e.bridge_idx, e.port_idx + 1
