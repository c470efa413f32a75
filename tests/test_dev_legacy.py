"""The legacy NIOCREGIF (``struct nmreq``, spec C9) against NIOCCTRL REGISTER on /dev/netmap.

The backend never uses NIOCREGIF (host ring counts, options and 64-bit sizes exist only in API
14), but ``requests.legacy_register`` encodes it and ``Device.regif_legacy`` sends it. Here a
VALE port and a pipe are registered through both ioctls on separate descriptors and what comes
back (offsets, memsize, mem_id, rings, slots, extra buffers) and what the kernel built in the
region (netmap_if, ring offsets, rings) must agree; a legacy descriptor's syncs move frames like
any other. Device only: the emulator has no ioctls.
"""
from __future__ import annotations

import contextlib
import os
import select

import numpy as np
import pytest

import netmap_core
from netmap_core import abi
from netmap_core.errors import InvalidRequestError
from netmap_core.portspec import Conf, PortSpec
from netmap_core.ring import Ring
from netmap_core.testing import BCAST, frame, mac, recv
from netmap_dev import BACKEND, Device, Mapping, requests as rq

OK, WHY = BACKEND.probe()
pytestmark = [pytest.mark.netmap, pytest.mark.skipif(not OK, reason=f"needs /dev/netmap ({WHY})")]

PID = os.getpid() % 100000


class Registered:
    """One registered descriptor with its own mapping of the region (no sharing, so each
    view below is exactly what that descriptor was given)."""

    def __init__(self, dev: Device, info) -> None:
        self.dev, self.info = dev, info
        self.map = Mapping.of_fd(dev.fd, info.memsize, f"region of {info.name!r}")
        self.region = self.map.array
        self.nifp = np.ndarray((), dtype=abi.netmap_if, buffer=self.region, offset=info.offset)
        n = sum(int(self.nifp[k]) for k in ("ni_tx_rings", "ni_host_tx_rings", "ni_rx_rings",
                                             "ni_host_rx_rings"))
        self.ring_ofs = np.ndarray((n,), dtype="<i8", buffer=self.region,
                                   offset=info.offset + abi.NETMAP_IF_RING_OFS_OFFSET).tolist()
        ntx = int(self.nifp["ni_tx_rings"]) + int(self.nifp["ni_host_tx_rings"])
        self.tx = Ring(self.region, info.offset + self.ring_ofs[0], name="tx0")
        self.rx = Ring(self.region, info.offset + self.ring_ofs[ntx], name="rx0")

    @property
    def ni_name(self) -> str:
        return self.nifp["ni_name"].item().decode()

    def extra_buffers(self) -> list[int]:
        out, idx = [], int(self.nifp["ni_bufs_head"])
        while 2 <= idx < self.tx.nbufs and idx not in out:
            out.append(idx)
            idx = int(self.tx.buffers[idx, :4].view("<u4")[0])
        return out

    def close(self) -> None:
        self.map.retire()
        self.dev.close()


@contextlib.contextmanager
def registered(how: str, name: str, *, mode: int = abi.NR_REG_ALL_NIC, ringid: int = 0,
               extra_bufs: int = 0, conf: Conf | None = None):
    """Register ``name`` on a new descriptor with NIOCREGIF (``how="legacy"``) or NIOCCTRL."""
    dev = Device()
    try:
        if how == "legacy":
            req = rq.legacy_register(name, mode=mode, ringid=ringid, extra_bufs=extra_bufs, conf=conf)
            dev.regif_legacy(req)
            assert req["nr_name"][0].decode() == name, "C9: the legacy name is not written back"
            info = rq.decode_legacy_register(req)
        else:
            spec = PortSpec(text=name, name=name, mode=mode, ringid=ringid, conf=conf or Conf())
            req = rq.register(spec, extra_bufs=extra_bufs)
            dev.ctrl(req)
            info = rq.decode_register(req)
    except BaseException:
        dev.close()
        raise
    r = Registered(dev, info)
    try:
        yield r
    finally:
        r.close()


def same_registration(first: Registered, second: Registered) -> None:
    """Two descriptors of one port: one allocator, the next netmap_if, the same rings."""
    a, b = first.info, second.info
    assert (a.mem_id, a.memsize) == (b.mem_id, b.memsize), "A16/C9: one port, one allocator"
    assert (a.tx_rings, a.rx_rings, a.tx_slots, a.rx_slots) == (b.tx_rings, b.rx_rings, b.tx_slots,
                                                               b.rx_slots), "C9: same geometry reported"
    assert b.offset == a.offset + 1024, "A16: every REGISTER gets a new netmap_if"
    assert first.ni_name == second.ni_name
    assert [int(first.nifp[k]) for k in ("ni_tx_rings", "ni_rx_rings", "ni_host_tx_rings",
                                          "ni_host_rx_rings")] == \
        [int(second.nifp[k]) for k in ("ni_tx_rings", "ni_rx_rings", "ni_host_tx_rings", "ni_host_rx_rings")]
    assert [o and o + a.offset for o in first.ring_ofs] == [o and o + b.offset for o in second.ring_ofs], \
        "A8/A16: both netmap_ifs point at the same rings"
    assert first.tx.slots["buf_idx"].tolist() == second.tx.slots["buf_idx"].tolist()


