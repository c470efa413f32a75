"""Monitors of pipe ends on the chosen backend (spec G1-G5, netmap's scripts 014, 017, 020,
027): copy monitors see TX at the sender's txsync and RX as soon as the frames reach the ring,
zero-copy monitors swap completed TX slots and released RX slots, buffers are conserved."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import netmap_core
from netmap_core import POLLERR, POLLIN, abi
from netmap_core.errors import InvalidRequestError
from netmap_core.testing import BCAST, frame, mac, recv, recv_slots, send, unique_switch

CHANGED = abi.NS_BUF_CHANGED


@pytest.fixture
def pipe():
    return f"netmap:{unique_switch('mp')}"


def bufs(ring, k=None):
    return [int(x) for x in ring.slots["buf_idx"][: k if k is not None else len(ring.slots)]]


def frames(k, size=150, fill=0):
    return [frame(BCAST, mac(9), size=size, fill=fill + i) for i in range(k)]


@pytest.mark.kernel_warnings(r"q\d+\{1 not in netmap mode$")
def test_copy_monitor_layout_and_needs_open_end(opener):
    pipe = f"netmap:q{os.getpid() % 1000}"       # short: ni_name keeps 15 characters
    with pytest.raises(InvalidRequestError):
        opener(f"{pipe}{{1/rt")
    m = opener(f"{pipe}{{1")
    mon = opener(f"{pipe}{{1/rt")
    assert mon.info.mem_id != m.info.mem_id and (mon.info.offset, mon.info.memsize) == (0, 8478720)
    assert (mon.info.tx_rings, mon.info.rx_rings, mon.info.rx_slots) == (1, 1, 1024)
    assert mon.name == f"{pipe[7:]}{{1/rt#0"
    z = opener(f"{pipe}{{1/z")
    assert z.info.mem_id == m.info.mem_id and z.info.flags == 0x700 and z.name == f"{pipe[7:]}{{1/zrt#1"


def test_020_tx_copies_before_the_peer_reads(opener, pipe):
    m = opener(f"{pipe}{{1")
    mon = opener(f"{pipe}{{1/t")
    s = opener(f"{pipe}}}1")
    out = frames(3)
    send(m, out)
    assert recv_slots(mon) == [(f, abi.NS_TXMON) for f in out]
    assert recv(s) == out


def test_014_rx_copies_before_the_receiver_syncs(opener, pipe):
    m = opener(f"{pipe}{{1")
    mon = opener(f"{pipe}{{1/r")
    s = opener(f"{pipe}}}1")
    out = frames(2, size=3000)                 # two fragments each: flags copied as they are
    send(s, out)
    got = recv_slots(mon)
    assert [fl for _, fl in got] == [abi.NS_MOREFRAG, 0] * 2
    assert b"".join(d for d, _ in got) == b"".join(out)
    assert recv(m) == out


def test_017_rx_zero_copy_after_release_buffers_go_to_the_sender(opener, pipe):
    m = opener(f"{pipe}{{1@conf:slots=8")
    z = opener(f"{pipe}{{1/z")
    s = opener(f"{pipe}}}1")
    out = frames(3)
    sent = bufs(s.tx_rings[0], 3)
    mine = bufs(z.rx_rings[0], 3)
    send(s, out)
    assert recv_slots(z) == []                  # the master has not released them
    assert recv(m) == out
    assert recv_slots(z) == []
    m.rxsync()                                  # release: swapped, then handed back
    assert recv_slots(z) == [(f, 0) for f in out] and bufs(z.rx_rings[0], 3) == sent
    st = s.tx_rings[0]
    assert bufs(st, 3) == mine and (st.slots["flags"][:3] & CHANGED).all()
    s.txsync()
    assert st.tail == 2
    send(s, out)                                # the sender uses the monitor's old buffers
    assert recv(m) == out


def test_027_tx_zero_copy_when_the_txsync_finds_slots_released(opener, pipe):
    m = opener(f"{pipe}{{1@conf:slots=8")
    z = opener(f"{pipe}{{1/z")
    s = opener(f"{pipe}}}1")
    first, second = frames(2), frames(1, fill=50)
    mine = bufs(m.tx_rings[0], 2)
    send(m, first)
    assert recv_slots(z) == []                  # not released by the slave yet
    assert recv(s) == first
    s.rxsync()
    assert recv_slots(z) == []                  # released, but the master has not synced
    send(m, second)                             # this txsync finds slots 0, 1 completed
    assert recv_slots(z) == [(f, abi.NS_TXMON) for f in first]
    assert bufs(z.rx_rings[0], 2) == mine
    assert (m.tx_rings[0].slots["flags"][:2] & CHANGED).all()
    assert recv(s) == second


def test_two_ends_monitored_and_conservation(opener, pipe, backend_name):
    m = opener(f"{pipe}{{1@conf:slots=16")
    s = opener(f"{pipe}}}1")
    zm = opener(f"{pipe}{{1/z")
    zs = opener(f"{pipe}}}1/z")
    cm = opener(f"{pipe}}}1/rt@conf:slots=64")   # room for all 30 copies

    def owned():
        """Every buffer owned once: a pipe pair's slot i belongs to the RX ring while it is in
        flight ([hwcur, hwtail) of the receiver, seen through the sender's tail), else to TX."""
        out = []
        for tx_port, rx_port in ((m, s), (s, m)):
            t, r = tx_port.tx_rings[0], rx_port.rx_rings[0]
            n = len(t.slots)
            held = {(t.tail + 1 + k) % n for k in range((r.tail - (t.tail + 1)) % n)} | \
                {(r.head + k) % n for k in range((r.tail - r.head) % n)}
            out += [int(r.slots["buf_idx"][i]) if i in held else int(t.slots["buf_idx"][i]) for i in range(n)]
        for z in (zm, zs):
            out += bufs(z.rx_rings[0]) + bufs(z.tx_rings[0])
        return out

    start = sorted(owned())
    assert len(set(start)) == len(start)
    for step in range(6):
        send(m, frames(3, fill=step))
        send(s, frames(2, fill=step + 100))
        assert len(recv(s)) == 3 and len(recv(m)) == 2
        s.rxsync()
        m.rxsync()
        m.txsync()
        s.txsync()
        for z in (zm, zs):
            recv_slots(z)
            z.rxsync()
        now = sorted(owned())
        assert now == sorted(set(now)) and len(now) == len(start), step
    got = recv_slots(cm)
    assert [fl for _, fl in got].count(abi.NS_TXMON) == 12 and len(got) == 30


def test_pipe_end_leaving_kills_its_monitors(opener, pipe, backend_name):
    m = netmap_core.open(f"{pipe}{{1", backend=backend_name)
    s = opener(f"{pipe}}}1")
    mon = opener(f"{pipe}{{1/rt", rules="netmap")
    z = opener(f"{pipe}{{1/z", rules="netmap")
    m.close()
    for x in (mon, z):
        assert x.poll(POLLIN, 0) & POLLERR
    m2 = opener(f"{pipe}{{1")
    send(s, frames(1))
    assert recv(m2) == frames(1)
    m2.rxsync()
    assert recv(mon) == [] and recv(z) == [] and mon.poll(POLLIN, 0) & POLLERR


def test_monitor_fed_by_another_process(opener, pipe, backend_name):
    m = opener(f"{pipe}{{1")
    mon = opener(f"{pipe}{{1/r")
    z = opener(f"{pipe}{{1/z")
    code = textwrap.dedent(f"""
        import netmap_core
        from netmap_core.testing import BCAST, frame, mac, send
        s = netmap_core.open({pipe + '}1'!r}, backend={backend_name!r})
        send(s, [frame(BCAST, mac(9), size=150, fill=i) for i in range(4)])
        s.close()
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), timeout=60)
    assert recv(mon) == frames(4)               # copied by the other process's txsync
    assert recv(m) == frames(4)
    m.rxsync()
    assert recv(z) == frames(4)
