"""The emulated kernel's state as typed, frozen records: allocators, interfaces (pipe parents and
VALE ports), pipes, switches, bindings and monitors, plus the namespace's counters.

A record changes by being replaced (``dataclasses.replace``) in its table of the
:class:`~netmap_emu.kernel.registry.Registry`; that is how a commit knows what to write. Ring
objects are ring-pool indexes of an allocator; ``-1`` means "not created yet". Every tuple here
is immutable on purpose: a record never changes behind its table's back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Mem", "ValePort", "Parent", "Pipe", "Switch", "Monitor", "Binding", "Meta",
           "PortKey", "pipe_key", "port_key", "from_json", "KINDS"]

#: a monitored port: ("vale", port name) or ("pipe", parent, pipe id, end)
PortKey = tuple
KINDS = ("pipe", "vale", "monitor", "nic")


@dataclass(frozen=True)
class Mem:
    """One allocator (``nr_mem_id``): its geometry parameters, incarnation ``gen`` (part of its
    segment names), creation order ``seq`` (spec A18) and the if/ring objects in use."""

    mem_id: int
    gen: int
    seq: int
    params: tuple
    priv: bool
    memsize: int
    if_used: tuple[int, ...] = ()
    ring_used: tuple[int, ...] = ()


@dataclass(frozen=True)
class ValePort:
    """The VALE side of an interface: where it is attached and its rings (ring objects)."""

    switch: str | None
    port: int | None
    persistent: bool
    ntx: int
    nrx: int
    txs: int
    rxs: int
    tx: tuple[int, ...]
    rx: tuple[int, ...]
    hdr_len: int = 0

    def listed(self, name: str) -> str:
        """The name VALE_LIST shows for the port whose interface is ``name``."""
        return f"{self.switch}:{name}" if self.persistent else name


@dataclass(frozen=True)
class Parent:
    """An interface: a pipe parent created on demand (``auto``) or a VALE port (``vale``),
    which may be a pipe parent too. ``rings`` are ring objects the interface owns itself."""

    name: str
    mem_id: int
    auto: bool
    tx_slots: int
    rx_slots: int
    rings: tuple[int, ...] = ()
    vale: ValePort | None = None
    mon_seq: int = 0   # monitors opened on the port so far (they are named after it, G2)


@dataclass(frozen=True)
class Pipe:
    """Pipe ``parent{pipe_id`` (end 0) / ``parent}pipe_id`` (end 1): per end, ring counts,
    slots and ring objects (a TX ring of one end and the RX ring of the other share buffers)."""

    parent: str
    pipe_id: str
    ntx: tuple[int, int]
    nrx: tuple[int, int]
    txs: tuple[int, int]
    rxs: tuple[int, int]
    tx: tuple[tuple[int, ...], tuple[int, ...]]
    rx: tuple[tuple[int, ...], tuple[int, ...]]
    mon_seq: tuple[int, int] = (0, 0)   # monitors opened on each end so far

    @property
    def key(self) -> str:
        return pipe_key(self.parent, self.pipe_id)

    def objs(self) -> list[int]:
        return [o for side in (self.tx, self.rx) for end in side for o in end if o >= 0]


@dataclass(frozen=True)
class Switch:
    """A VALE switch: bridge index, segment incarnation, netmap's port-index free list (the
    first ``active`` entries are in use) and (port index, interface name) pairs."""

    name: str
    idx: int
    gen: int
    free: tuple[int, ...]
    active: int
    ports: tuple[tuple[int, str], ...] = ()

    def port_names(self) -> dict[int, str]:
        return dict(self.ports)


@dataclass(frozen=True)
class Monitor:
    """What a monitor binding watches: port ``key``, its TX/RX ring ids, and for each watched
    ring id the ring object of the monitor's RX ring fed by it. ``gone``: the port left
    netmap mode (spec G5)."""

    key: PortKey
    zcopy: bool
    gone: bool
    tx: tuple[int, ...]
    rx: tuple[int, ...]
    objs: tuple[tuple[int, int], ...]

    def obj(self, ring: int) -> int | None:
        for r, o in self.objs:
            if r == ring:
                return o
        return None


@dataclass(frozen=True)
class Binding:
    """One registration (netmap's open file bound to a port). ``owner`` identifies the process
    (pid and a per-process nonce: pids are reused); the process holds the binding's liveness
    lock for as long as it lives."""

    bid: int
    owner: str
    pid: int
    kind: str
    mem_id: int
    parent: str | None
    pipe: str | None
    end: int
    if_obj: int
    tx: tuple[int, ...]
    rx: tuple[int, ...]
    excl: bool
    flags: int
    name: str
    extra: int
    rings: tuple[int, ...] = ()
    mon: Monitor | None = None


@dataclass(frozen=True)
class Meta:
    """Namespace counters: segment generation, allocator creation order, next binding id, and
    ``txn``: allocators an unfinished operation may have touched (None = none)."""

    gen: int = 0
    seq: int = 0
    next_bid: int = 1
    txn: tuple[int, ...] | None = None


def pipe_key(parent: str, pipe_id: str) -> str:
    return f"{parent}{{{pipe_id}"


def port_key(b: Binding) -> PortKey | None:
    """The port a non-monitor binding registers, as monitors name it."""
    if b.kind == "vale":
        return ("vale", b.parent)
    if b.kind == "pipe":
        return ("pipe", b.parent, b.pipe, b.end)
    return None


def _frozen(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_frozen(v) for v in x)
    return x


def from_json(cls: type, d: dict) -> Any:
    """A record of type ``cls`` from its JSON form (lists become tuples)."""
    kw = {k: _frozen(v) for k, v in d.items()}
    if cls is Parent and kw.get("vale") is not None:
        kw["vale"] = from_json(ValePort, d["vale"])
    if cls is Binding and kw.get("mon") is not None:
        kw["mon"] = from_json(Monitor, d["mon"])
    return cls(**kw)

