"""The VALE conformance machine: random traffic between three ports of one switch (plus a
copy monitor on port 0), checked frame by frame against a model of netmap's switch.

What the model states (spec E6-E10, E12, G1-G3): source learning with netmap's "re-learn
only when the port's source changes" rule, unicast to the learned port, flood for
broadcast/multicast/unknown, never back to the sender, frames shorter than 14 bytes dropped,
per destination the packets that fit kept in order and the rest dropped, the whole TX ring
free after every txsync, received slots visible only after the receiver's rxsync, fragment
flags ``(nfrags << 8) | NS_MOREFRAG``, VALE copying (every port keeps its own buffers), and a
copy monitor seeing TX slots at txsync (NS_TXMON) and RX slots when the switch delivers them
(netmap's notify runs the monitors then, before the receiver syncs), the most recent ones when
its ring is short of room. Uses only the public API, so it runs on any backend.
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

import netmap_core
from netmap_core import abi
from netmap_core.port import Port

from .budget import DEFAULT_BUDGETS, THOROUGH_BUDGETS
from .conformance import RunReport

__all__ = ["ValeMachine", "make_vale_machine", "run_vale_conformance", "VALE_DEFAULTS",
           "VALE_THOROUGH", "VALE_INVARIANT_NAMES", "vale_settings"]

#: (examples, steps): a few seconds on the emulator; and ``--thorough``
VALE_DEFAULTS = DEFAULT_BUDGETS["vale"]
VALE_THOROUGH = THOROUGH_BUDGETS["vale"]
#: the machine's invariant methods
VALE_INVARIANT_NAMES = ("buffers_conserved",)
SLOTS = 8                     # every ring: 7 usable slots, so drops happen often
NPORTS = 3
BUF = 2048
_ids = itertools.count()

OWN = [bytes([2, 0, 0, 0, 1, k]) for k in range(NPORTS)]
ROAMING = bytes([2, 0, 0, 0, 2, 1])           # a MAC any port may send from (moves)
UNKNOWN = bytes([2, 0, 0, 0, 3, 1])           # never a source: always flooded
BCAST = b"\xff" * 6
MCAST = bytes([1, 0, 0x5E, 0, 0, 1])
DSTS = st.sampled_from(["bcast", "mcast", "own0", "own1", "own2", "roaming", "unknown"])
SRCS = st.sampled_from(["own", "own", "roaming"])
SIZES = st.sampled_from([60, 60, 200, 13, 14, 3000])
FRAMES = st.lists(st.tuples(DSTS, SRCS, SIZES), min_size=1, max_size=7)


def vale_settings(examples: int, steps: int, **kw: Any) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=list(HealthCheck), **kw)


class ValeMachine(RuleBasedStateMachine):
    """One example: a fresh switch with ports p0..p2 and a copy monitor of p0."""

    backend = "emu"
    examples = 0
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.ports: list[Port] = []
        self.mon: Port | None = None
        self.seq = 0

    # --- set-up ------------------------------------------------------------------------------
    @initialize()
    def open_switch(self) -> None:
        sw = f"vale{os.getpid() % 10000}c{next(_ids)}"
        for k in range(NPORTS):
            self.ports.append(netmap_core.open(f"{sw}:p{k}@conf:slots={SLOTS}", backend=self.backend))
        self.mon = netmap_core.open(f"{sw}:p0/rt@conf:slots={SLOTS}", backend=self.backend)
        self.table: dict[bytes, int] = {}
        self.last_src: dict[int, bytes] = {}
        # in the RX ring, not yet released
        self.held: dict[int, list[tuple[bytes, int]]] = {k: [] for k in range(NPORTS)}
        self.mon_held: list = []
        self.bufs = [sorted(int(x) for r in p.tx_rings + p.rx_rings for x in r.slots["buf_idx"])
                     for p in self.ports]

    def teardown(self) -> None:
        for p in self.ports + ([self.mon] if self.mon is not None else []):
            p.close()

    # --- model helpers ------------------------------------------------------------------------
    def _frame(self, dst: str, src: str, size: int, port: int) -> tuple[bytes, bytes]:
        d = {"bcast": BCAST, "mcast": MCAST, "roaming": ROAMING, "unknown": UNKNOWN}.get(dst)
        if d is None:
            d = OWN[int(dst[-1])]
        s = OWN[port] if src == "own" else ROAMING
        self.seq += 1
        body = self.seq.to_bytes(4, "big") + bytes((self.seq + j) & 0xFF for j in range(max(0, size - 18)))
        return (d + s + b"\x88\xb5" + body)[:size], s

    @staticmethod
    def _slots(f: bytes) -> list[tuple[bytes, int]]:
        parts = [f[i:i + BUF] for i in range(0, len(f), BUF)] or [b""]
        n = len(parts)
        return [(p, (n << 8) | (abi.NS_MOREFRAG if j < n - 1 else 0)) for j, p in enumerate(parts)]

    def _mon_add(self, slots: list[tuple[bytes, int]]) -> None:
        room = SLOTS - 1 - len(self.mon_held)
        if room > 0:
            self.mon_held += slots[len(slots) - min(room, len(slots)):]

    def _dests(self, port: int, f: bytes, src: bytes) -> list[int]:
        if len(f) < 14:
            return []
        if self.last_src.get(port) != src:
            self.table[src] = port
            self.last_src[port] = src
        dst = f[:6]
        others = [k for k in range(NPORTS) if k != port]
        if dst[0] & 1 or dst not in self.table:
            return others
        p = self.table[dst]
        return [] if p == port else [p]

    # --- rules ---------------------------------------------------------------------------------
    @rule(port=st.integers(0, NPORTS - 1), items=FRAMES)
    def send(self, port: int, items: list[tuple[str, str, int]]) -> None:
        type(self).steps += 1
        p = self.ports[port]
        ring = p.tx_rings[0]
        frames = [self._frame(d, s, size, port) for d, s, size in items]
        need = sum(len(self._slots(f)) for f, _ in frames)
        if need > ring.space():
            return
        for f, _ in frames:
            parts = [f[i:i + BUF] for i in range(0, len(f), BUF)] or [b""]
            for j, part in enumerate(parts):
                i = ring.head
                ring.buf(i)[:len(part)] = np.frombuffer(part, dtype=np.uint8)
                ring.slots["len"][i] = len(part)
                ring.slots["flags"][i] = abi.NS_MOREFRAG if j < len(parts) - 1 else 0
                ring.advance(1)
        p.txsync()
        assert ring.space() == SLOTS - 1, f"TX ring not wholly free after txsync: {ring!r}"
        if port == 0:
            tx_slots = []
            for f, _ in frames:
                tx_slots += [(d, (fl & abi.NS_MOREFRAG) | abi.NS_TXMON) for d, fl in self._slots(f)]
            self._mon_add(tx_slots)
        blocked: set[int] = set()
        to_p0: list = []
        for f, src in frames:
            slots = self._slots(f)
            for d in self._dests(port, f, src):
                if d in blocked or len(self.held[d]) + len(slots) > SLOTS - 1:
                    blocked.add(d)      # netmap stops at the first packet that does not fit
                    continue
                self.held[d] += slots
                if d == 0:
                    to_p0 += slots
        if to_p0:
            self._mon_add(to_p0)        # one delivery (one notify) per destination ring

    @rule(port=st.integers(0, NPORTS - 1), release=st.booleans())
    def receive(self, port: int, release: bool) -> None:
        type(self).steps += 1
        p = self.ports[port]
        p.rxsync()
        ring = p.rx_rings[0]
        got = []
        i = ring.head
        for _ in range(ring.space()):
            got.append((bytes(ring.buf(i)[: int(ring.slots["len"][i])]), int(ring.slots["flags"][i])))
            i = ring.next(i)
        assert got == self.held[port], f"p{port} holds {_show(got)}, model {_show(self.held[port])}"
        if release:
            ring.advance(len(got))
            p.rxsync()      # the release takes effect at this rxsync (spec E9, E12)
            self.held[port] = []

    @rule()
    def read_monitor(self) -> None:
        type(self).steps += 1
        m = self.mon
        assert m is not None
        m.rxsync()
        ring = m.rx_rings[0]
        got = []
        i = ring.head
        for _ in range(ring.space()):
            got.append((bytes(ring.buf(i)[: int(ring.slots["len"][i])]), int(ring.slots["flags"][i])))
            i = ring.next(i)
        assert got == self.mon_held, f"monitor holds {_show(got)}, model {_show(self.mon_held)}"
        ring.advance(len(got))
        m.rxsync()
        self.mon_held = []

    # --- invariants ---------------------------------------------------------------------------
    @invariant()
    def buffers_conserved(self) -> None:
        for k, p in enumerate(self.ports):
            now = sorted(int(x) for r in p.tx_rings + p.rx_rings for x in r.slots["buf_idx"])
            assert now == self.bufs[k], f"p{k}: VALE copies, its ring buffers must not change"


def _show(slots: list[tuple[bytes, int]]) -> list[tuple[int, str, str]]:
    return [(len(d), hex(f), d[14:18].hex() if len(d) >= 18 else "") for d, f in slots]


def make_vale_machine(backend: str | None) -> type[ValeMachine]:
    """A ValeMachine bound to one backend (None: the default backend)."""
    return type(f"ValeMachine_{backend or 'default'}", (ValeMachine,),
                {"backend": backend, "examples": 0, "steps": 0})


def run_vale_conformance(backend: str | None, examples: int, steps: int, **extra: Any) -> RunReport:
    """Run the VALE machine; returns counts and the (shrunk) failure, if any, instead of raising."""
    machine = make_vale_machine(backend)
    t0 = time.perf_counter()
    error = None
    try:
        run_state_machine_as_test(machine, settings=vale_settings(examples, steps, **extra))
    except BaseException as exc:  # noqa: BLE001 - reported to the caller with the shrunk program
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = exc
    return RunReport(backend or netmap_core.default_backend_name(), "default", machine.examples,
                     machine.steps, time.perf_counter() - t0, error, suite="vale")
