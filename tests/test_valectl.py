"""vale-ctl's option parsing and output against a fake Control that records the calls."""
from __future__ import annotations

import errno
import io

import pytest

from netmap_core import abi
from netmap_core.control import Control, ListEntry, NewIf, PortInfo
from netmap_core.errors import NetmapOSError, error_from_errno
from netmap_tools import valectl


class FakeControl:
    def __init__(self, ports=(), fail=None) -> None:
        self.calls = []
        self.ports = list(ports)        # ListEntry values in listing order
        self.fail = fail or {}          # method -> errno
        self.closed = False

    def _rec(self, meth, *args, **kw):
        self.calls.append((meth, args, kw))
        if meth in self.fail:
            code = self.fail[meth]
            raise error_from_errno(code, f"fake {meth}") if code != errno.ENOENT else \
                NetmapOSError(code, f"fake {meth}")

    def port_info(self, name="", *, mem_id=0):
        self._rec("port_info", name, mem_id=mem_id)
        return PortInfo(memsize=42369024, mem_id=7, tx_rings=1, rx_rings=2, tx_slots=1024,
                        rx_slots=512)

    def pools_info(self, name):
        raise AssertionError("vale-ctl never asks for pools")

    def vale_attach(self, name, *, mode=1, mem_id=0):
        self._rec("vale_attach", name, mode=mode, mem_id=mem_id)
        return 3

    def vale_detach(self, name):
        self._rec("vale_detach", name)
        return 4

    def vale_list(self, name="", *, bridge_idx=0, port_idx=0):
        self._rec("vale_list", name, bridge_idx=bridge_idx, port_idx=port_idx)
        if name:
            return ListEntry(name=name, bridge_idx=1, port_idx=2)
        for e in self.ports:
            if (e.bridge_idx, e.port_idx) >= (bridge_idx, port_idx):
                return e
        raise NetmapOSError(errno.ENOENT, "no more ports")

    def vale_newif(self, name, *, tx_rings=0, rx_rings=0, tx_slots=0, rx_slots=0, mem_id=0):
        self._rec("vale_newif", name, tx_rings=tx_rings, rx_rings=rx_rings, tx_slots=tx_slots,
                  rx_slots=rx_slots, mem_id=mem_id)
        return NewIf(tx_rings=tx_rings or 1, rx_rings=rx_rings or 1, tx_slots=tx_slots or 1024,
                     rx_slots=rx_slots or 1024, mem_id=mem_id or 5)

    def vale_delif(self, name):
        self._rec("vale_delif", name)

    def port_hdr_set(self, name, hdr_len):
        raise AssertionError

    def port_hdr_get(self, name):
        raise AssertionError

    def close(self):
        self.closed = True


