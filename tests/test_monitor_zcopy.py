"""Zero-copy monitors of VALE ports on the chosen backend (spec G1, G4, Live check 1, netmap's
scripts 015, 016, 025, 026): layout in the parent's allocator, buffer swaps and flags on TX and
RX, chains, the most recent slots kept, and buffer conservation."""
from __future__ import annotations

import os

import numpy as np
import pytest

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, NotSupportedError
from netmap_core.testing import BCAST, frame, mac, recv, recv_slots, send, unique_switch
from netmap_emu.testing.vale import ValeEnv

CHANGED = abi.NS_BUF_CHANGED


@pytest.fixture
def env(backend_name):
    with ValeEnv(backend_name) as e:
        yield e


def bufs(ring, k=None):
    return [int(x) for x in ring.slots["buf_idx"][: k if k is not None else len(ring.slots)]]


def owned(*ports) -> list[int]:
    """Every buffer the ports' rings and extra lists name (VALE and monitor rings own all
    their slots)."""
    out: list[int] = []
    for p in ports:
        for r in p.tx_rings + p.rx_rings:
            out += bufs(r)
        out += p.extra_buffers()
    return out


def allocated(port) -> int:
    """Buffers marked used in the emulator's bitmap of ``port``'s allocator (0 and 1 included)."""
    from netmap_emu.kernel import memory
    from netmap_emu.kernel.core import kernel_for
    from netmap_emu.shm.namespace import namespace

    ns = namespace()
    with kernel_for(ns).op() as reg:
        return int(memory.mapped(ns, reg, port.info.mem_id).bitmap.sum())


def test_layout_live_check_1(env):
    sw = f"vale{os.getpid() % 100}"        # short: ni_name keeps 15 characters
    p = env.open(f"{sw}:m")
    env.open(f"{sw}:m/rt")
    env.open(f"{sw}:m/t")
    z = env.open(f"{sw}:m/z")
    assert z.info.flags == abi.NR_ZCOPY_MON | abi.NR_MONITOR_TX | abi.NR_MONITOR_RX == 0x700
    assert (z.info.offset, z.info.memsize, z.info.mem_id) == (1024, 42369024, p.info.mem_id)
    assert (z.info.tx_rings, z.info.rx_rings, z.info.rx_slots, z.info.tx_slots) == (1, 1, 1024, 1024)
    assert z.name == f"{sw}:m/zrt#2"
    assert z.ring_ofs.tolist() == [72704, 0, 52224, 0]
    rx, tx = z.rx_rings[0], z.tx_rings[0]
    assert rx.offset == 53248 and tx.offset == 73728
    assert bufs(rx) == list(range(2050, 3074)) and bufs(tx) == list(range(3074, 4098))
    assert (tx.head, tx.cur, tx.tail) == (0, 0, 1023) and (rx.head, rx.cur, rx.tail) == (0, 0, 0)


@pytest.mark.kernel_warnings(r"vale\w+:m not in netmap mode$")
def test_needs_open_parent_and_no_offsets(env):
    sw = unique_switch()
    with pytest.raises(InvalidRequestError):
        env.open(f"{sw}:m/z")
    env.open(f"{sw}:m")
    with pytest.raises(NotSupportedError):
        env.open(f"{sw}:m/z@offset=64")


def test_025_tx_swapped_at_txsync_before_the_peer_reads(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2, slots=8)
    z = env.open(f"{sw}:p0/z")
    ta, rz = a.tx_rings[0], z.rx_rings[0]
    mine, theirs = bufs(ta, 3), bufs(rz, 3)
    out = [frame(BCAST, mac(1), size=60 + i, fill=i) for i in range(3)]
    send(a, out)
    # the monitor owns a's buffers now; a's slots hold the monitor's, flagged
    z.rxsync()
    assert bufs(rz, 3) == mine and bufs(ta, 3) == theirs
    assert [int(f) & CHANGED for f in ta.slots["flags"][:3]] == [CHANGED] * 3
    assert [int(x) for x in ta.slots["len"][:3]] == [2048] * 3          # the monitor slots' old len
    assert recv_slots(z, sync=False) == [(f, abi.NS_TXMON) for f in out]
    assert recv(b) == out                                              # VALE copied before the swap
    b.rxsync()
    z.rxsync()
    # a keeps sending through the swapped slots (its txsync clears NS_BUF_CHANGED)
    more = [frame(BCAST, mac(1), fill=40 + i) for i in range(6)]       # wraps the 8-slot ring
    send(a, more)
    assert recv(b) == more
    assert recv_slots(z) == [(f, abi.NS_TXMON) for f in more]
    assert len(set(bufs(ta)) | set(bufs(rz))) == 16                    # nothing duplicated or lost


