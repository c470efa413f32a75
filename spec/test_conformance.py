"""The conformance suite under pytest: the pipe machine in both rules modes, ring arithmetic on
real rings, and proof that the machine notices a misbehaving backend.

Backend: ``--backend`` / ``--conformance-backend`` / ``$PYNETMAP_BACKEND`` (see conftest.py).
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.stateful import run_state_machine_as_test

import netmap_core
from netmap_core.testing import conformance, run_ring_ops
from netmap_core.testing.conformance import ConformanceFailure, conformance_settings, make_machine
from netmap_core.testing.strategies import ring_operations

_names = itertools.count()


@pytest.mark.parametrize("rules", ["netmap", "strict"])
def test_pipe_machine(conformance_backend, conformance_budget, rules):
    """Every netmap user operation on a pipe, checked step by step against netmap_core.testing.model."""
    examples, steps = conformance_budget
    machine = make_machine(conformance_backend, rules)
    # one failure is enough here, and shrinking a second one would double the time it takes
    run_state_machine_as_test(machine, settings=conformance_settings(examples, steps,
                                                                     report_multiple_bugs=False))
    assert machine.examples >= examples and machine.steps > 0


# --- single-ring arithmetic on real rings ------------------------------------------------------
def _pair(backend: str, n: int):
    name = f"ra{os.getpid() % 100000}n{next(_names)}"
    master = netmap_core.open(f"netmap:{name}{{0@conf:slots={n}", backend=backend, rules="strict")
    try:
        slave = netmap_core.open(f"netmap:{name}}}0", backend=backend, rules="strict")
    except BaseException:
        master.close()
        raise
    return master, slave


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 37).filter(lambda n: n & (n - 1)),  # non-powers of two only
       ops=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=25))
def test_ring_arithmetic(conformance_backend, n, ops):
    """next/space/empty/tx_pending on rings of odd sizes through many wrap-arounds: the sender
    always sees n-1 minus what is in flight, the receiver exactly what is in flight, and the
    frames come out in order (batch fill/gather across the wrap)."""
    master, slave = _pair(conformance_backend, n)
    try:
        tx, rx = master.tx_rings[0], slave.rx_rings[0]
        assert [tx.next(i) for i in range(n)] == [*range(1, n), 0]
        assert [rx.next(i) for i in range(n)] == [*range(1, n), 0]
        sent = got = inflight = 0
        for want_send, want_recv in ops:
            assert tx.space() == n - 1 - inflight
            k = min(want_send, tx.space())
            rows = np.zeros((k, 16), dtype=np.uint8)
            rows[:, :8] = np.arange(sent, sent + k, dtype="<u8").view(np.uint8).reshape(k, 8)
            assert tx.fill(k, data=rows) == k
            sent += k
            master.txsync()
            inflight += k
            slave.rxsync()
            assert rx.space() == inflight and rx.empty == (inflight == 0)
            assert rx.tail == tx.head
            j = min(want_recv, rx.space())
            batch = rx.ready(j)
            seqs = batch.gather(0, 8).copy().view("<u8").ravel().tolist()
            assert seqs == list(range(got, got + j))
            got += j
            rx.advance(j)
            slave.rxsync()
            inflight -= j
            master.txsync()
            assert tx.tx_pending() == (inflight > 0)
            assert tx.tail == (tx.head - 1 - inflight) % n
    finally:
        slave.close()
        master.close()


# --- the machine catches broken backends -------------------------------------------------------
class _Faulty:
    """A Port whose syscalls misbehave in one precise way (the mutation under test)."""

    def __init__(self, port, fault: str) -> None:
        self._port, self._fault = port, fault

    def __getattr__(self, name):
        return getattr(self._port, name)

    def txsync(self):
        tx = self._port.tx_rings[0]
        if self._fault == "lost-txsync" and tx.head == 1:
            return None
        out = self._port.txsync()
        if self._fault == "dirty-slot" and tx.head == 2:
            tx.slots["flags"][0] |= 0x2
        return out

    def rxsync(self):
        rx = self._port.rx_rings[0]
        if self._fault == "short-release" and rx.head != rx.tail and rx.head > 0:
            head = rx.head
            rx.head = rx.cur = head - 1
            out = self._port.rxsync()
            rx.head = rx.cur = head
            return out
        return self._port.rxsync()

    def poll(self, events=netmap_core.POLLIN, timeout=None):
        revents = self._port.poll(events, timeout)
        return revents & ~netmap_core.POLLERR if self._fault == "no-pollerr" else revents


#: rules of a user who breaks netmap's rules (B6-B8); the "well-behaved" machine drops them
MISBEHAVING = ("move_indexes", "overwrite_tail")


def _machine(backend: str, rules: str, well_behaved: bool):
    machine = make_machine(backend, rules)
    if well_behaved:
        machine = type(machine.__name__ + "_well_behaved", (machine,), dict.fromkeys(MISBEHAVING))
    return machine


# A backend made to lie about syncs leaves the kernel's rings other than the machine believes
# them, so its closes can make netmap free buffers twice: provoked on purpose here.
@pytest.mark.kernel_warnings(r"ouch, double free on buffer \d+", r"breaking with head -?\d+")
@pytest.mark.parametrize("fault,rules,well_behaved", [
    ("lost-txsync", "strict", True),     # a sync that silently does nothing
    ("dirty-slot", "strict", True),      # a slot descriptor changed behind the user's back
    ("short-release", "strict", True),   # the receiver's release of one slot is lost
    ("no-pollerr", "netmap", False),     # the reinit is done but poll hides POLLERR (B8)
])
def test_machine_detects_faulty_backend(conformance_backend, monkeypatch, fault, rules, well_behaved):
    """The same derandomized programs pass on the backend as it is (the control) and fail once
    the fault is injected, so the failure is the fault's doing."""
    # derandomized: the same programs every run, so catching the fault is not a matter of luck
    quick = conformance_settings(150, 40, phases=[Phase.generate], database=None, derandomize=True)
    try:
        run_state_machine_as_test(_machine(conformance_backend, rules, well_behaved), settings=quick)
    except ConformanceFailure as exc:
        pytest.skip(f"control run fails, so detection cannot be attributed to the fault: {exc}")
    real_open = netmap_core.open
    monkeypatch.setattr(conformance.netmap_core, "open",
                        lambda *a, **kw: _Faulty(real_open(*a, **kw), fault))
    with pytest.raises(ConformanceFailure):
        run_state_machine_as_test(_machine(conformance_backend, rules, well_behaved), settings=quick)


# --- random ring-operation programs --------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 37), ops=ring_operations())
def test_ring_programs(conformance_backend, n, ops):
    """Programs of fills, reads, syncs and polls keep the ring laws (spec B2, B3, F5) and deliver
    every frame whole and in order (checked by run_ring_ops after every step)."""
    master, slave = _pair(conformance_backend, n)
    try:
        result = run_ring_ops(master, slave, ops)
    finally:
        slave.close()
        master.close()
    assert 0 <= result.received <= result.sent
