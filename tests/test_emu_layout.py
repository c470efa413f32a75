"""Emulator memory layout: pipe regions byte for byte as the live kernel showed (spec A, F)."""
from __future__ import annotations

import numpy as np
import pytest

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, OutOfMemoryError, PortBusyError
from netmap_emu.shm import geometry as layout
from netmap_emu.testing import isolated_namespace, open_emu, segments


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


def test_derived_geometries_match_abi_json():
    g = layout.geometry(layout.private_params(1, 1024, 1, 1024, 0, 2))
    got = (g.memsize, g.if_pool.offset, g.ring_pool.offset, g.buf_pool.offset)
    assert got == (42369024, 0, 12288, 421888)
    assert (g.if_pool.objtotal, g.ring_pool.objtotal, g.buf_pool.objtotal) == (12, 20, 20482)
    assert layout.geometry(layout.GLOBAL_PARAMS).memsize == 343019520
    assert layout.geometry(layout.PRIV_MIN_PARAMS).memsize == 8478720
    assert layout.geometry(layout.private_params(1, 8, 1, 8, 0, 2)).memsize == 8814592
    assert layout.geometry(layout.private_params(2, 64, 3, 128, 0, 2)).memsize == 8876032
    assert layout.geometry(layout.private_params(1, 1024, 1, 1024, 10, 2)).memsize == 42389504
    assert layout.geometry(layout.private_params(1, 1024, 1, 1024, 30000, 2)).memsize == 103809024


def _ring_facts(ring):
    b = ring.slots["buf_idx"]
    return (ring.offset, int(ring.header["buf_ofs"]), int(b[0]), int(b[-1]), ring.head, ring.cur,
            ring.tail, ring.dir)


def test_live_check_1_pipe_layout():
    with open_emu("netmap:pipeX{1") as m, open_emu("netmap:pipeX}1") as s:
        assert m.info.mem_id == s.info.mem_id == 2
        assert m.info.memsize == s.info.memsize == 42369024
        assert (m.info.offset, s.info.offset) == (0, 1024)
        assert list(m.ring_ofs) == [32768, 0, 12288, 0]
        assert list(s.ring_ofs) == [72704, 0, 52224, 0]
        assert _ring_facts(m.rx_rings[0]) == (12288, 409600, 2, 1025, 0, 0, 0, abi.NR_RX)
        assert _ring_facts(m.tx_rings[0]) == (32768, 389120, 1026, 2049, 0, 0, 1023, abi.NR_TX)
        assert _ring_facts(s.rx_rings[0]) == (53248, 368640, 1026, 2049, 0, 0, 0, abi.NR_RX)
        assert _ring_facts(s.tx_rings[0]) == (73728, 348160, 2, 1025, 0, 0, 1023, abi.NR_TX)
        for p, name in ((m, b"pipeX{1"), (s, b"pipeX}1")):
            nif = p.nifp
            assert nif["ni_name"] == name
            assert int(nif["ni_flags"]) == abi.NI_PRIV_MEM
            assert (int(nif["ni_tx_rings"]), int(nif["ni_rx_rings"])) == (1, 1)
            assert (int(nif["ni_host_tx_rings"]), int(nif["ni_host_rx_rings"])) == (1, 1)
            assert int(nif["ni_bufs_head"]) == 0
            assert (p.info.host_tx_rings, p.info.host_rx_rings) == (0, 0)
            for r in p.tx_rings + p.rx_rings:
                assert (r.num_slots, r.buf_size, r.ringid) == (1024, 2048, 0)
                assert np.all(r.slots["len"] == 2048)
                assert not r.slots["flags"].any() and not r.slots["ptr"].any()
                assert r.ts == 0
        # the master's TX buffers are the slave's RX buffers (spec F6)
        assert np.array_equal(m.tx_rings[0].slots["buf_idx"], s.rx_rings[0].slots["buf_idx"])
        assert np.array_equal(m.rx_rings[0].slots["buf_idx"], s.tx_rings[0].slots["buf_idx"])


def test_slot_hints_size_the_auto_parent():
    with open_emu("netmap:p{0@conf:slots=8") as m:
        assert m.info.memsize == 8814592
        assert (m.info.tx_slots, m.info.rx_slots) == (8, 8)
        with open_emu("netmap:p}0") as s:
            assert (s.info.tx_slots, s.info.rx_slots) == (8, 8)


def test_ring_counts_swap_and_one_nic_fallback():
    with open_emu("netmap:q{1", tx_rings=2, rx_rings=3) as m:
        assert (m.info.tx_rings, m.info.rx_rings) == (2, 3)
        assert (len(m.tx_rings), len(m.rx_rings)) == (2, 3)
        with open_emu("netmap:q}1") as s:
            assert (s.info.tx_rings, s.info.rx_rings) == (3, 2)
            assert [r.ringid for r in s.tx_rings] == [0, 1, 2]
        with open_emu("netmap:q{1-2") as one:
            ntx = int(one.nifp["ni_tx_rings"]) + 1
            ofs = list(one.ring_ofs)
            # only TX0 (fallback: no TX ring 2) and RX2 are bound (spec A8)
            assert [i for i, v in enumerate(ofs) if v] == [0, ntx + 2]
            assert one.first_tx_ring == one.last_tx_ring == 0
            assert one.first_rx_ring == one.last_rx_ring == 2
        with pytest.raises(InvalidRequestError):
            open_emu("netmap:q{1-3")