def test_015_rx_swapped_only_when_the_application_releases(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2, slots=8)
    z = env.open(f"{sw}:p0/z")
    ra, rz = a.rx_rings[0], z.rx_rings[0]
    inn = [frame(BCAST, mac(2), size=100 + i, fill=i) for i in range(3)]
    send(b, inn)
    assert recv_slots(z) == []                       # a has not read them
    a.rxsync()
    assert recv_slots(z) == []                       # read, not yet released
    mine, theirs = bufs(ra, 3), bufs(rz, 3)
    ra.buf(1)[20] = 0xEE                             # the application may modify what it reads
    ra.advance(3)
    a.rxsync()                                       # release: the monitor swaps them
    got = recv_slots(z)
    assert [f for _, f in got] == [0x100] * 3
    assert got[0][0] == inn[0] and got[1][0][20] == 0xEE and got[2][0] == inn[2]
    z_slots = rz.slots[:3]
    assert bufs(rz, 3) == mine and [int(x) for x in z_slots["len"]] == [100, 101, 102]
    # G4 [corrected live]: the parent's slots got the monitor's buffer and old len; its own
    # rxsync cleared the NS_BUF_CHANGED the swap set, leaving the VALE flags 0x100
    assert bufs(ra, 3) == theirs
    assert [int(x) for x in ra.slots["len"][:3]] == [2048] * 3
    assert [int(x) for x in ra.slots["flags"][:3]] == [0x100] * 3
    send(b, inn)                                     # the swapped buffers are fully usable
    assert recv(a) == inn


def test_full_monitor_keeps_most_recent_and_leaves_the_rest(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2, slots=64)
    z = env.open(f"{sw}:p0/z@conf:slots=8")
    ta = a.tx_rings[0]
    before = bufs(ta, 12)
    frames = [frame(BCAST, mac(1), fill=i) for i in range(12)]
    send(a, frames)
    assert [d for d, _ in recv_slots(z)] == frames[5:]
    assert bufs(ta, 5) == before[:5] and not (ta.slots["flags"][:5] & CHANGED).any()
    assert (ta.slots["flags"][5:12] & CHANGED).all()
    assert recv(b) == frames


def test_chain_second_monitor_watches_the_first(env):
    sw = unique_switch()
    a, b = env.switch(sw, 2, slots=16)
    z1 = env.open(f"{sw}:p0/z")
    z2 = env.open(f"{sw}:p0/z")
    assert z1.info.mem_id == z2.info.mem_id == a.info.mem_id
    out = [frame(BCAST, mac(1), fill=i) for i in range(3)]
    mine = bufs(a.tx_rings[0], 3)
    send(a, out)
    assert recv_slots(z2) == []
    assert recv_slots(z1) == [(f, abi.NS_TXMON) for f in out]   # released by z1's application
    z1.rxsync()                                                  # ... handed on at z1's rxsync
    got = recv_slots(z2)
    # a chained monitor watches an RX ring (z1's): netmap clears NS_TXMON on the way
    assert got == [(f, 0) for f in out] and bufs(z2.rx_rings[0], 3) == mine
    assert (z1.rx_rings[0].slots["flags"][:3] & CHANGED).all()
    env.close(z1)                                                # z2 now watches a directly
    send(a, out)
    assert recv_slots(z2) == [(f, abi.NS_TXMON) for f in out]


def test_buffer_conservation(env, backend_name):
    sw = unique_switch()
    a = env.open(f"{sw}:p0@conf:slots=16", extra_bufs=4)
    b = env.open(f"{sw}:p1@conf:slots=16")
    z1 = env.open(f"{sw}:p0/z")
    z2 = env.open(f"{sw}:p0/z")
    start = sorted(owned(a, z1, z2))
    assert len(set(start)) == len(start)
    base = allocated(a) if backend_name == "emu" else None
    rng = np.random.default_rng(7)
    for step in range(12):
        send(a, [frame(BCAST, mac(1), fill=step)] * int(rng.integers(1, 6)))
        send(b, [frame(BCAST, mac(2), fill=step)] * int(rng.integers(1, 6)))
        recv(a)
        if step % 2:                  # swap an extra buffer into a TX slot, as apps do
            t = a.tx_rings[0]
            ex = a.extra_buffers()
            i = t.head
            old = int(t.slots["buf_idx"][i])
            link = int(ex[1] if len(ex) > 1 else 0).to_bytes(4, "little")
            t.buffers[old, :4] = np.frombuffer(link, np.uint8)
            a.bufs_head = old
            t.slots["buf_idx"][i] = ex[0]
            t.slots["flags"][i] = CHANGED
            send(a, [frame(BCAST, mac(1), fill=99)])
        a.rxsync()
        for z in (z1, z2):
            recv_slots(z)
            z.rxsync()
        now = sorted(owned(a, z1, z2))
        assert now == sorted(set(now)) and len(now) == len(start)
        if base is not None:
            assert allocated(a) == base
    if base is not None:
        env.close(z2)
        env.close(z1)
        assert allocated(a) == len(owned(a)) + 2       # buffers 0 and 1 are reserved


def test_016_026_persistent_port_by_bare_name(env):
    name = f"pz{unique_switch('')[:10]}"
    sw = env.persistent_switch()
    env.ctl.vale_newif(name)                 # the env detaches and deletes what it can
    env.ctl.vale_attach(f"{sw}:{name}")
    v0 = env.open(f"{sw}:{name}")
    v1 = env.open(f"{sw}:v1")
    z = env.open(f"netmap:{name}/z")
    assert z.info.mem_id == v0.info.mem_id
    f = [frame(BCAST, mac(3), size=150)]
    send(v1, f)                              # 016: nothing until v0 reads and releases
    assert recv_slots(z) == []
    assert recv(v0) == f
    v0.rxsync()
    assert recv(z) == f
    send(v0, f)                              # 026: seen at v0's txsync, before v1 reads
    assert recv(z) == f and recv(v1) == f