@pytest.mark.parametrize("order", [("legacy", "ctrl"), ("ctrl", "legacy")])
def test_vale_port_through_both_ioctls(order):
    name = f"vale{PID}g{order[0][0]}:a"
    conf = Conf(tx_rings=2, rx_rings=3, tx_slots=64, rx_slots=128)
    with registered(order[0], name, extra_bufs=3, conf=conf) as first, \
            registered(order[1], name, extra_bufs=3) as second:
        a = first.info
        assert (a.offset, a.tx_rings, a.rx_rings, a.tx_slots, a.rx_slots, a.extra_bufs) == \
            (0, 2, 3, 64, 128, 3), f"C9: {order[0]} REGISTER honours the hints (A5)"
        assert a.mem_id > 1 and second.info.extra_bufs == 3
        same_registration(first, second)
        ctl = BACKEND.control()
        try:
            info = ctl.port_info(name)
        finally:
            ctl.close()
        assert (info.mem_id, info.memsize) == (a.mem_id, a.memsize), "C5: PORT_INFO_GET agrees"
        lists = first.extra_buffers(), second.extra_buffers()
        assert [len(x) for x in lists] == [3, 3] and not set(lists[0]) & set(lists[1]), "A13"
        assert first.ni_name == name and int(first.nifp["ni_flags"]) == abi.NI_PRIV_MEM


def test_legacy_descriptor_syncs_like_any_other():
    sw = f"vale{PID}gs"
    with registered("legacy", f"{sw}:a") as a, \
            netmap_core.open(f"{sw}:b", backend="netmap") as b:
        f = frame(BCAST, mac(1), size=100, fill=3)
        tx = a.tx
        tx.fill(1, template=f)
        a.dev.txsync()
        assert recv(b) == [f], "B10: NIOCTXSYNC on a NIOCREGIF descriptor forwards"
        b.tx_rings[0].fill(2, template=frame(BCAST, mac(2), fill=9))
        b.txsync()
        a.dev.rxsync()
        assert a.rx.space() == 2
        assert a.dev.poll(select.POLLIN, 0) & select.POLLIN, "B13: poll on it too"


def test_legacy_pipe_mode_names_the_pipe():
    parent = f"lgp{PID}"
    with registered("legacy", parent, mode=abi.NR_REG_PIPE_MASTER, ringid=3, extra_bufs=2) as m, \
            registered("ctrl", f"{parent}{{3") as m2:
        assert m.ni_name == f"{parent}{{3", "C9: legacy pipe mode 5, ring 3 -> NAME{3"
        assert (m.info.offset, m.info.extra_bufs) == (0, 2)
        same_registration(m, m2)
        with netmap_core.open(f"netmap:{parent}}}3", backend="netmap") as s:
            assert (s.info.mem_id, s.info.offset) == (m.info.mem_id, 2048), "F4: the slave's peer"
            f = frame(BCAST, mac(3), size=70)
            m.tx.fill(1, template=f)
            m.dev.txsync()
            assert recv(s) == [f]


@pytest.mark.kernel_warnings(r"Minimum supported API is 14 \(requested 13\)")
def test_legacy_version_and_name_limits():
    name = f"vale{PID}gv:a"
    req = rq.legacy_register(name)
    req["nr_version"] = 200
    dev = Device()
    try:
        dev.regif_legacy(req)   # C1: the legacy ioctls accept any nr_version >= 14
        assert rq.decode_legacy_register(req).tx_slots == 1024
    finally:
        dev.close()
    req = rq.legacy_register(name)
    req["nr_version"] = 13
    dev = Device()
    try:
        with pytest.raises(InvalidRequestError):
            dev.regif_legacy(req)   # C1: below 14 -> EINVAL
    finally:
        dev.close()
    # C9: the pipe suffix is appended in the 64-byte NIOCCTRL header, not in the legacy 16-byte
    # name, so a 15-character parent still gets its pipe (ni_name keeps 15 characters, A8)
    parent = f"lgl{PID}".ljust(15, "q")
    with registered("legacy", parent, mode=abi.NR_REG_PIPE_SLAVE, ringid=12) as s, \
            registered("ctrl", f"{parent}}}12") as s2:
        assert s.ni_name == parent and s2.ni_name == parent
        same_registration(s, s2)
