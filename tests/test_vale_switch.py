"""VALE switches through netmap_core.open on the chosen backend (--backend, default emu):
layout (Live check 1), learning bridge (E7, Live check 4), forwarding rules (E6-E10, E12),
limits (E1, E2), port numbering (E3) and netmap's functional scripts 001-003 and 007."""
from __future__ import annotations

import errno

import numpy as np
import pytest

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, NetmapOSError, OutOfMemoryError, PortBusyError
from netmap_core.testing import BCAST, frame, mac, recv, recv_slots, send, unique_switch
from netmap_emu.testing.vale import ValeEnv


@pytest.fixture
def env(backend_name):
    with ValeEnv(backend_name) as e:
        yield e


@pytest.fixture
def sw():
    return unique_switch()


def test_first_open_layout_matches_live_kernel(env, sw):
    p = env.open(f"{sw}:a")
    i = p.info
    got = (i.offset, i.memsize, i.tx_rings, i.rx_rings, i.tx_slots, i.rx_slots)
    assert got == (0, 42369024, 1, 1, 1024, 1024)
    assert (i.host_tx_rings, i.host_rx_rings) == (0, 0)
    nif = p.nifp
    assert nif["ni_name"].item().decode() == f"{sw}:a"[:15]
    assert int(nif["ni_flags"]) == abi.NI_PRIV_MEM
    assert (int(nif["ni_host_tx_rings"]), int(nif["ni_host_rx_rings"])) == (1, 1)
    assert p.ring_ofs.tolist() == [32768, 0, 12288, 0]
    rx, tx = p.rx_rings[0], p.tx_rings[0]
    assert rx.offset == 12288 and int(rx.header["buf_ofs"]) == 409600 and rx.dir == 0
    assert tx.offset == 32768 and int(tx.header["buf_ofs"]) == 389120 and tx.dir == 1
    assert rx.slots["buf_idx"].tolist() == list(range(2, 1026))
    assert tx.slots["buf_idx"].tolist() == list(range(1026, 2050))
    assert (rx.head, rx.cur, rx.tail, tx.head, tx.cur, tx.tail) == (0, 0, 0, 0, 0, 1023)
    q = env.open(f"{sw}:a")
    assert q.info.offset == 1024 and q.ring_ofs.tolist() == [31744, 0, 11264, 0]
    assert q.info.mem_id == i.mem_id
    other = env.open(f"{sw}:b")
    assert other.info.mem_id != i.mem_id and other.info.memsize == 42369024


def test_multi_ring_port_layout(env, sw):
    p = env.open(f"{sw}:m@conf:tx-rings=2,rx-rings=3,tx-slots=64,rx-slots=128")
    assert p.info.memsize == 8876032
    assert [r.offset for r in p.rx_rings] == [12288, 32768, 53248]
    assert [r.offset for r in p.tx_rings] == [73728, 94208]
    assert [int(r.slots["buf_idx"][0]) for r in p.rx_rings + p.tx_rings] == [2, 130, 258, 386, 450]
    assert [r.ringid for r in p.rx_rings] == [0, 1, 2]
    one = env.open(f"{sw}:m-2")
    assert [int(x) != 0 for x in one.ring_ofs] == [True, False, False, False, False, True, False]


def test_tx_only_then_rx_only_rings_created_on_demand(env, sw):
    t = env.open(f"{sw}:a/T")
    assert t.tx_rings[0].offset == 12288 and int(t.tx_rings[0].slots["buf_idx"][0]) == 2
    r = env.open(f"{sw}:a/R")
    assert r.rx_rings[0].offset == 32768 and int(r.rx_rings[0].slots["buf_idx"][0]) == 1026


