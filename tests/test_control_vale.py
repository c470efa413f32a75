"""Control requests on the chosen backend with netmap's results and errno rules (spec C5,
Live check 7), and vale-ctl running over them."""
from __future__ import annotations

import dataclasses
import errno
import io

import pytest

import netmap_core
from netmap_core import abi
from netmap_core.errors import (
    InvalidRequestError,
    NetmapOSError,
    NoSuchPortError,
    PortBusyError,
)
from netmap_core.testing import BCAST, PERSISTENT_RENAMED, frame, mac, recv, send, unique_switch
from netmap_emu.testing.vale import ValeEnv
from netmap_tools import valectl


@pytest.fixture
def env(backend_name):
    with ValeEnv(backend_name) as e:
        yield e


def _code(exc_info):
    return exc_info.value.errno


def _ifname():
    return "pv" + unique_switch("")[-8:]


def test_port_info_empty_name_and_mem_ids(env):
    i = env.ctl.port_info("")
    assert (i.memsize, i.mem_id) == (343019520, 1)
    assert (i.tx_rings, i.rx_slots) == (0, 0)
    with pytest.raises(InvalidRequestError):
        env.ctl.port_info("", mem_id=777)


def test_port_info_new_vale_name_is_temporary(env):
    sw = unique_switch()
    i = env.ctl.port_info(f"{sw}:tmp")
    assert (i.tx_slots, i.rx_slots, i.tx_rings, i.rx_rings, i.host_tx_rings, i.host_rx_rings) == \
        (1024, 1024, 1, 1, 0, 0)
    assert i.memsize == 42369024 and i.mem_id >= 2
    with pytest.raises(NetmapOSError) as ei:
        env.ctl.vale_list(f"{sw}:tmp")
    assert _code(ei) == errno.ENOENT


def test_port_info_existing_port_and_unknown(env):
    sw = unique_switch()
    p = env.open(f"{sw}:a@conf:rings=2,slots=256")
    i = env.ctl.port_info(f"{sw}:a")
    assert ((i.mem_id, i.memsize, i.tx_rings, i.rx_rings, i.tx_slots)
            == (p.info.mem_id, p.info.memsize, 2, 2, 256))
    with pytest.raises(NoSuchPortError):
        env.ctl.port_info("nosuch_if0")


def test_pools_info(env):
    sw = unique_switch()
    env.open(f"{sw}:a")
    pi = env.ctl.pools_info(f"{sw}:a")
    assert (pi.if_pool_offset, pi.if_pool_objtotal, pi.if_pool_objsize) == (0, 12, 1024)
    assert (pi.ring_pool_offset, pi.ring_pool_objtotal, pi.ring_pool_objsize) == (12288, 20, 20480)
    assert (pi.buf_pool_offset, pi.buf_pool_objtotal, pi.buf_pool_objsize) == (421888, 20482, 2048)
    assert pi.memsize == 42369024
    with pytest.raises(NoSuchPortError):
        env.ctl.pools_info("")


def test_vale_list_iteration_and_lookups(env):
    s0, s1 = unique_switch(), unique_switch()
    env.open(f"{s0}:a"), env.open(f"{s0}:b"), env.open(f"{s1}:c")
    seen, b, p = [], 0, 0
    while True:
        try:
            e = env.ctl.vale_list("", bridge_idx=b, port_idx=p)
        except NetmapOSError as exc:
            assert exc.errno == errno.ENOENT
            break
        seen.append((e.name, e.bridge_idx, e.port_idx))
        b, p = e.bridge_idx, e.port_idx + 1
    names = [s[0] for s in seen]
    assert f"{s0}:a" in names and f"{s0}:b" in names and f"{s1}:c" in names
    assert env.ctl.vale_list(f"{s0}:zz").port_idx == abi.NM_BDG_NOPORT
    for bad, code in ((f"{unique_switch()}:x", errno.ENOENT), ("noprefix", errno.EINVAL),
                      ("foo:x", errno.EINVAL), ("val6:b", errno.EINVAL)):
        with pytest.raises(NetmapOSError) as ei:
            env.ctl.vale_list(bad)
        assert _code(ei) == code, bad


def test_newif_attach_detach_delif(env):
    name = _ifname()
    sw = unique_switch()
    n = env.ctl.vale_newif(name)
    assert (n.tx_rings, n.rx_rings, n.tx_slots, n.rx_slots) == (1, 1, 1024, 1024) and n.mem_id >= 2
    with pytest.raises(NetmapOSError) as ei:
        env.ctl.vale_newif(name)
    assert _code(ei) == errno.EEXIST
    env.open(f"{sw}:eph")
    assert env.ctl.vale_attach(f"{sw}:{name}") == 1
    with pytest.raises(PortBusyError):
        env.ctl.vale_attach(f"{sw}:{name}")
    with pytest.raises(PortBusyError):
        env.ctl.vale_delif(name)
    with pytest.raises(PortBusyError):          # ephemeral ports cannot be attached or detached
        env.ctl.vale_detach(f"{sw}:eph")
    assert env.ctl.vale_detach(f"{sw}:{name}") == 1
    env.ctl.vale_delif(name)
    with pytest.raises(NoSuchPortError):
        env.ctl.vale_delif(name)


