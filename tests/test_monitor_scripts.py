"""netmap's monitor integration scripts (utils/tests 012-020, 025-027, spec J2) on the chosen
backend, with the randomized runner's frame lengths (50..10049 bytes: multi-slot packets) and
counts. Each test follows its script step by step: which port sends, which one must (or must
not yet) see the frames."""
from __future__ import annotations

import os

import pytest

import netmap_core
from netmap_core.testing import BCAST, frame, mac, recv, unique_switch
from netmap_emu.testing.vale import ValeEnv

SIZES = [(150, 1), (2100, 3), (10049, 5)]     # (len, num): one, two and five slots per frame


@pytest.fixture
def ports(backend_name):
    opened = []

    def open_(name):
        p = netmap_core.open(name, backend=backend_name)
        opened.append(p)
        return p

    yield open_
    for p in reversed(opened):
        p.close()


@pytest.fixture
def persistent(backend_name):
    """A persistent VALE interface attached to a switch: (switch, name). Detached and deleted
    afterwards where the backend allows it (not on netmap.ko once registered: E5, V19)."""
    with ValeEnv(backend_name) as env:
        name = f"pm{os.getpid() % 10000}x{unique_switch('')[-3:]}"
        sw = env.persistent_switch()
        env.ctl.vale_newif(name)
        env.ctl.vale_attach(f"{sw}:{name}")
        yield sw, name


def frames(size, num, fill=0x64):   # "d"
    return [frame(BCAST, mac(7), size=size, fill=fill + i) for i in range(num)]


def xmit(port, fs):
    """functional -t: send whole frames, splitting them into buffer-sized fragments."""
    from netmap_core.testing import send

    send(port, fs)


def rec_copy(ports, v0_name, mon_name, v1_name, size, num):
    """012/013/014: a receive copy monitor sees frames the port has not read yet."""
    v0 = ports(v0_name)
    mon = ports(mon_name)
    v1 = ports(v1_name)
    fs = frames(size, num)
    xmit(v1, fs)
    assert recv(mon) == fs
    assert recv(v0) == fs


def rec_zcopy(ports, v0_name, mon_name, v1_name, size, num):
    """015/016/017: a zero-copy monitor sees nothing until the port reads (and releases)."""
    v0 = ports(v0_name)
    mon = ports(mon_name)
    v1 = ports(v1_name)
    fs = frames(size, num)
    xmit(v1, fs)
    assert recv(mon) == []
    assert recv(v0) == fs
    v0.rxsync()
    assert recv(mon) == fs


def send_copy(ports, v0_name, mon_name, v1_name, size, num):
    """018/019/020: a send copy monitor sees frames the peer has not read yet."""
    v0 = ports(v0_name)
    mon = ports(mon_name)
    v1 = ports(v1_name)
    fs = frames(size, num)
    xmit(v0, fs)
    assert recv(mon) == fs
    assert recv(v1) == fs


def send_zcopy_vale(ports, v0_name, mon_name, v1_name, size, num):
    """025/026: VALE transmits at the txsync, so a zero-copy monitor sees the frames before
    the destination reads them."""
    send_copy(ports, v0_name, mon_name, v1_name, size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_012_rec_cp_mon_ephemeral_vale_port(ports, size, num):
    sw = unique_switch()
    rec_copy(ports, f"{sw}:v0", f"{sw}:v0/r", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES[:2])
def test_013_rec_cp_mon_persistent_vale_port(persistent, ports, size, num):
    sw, name = persistent
    rec_copy(ports, f"{sw}:{name}", f"netmap:{name}/r", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_014_rec_cp_mon_pipe(ports, size, num):
    p = f"netmap:{unique_switch('pipe')}"
    rec_copy(ports, f"{p}{{1", f"{p}{{1/r", f"{p}}}1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_015_rec_zcp_mon_ephemeral_vale_port(ports, size, num):
    sw = unique_switch()
    rec_zcopy(ports, f"{sw}:v0", f"{sw}:v0/z", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES[:2])
def test_016_rec_zcp_mon_persistent_vale_port(persistent, ports, size, num):
    sw, name = persistent
    rec_zcopy(ports, f"{sw}:{name}", f"netmap:{name}/z", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_017_rec_zcp_mon_pipe(ports, size, num):
    p = f"netmap:{unique_switch('pipe')}"
    rec_zcopy(ports, f"{p}{{1", f"{p}{{1/z", f"{p}}}1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_018_send_cp_mon_ephemeral_vale_port(ports, size, num):
    sw = unique_switch()
    send_copy(ports, f"{sw}:v0", f"{sw}:v0/t", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES[:2])
def test_019_send_cp_mon_persistent_vale_port(persistent, ports, size, num):
    sw, name = persistent
    send_copy(ports, f"{sw}:{name}", f"netmap:{name}/t", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_020_send_cp_mon_pipe(ports, size, num):
    p = f"netmap:{unique_switch('pipe')}"
    send_copy(ports, f"{p}{{1", f"{p}{{1/t", f"{p}}}1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_025_send_zcp_mon_ephemeral_vale_port(ports, size, num):
    sw = unique_switch()
    send_zcopy_vale(ports, f"{sw}:v0", f"{sw}:v0/z", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES[:2])
def test_026_send_zcp_mon_persistent_vale_port(persistent, ports, size, num):
    sw, name = persistent
    send_zcopy_vale(ports, f"{sw}:{name}", f"netmap:{name}/z", f"{sw}:v1", size, num)


@pytest.mark.parametrize("size,num", SIZES)
def test_027_send_zcp_mon_pipe(ports, size, num):
    """The monitor sees nothing until the peer released the slots *and* the sender synced
    again (slots come back to a pipe's sender only at its txsync)."""
    p = f"netmap:{unique_switch('pipe')}"
    v0 = ports(f"{p}{{1")
    mon = ports(f"{p}{{1/z")
    v1 = ports(f"{p}}}1")
    fs = frames(size, num)
    xmit(v0, fs)
    assert recv(mon) == []
    assert recv(v1) == fs
    v1.rxsync()
    assert recv(mon) == []
    xmit(v0, frames(size, num, fill=ord("e")))
    assert recv(mon) == fs
