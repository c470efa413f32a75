"""`netmap:IFNAME` ports on veth pairs into network namespaces, on either backend: ring counts,
a Python bridge carrying ping, host rings, ring selection, exclusive opens, a deleted interface."""
from __future__ import annotations

import errno
import pathlib
import re
import subprocess
import threading
import time

import pytest

import netmap_core
from ifnet import Pump, is_gone_error, sh
from netmap_core.errors import InvalidRequestError, PortBusyError


@pytest.fixture
def ifopen(backend_name, lab):
    """``open_(spec)``: a port on the chosen backend, closed before the veth pairs go."""
    ports = []

    def open_(spec):
        p = netmap_core.open(spec, backend=backend_name)
        ports.append(p)
        return p

    yield open_
    for p in reversed(ports):
        p.close()


def test_emulated_adapter_geometry(sides, ifopen):
    """spec L2: a veth in emulated (generic) mode has 1 TX and 1 RX ring of 1024 slots and one
    host ring pair; the default open binds the NIC rings only."""
    a, _b = sides
    p = ifopen(f"netmap:{a.outer}")
    i = p.info
    assert (i.tx_rings, i.rx_rings, i.tx_slots, i.rx_slots) == (1, 1, 1024, 1024)
    assert (i.host_tx_rings, i.host_rx_rings) == (1, 1)
    assert (len(p.tx_rings), len(p.rx_rings)) == (1, 1)
    assert (p.host_tx_rings, p.host_rx_rings) == ((), ())
    assert p.name == a.outer


def test_python_bridge_carries_ping(lab, sides, ifopen):
    """Two interface ports bridged by Ring.forward in a thread carry ping both ways; with the
    ports open and no bridge, nothing crosses."""
    a, b = sides
    pa, pb = ifopen(f"netmap:{a.outer}"), ifopen(f"netmap:{b.outer}")
    assert not lab.ping(a, b.addr, count=1, deadline=2)
    with Pump([(pa, pa.rx_rings, pb, pb.tx_rings), (pb, pb.rx_rings, pa, pa.tx_rings)]) as pump:
        ok_ab = lab.ping(a, b.addr)
        ok_ba = lab.ping(b, a.addr)
    assert pump.error is None, pump.error
    assert ok_ab and ok_ba, f"ping failed through the bridge (slots moved A->B, B->A: {pump.moved})"
    assert min(pump.moved) >= 4   # two echo requests and two replies each way at least


def test_readme_bridge_carries_ping(lab, sides, backend_name, monkeypatch):
    """The README's "Real interfaces" bridge, run in a thread, carries ping."""
    a, b = sides
    monkeypatch.setenv("PYNETMAP_BACKEND", backend_name)
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Real interfaces.*?```python\n(.*?)```", text, re.S).group(1)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            env["bridge"](a.outer, b.outer, stop)
        except BaseException as exc:
            failed.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        ok = lab.ping(a, b.addr) and lab.ping(b, a.addr)
    finally:
        stop.set()
        t.join(timeout=30)
    assert not failed, failed
    assert not t.is_alive()
    assert ok


def test_host_rings_carry_stack_traffic(lab, sides, ifopen):
    """`IFNAME*` binds NIC and host rings: forwarding NIC RX -> host TX and host RX -> NIC TX
    connects the namespace to the root namespace's stack on that interface."""
    a, _b = sides
    addr = lab.host_address(a)
    p = ifopen(f"netmap:{a.outer}*")
    assert (len(p.tx_rings), len(p.rx_rings), len(p.host_tx_rings), len(p.host_rx_rings)) == (1, 1, 1, 1)
    with Pump([(p, p.rx_rings, p, p.host_tx_rings), (p, p.host_rx_rings, p, p.tx_rings)]) as pump:
        ok = lab.ping(a, addr)
    assert pump.error is None, pump.error
    assert ok, f"no ping through the host rings (slots NIC->host, host->NIC: {pump.moved})"
    assert pump.moved[0] >= 2 and pump.moved[1] >= 2