@pytest.mark.kernel_warnings(r"invalid bridge name nosuchprefix$")
def test_newif_limits_and_errors(env):
    name = _ifname()
    n = env.ctl.vale_newif(name, tx_slots=5000, rx_slots=5000, tx_rings=20, rx_rings=20)
    assert (n.tx_slots, n.rx_slots, n.tx_rings, n.rx_rings) == (4096, 4096, 16, 16)
    env.ctl.vale_delif(name)
    with pytest.raises(InvalidRequestError):
        env.ctl.vale_newif("x" * 16)
    with pytest.raises(InvalidRequestError):
        env.ctl.vale_newif("vale8:pv4")
    with pytest.raises(InvalidRequestError):
        env.ctl.vale_newif(_ifname(), mem_id=777)
    with pytest.raises(InvalidRequestError):
        env.ctl.vale_attach(f"{unique_switch()}:nosuch")
    with pytest.raises(InvalidRequestError):
        env.ctl.vale_attach("nosuchprefix")
    with pytest.raises(NoSuchPortError):
        env.ctl.vale_detach(f"{unique_switch()}:nosuch")


def test_attached_persistent_port_forwards(env):
    name = _ifname()
    sw = env.persistent_switch()
    env.ctl.vale_newif(name)
    with pytest.raises(InvalidRequestError):          # not attached yet
        env.open(f"{sw}:{name}")
    a = env.open(f"{sw}:a")
    env.ctl.vale_attach(f"{sw}:{name}")
    p = env.open(f"{sw}:{name}")
    assert p.nifp["ni_name"].item().decode() == name
    f = frame(BCAST, mac(1))
    send(a, [f])
    assert recv(p) == [f]
    send(p, [frame(BCAST, mac(2))])
    assert recv(a) == [frame(BCAST, mac(2))]
    env.close_all()
    # netmap renamed the port when it was registered: it can no longer be detached (E5, V19)
    assert env.release_persistent(sw, name) == (env.backend not in PERSISTENT_RENAMED)


def test_persistent_port_in_global_memory(env):
    name = _ifname()
    n = env.ctl.vale_newif(name, mem_id=1)
    try:
        assert n.mem_id == 1
        p = env.open(f"netmap:{name}")
        assert p.info.memsize == 343019520 and int(p.nifp["ni_flags"]) == 0
        env.close(p)
    finally:
        env.ctl.vale_delif(name)


@pytest.mark.kernel_warnings(r"virt_hdr_len=10, but application does not accept it")
def test_port_hdr_set_get(env):
    sw = unique_switch()
    env.open(f"{sw}:a")
    assert env.ctl.port_hdr_get(f"{sw}:a") == 0
    env.ctl.port_hdr_set(f"{sw}:a", 12)
    assert env.ctl.port_hdr_get(f"{sw}:a") == 12
    env.ctl.port_hdr_set(f"{sw}:a", 0)
    with pytest.raises(InvalidRequestError):
        env.ctl.port_hdr_set(f"{sw}:a", 11)
    with pytest.raises(NoSuchPortError):
        env.ctl.port_hdr_set(f"{sw}:missing", 12)
    env.ctl.port_hdr_set(f"{sw}:a", 10)
    with pytest.raises(NetmapOSError) as ei:      # such a port needs NR_ACCEPT_VNET_HDR (spec C6)
        env.open(f"{sw}:a")
    assert ei.value.errno == errno.EIO
    spec = netmap_core.parse_portspec(f"{sw}:a")
    ok = env.open(dataclasses.replace(spec, flags=spec.flags | abi.NR_ACCEPT_VNET_HDR))
    assert ok.info.flags & abi.NR_ACCEPT_VNET_HDR


def test_valectl_over_the_backend(env, backend_name):
    sw = unique_switch()
    env.open(f"{sw}:a")
    env.open(f"{sw}:b")
    out, err = io.StringIO(), io.StringIO()
    assert valectl.main([], control=env.ctl, stdout=out, stderr=err) == 0
    lines = out.getvalue().splitlines()
    assert (f"{sw}:a bridge_idx 0 port_idx 0" in lines
            or any(ln.startswith(f"{sw}:a bridge_idx") for ln in lines))
    assert any(ln.startswith(f"{sw}:b bridge_idx") and ln.endswith("port_idx 1") for ln in lines)
    out = io.StringIO()
    assert valectl.main(["-l", f"{sw}:b"], control=env.ctl, stdout=out, stderr=err) == 0
    assert out.getvalue().endswith("port_idx:   1\n")
    name = _ifname()
    out = io.StringIO()
    assert valectl.main(["-n", name, "-C", "256,512", "-v"], control=env.ctl, stdout=out, stderr=err) == 0
    assert "tx_slots:   256\nrx_slots:   512\n" in out.getvalue()
    out = io.StringIO()
    assert valectl.main(["-a", f"{sw}:{name}", "-v"], control=env.ctl, stdout=out, stderr=err) == 0
    assert out.getvalue() == "port_index: 2\n"
    err = io.StringIO()
    assert valectl.main(["-r", name], control=env.ctl, stdout=out, stderr=err) == 1
    assert err.getvalue().startswith(f"failed to remove {name}: Device or resource busy")   # + the cause
    assert valectl.main(["-d", f"{sw}:{name}"], control=env.ctl, stdout=out, stderr=err) == 0
    assert valectl.main(["-r", name], control=env.ctl, stdout=out, stderr=err) == 0
    out = io.StringIO()
    assert valectl.main(["-g", f"{sw}:a"], control=env.ctl, stdout=out, stderr=err) == 0
    assert out.getvalue().startswith("memsize:    42369024\n")
    err = io.StringIO()
    assert valectl.main(["-p", f"{sw}:a"], control=env.ctl, stdout=out, stderr=err) == 1
    assert "Operation not supported" in err.getvalue()
