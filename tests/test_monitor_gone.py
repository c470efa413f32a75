"""A monitor whose port leaves netmap mode (spec G5) on the chosen backend: its rxsync fails
(NIOCRXSYNC still returns 0 on netmap; rules="strict" raises EIO), poll reports POLLERR, and it
stays dead when the port comes back - it must be reopened."""
from __future__ import annotations

import errno
import threading
import time

import pytest

from netmap_core import POLLERR, POLLIN
from netmap_core.errors import NetmapOSError
from netmap_core.testing import BCAST, frame, mac, recv, send, unique_switch
from netmap_emu.testing.vale import ValeEnv


@pytest.fixture
def env(backend_name):
    with ValeEnv(backend_name, rules="netmap") as e:
        yield e


@pytest.mark.parametrize("flags", ["rt", "z"])
def test_parent_close_kills_the_monitor_for_good(env, flags):
    sw = unique_switch()
    a, b = env.switch(sw, 2)
    m = env.open(f"{sw}:p0/{flags}")
    f = [frame(BCAST, mac(2))]
    send(b, f)
    if flags == "z":
        assert recv(a) == f
        a.rxsync()
    assert recv(m) == f
    assert not m.poll(POLLIN, 0) & POLLERR
    env.close(a)                                  # the port leaves netmap mode
    assert m.poll(POLLIN, 0) & POLLERR
    r = m.rx_rings[0]
    state = (r.head, r.cur, r.tail)
    m.rxsync()                                    # returns normally (NIOCRXSYNC gives 0) ...
    assert (r.head, r.cur, r.tail) == state       # ... and does nothing
    a2 = env.open(f"{sw}:p0")                     # the port comes back: the old monitor stays dead
    send(b, f)
    assert recv(a2) == f
    a2.rxsync()
    assert recv(m) == [] and m.poll(POLLIN, 0) & POLLERR
    m2 = env.open(f"{sw}:p0/{flags}")             # a new monitor works
    send(b, f)
    if flags == "z":
        assert recv(a2) == f
        a2.rxsync()
    assert recv(m2) == f


def test_persistent_port_closed_and_reopened(env):
    name = f"pg{unique_switch('')[:10]}"
    sw = env.persistent_switch()
    env.ctl.vale_newif(name)                # the env detaches and deletes what it can
    env.ctl.vale_attach(f"{sw}:{name}")
    v0 = env.open(f"{sw}:{name}")
    v1 = env.open(f"{sw}:v1")
    m = env.open(f"netmap:{name}/t")
    env.close(v0)
    assert m.poll(POLLIN, 0) & POLLERR
    # by its interface name: netmap renamed the switch port at the first registration (E5)
    v0 = env.open(f"netmap:{name}")
    send(v0, [frame(BCAST, mac(4))])
    assert recv(v1) and recv(m) == []


def test_strict_rxsync_raises_eio(backend_name):
    if backend_name != "emu":
        pytest.skip("rules='strict' detects the orphaned monitor only on the emulator")
    with ValeEnv("emu", rules="strict") as env:
        sw = unique_switch()
        a, b = env.switch(sw, 2)
        m = env.open(f"{sw}:p0/t")
        m.rxsync()
        env.close(a)
        with pytest.raises(NetmapOSError) as ei:
            m.rxsync()
        assert ei.value.errno == errno.EIO and "left netmap mode" in str(ei.value)
        assert m.poll(POLLIN, 0) & POLLERR        # poll reports, it does not raise


def test_sleeping_poll_is_woken(backend_name):
    if backend_name != "emu":
        pytest.skip("netmap does not wake a monitor sleeping in poll when its port leaves")
    with ValeEnv("emu") as env:
        sw = unique_switch()
        a, b = env.switch(sw, 2)
        m = env.open(f"{sw}:p0/z")
        got = []
        t = threading.Thread(target=lambda: got.append((m.poll(POLLIN, 5.0), time.monotonic())))
        t.start()
        time.sleep(0.3)
        closed = time.monotonic()
        env.close(a)
        t.join(10)
        assert got and got[0][0] & POLLERR and got[0][1] - closed < 2.0
