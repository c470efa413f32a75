"""Copy monitors of VALE ports on the chosen backend (spec G1-G3, Live check 1, netmap's
monitor scripts for VALE ports)."""
from __future__ import annotations

import os

import pytest

from netmap_core import abi
from netmap_core.errors import InvalidRequestError
from netmap_core.testing import BCAST, frame, mac, recv, recv_slots, send, unique_switch
from netmap_emu.testing.vale import ValeEnv


@pytest.fixture
def env(backend_name):
    with ValeEnv(backend_name) as e:
        yield e


def test_copy_monitor_layout_and_name(env):
    sw = f"vale{os.getpid() % 100}"       # short: ni_name keeps 15 characters
    p = env.open(f"{sw}:m")
    m = env.open(f"{sw}:m/rt")
    assert m.info.flags == abi.NR_MONITOR_TX | abi.NR_MONITOR_RX
    assert (m.info.offset, m.info.memsize) == (0, 8478720) and m.info.mem_id != p.info.mem_id
    assert (m.info.tx_rings, m.info.rx_rings, m.info.rx_slots) == (1, 1, 1024)
    assert m.nifp["ni_name"].item().decode().startswith(f"{sw}:m/rt#")
    assert m.ring_ofs.tolist() == [24576, 0, 4096, 0]
    assert m.rx_rings[0].offset == 4096 and int(m.rx_rings[0].header["buf_ofs"]) == 81920
    assert int(m.rx_rings[0].slots["buf_idx"][0]) == 2 and int(m.tx_rings[0].slots["buf_idx"][0]) == 1026
    t = env.open(f"{sw}:m/t")
    k0 = int(m.nifp["ni_name"].item().decode().rsplit("#", 1)[1])
    assert t.nifp["ni_name"].item().decode() == f"{sw}:m/t#{k0 + 1}"


@pytest.mark.kernel_warnings(r"vale\w+:m not in netmap mode$")
def test_monitor_needs_open_parent(env):
    with pytest.raises(InvalidRequestError):
        env.open(f"{unique_switch()}:m/rt")


def test_tx_and_rx_traffic_seen_with_flags(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2)
    m = env.open(f"{sw}:p0/rt")
    out = [frame(BCAST, mac(1), fill=i) for i in range(3)]
    send(a, out)
    got = recv_slots(m)                   # TX copies visible right after the parent's txsync
    assert [d for d, _ in got] == out and all(f == abi.NS_TXMON for _, f in got)
    assert recv(b) == out
    inn = [frame(BCAST, mac(2), size=100, fill=9)]
    send(b, inn)
    # RX copies appear when the frame reaches the parent's ring, before the parent syncs
    # (netmap's notify runs the monitors then; script 012 reads v0/r while nobody reads v0)
    assert recv_slots(m) == [(inn[0], 0x100)]
    assert recv(a) == inn and recv_slots(m) == []


def test_rx_only_and_tx_only_monitors(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2)
    mr = env.open(f"{sw}:p0/r")
    mt = env.open(f"{sw}:p0/t")
    send(a, [frame(BCAST, mac(1))])
    send(b, [frame(BCAST, mac(2))])
    assert [f for _, f in recv_slots(mr)] == [0x100]
    assert [f for _, f in recv_slots(mt)] == [abi.NS_TXMON]


def test_two_monitors_on_one_ring_and_fragments(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2)
    m1 = env.open(f"{sw}:p0/t")
    m2 = env.open(f"{sw}:p0/t")
    big = frame(BCAST, mac(1), size=3000)
    send(a, [big])
    for m in (m1, m2):
        got = recv_slots(m)
        assert [f for _, f in got] == [abi.NS_TXMON | abi.NS_MOREFRAG, abi.NS_TXMON]
        assert b"".join(d for d, _ in got) == big


def test_full_monitor_keeps_most_recent(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2, slots=64)
    m = env.open(f"{sw}:p0/t@conf:slots=8")
    frames = [frame(BCAST, mac(1), fill=i) for i in range(12)]
    send(a, frames)
    assert [d for d, _ in recv_slots(m)] == frames[5:]


def test_multi_ring_monitor_maps_ring_i_to_ring_i(env):
    sw = unique_switch()
    a = env.open(f"{sw}:a@conf:rings=2")
    _b = env.open(f"{sw}:b")
    m = env.open(f"{sw}:a/t")
    assert len(m.rx_rings) == 2
    f = frame(BCAST, mac(1))
    send(a, [f], ring=1)
    assert recv(m, 0) == [] and recv(m, 1) == [f]
    one = env.open(f"{sw}:a-0/t")
    send(a, [f], ring=1)
    assert [r.ringid for r in one.rx_rings] == [0] and recv(one, 0) == []


def test_monitor_close_under_traffic(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2)
    m = env.open(f"{sw}:p0/rt")
    send(a, [frame(BCAST, mac(1))] * 5)
    env.close(m)
    send(a, [frame(BCAST, mac(1))] * 5)
    assert len(recv(b)) == 10
    m.close()


def test_monitor_cannot_inject(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2)
    m = env.open(f"{sw}:p0/t")
    send(m, [frame(BCAST, mac(7))])        # NIOCTXSYNC returns normally, nothing is sent
    assert recv(a) == [] and recv(b) == []