def test_learning_bridge_live_check_4(env, sw):
    a, b, c = env.switch(sw, 3)
    bc = frame(BCAST, mac(1), fill=1)
    send(a, [bc])
    assert recv(b) == [bc] and recv(c) == [bc] and recv(a) == []
    to_a = frame(mac(1), mac(2), fill=2)
    send(b, [to_a])
    assert recv(a) == [to_a] and recv(c) == []
    unknown = frame(mac(99), mac(2), fill=3)
    send(b, [unknown])
    assert recv(a) == [unknown] and recv(c) == [unknown] and recv(b) == []
    own = frame(mac(1), mac(1), fill=4)
    send(a, [own])
    assert recv(a) == [] and recv(b) == [] and recv(c) == []


def test_short_frames_dropped(env, sw):
    a, b = env.switch(sw, 2)
    frames = [frame(BCAST, mac(1))[:n] for n in (0, 12, 13, 14)]
    send(a, frames)
    assert recv(b) == [frames[3]]


def test_no_learn_flag_ignored(env, sw):
    a, b, c = env.switch(sw, 3)
    send(a, [frame(BCAST, mac(5))], flags=abi.NS_NO_LEARN)
    recv(b), recv(c)
    u = frame(mac(5), mac(6))
    send(b, [u])
    assert recv(a) == [u] and recv(c) == []


def test_txsync_frees_whole_ring_and_clears_buf_changed(env, sw):
    a, b = env.switch(sw, 2, slots=8)
    t = a.tx_rings[0]
    t.slots["flags"][:] = 0
    send(a, [frame(BCAST, mac(1))] * 3, sync=False)
    t.slots["flags"][1] |= abi.NS_BUF_CHANGED
    a.txsync()
    assert t.tail == (t.head - 1) % 8 and t.space() == 7
    assert int(t.slots["flags"][1]) & abi.NS_BUF_CHANGED == 0


def test_full_destination_keeps_first_and_release_needs_rxsync(env, sw):
    a, b = env.switch(sw, 2, slots=8)
    send(b, [frame(BCAST, mac(2))])
    recv(a)
    frames = [frame(mac(2), mac(1), fill=i) for i in range(20)]
    for k in range(0, 20, 7):
        send(a, frames[k:k + 7])
        assert a.tx_rings[0].space() == 7
    got = recv_slots(b)
    assert [d for d, _ in got] == frames[:7]
    lost = [frame(mac(2), mac(1), fill=50 + i) for i in range(3)]
    send(a, lost)                     # head advanced by recv_slots, but no rxsync yet: no room
    b.rxsync()
    assert b.rx_rings[0].space() == 0
    fresh = [frame(mac(2), mac(1), fill=70)]
    send(a, fresh)
    assert recv(b) == fresh


def test_fragment_flags_and_truncated_trailing_fragment(env, sw):
    a, b = env.switch(sw, 2)
    two = frame(BCAST, mac(1), size=3000, fill=1)
    three = frame(BCAST, mac(1), size=4106, fill=2)
    send(a, [two, three, frame(BCAST, mac(1), fill=3)])
    got = recv_slots(b)
    assert [f for _, f in got] == [0x220, 0x200, 0x320, 0x320, 0x300, 0x100]
    assert b"".join(d for d, _ in got[:2]) == two and b"".join(d for d, _ in got[2:5]) == three
    f = frame(BCAST, mac(1), fill=9)
    send(a, [f], flags=abi.NS_MOREFRAG)
    assert recv_slots(b) == [(f, 0x100)]


def test_receiver_keeps_its_buffers(env, sw):
    a, b = env.switch(sw, 2)
    before = b.rx_rings[0].slots["buf_idx"].copy()
    send(a, [frame(BCAST, mac(1))] * 5)
    recv(b)
    assert (b.rx_rings[0].slots["buf_idx"] == before).all()


def test_ring_selection_on_multi_ring_port(env, sw):
    a = env.open(f"{sw}:a@conf:rings=3")
    b = env.open(f"{sw}:b@conf:rings=3")
    send(b, [frame(BCAST, mac(2))], ring=0)
    for r in range(3):
        recv(a, r)
    u1 = frame(mac(2), mac(1), fill=1)
    send(a, [u1], ring=1)
    assert recv(b, 1) == [u1] and recv(b, 0) == [] and recv(b, 2) == []
    bc = frame(BCAST, mac(1), fill=2)
    send(a, [bc], ring=2)
    assert recv(b, 0) == [bc] and recv(b, 2) == []


