"""Port over a backend binding: netmap_if decoding, bound rings, first/last ring ids as libnetmap
derives them, lifecycle, extra-buffer walk, backend selection."""
from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

import netmap_core
from layout import FakeBinding, build
from netmap_core import abi
from netmap_core.errors import BackendUnavailable, ClosedPortError, InvalidRequestError
from netmap_core.port import Port
from netmap_core.portspec import PortSpec

SPEC = PortSpec(text="netmap:test", name="test", mode=abi.NR_REG_ALL_NIC)


def test_rings_and_names_from_the_netmap_if():
    region, offs, info = build(tx=(8, 16), rx=(4, 4, 4), name="vale0:a")
    with Port(FakeBinding(region, info), SPEC) as port:
        assert port.name == "vale0:a"
        assert [r.num_slots for r in port.tx_rings] == [8, 16]
        assert [r.ringid for r in port.rx_rings] == [0, 1, 2]
        assert all(r.dir == abi.NR_TX for r in port.tx_rings)
        assert (port.first_tx_ring, port.last_tx_ring) == (0, 1)
        assert (port.first_rx_ring, port.last_rx_ring) == (0, 2)
        assert port.host_tx_rings == port.host_rx_rings == ()


def test_unbound_rings_have_zero_ring_ofs_and_are_skipped():
    # ONE_NIC ring 2 on a 2-TX/3-RX port: only TX0 (the fallback) and RX2 are bound (spec A8)
    region, _, info = build(tx=(8, 8), rx=(8, 8, 8), bound_tx={0}, bound_rx={2})
    port = Port(FakeBinding(region, info), SPEC)
    assert [r.ringid for r in port.tx_rings] == [0]
    assert [r.ringid for r in port.rx_rings] == [2]
    assert (port.first_rx_ring, port.last_rx_ring) == (2, 2)
    assert (port.first_tx_ring, port.last_tx_ring) == (0, 0)


def test_nothing_bound_gives_an_empty_range():
    region, _, info = build(tx=(8,), rx=(8,), bound_tx=set())
    port = Port(FakeBinding(region, info), SPEC)
    assert port.tx_rings == () and port.last_tx_ring < port.first_tx_ring


def test_sync_poll_and_close_go_to_the_binding_once():
    region, _, info = build()
    b = FakeBinding(region, info)
    port = Port(b, SPEC)
    port.txsync()
    port.rxsync()
    assert port.poll(netmap_core.POLLOUT, 0) == netmap_core.POLLOUT
    port.close()
    port.close()
    assert b.calls == ["txsync", "rxsync", f"poll {netmap_core.POLLOUT} 0", "close"]
    assert port.closed
    with pytest.raises(ClosedPortError):
        port.txsync()


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan"), float("inf"), float("-inf"), 1e300,
                                     netmap_core.port.MAX_POLL_TIMEOUT * 2, "1", b"", [1]])
def test_poll_refuses_timeouts_that_would_block_forever_silently(timeout):
    region, _, info = build()
    b = FakeBinding(region, info)
    with pytest.raises(InvalidRequestError, match=r"poll: timeout=.* allowed: None \(wait forever\)"):
        Port(b, SPEC).poll(netmap_core.POLLIN, timeout)
    assert b.calls == [], "nothing reached the backend"


@pytest.mark.parametrize("timeout,passed", [(None, None), (0, 0), (0.25, 0.25), (np.float32(0.5), 0.5),
                                            (netmap_core.port.MAX_POLL_TIMEOUT,
                                             netmap_core.port.MAX_POLL_TIMEOUT)])
def test_poll_passes_legal_timeouts_in_seconds(timeout, passed):
    region, _, info = build()
    b = FakeBinding(region, info)
    Port(b, SPEC).poll(netmap_core.POLLIN, timeout)
    assert b.calls == [f"poll {netmap_core.POLLIN} {passed}"]


def test_rings_refuse_every_use_once_their_port_is_closed():
    region, _, info = build()
    port = Port(FakeBinding(region, info), SPEC)
    tx, rx = port.tx_rings[0], port.rx_rings[0]
    batch = tx.ready()
    walk = tx.bufs()
    next(walk)
    port.close()
    assert tx.closed and rx.closed and "closed" in repr(tx)
    uses = [lambda: next(walk), tx.bufs, tx.payloads,
            lambda: tx.head, lambda: tx.cur, lambda: tx.tail, lambda: tx.flags, lambda: tx.ts,
            tx.space, lambda: tx.empty, tx.tx_pending, lambda: tx.advance(1), lambda: tx.next(0),
            lambda: tx.buf(0), lambda: tx.payload(0), lambda: tx.set_len(0, 1), lambda: tx.field(0),
            tx.ready, lambda: tx.fill(3, template=b"x"), lambda: tx.forward(rx), lambda: rx.forward(tx),
            tx.describe, batch.gather, lambda: batch.read(0), lambda: batch.write(0, 1),
            lambda: batch.scatter(b"ab")]

    def set_head():
        tx.head = 1

    def set_cur():
        tx.cur = 1

    def set_flags():
        tx.flags = 0

    for use in [*uses, set_head, set_cur, set_flags]:
        with pytest.raises(ClosedPortError, match=r"test:0:[rt]x0: its port .netmap:test. is closed"):
            use()
    assert tx.slots["len"][0] == 2048, "nothing was written"


