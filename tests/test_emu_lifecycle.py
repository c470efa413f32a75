"""Binding lifecycle on the emulator: buffer accounting across swaps, exit, fork, multi-ring poll."""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from netmap_core import POLLIN, abi
from netmap_core.errors import ClosedPortError
from netmap_emu import cli
from netmap_emu.testing import isolated_namespace, open_emu, segments

CTX = mp.get_context("fork")


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


def used(port) -> int:
    return int(port._binding._tx[0].alloc.bitmap.sum())


def test_swapped_buffers_are_conserved_when_the_swapper_closes():
    n = 16
    m = open_emu(f"netmap:sw{{1@conf:slots={n}", extra_bufs=4)
    s = open_emu("netmap:sw}1", extra_bufs=6)
    assert used(m) == 2 + 2 * n + 4 + 6
    tx, rx = m.tx_rings[0], s.rx_rings[0]
    tx.advance(5)
    m.txsync()
    s.rxsync()
    # the slave keeps 3 received buffers in its list and gives 3 of its own to the ring
    link = rx.buffers[:, :4].view("<u4")
    for i in range(3):
        mine = s.bufs_head                      # X: an extra buffer of the slave
        rest = int(link[mine, 0])
        got = int(rx.slots["buf_idx"][i])       # Y: the received buffer it keeps
        link[got, 0] = rest
        s.bufs_head = got
        rx.slots["buf_idx"][i] = mine
        rx.slots["flags"][i] |= abi.NS_BUF_CHANGED
    rx.advance(5)
    s.rxsync()
    assert len(s.extra_buffers()) == 6
    s.close()
    assert used(m) == 2 + 2 * n + 4            # the slave's six list buffers freed, ring intact
    m.txsync()
    assert len(set(tx.slots["buf_idx"].tolist())) == n
    m.close()
    assert segments() == []


def test_unclosed_binding_is_closed_at_interpreter_exit(ns):
    code = textwrap.dedent("""
        from netmap_emu.testing import open_emu
        p = open_emu("netmap:ex{1", extra_bufs=3)
        q = open_emu("netmap:ex}1")
        print(p.info.mem_id)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYNETMAP_EMU_NS=ns))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2"
    assert cli.ls()["bindings"] == []
    assert segments() == []


def _child_closes_inherited(port, q):
    port.close()
    q.put("closed")


def test_forked_child_closing_an_inherited_port_does_not_unregister_it():
    with open_emu("netmap:fk{1") as m:
        q = CTX.Queue()
        p = CTX.Process(target=_child_closes_inherited, args=(m, q))
        p.start()
        assert q.get(timeout=10) == "closed"
        p.join(10)
        assert [b["name"] for b in cli.ls()["bindings"]] == ["fk{1"]
        m.txsync()                              # still registered in this process


def test_closed_binding_refuses_syncs():
    m = open_emu("netmap:cl{1")
    b = m._binding
    m.close()
    m.close()
    b.close()
    with pytest.raises(ClosedPortError):
        b.txsync()
    with pytest.raises(ClosedPortError):
        m.rxsync()


def test_poll_on_a_multi_ring_pipe_reports_any_ready_ring():
    with open_emu("netmap:mr{1", tx_rings=3, rx_rings=1) as m, open_emu("netmap:mr}1") as s:
        assert len(s.rx_rings) == 3
        assert s.poll(POLLIN, 0) == 0
        m.tx_rings[2].advance(1)
        m.txsync()
        assert s.poll(POLLIN, 0) == POLLIN
        assert [r.tail for r in s.rx_rings] == [0, 0, 1]


def test_close_inside_a_locked_section_is_deferred_to_its_end():
    from netmap_emu.kernel.core import kernel_for
    from netmap_emu.shm.namespace import namespace

    m = open_emu("netmap:df{1")
    ns = namespace()
    k = kernel_for(ns)
    with ns.locked():          # e.g. the garbage collector closing a port during an open
        m.close()
        assert [b.name for b in k.store.begin().bindings.values()] == ["df{1"]
    with k.op() as reg:
        assert len(reg.bindings) == 0
    assert segments() == []


def test_scribbling_process_cannot_hurt_another_pipe_of_its_allocator():
    n = 16
    good_m = open_emu(f"netmap:sh{{2@conf:slots={n}")
    good_s = open_emu("netmap:sh}2")
    bad = open_emu("netmap:sh{1", rules="netmap")
    assert bad.info.mem_id == good_m.info.mem_id
    victim = good_m.tx_rings[0].slots["buf_idx"].copy()
    base = used(good_m)
    for r in bad.tx_rings + bad.rx_rings:
        r.header["num_slots"] = 0xFFFFFFFF     # the kernel side never believes the header
        r.header["buf_ofs"] = -(1 << 40)
        r.header["dir"] = 7
        r.slots["buf_idx"] = victim[0]         # another pipe's buffer in every slot
        r._words[5] = r._words[6] = 0xFFFFFF00
    bad.nifp["ni_tx_rings"] = 100
    bad.bufs_head = int(victim[1])
    bad.txsync()
    bad.rxsync()
    bad.close()
    # the other pipe's buffers stay allocated, its rings and traffic are untouched
    assert used(good_m) == base - 2 * n
    assert np.array_equal(good_m.tx_rings[0].slots["buf_idx"], victim)
    good_m.tx_rings[0].fill(3, template=b"ok")
    good_m.txsync()
    good_s.rxsync()
    assert [bytes(good_s.rx_rings[0].payload(i)) for i in range(3)] == [b"ok"] * 3
    with open_emu("netmap:sh{1", extra_bufs=2 * n) as again:   # freed buffers are reusable
        got = set(again.extra_buffers())
        assert got.isdisjoint(victim.tolist())
        assert len(got) == 2 * n
    good_m.close()
    good_s.close()
    assert segments() == []


def test_close_after_the_namespace_dir_was_deleted_does_not_hang():
    import shutil

    from netmap_emu.shm.namespace import namespace

    m = open_emu("netmap:rm{1")
    shutil.rmtree(namespace().dir)            # someone wiped the state directory
    m.close()                                 # returns (nothing left to unregister)
    assert m.closed
