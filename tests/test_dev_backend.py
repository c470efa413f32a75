"""The ``netmap`` backend as netmap_core sees it: protocol, probe reasons, and a live smoke test.

Probe reasons are checked on paths that exist on any Linux machine (a missing path, a regular
file, /dev/null); whatever needs the real /dev/netmap is skipped here with the probe's reason.
"""
from __future__ import annotations

import errno
import os
import select

import pytest

import netmap_core
from netmap_core import abi
from netmap_core.backend import Backend, get_backend
from netmap_core.control import Control
from netmap_core.errors import BackendUnavailable
from netmap_core.portspec import PortSpec
from netmap_dev import BACKEND, NetmapBackend, SysOps

OK, WHY = BACKEND.probe()
needs_netmap = pytest.mark.skipif(not OK, reason=f"needs /dev/netmap ({WHY})")


def test_backend_protocol():
    assert BACKEND.name == "netmap"
    assert isinstance(BACKEND, Backend)
    ctl = BACKEND.control()
    assert isinstance(ctl, Control)
    ctl.close()


@pytest.mark.skipif(os.path.exists("/dev/netmap"), reason="this machine has /dev/netmap")
def test_probe_here_names_the_missing_device():
    assert (OK, WHY) == (False, "/dev/netmap does not exist (ENOENT): the netmap kernel module is "
                         "not loaded (modprobe netmap / insmod netmap.ko)")
    assert netmap_core.probe("netmap") == (OK, WHY)
    with pytest.raises(BackendUnavailable, match="modprobe netmap") as e:
        get_backend("netmap")
    assert "backend='emu'" in e.value.hint


def test_probe_missing_path(tmp_path):
    ok, why = NetmapBackend(str(tmp_path / "netmap")).probe()
    assert not ok and why.startswith(f"{tmp_path / 'netmap'} does not exist (ENOENT)")


def test_probe_not_a_character_device(tmp_path):
    path = tmp_path / "netmap"
    path.write_bytes(b"")
    path.chmod(0o644)
    ok, why = NetmapBackend(str(path)).probe()
    assert not ok and why == f"{path} exists but is not a character device (mode -rw-r--r--)"
    ok, why = NetmapBackend(str(tmp_path)).probe()
    assert not ok and "not a character device (mode drwx" in why


def test_probe_character_device_that_is_not_netmap():
    ok, why = NetmapBackend("/dev/null").probe()
    assert not ok
    assert why == "/dev/null refused NIOCCTRL PORT_INFO_GET (ENOTTY): it is not a netmap device"


def test_probe_unopenable_device():
    class Denied(SysOps):
        def open(self, path):
            raise PermissionError(errno.EACCES, "Permission denied")
    ok, why = NetmapBackend("/dev/null", Denied()).probe()
    assert (ok, why) == (False, "/dev/null cannot be opened read-write: Permission denied (EACCES)")


# --- live -------------------------------------------------------------------------------------

@needs_netmap
def test_probe_answers_on_a_netmap_machine():
    assert WHY.startswith(f"/dev/netmap answers control API {abi.NETMAP_API} (mem_id 1: ")


@needs_netmap
def test_open_send_close_a_vale_port():
    spec = PortSpec(text="valepyb:smoke", name="valepyb:smoke", mode=abi.NR_REG_ALL_NIC)
    with netmap_core.open(spec, backend="netmap") as port:
        assert port.info.mem_id > 1 and len(port.tx_rings) == len(port.rx_rings) == 1
        assert port.poll(select.POLLOUT, 0) & select.POLLOUT
        port.tx_rings[0].fill(1, template=b"\xff" * 60)
        port.txsync()
    with netmap_core.open(spec, backend="netmap") as again:   # closed means unregistered
        assert again.info.offset == 0