def test_each_register_gets_a_new_netmap_if_and_shares_rings():
    with open_emu("netmap:r{1") as a, open_emu("netmap:r{1") as b:
        assert b.info.offset != a.info.offset
        assert a.tx_rings[0].offset == b.tx_rings[0].offset
        a.tx_rings[0].fill(3, template=b"abc")
        assert b.tx_rings[0].head == 3  # the same netmap_ring


def test_tx_only_then_rx_only_ring_objects():
    with open_emu("netmap:t{1/T") as t:
        assert len(t.tx_rings) == 1 and not t.rx_rings
        assert list(t.ring_ofs)[2] == 0
        # master TX (object 0) got the first buffers; the slave's RX ring shares them
        assert int(t.tx_rings[0].slots["buf_idx"][0]) == 2
        with open_emu("netmap:t{1/R") as r:
            assert not r.tx_rings and len(r.rx_rings) == 1
            assert int(r.rx_rings[0].slots["buf_idx"][0]) == 1026


def test_extra_buffers_descending_then_freed_and_reused():
    with open_emu("netmap:x{1", extra_bufs=10) as m:
        assert m.info.extra_bufs == 10
        assert m.bufs_head == 2059
        assert m.extra_buffers() == list(range(2059, 2049, -1))
        assert int(m.tx_rings[0].buffers[2059, :4].view("<u4")[0]) == 2058
        with open_emu("netmap:x}1", extra_bufs=5) as s:
            assert s.extra_buffers() == list(range(2064, 2059, -1))
        # the slave's 5 are free again: a new request gets them back first-fit
        with open_emu("netmap:x}1", extra_bufs=3) as s2:
            assert s2.extra_buffers() == [2062, 2061, 2060]
    with open_emu("netmap:x{1", extra_bufs=2) as m:   # allocator reset: numbering restarts
        assert m.extra_buffers() == [2051, 2050]


def test_garbage_bufs_head_is_tolerated_at_close():
    m = open_emu("netmap:g{1", extra_bufs=4)
    m.bufs_head = 99_999_999
    m.close()
    with open_emu("netmap:g{1", extra_bufs=1) as m2:
        assert m2.info.mem_id == 2


def test_mem_ids_follow_a18():
    a = open_emu("netmap:a{1")
    b = open_emu("netmap:b{1")
    c = open_emu("netmap:c{1")
    assert [p.info.mem_id for p in (a, b, c)] == [2, 3, 4]
    a.close()
    d = open_emu("netmap:d{1")
    assert d.info.mem_id == 5     # an older freed id is not reused while newer ones live
    d.close()
    e = open_emu("netmap:e{1")
    assert e.info.mem_id == 5     # the newest died: its id is handed out again
    for p in (b, c, e):
        p.close()
    with pytest.raises(InvalidRequestError):
        open_emu("netmap:f{1@77")


def test_segments_are_private_and_removed_with_the_last_user(ns):
    import os
    import stat

    m = open_emu("netmap:s{1")
    segs = segments()
    assert len(segs) == 2
    for s in segs:
        assert stat.S_IMODE(os.stat("/dev/shm" + s).st_mode) == 0o600
    from netmap_emu.shm.namespace import namespace

    d = namespace().dir
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(d)).st_mode) == 0o700
    for leaf in os.listdir(d):
        assert stat.S_IMODE(os.stat(os.path.join(d, leaf)).st_mode) == 0o600
    m.close()
    assert segments() == []


def test_pipes_per_auto_parent_limited_by_ring_objects():
    ports = [open_emu(f"netmap:lim{{{i}") for i in range(5)]
    try:
        with pytest.raises(OutOfMemoryError):
            open_emu("netmap:lim{5")
    finally:
        for p in ports:
            p.close()


def test_modes_and_exclusive():
    with pytest.raises(InvalidRequestError):
        import dataclasses

        from netmap_core import parse_portspec as spec_of
        from netmap_emu import BACKEND

        BACKEND.register(dataclasses.replace(spec_of("netmap:m{1"), mode=abi.NR_REG_NIC_SW), rules="strict")
    with open_emu("netmap:e{1/x"):
        with pytest.raises(PortBusyError):
            open_emu("netmap:e{1")
        with open_emu("netmap:e}1"):   # the other end's rings are other krings
            pass
    with open_emu("netmap:e{1"), pytest.raises(PortBusyError):
        open_emu("netmap:e{1/x")


def test_failed_register_leaves_nothing_behind():
    with pytest.raises(InvalidRequestError):
        open_emu("netmap:fail{1-5")              # ringid beyond both ring counts, fresh parent
    assert segments() == []
    with pytest.raises(OutOfMemoryError):
        open_emu("netmap:big{1", tx_rings=200)   # more ring objects than the parent has
    assert segments() == []
    with open_emu("netmap:ok{1") as p:           # and the next open starts from scratch
        assert p.info.mem_id == 2
        assert int(p.rx_rings[0].slots["buf_idx"][0]) == 2
