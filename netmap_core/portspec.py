"""netmap port names (libnetmap's portspec grammar, spec D1-D9) parsed into a frozen value.

(Parser under construction: the value types below are the interface other modules use.)
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PortSpec", "Conf", "ExtMem", "Offset", "parse_portspec"]


@dataclass(frozen=True)
class Conf:
    """``@conf:`` ring and slot hints (0 = the port's default)."""

    tx_rings: int = 0
    rx_rings: int = 0
    host_tx_rings: int = 0
    host_rx_rings: int = 0
    tx_slots: int = 0
    rx_slots: int = 0


@dataclass(frozen=True)
class ExtMem:
    file: str
    if_num: int = 0
    if_size: int = 0
    ring_num: int = 0
    ring_size: int = 0
    buf_num: int = 0
    buf_size: int = 0


@dataclass(frozen=True)
class Offset:
    initial: int
    bits: int = 0


@dataclass(frozen=True)
class PortSpec:
    text: str
    name: str
    mode: int
    ringid: int = 0
    flags: int = 0
    mem_id: int = 0
    conf: Conf = Conf()
    share: str | None = None
    extmem: ExtMem | None = None
    offset: Offset | None = None
    switch: str | None = None
    port: str = ""
    pipe: str | None = None
    pipe_id: str | None = None
    parent: str = ""


def parse_portspec(text: str) -> PortSpec:
    raise NotImplementedError