def test_bound_interface_hides_frames_from_stack(lab, sides, ifopen, backend_name):
    """netmap takes the interface's frames away from the OS stack while a port is bound, and
    gives them back when it closes."""
    if backend_name == "emu":
        pytest.skip("the emulator reads copies (AF_PACKET) and cannot take frames away from the "
                    "OS stack (spec/deviations.md)")
    a, _b = sides
    addr = lab.host_address(a)
    assert lab.ping(a, addr)
    p = ifopen(f"netmap:{a.outer}")
    assert not lab.ping(a, addr, count=1, deadline=2)
    p.close()
    assert lab.ping(a, addr)


@pytest.mark.parametrize("suffix, nic, host, first_last", [
    ("-0", (1, 1), (0, 0), (0, 0, 0, 0)),
    ("/T", (1, 0), (0, 0), (0, 0, 0, -1)),
    ("/R", (0, 1), (0, 0), (0, -1, 0, 0)),
    ("^", (0, 0), (1, 1), (1, 1, 1, 1)),
    ("*", (1, 1), (1, 1), (0, 1, 0, 1)),
])
def test_ring_selection(sides, ifopen, suffix, nic, host, first_last):
    """spec D3/H1 on an emulated adapter: which rings each mode binds, and the ring ids
    (first/last TX, first/last RX) libnetmap derives."""
    a, _b = sides
    p = ifopen(f"netmap:{a.outer}{suffix}")
    assert (len(p.tx_rings), len(p.rx_rings)) == nic
    assert (len(p.host_tx_rings), len(p.host_rx_rings)) == host
    assert (p.first_tx_ring, p.last_tx_ring, p.first_rx_ring, p.last_rx_ring) == first_last


@pytest.mark.kernel_warnings(r"invalid ring id 1$")
def test_ring_selection_out_of_range(sides, ifopen):
    """`-1` on a one-ring interface is EINVAL (no such ring in either direction)."""
    a, _b = sides
    with pytest.raises(InvalidRequestError) as e:
        ifopen(f"netmap:{a.outer}-1")
    assert e.value.errno == errno.EINVAL


def test_exclusive_opens(sides, ifopen):
    """spec D4 `/x`: an exclusive open refuses other users of its rings and is refused by them."""
    a, _b = sides
    x = ifopen(f"netmap:{a.outer}/x")
    with pytest.raises(PortBusyError) as e:
        ifopen(f"netmap:{a.outer}")
    assert e.value.errno == errno.EBUSY
    x.close()
    ifopen(f"netmap:{a.outer}")
    with pytest.raises(PortBusyError):
        ifopen(f"netmap:{a.outer}/x")


@pytest.mark.timeout(300)
def test_interface_deleted_while_open(lab, sides, ifopen, backend_name):
    """Deleting an open interface: nothing hangs, syncs fail with EIO, poll reports POLLERR,
    and the deletion completes once the port is closed (netmap.ko holds it until then)."""
    a, _b = sides
    p = ifopen(f"netmap:{a.outer}")
    deleting = subprocess.Popen(["ip", "link", "del", a.outer], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        errors: list[BaseException] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not errors:
            try:
                p.rxsync()
                p.txsync()
            except netmap_core.errors.NetmapError as exc:
                errors.append(exc)
                break
            time.sleep(0.1)
        assert errors and is_gone_error(errors[0]), f"syncs after deletion: {errors or 'no error'}"
        assert p.poll(timeout=1) & netmap_core.POLLERR
        if backend_name == "netmap":
            assert deleting.poll() is None, "netmap.ko let the interface go while a port holds it"
        p.close()
        assert deleting.wait(timeout=60) == 0, deleting.stderr.read() if deleting.stderr else ""
    finally:
        if deleting.poll() is None:
            p.close()
            deleting.wait(timeout=60)
    r = sh("ip", "link", "show", a.outer, check=False)
    assert r.returncode != 0
