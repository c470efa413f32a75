"""kill -9 at random moments: the survivor keeps working, nothing deadlocks, nothing leaks."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

from netmap_core import POLLIN, POLLOUT
from netmap_emu import cli
from netmap_emu.testing import isolated_namespace, open_emu, segments

CTX = mp.get_context("fork")
N = 64


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        old = signal.signal(signal.SIGALRM, _hung)
        signal.alarm(120)        # a deadlock fails the test instead of hanging the run
        try:
            yield name
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def _hung(*_):
    raise AssertionError("emulator operation hung (deadlock?)")  # not an OSError: nothing swallows it


def used_buffers(port) -> int:
    return int(port._binding._tx[0].alloc.bitmap.sum())


def _receiver(ready):
    s = open_emu("netmap:k}1", extra_bufs=8)
    rx = s.rx_rings[0]
    ready.set()
    while True:
        s.poll(POLLIN, 0.05)
        rx.advance(rx.space())


def _churner(ready):
    ready.set()
    while True:
        p = open_emu("netmap:k}1", extra_bufs=50)
        p.rx_rings[0].advance(p.rx_rings[0].space())
        p.rxsync()
        p.close()
        q = open_emu(f"netmap:k{{{random.randint(2, 3)}", extra_bufs=20)
        q.close()


def _send_some(m, tx, until):
    sent = 0
    while time.monotonic() < until:
        if m.poll(POLLOUT, 0.01):
            k = tx.space()
            seq = np.arange(sent, sent + k, dtype=np.uint64).view(np.uint8).reshape(k, 8)
            tx.fill(k, data=seq)
            sent += k
    m.txsync()
    return sent


def _survivor_checks(m, sent):
    tx = m.tx_rings[0]
    assert m._binding.peer_bound() is False          # the dead end was reclaimed
    with open_emu("netmap:k}1") as s2:               # a new slave sees the pending frames
        assert m._binding.peer_bound() is True
        rx = s2.rx_rings[0]
        s2.rxsync()
        m.txsync()
        assert tx.space() + rx.space() == N - 1
        if rx.space():
            seqs = rx.ready().gather(0, 8).view("<u8").ravel()
            assert np.array_equal(seqs, np.arange(sent - rx.space(), sent, dtype=np.uint64))
        rx.advance(rx.space())
        s2.rxsync()
        m.txsync()
        tx.fill(5, template=b"after")
        m.txsync()
        s2.rxsync()
        assert [bytes(rx.payload((rx.head + i) % N)) for i in range(5)] == [b"after"] * 5


@pytest.mark.parametrize("seed", range(10))
def test_kill_receiver_mid_traffic(seed):
    rnd = random.Random(seed)
    m = open_emu(f"netmap:k{{1@conf:slots={N}")
    tx = m.tx_rings[0]
    base = used_buffers(m)
    ready = CTX.Event()
    p = CTX.Process(target=_receiver, args=(ready,))
    p.start()
    assert ready.wait(10)
    sent = _send_some(m, tx, time.monotonic() + rnd.uniform(0.005, 0.08))
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    m.txsync()                                       # no deadlock on the pair lock
    _survivor_checks(m, sent + 0)
    assert used_buffers(m) == base                   # the dead end's 8 extra buffers came back
    m.close()
    assert segments() == []
    assert cli.gc(remove_empty=False) == []       # nothing the dead left (the empty namespace stays)


@pytest.mark.parametrize("seed", range(10))
def test_kill_during_open_and_close(seed):
    rnd = random.Random(seed)
    m = open_emu(f"netmap:k{{1@conf:slots={N}")
    base = used_buffers(m)
    ready = CTX.Event()
    p = CTX.Process(target=_churner, args=(ready,))
    p.start()
    assert ready.wait(10)
    time.sleep(rnd.uniform(0.0, 0.15))
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    _survivor_checks(m, 0)
    assert used_buffers(m) == base                   # every buffer the churner held is back
    snap = cli.ls()
    assert [b["name"] for b in snap["bindings"]] == ["k{1"]
    assert [p["pipe"] for p in snap["pipes"]] == ["1"]
    m.close()
    assert segments() == []
    assert cli.gc(remove_empty=False) == []       # nothing the dead left (the empty namespace stays)


def test_gc_reports_what_a_dead_process_left():
    ready = CTX.Event()
    p = CTX.Process(target=_receiver, args=(ready,))
    p.start()
    assert ready.wait(10)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    snap = cli.ls()
    assert [b["alive"] for b in snap["bindings"]] == [False]
    assert len(segments()) == 2
    removed = cli.gc(remove_empty=False)
    assert any("dead" in line for line in removed)
    assert any("segment" in line for line in removed)
    assert segments() == []
    assert cli.gc(remove_empty=False) == []       # nothing the dead left (the empty namespace stays)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 210))
def test_kill_many(seed):
    test_kill_receiver_mid_traffic(seed)
    test_kill_during_open_and_close(seed)