def run(argv, ctl=None):
    ctl = ctl or FakeControl()
    out, err = io.StringIO(), io.StringIO()
    rc = valectl.main(argv, control=ctl, stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue(), ctl


def test_fake_is_a_control():
    assert isinstance(FakeControl(), Control)


def test_list_all_walks_bridges_and_ports():
    ports = [ListEntry("vale0:a", 0, 0), ListEntry("vale0:b", 0, 1), ListEntry("vale1:c", 1, 0)]
    rc, out, err, ctl = run([], FakeControl(ports))
    assert rc == 0 and err == ""
    assert out == ("vale0:a bridge_idx 0 port_idx 0\nvale0:b bridge_idx 0 port_idx 1\n"
                   "vale1:c bridge_idx 1 port_idx 0\n")
    assert [c[2] for c in ctl.calls] == [dict(bridge_idx=0, port_idx=0), dict(bridge_idx=0, port_idx=1),
                                         dict(bridge_idx=0, port_idx=2), dict(bridge_idx=1, port_idx=1)]


def test_list_all_with_only_backend_option_and_empty():
    rc, out, err, _ = run(["--backend", "emu"])
    assert rc == 0 and out == "" and err == ""


def test_list_all_other_error():
    rc, out, err, _ = run([], FakeControl(fail={"vale_list": errno.EPERM}))
    assert rc == 1 and err == "failed to list all: Operation not permitted: fake vale_list\n"


def test_port_info_output_format():
    rc, out, err, ctl = run(["-g", "vale0:x"])
    assert rc == 0
    assert out == ("memsize:    42369024\ntx_slots:   1024\nrx_slots:   512\ntx_rings:   1\n"
                   "rx_rings    2\nmem_id:     7\n")
    assert ctl.calls == [("port_info", ("vale0:x",), {"mem_id": 0})]


def test_list_one_port():
    rc, out, _, ctl = run(["-l", "vale0:x"])
    assert rc == 0 and out == "bridge_idx: 1\nport_idx:   2\n"
    rc, out, err, ctl = run(["-l", "foo:x"])
    assert rc == 1 and err.startswith("invalid vale port name: 'foo:x'\n") and "Usage:" in err
    assert ctl.calls == []


def test_attach_host_and_detach_verbose():
    rc, out, _, ctl = run(["-v", "-a", "vale0:eth0"])
    assert rc == 0 and out == "port_index: 3\n"
    assert ctl.calls == [("vale_attach", ("vale0:eth0",), {"mode": abi.NR_REG_ALL_NIC, "mem_id": 0})]
    rc, out, _, ctl = run(["-h", "vale0:eth0"])
    assert rc == 0 and out == ""
    assert ctl.calls[0][2]["mode"] == abi.NR_REG_NIC_SW
    rc, out, _, ctl = run(["-d", "vale0:eth0", "-v"])
    assert rc == 0 and out == "port_index: 4\n" and ctl.calls == [("vale_detach", ("vale0:eth0",), {})]


def test_newif_config_and_memid():
    rc, out, _, ctl = run(["-n", "v0", "-C", "256,512,2,4", "-m", "3", "-v"])
    assert rc == 0
    assert ctl.calls == [("vale_newif", ("v0",), dict(tx_rings=2, rx_rings=4, tx_slots=256,
                                                       rx_slots=512, mem_id=3))]
    assert out == "tx_slots:   256\nrx_slots:   512\ntx_rings:   2\nrx_ring:    4\nmem_id:     3\n"
    rc, _, _, ctl = run(["-n", "v1", "-C", "128"])
    assert ctl.calls[0][2] == dict(tx_rings=0, rx_rings=0, tx_slots=128, rx_slots=128, mem_id=0)


def test_memid_from_port_name():
    rc, _, _, ctl = run(["-n", "v0", "-m", "netmap:vale0:a/T"])
    assert rc == 0
    assert ctl.calls[0] == ("port_info", ("vale0:a",), {"mem_id": 0})
    assert ctl.calls[1][2]["mem_id"] == 7
    rc, _, err, ctl = run(["-n", "v0", "-m", "eth0"])
    assert rc == 1 and err == "invalid format in '-m eth0' (missing 'netmap:'?)\n"
    assert ctl.calls == []


def test_delete_and_errors_use_netmap_wording():
    rc, _, err, ctl = run(["-r", "v0"], FakeControl(fail={"vale_delif": errno.EBUSY}))
    # netmap's wording (strerror), then the cause the Control gave
    assert rc == 1 and err == "failed to remove v0: Device or resource busy: fake vale_delif\n"
    rc, _, err, _ = run(["-a", "vale0:nosuch"], FakeControl(fail={"vale_attach": errno.EINVAL}))
    assert err == "failed to attach vale0:nosuch: Invalid argument: fake vale_attach\n"


def test_polling_not_supported_on_virtual_ports():
    rc, _, err, _ = run(["-p", "vale0:v0", "-C", "0,1"])
    assert rc == 1 and err == ("failed to enable polling on vale0:v0: Operation not supported: "
                               "polling threads need a NIC attached to a switch\n")
    rc, _, err, _ = run(["-P", "vale0:v0"])
    assert rc == 1
    assert err == ("invalid null/empty config\n"
                   "failed to disable polling on vale0:v0: Operation not supported: "
                   "polling threads need a NIC attached to a switch\n")


def test_polling_passed_to_a_control_that_supports_it():
    class Poller(FakeControl):
        def vale_polling_enable(self, name, *, mode, first_cpu_id, num_cpus):
            self.calls.append(("enable", name, mode, first_cpu_id, num_cpus))

    rc, _, _, ctl = run(["-p", "vale0:eth0", "-C", "1,2,3"], Poller())
    assert rc == 0 and ctl.calls == [("enable", "vale0:eth0", abi.NETMAP_POLLING_MODE_MULTI_CPU, 2, 3)]


@pytest.mark.parametrize("argv", [["-x"], ["-v"], ["-g"], ["-g", "a", "extra"], ["--backend"]])
def test_usage_errors(argv):
    rc, out, err, ctl = run(argv)
    assert rc == 1 and "Usage:" in err and out == "" and ctl.calls == []


def test_ring_and_poll_config_parsers():
    err = io.StringIO()
    assert valectl.parse_ring_config("1,2,3,4,5", err) == (1, 2, 3, 3 + 1)
    assert err.getvalue() == "ignored config: 5"
    assert valectl.parse_ring_config("x") == (0, 0, 0, 0)
    assert valectl.parse_poll_config("0,1,2", io.StringIO()) is None
    assert valectl.parse_poll_config("1,0,4") == (abi.NETMAP_POLLING_MODE_MULTI_CPU, 0, 4)


def test_last_command_wins_like_getopt():
    rc, _, _, ctl = run(["-g", "vale0:a", "-d", "vale0:b"])
    assert ctl.calls == [("vale_detach", ("vale0:b",), {})]


def test_backend_unavailable_reports(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    rc = valectl.main(["--backend", "nosuch"], stdout=out, stderr=err)
    assert rc == 1 and "nosuch" in err.getvalue()


def test_help_prints_usage_and_succeeds():
    rc, out, err, ctl = run(["--help"])
    assert rc == 0 and out == valectl.USAGE and err == "" and ctl.calls == []
    assert "--help" in valectl.USAGE
    rc, out, err, _ = run(["-h"])            # -h needs an interface, as in netmap's vale-ctl
    assert rc == 1 and "Usage:" in err


def test_help_through_the_pynetmap_command():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "netmap_tools", "vale-ctl", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("Usage:") and "not recognized" not in r.stderr
