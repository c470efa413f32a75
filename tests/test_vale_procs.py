"""VALE on the emulator across processes: concurrent senders, a sender killed with SIGKILL in
the middle of a burst, and lookups installed from user code."""
from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from netmap_core.errors import InvalidRequestError, NoSuchPortError
from netmap_core.testing import BCAST, frame, mac, recv, send
from netmap_emu import vale
from netmap_emu.shm.namespace import namespace
from netmap_emu.testing import segments
from netmap_emu.testing.vale import ValeEnv

_CTX = mp.get_context("fork")


@pytest.fixture
def env():
    faulthandler.dump_traceback_later(60, exit=True)   # a lock left held would hang: fail instead
    try:
        with ValeEnv("emu") as e:
            yield e
    finally:
        faulthandler.cancel_dump_traceback_later()


def _sender(name: str, me: int, count: int, batch: int, go, done) -> None:
    import netmap_core

    with netmap_core.open(name, backend="emu") as p:
        go.wait(10)
        seq = 0
        while seq < count:
            k = min(batch, count - seq)
            frames = [frame(mac(0), mac(me), size=64, fill=0)[:14]
                      + me.to_bytes(2, "big") + (seq + j).to_bytes(4, "big") + bytes(44) for j in range(k)]
            send(p, frames)
            seq += k
            time.sleep(0.001)
        done.set()
        done.wait()


def _flooder(name: str, started) -> None:
    import netmap_core

    with netmap_core.open(name, backend="emu") as p:
        f = frame(BCAST, mac(9), size=1500)
        n = 0
        while True:
            send(p, [f] * 64)
            n += 64
            if n >= 640:
                started.set()


def test_concurrent_senders_in_separate_processes(env):
    sw = "valep"
    rx = env.open(f"{sw}:rx@conf:slots=4096")
    send(rx, [frame(BCAST, mac(0))])             # the receiver's MAC is learned: unicast to it
    ev = [(_CTX.Event(), _CTX.Event()) for _ in range(2)]
    procs = [_CTX.Process(target=_sender,
                          args=(f"{sw}:s{i}@conf:slots=256", i + 1, 1500, 100, ev[i][0], ev[i][1]))
             for i in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.3)
    for go, _ in ev:
        go.set()
    got: dict[int, list[int]] = {1: [], 2: []}
    deadline = time.monotonic() + 30
    while sum(map(len, got.values())) < 3000 and time.monotonic() < deadline:
        for f in recv(rx):
            got[int.from_bytes(f[14:16], "big")].append(int.from_bytes(f[16:20], "big"))
    for p in procs:
        p.join(10)
    assert [p.exitcode for p in procs] == [0, 0]
    assert got[1] == list(range(1500)) and got[2] == list(range(1500))   # per sender: in order, none lost


def test_sender_killed_mid_burst_leaves_switch_working(env):
    sw = "valek"
    a = env.open(f"{sw}:a@conf:slots=64")
    b = env.open(f"{sw}:b@conf:slots=64")
    started = _CTX.Event()
    child = _CTX.Process(target=_flooder, args=(f"{sw}:victim@conf:slots=512", started))
    child.start()
    assert started.wait(20)
    for _ in range(20):                           # drain while it floods
        recv(a), recv(b)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    recv(a), recv(b)
    a.rxsync(), b.rxsync()                        # the releases take effect: the flood may have filled both
    f = frame(BCAST, mac(1), fill=5)
    send(a, [f])                                  # no ring or switch lock left held
    assert recv(b) == [f]
    names = vale.switch(sw).ports()               # the dead port was reclaimed
    assert sorted(names.values()) == [f"{sw}:a", f"{sw}:b"]
    u = frame(mac(1), mac(2), fill=6)
    send(b, [u])
    assert recv(a) == [u]
    from netmap_emu.kernel import memory
    from netmap_emu.kernel.core import kernel_for

    ns = namespace()
    with kernel_for(ns).op() as reg:
        for p in (a, b):
            al = memory.mapped(ns, reg, p.info.mem_id)
            assert int(al.bitmap.sum()) == 2 + 64 + 64   # reserved 0/1 and the two rings: no leak
    env.close_all()
    assert segments() == []


def test_importable_lookup_applies_to_senders_in_other_processes(env):
    sw = "valel"
    a, b = env.switch(sw, 2)
    s = vale.switch(sw)
    s.set_lookup(vale.drop_all)
    assert s.seg.lookup_name == "netmap_emu.datapath.lookup:drop_all"
    ev = (_CTX.Event(), _CTX.Event())
    child = _CTX.Process(target=_sender, args=(f"{sw}:c", 3, 10, 10, ev[0], ev[1]))
    child.start()
    ev[0].set()
    child.join(20)
    assert child.exitcode == 0
    assert recv(a) == [] and recv(b) == []
    send(a, [frame(BCAST, mac(1))])
    assert recv(b) == []
    s.set_lookup("netmap_emu.datapath.lookup:flood_all")
    u = frame(mac(77), mac(1))
    send(a, [u])
    assert recv(b) == [u]
    s.reset_lookup()
    assert s.seg.lookup_name == "" and s.learned() == {}
    send(a, [frame(BCAST, mac(1))])
    assert s.learned() == {"02:00:00:00:00:01": 0}


def test_lookup_must_be_importable_unless_local(env):
    sw = "valem"
    a, b, c = env.switch(sw, 3)
    s = vale.switch(sw)
    with pytest.raises(Exception, match="local=True"):
        s.set_lookup(lambda batch: np.full(len(batch), 2))
    calls = []

    def to_c(batch):
        calls.append(len(batch))
        return np.full(len(batch), 2)

    s.set_lookup(to_c, local=True)
    f = frame(mac(50), mac(1))
    send(a, [f, f])
    assert calls == [0, 2], "tried once on an empty batch when installed, then one batch of 2"
    assert recv(c) == [f, f] and recv(b) == []
    s.reset_lookup()
    send(a, [f])
    assert recv(b) == [f] and recv(c) == [f]


def test_switch_handle_errors(env):
    with pytest.raises(NoSuchPortError):
        vale.switch("valenone")
    with pytest.raises(InvalidRequestError):
        vale.switch("notvale")


def test_stats_count_drops(env):
    sw = "valest"
    a, b = env.switch(sw, 2, slots=8)
    send(b, [frame(BCAST, mac(2))])
    recv(a)
    send(a, [frame(mac(2), mac(1))] * 7)
    s = vale.switch(sw)
    before = int(s.stats.dropped[1])
    send(a, [frame(mac(2), mac(1))] * 3)
    assert int(s.stats.dropped[1]) - before == 3