def test_a_ring_keeps_its_ports_binding_alive():
    import gc
    import weakref

    region, _, info = build()
    b = FakeBinding(region, info)
    alive = weakref.ref(b)
    tx = Port(b, SPEC).tx_rings[0]   # the Port itself is garbage at once
    del b
    gc.collect()
    assert alive() is not None, "the ring keeps the registration"
    assert tx.fill(2, template=b"ab") == 2
    del tx
    gc.collect()
    assert alive() is None, "and lets it go with the last ring"


def test_a_dropped_port_without_ring_references_is_freed_at_once():
    import weakref

    region, _, info = build()
    port = Port(FakeBinding(region, info), SPEC)
    alive = weakref.ref(port._binding)
    del port   # no reference cycle: freed by reference counting, no gc pass needed
    assert alive() is None


def test_extra_buffer_list_walk_stops_on_garbage_and_loops():
    region, offs, info = build(extra=8)
    port = Port(FakeBinding(region, info), SPEC)
    bufs = port.tx_rings[0].buffers
    for a, b in [(22, 21), (21, 20), (20, 0)]:
        bufs[a, :4] = np.frombuffer(np.uint32(b).tobytes(), np.uint8)
    port.bufs_head = 22
    assert port.extra_buffers() == [22, 21, 20]
    bufs[20, :4] = np.frombuffer(np.uint32(22).tobytes(), np.uint8)  # a loop
    assert port.extra_buffers() == [22, 21, 20]
    port.bufs_head = 99_999_999
    assert port.extra_buffers() == []


def test_offsets_outside_the_region_are_refused():
    region, _, info = build()
    from dataclasses import replace

    with pytest.raises(InvalidRequestError, match="nr_offset"):
        Port(FakeBinding(region, replace(info, offset=len(region))), SPEC)
    arr = np.frombuffer(region, np.uint8)
    np.ndarray((), abi.netmap_if, arr, 0)["ni_rx_rings"] = 10**6
    with pytest.raises(InvalidRequestError, match="overflow"):
        Port(FakeBinding(region, info), SPEC)


def test_wait_returns_when_poll_reports_ready():
    region, _, info = build()
    port = Port(FakeBinding(region, info), SPEC)
    assert asyncio.run(port.wait(netmap_core.POLLIN)) == netmap_core.POLLIN


class _EventsBinding(FakeBinding):
    """A binding whose descriptor reports the events themselves (as a netmap descriptor
    does): here the write end of a pipe, always writable and never readable."""

    fileno_reports_events = True

    def __init__(self, region, info, ready_after: int):
        super().__init__(region, info)
        self.r, self.w = os.pipe()
        self.left = ready_after

    def poll(self, events, timeout):
        self.calls.append(f"poll {events} {timeout}")
        self.left -= 1
        return events & netmap_core.POLLOUT if self.left < 0 else 0

    def fileno(self):
        return self.w


def test_wait_for_pollout_watches_the_descriptor_for_writing():
    # epoll asks netmap's poll only for the events registered: POLLOUT needs a writer
    region, _, info = build()
    b = _EventsBinding(region, info, ready_after=2)
    try:
        port = Port(b, SPEC)
        got = asyncio.run(asyncio.wait_for(port.wait(netmap_core.POLLOUT), 10))
        assert got == netmap_core.POLLOUT and len(b.calls) == 3
    finally:
        os.close(b.r)
        os.close(b.w)


def test_unknown_backend_and_unusable_device_are_typed(monkeypatch):
    with pytest.raises(InvalidRequestError, match="backend='nope'"):
        netmap_core.get_backend("nope")
    monkeypatch.setitem(netmap_core.BACKENDS, "ghost", "no_such_module_xyz")
    with pytest.raises(BackendUnavailable, match="cannot import"):
        netmap_core.get_backend("ghost")
    assert netmap_core.probe("ghost")[0] is False


def test_env_overrides_the_default_backend(monkeypatch):
    monkeypatch.setenv("PYNETMAP_BACKEND", "emu")
    assert netmap_core.default_backend_name() == "emu"