def test_unbound_rx_ring_drops(env, sw):
    a = env.open(f"{sw}:a")
    _b = env.open(f"{sw}:b/T")
    c = env.open(f"{sw}:c")
    f = frame(BCAST, mac(1))
    send(a, [f])
    assert recv(c) == [f]
    b_rx = env.open(f"{sw}:b/R")
    assert recv(b_rx) == []          # what was sent before the ring was bound is gone
    send(a, [f])
    assert recv(b_rx) == [f]


def test_port_numbers_from_free_list(env, sw):
    ports = env.switch(sw, 3)
    idx = [env.ctl.vale_list(f"{sw}:p{i}").port_idx for i in range(3)]
    assert idx == [0, 1, 2]
    env.close(ports[1])
    assert env.ctl.vale_list(f"{sw}:p1").port_idx == abi.NM_BDG_NOPORT
    env.open(f"{sw}:q")
    assert env.ctl.vale_list(f"{sw}:q").port_idx == 1


def test_port_and_switch_vanish_with_last_fd(env, sw):
    p = env.open(f"{sw}:a")
    q = env.open(f"{sw}:a")
    env.close(p)
    assert env.ctl.vale_list(f"{sw}:a").port_idx == 0
    env.close(q)
    with pytest.raises(NetmapOSError) as ei:
        env.ctl.vale_list(f"{sw}:a")
    assert ei.value.errno == errno.ENOENT


@pytest.mark.kernel_warnings(r"invalid bridge name vale\w+:y{16}$")
def test_name_limits(env, sw):
    env.open(f"{sw}:" + "x" * 15)
    with pytest.raises(OutOfMemoryError):
        env.open(f"{sw}:" + "y" * 16)


@pytest.mark.kernel_warnings(r"host rings not supported$")
def test_host_modes_refused(env, sw):
    for spec in (f"{sw}:a^", f"{sw}:a*"):
        with pytest.raises(InvalidRequestError):
            env.open(spec)


# --- netmap's functional scripts (utils/tests) that use only VALE ports --------------------

def test_001_exclusive_ephemeral_port(env, sw):
    env.open(f"{sw}:v0/x")
    with pytest.raises(PortBusyError):
        env.open(f"{sw}:v0")
    with pytest.raises(PortBusyError):
        env.open(f"{sw}:v0/x")


def test_002_exclusive_after_shared_open(env, sw):
    env.open(f"{sw}:v0")
    with pytest.raises(PortBusyError):
        env.open(f"{sw}:v0/x")
    env.open(f"{sw}:v0")


def test_003_exclusive_persistent_port(env):
    name = f"pv{unique_switch('')[:10]}"
    env.ctl.vale_newif(name)
    try:
        p = env.open(f"netmap:{name}/x")
        with pytest.raises(PortBusyError):
            env.open(f"netmap:{name}")
        env.close(p)
        env.close(env.open(f"netmap:{name}"))
    finally:
        env.close_all()
        env.ctl.vale_delif(name)


@pytest.mark.parametrize("nextra", [1, 10])
def test_004_send_with_extra_buffers(env, sw, nextra):
    a = env.open(f"{sw}:v0", extra_bufs=nextra)
    b = env.open(f"{sw}:v1")
    bufs = a.extra_buffers()
    assert len(bufs) == nextra == a.info.extra_bufs
    t = a.tx_rings[0]
    f = frame(BCAST, mac(1), size=200, fill=7)
    i = t.head
    old = int(t.slots["buf_idx"][i])
    new = a.bufs_head                              # pop the list's head before writing into it:
    a.bufs_head = int(t.buffers[new, :4].view("<u4")[0])   # the frame overwrites its link word
    t.buffers[new, :len(f)] = np.frombuffer(f, np.uint8)
    t.slots["buf_idx"][i] = new
    t.slots["len"][i] = len(f)
    t.slots["flags"][i] = abi.NS_BUF_CHANGED
    t.advance(1)
    a.txsync()
    assert recv(b) == [f]
    assert int(t.slots["flags"][i]) & abi.NS_BUF_CHANGED == 0
    # swap back and push the buffer on the list again, so the close frees exactly the list
    t.slots["buf_idx"][i] = old
    t.buffers[new, :4] = np.frombuffer(np.uint32(a.bufs_head).tobytes(), np.uint8)
    a.bufs_head = new
    assert a.extra_buffers() == bufs


def test_007_learning_bridge_both_halves(env, sw):
    v0, v1, v2 = env.switch(sw, 3, prefix="v")
    bc = frame(BCAST, mac(2), size=300, fill=3)
    send(v2, [bc])
    assert recv(v0) == [bc] and recv(v1) == [bc]
    uni = frame(mac(2), mac(0), size=300, fill=4)
    send(v0, [uni])
    assert recv(v2) == [uni]
    assert recv(v1) == []             # the half netmap's script never checks


def test_008_back_pressure_is_drop_not_block(env, sw):
    a, b = env.switch(sw, 2, slots=8)
    send(b, [frame(BCAST, mac(2))])
    recv(a)
    for i in range(10):
        send(a, [frame(mac(2), mac(1), fill=i)])
    assert len(recv(b)) == 7


# --- limits (emulator: cheap; the kernel's numbers) ----------------------------------------

def _switches_in_use(ctl) -> int:
    """Distinct switches VALE_LIST walks through (ones other tests or programs hold)."""
    bridges, b, p = set(), 0, 0
    while True:
        try:
            e = ctl.vale_list("", bridge_idx=b, port_idx=p)
        except NetmapOSError:
            return len(bridges)
        bridges.add(e.bridge_idx)
        b, p = e.bridge_idx, e.port_idx + 1


def test_eight_switches_and_the_ninth_is_enomem(env):
    free = 8 - _switches_in_use(env.ctl)   # on the device a shared switch may hold stuck ports
    if free < 1:
        pytest.skip("all eight switches are held by others")
    names = [unique_switch() for _ in range(free + 1)]
    for n in names[:free]:
        env.open(f"{n}:a")
    with pytest.raises(OutOfMemoryError):
        env.open(f"{names[free]}:a")
    env.close(env.ports[0])
    env.open(f"{names[free]}:a")


def test_252_active_ports_exchange_traffic(env, sw, backend_name):
    if backend_name != "emu":
        pytest.skip("252 ports x 42 MB of private memory each is not for a shared netmap host")
    ports = [env.open(f"{sw}:p{i}@conf:slots=4,rings=1") for i in range(252)]
    with pytest.raises(OutOfMemoryError):
        env.open(f"{sw}:one_too_many@conf:slots=4")
    bc = frame(BCAST, mac(0))
    send(ports[0], [bc])
    got = [recv(p) for p in ports]
    assert got[0] == [] and all(g == [bc] for g in got[1:])
    u = frame(mac(0), mac(251))
    send(ports[251], [u])
    assert recv(ports[0]) == [u] and all(recv(p) == [] for p in ports[1:])
    idx = env.ctl.vale_list(f"{sw}:p251")
    assert idx.port_idx == 251


def test_pipes_on_a_vale_port_share_its_memory(env, sw):
    pp = env.open(f"{sw}:pp")
    m = env.open(f"netmap:{sw}:pp{{1")
    s = env.open(f"netmap:{sw}:pp}}1")
    assert m.info.mem_id == pp.info.mem_id == s.info.mem_id
    got = (m.info.offset, m.rx_rings[0].offset, int(m.rx_rings[0].slots["buf_idx"][0]))
    assert got == (1024, 53248, 2050)
    assert (s.info.offset, s.rx_rings[0].offset) == (2048, 94208)
    env.close(pp)
    assert env.ctl.vale_list(f"{sw}:pp").port_idx == 0      # the pipes keep the port alive
    env.close(m)
    env.close(s)
    with pytest.raises(NetmapOSError):
        env.ctl.vale_list(f"{sw}:pp")
