"""Facts only the real /dev/netmap can confirm: the spec's "Live checks" run against the device.

Every test names the spec item it checks; all are skipped without /dev/netmap. Names carry the
process id, so two test processes on one machine do not share switches or pipes.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time

import numpy as np
import pytest

import netmap_core
from netmap_core import abi
from netmap_core.errors import (
    InvalidRequestError,
    NetmapOSError,
    NoSuchPortError,
    NotSupportedError,
    OutOfMemoryError,
    PortBusyError,
    RingProtocolError,
)
from netmap_core.portspec import Conf, PortSpec
from netmap_dev import BACKEND, Device, Mapping, requests as rq

OK, WHY = BACKEND.probe()
pytestmark = [pytest.mark.netmap, pytest.mark.skipif(not OK, reason=f"needs /dev/netmap ({WHY})")]

PID = os.getpid() % 100000
POLLIN, POLLOUT, POLLERR = select.POLLIN, select.POLLOUT, select.POLLERR


def sw(tag: str) -> str:
    """A switch name private to this process."""
    return f"vale{PID}{tag}"


def pspec(name: str, mode: int = abi.NR_REG_ALL_NIC, **kw) -> PortSpec:
    return PortSpec(text=name, name=name, mode=mode, **kw)


def open_port(stack: contextlib.ExitStack, name: str, *, rules: str = "netmap", extra_bufs=None, **kw):
    opts = {} if extra_bufs is None else {"extra_bufs": extra_bufs}
    return stack.enter_context(netmap_core.open(pspec(name, **kw), backend="netmap", rules=rules, **opts))


def frame(src: int, dst: bytes = b"\xff" * 6, size: int = 60) -> bytes:
    return (dst + bytes([2, 0, 0, 0, 0, src]) + b"\x08\x00").ljust(size, b"\0")


def hct(ring) -> tuple[int, int, int]:
    return ring.head, ring.cur, ring.tail


@pytest.fixture
def ctl():
    c = BACKEND.control()
    yield c
    c.close()


# --- Live check 1: layout after REGISTER -----------------------------------------------------

def test_fresh_vale_port_layout(ctl):
    name = f"{sw('L')}:a"
    with contextlib.ExitStack() as st:
        p = open_port(st, name)
        i = p.info
        assert i.offset == 0, "Live check 1 / A8: the first netmap_if of a new allocator is at 0"
        assert i.memsize == 42_369_024, "Live check 1 / A3: default ephemeral VALE port memsize"
        assert i.mem_id > 1, "A18: an ephemeral VALE port gets a private allocator"
        assert (i.tx_rings, i.rx_rings, i.tx_slots, i.rx_slots, i.host_tx_rings, i.host_rx_rings) == (
            1, 1, 1024, 1024, 0, 0), "Live check 1 / E4: VALE defaults, REGISTER reports no host rings"
        pools = ctl.pools_info(name)
        assert (pools.if_pool_offset, pools.if_pool_objtotal, pools.if_pool_objsize,
                pools.ring_pool_offset, pools.ring_pool_objtotal, pools.ring_pool_objsize,
                pools.buf_pool_offset, pools.buf_pool_objtotal, pools.buf_pool_objsize) == (
            0, 12, 1024, 12_288, 20, 20_480, 421_888, 20_482, 2048), "Live check 1 / A1, A5: pools"
        nifp = p.nifp
        assert p.name == name, "A8: ni_name is the port name"
        assert (int(nifp["ni_flags"]), int(nifp["ni_tx_rings"]), int(nifp["ni_rx_rings"]),
                int(nifp["ni_host_tx_rings"]), int(nifp["ni_host_rx_rings"]),
                int(nifp["ni_bufs_head"])) == (abi.NI_PRIV_MEM, 1, 1, 1, 1, 0), \
            "A8: NI_PRIV_MEM, host rings reported as 1 in the netmap_if, no extra buffers"
        assert p.ring_ofs.tolist() == [32_768, 0, 12_288, 0], "Live check 1 / A8: ring_ofs"
        rx, tx = p.rx_rings[0], p.tx_rings[0]
        for ring, off, buf_ofs, d, state, first in ((rx, 12_288, 409_600, abi.NR_RX, (0, 0, 0), 2),
                                                     (tx, 32_768, 389_120, abi.NR_TX, (0, 0, 1023), 1026)):
            assert ring.offset == off, f"Live check 1 / A7: {ring.name} region offset"
            assert int(ring.header["buf_ofs"]) == buf_ofs, f"A10: {ring.name} buf_ofs is ring-relative"
            assert (ring.num_slots, ring.buf_size, ring.ringid, ring.dir) == (1024, 2048, 0, d), \
                f"A10/A11: {ring.name} header (dir TX=1, RX=0)"
            assert hct(ring) == state, f"A10: {ring.name} head/cur/tail after bind"
            assert ring.slots["buf_idx"].tolist() == list(range(first, first + 1024)), \
                f"A7: {ring.name} buffers (RX rings first, first-fit from 2)"
            assert set(ring.slots["len"].tolist()) == {2048} and not ring.slots["flags"].any() \
                and not ring.slots["ptr"].any(), f"A7: {ring.name} fresh slots len 2048, flags 0, ptr 0"
        again = open_port(st, name)
        assert again.info.offset == 1024, "Live check 1 / A16: a second fd gets a new netmap_if"
        assert again.ring_ofs.tolist() == [31_744, 0, 11_264, 0], "Live check 1: ring_ofs of the 2nd fd"
        assert again.region.ctypes.data == p.region.ctypes.data, "one mapping per mem_id (A15)"


def test_extra_buffers_list(ctl):
    with contextlib.ExitStack() as st:
        p = open_port(st, f"{sw('X')}:a", extra_bufs=10)
        assert p.info.extra_bufs == 10 and p.info.memsize == 42_389_504, "Live check 2 / A13"
        assert p.extra_buffers() == list(range(2059, 2049, -1)), "Live check 2: list 2059 .. 2050"
        q = open_port(st, f"{sw('X')}:a", extra_bufs=5)
        assert q.extra_buffers() == list(range(2064, 2059, -1)), "Live check 2: second fd 2064 .. 2060"


# --- Live check 3 / F5: pipe slot exchange on 8 slots ----------------------------------------

def pipe_pair(st, tag: str, **master_kw):
    parent = f"pyp{PID}{tag}"
    master = open_port(st, f"{parent}{{1", conf=Conf(tx_slots=8, rx_slots=8), **master_kw)
    slave = open_port(st, f"{parent}}}1", extra_bufs=1)
    return master, slave


def test_pipe_f5_exchange():
    with contextlib.ExitStack() as st:
        master, slave = pipe_pair(st, "e", extra_bufs=1)
        assert master.info.mem_id == slave.info.mem_id, "F4: both ends share the parent's allocator"
        mtx, srx = master.tx_rings[0], slave.rx_rings[0]
        assert mtx.num_slots == srx.num_slots == 8, "A5/F3: the slot hint is honoured"
        assert hct(mtx) == (0, 0, 7) and hct(srx) == (0, 0, 0), "F8: rings start normal"
        extra = master.extra_buffers()[0]
        for i in range(5):
            mtx.slots[i]["len"] = 60 + i
            mtx.slots[i]["flags"] = 0
        old2 = int(mtx.slots[2]["buf_idx"])
        mtx.slots[2]["buf_idx"], mtx.slots[2]["flags"] = extra, abi.NS_BUF_CHANGED
        master.bufs_head = old2
        mtx.buffers[old2, :4] = 0
        mtx.slots[4]["flags"] = abi.NS_REPORT
        sent = [(int(mtx.slots[i]["buf_idx"]), 60 + i, int(mtx.slots[i]["flags"])) for i in range(5)]
        mtx.advance(5)
        master.txsync()
        assert hct(mtx) == (5, 5, 7), "F5: the sender's tail does not move at its own txsync"
        assert not mtx.slots[2]["flags"] & abi.NS_BUF_CHANGED, "F5/B11: NS_BUF_CHANGED cleared on TX"
        got = [(int(s["buf_idx"]), int(s["len"]), int(s["flags"])) for s in srx.slots[:5]]
        assert got == sent, "F5: slots copied to the peer RX ring at the sender's txsync (flags too)"
        assert srx.tail == 0, "F5: the receiver sees them only after its own rxsync"
        slave.rxsync()
        assert srx.tail == 5, "F5: receiver tail 0 -> 5"
        mine = slave.extra_buffers()[0]
        srx.slots[0]["buf_idx"], srx.slots[0]["flags"] = mine, abi.NS_BUF_CHANGED
        slave.bufs_head = sent[0][0]
        srx.buffers[sent[0][0], :4] = 0
        srx.advance(3)
        slave.rxsync()
        master.txsync()
        assert mtx.tail == 2, "F5: sender tail = one before the first unreleased slot"
        back = [(int(s["buf_idx"]), int(s["len"]), int(s["flags"])) for s in mtx.slots[:3]]
        assert back == [(mine, 60, abi.NS_BUF_CHANGED), (sent[1][0], 61, 0),
                        (sent[2][0], 62, abi.NS_BUF_CHANGED)], "F5: released RX slots copied back"
        assert mtx.space() == 5
        mtx.fill(5, template=frame(1))
        master.txsync()
        slave.rxsync()
        assert srx.space() == 7, "F5/L3: at most n-1 = 7 slots in flight"
        assert mtx.space() == 0
        srx.advance(7)
        slave.rxsync()
        master.txsync()
        assert mtx.tail == (mtx.head - 1) % 8, "F5: after a full release the sender's tail is head-1"


def test_pipe_f5_incomplete_packet_stays_invisible():
    with contextlib.ExitStack() as st:
        master, slave = pipe_pair(st, "f")
        mtx, srx = master.tx_rings[0], slave.rx_rings[0]
        flags = [0, 0, abi.NS_MOREFRAG, 0, abi.NS_MOREFRAG]
        mtx.slots["len"][:5] = 60
        mtx.slots["flags"][:5] = flags
        mtx.advance(5)
        master.txsync()
        slave.rxsync()
        assert srx.tail == 4, "F5: a trailing NS_MOREFRAG fragment stays invisible (tail 4)"
        mtx.slots["len"][5], mtx.slots["flags"][5] = 60, 0
        mtx.advance(1)
        master.txsync()
        slave.rxsync()
        assert srx.tail == 6, "F5: completing the packet publishes it (tail 6)"


# --- Live check 5: sync-rule violations in both rules modes ------------------------------------

@contextlib.contextmanager
def violation_setup(rules: str, tag: str):
    """VALE port ``a`` with 8 slots: TX h/c/t 3/3/2 and RX 0/0/3, plus a sender/receiver ``b``."""
    with contextlib.ExitStack() as st:
        s = sw(tag)
        a = open_port(st, f"{s}:a", rules=rules, conf=Conf(tx_slots=8, rx_slots=8))
        b = open_port(st, f"{s}:b")
        a.tx_rings[0].fill(3, template=frame(1))
        a.txsync()
        b.tx_rings[0].fill(3, template=frame(2))
        b.txsync()
        a.rxsync()
        b.rxsync()
        atx, arx = a.tx_rings[0], a.rx_rings[0]
        assert hct(atx) == (3, 3, 2) and hct(arx) == (0, 0, 3), "Live check 5: state before"
        for i in (3, 4, 5, 6, 7, 0, 1):   # the slots a owns get valid frames (len 60)
            atx.buffers[int(atx.slots[i]["buf_idx"]), :60] = np.frombuffer(frame(1), np.uint8)
            atx.slots[i]["len"], atx.slots[i]["flags"] = 60, 0
        yield a, b


def received(b) -> int:
    before = b.rx_rings[0].tail
    b.rxsync()
    return (b.rx_rings[0].tail - before) % b.rx_rings[0].num_slots


def set_tail(ring, value: int) -> None:
    ring.header["tail"] = value


# (id, head, cur, netmap: ring after, frames sent; strict: field refused or None = accepted)
TX_ROWS = [
    ("head-8", 8, 8, (3, 3, 2), 0, "head"),
    ("head-100", 100, 100, (3, 3, 2), 0, "head"),
    ("head5-cur4", 5, 4, (5, 4, 2), 0, "cur"),
    ("head5-cur100", 5, 100, (5, 100, 4), 2, "cur"),
    ("head1-wraps", 1, 1, (1, 1, 0), 6, None),
]


@pytest.mark.parametrize("rules", ["netmap", "strict"])
@pytest.mark.parametrize("case,head,cur,after,sent,refused", TX_ROWS, ids=[r[0] for r in TX_ROWS])
def test_tx_violation_rows(rules, case, head, cur, after, sent, refused):
    with violation_setup(rules, "t") as (a, b):
        atx = a.tx_rings[0]
        atx.header["head"], atx.header["cur"] = head, cur   # raw: may be >= num_slots on purpose
        if rules == "strict" and refused:
            with pytest.raises(RingProtocolError, match=f"{refused}=") as e:
                a.txsync()
            assert e.value.field == refused, f"Live check 5 TX {case}: strict names {refused}"
            assert hct(atx) == (head, cur, 2) and received(b) == 0, \
                f"Live check 5 TX {case}: strict refuses before the kernel sees anything"
            return
        a.txsync()   # rc 0 in every row (B8)
        assert hct(atx) == after, f"Live check 5 TX {case}: ring afterwards (B6/B8)"
        assert received(b) == sent, f"Live check 5 TX {case}: frames forwarded"
        if case == "head5-cur4":
            a.txsync()
            assert hct(atx) == after and received(b) == 0, "B8: the adopted values fail again"


def test_tx_tail_overwrite_is_restored():
    for rules in ("netmap", "strict"):
        with violation_setup(rules, "w") as (a, b):
            atx = a.tx_rings[0]
            atx.head = atx.cur = 5
            set_tail(atx, 100)
            a.txsync()
            assert hct(atx) == (5, 5, 4) and received(b) == 2, \
                f"Live check 5 ({rules}): overwritten tail restored, frames sent normally (B6)"


RX_ROWS = [
    ("head-5", 5, 5, (5, 5, 3), "head"),
    ("head-8", 8, 8, (0, 0, 3), "head"),
    ("head-100", 100, 100, (0, 0, 3), "head"),
    ("head2-cur1", 2, 1, (2, 1, 3), "cur"),
    ("head1-cur5", 1, 5, (1, 5, 3), "cur"),
]


@pytest.mark.parametrize("rules", ["netmap", "strict"])
@pytest.mark.parametrize("case,head,cur,after,refused", RX_ROWS, ids=[r[0] for r in RX_ROWS])
def test_rx_violation_rows(rules, case, head, cur, after, refused):
    with violation_setup(rules, "r") as (a, b):
        arx = a.rx_rings[0]
        arx.header["head"], arx.header["cur"] = head, cur   # raw: may be >= num_slots on purpose
        if rules == "strict":
            with pytest.raises(RingProtocolError) as e:
                a.rxsync()
            assert e.value.field == refused, f"Live check 5 RX {case}: strict names {refused}"
            assert hct(arx) == (head, cur, 3), f"Live check 5 RX {case}: nothing touched"
            return
        a.rxsync()
        assert hct(arx) == after, f"Live check 5 RX {case}: ring afterwards (B7/B8)"


@pytest.mark.parametrize("direction,head,cur,events", [
    ("tx", 8, 8, POLLOUT | POLLERR), ("tx", 5, 4, POLLOUT | POLLERR),
    ("rx", 5, 5, POLLIN | POLLERR), ("rx", 8, 8, POLLIN | POLLERR)])
def test_violation_poll_revents(direction, head, cur, events):
    with violation_setup("netmap", "p") as (a, b):
        ring = a.tx_rings[0] if direction == "tx" else a.rx_rings[0]
        ring.header["head"], ring.header["cur"] = head, cur   # raw: may be >= num_slots
        ask = POLLOUT if direction == "tx" else POLLIN
        assert a.poll(ask, 0) == events, f"Live check 5 / B8: poll adds POLLERR ({direction} {head}/{cur})"


def test_strict_poll_refuses_the_same_rows():
    with violation_setup("strict", "q") as (a, b):
        a.tx_rings[0].header["head"] = a.tx_rings[0].header["cur"] = 8   # raw: the setters refuse 8
        with pytest.raises(RingProtocolError):
            a.poll(POLLOUT, 0)


# --- Live check 6: poll -------------------------------------------------------------------------

def test_poll_readiness_rules():
    with contextlib.ExitStack() as st:
        s = sw("P")
        a = open_port(st, f"{s}:a")
        b = open_port(st, f"{s}:b")
        atx, brx = a.tx_rings[0], b.rx_rings[0]
        assert a.poll(POLLOUT, 0) & POLLOUT, "Live check 6 / B13: a fresh TX ring is writable"
        atx.cur = atx.tail
        t0 = time.monotonic()
        assert a.poll(POLLOUT, 0.2) == 0, "Live check 6: cur = tail means not ready"
        assert time.monotonic() - t0 >= 0.15, "Live check 6: the 200 ms timeout was waited"
        atx.cur = atx.head
        atx.fill(1, template=frame(1))
        a.poll(POLLIN, 0)
        assert received(b) == 1, "Live check 6 / B13: poll(POLLIN) flushes pending TX slots"
        atx.fill(1, template=frame(1))
        a.poll(0, 0)
        assert received(b) == 1, "Live check 6: poll with no events flushes too"
        assert brx.head == 0 and brx.tail == 2
        brx.cur = brx.tail
        assert b.poll(POLLIN, 0) == 0, "Live check 6: cur = tail with unreleased slots is not ready"
        atx.fill(1, template=frame(1))
        a.txsync()
        assert b.poll(POLLIN, 0) & POLLIN, "Live check 6: a new frame makes cur != tail"
        assert brx.ts > 0 and atx.ts == 0, "Live check 6 / B16: RX ts set by poll, TX ts stays 0"


def test_no_tx_poll_only_pollout_flushes():
    with contextlib.ExitStack() as st:
        s = sw("N")
        a = open_port(st, f"{s}:a", flags=abi.NR_NO_TX_POLL)
        b = open_port(st, f"{s}:b")
        a.tx_rings[0].fill(1, template=frame(1))
        a.poll(POLLIN, 0)
        assert received(b) == 0, "Live check 6: with NR_NO_TX_POLL poll(POLLIN) does not flush"
        a.poll(POLLOUT, 0)
        assert received(b) == 1, "Live check 6: with NR_NO_TX_POLL poll(POLLOUT) flushes"


def test_pollout_does_not_release_rx():
    with contextlib.ExitStack() as st:
        s = sw("R")
        a = open_port(st, f"{s}:a")
        b = open_port(st, f"{s}:b", conf=Conf(tx_slots=8, rx_slots=8))
        a.tx_rings[0].fill(7, template=frame(1))
        a.txsync()
        b.rxsync()
        brx = b.rx_rings[0]
        assert brx.space() == 7, "E9: 7 frames fill an 8-slot RX ring"
        brx.advance(7)
        b.poll(POLLOUT, 0)
        a.tx_rings[0].fill(3, template=frame(1))
        a.txsync()
        b.rxsync()
        assert brx.tail == 7, "Live check 6: poll(POLLOUT) did not run the RX part, frames dropped"


def test_blocking_poll_wakes_when_the_peer_sends():
    with contextlib.ExitStack() as st:
        s = sw("B")
        a = open_port(st, f"{s}:a")
        b = open_port(st, f"{s}:b")

        def send():
            a.tx_rings[0].fill(1, template=frame(1))
            a.txsync()
        timer = threading.Timer(0.3, send)
        t0 = time.monotonic()
        timer.start()
        revents = b.poll(POLLIN, 5.0)
        elapsed = time.monotonic() - t0
        timer.join()
        assert revents & POLLIN and 0.25 <= elapsed < 2.0, \
            f"Live check 6: blocking poll woke {elapsed:.3f} s after start (expected ~0.3 s)"


def test_unregistered_descriptor():
    dev = Device()
    try:
        assert dev.poll(POLLIN, 0) & POLLERR, "Live check 6 / L9: poll on an unregistered fd"
        with pytest.raises(NoSuchPortError):
            dev.txsync()   # L9 / B10: ENXIO
        with pytest.raises(InvalidRequestError):
            Mapping.of_fd(dev.fd, 4096, "unregistered fd")   # A15: mmap before REGISTER
    finally:
        dev.close()


# --- Live check 7: control requests -------------------------------------------------------------

def test_port_info_get(ctl):
    info = ctl.port_info("")
    assert (info.memsize, info.mem_id) == (343_019_520, 1), \
        "Live check 7 / A3: global allocator with default dev.netmap.* sysctls"
    with pytest.raises(InvalidRequestError):
        ctl.port_info("", mem_id=60000)
    req = rq.port_info_get(f"nosuch{PID}")
    sent = req.body_bytes()
    with pytest.raises(NoSuchPortError):
        ctl.request(req)
    assert req.body_bytes() == sent, "Live check 7 / C3: a failed request leaves the body untouched"
    tmp = ctl.port_info(f"{sw('I')}:tmp")
    assert (tmp.tx_slots, tmp.rx_slots, tmp.tx_rings, tmp.rx_rings, tmp.host_tx_rings,
            tmp.host_rx_rings) == (1024, 1024, 1, 1, 0, 0), "Live check 7: temporary VALE port"
    with pytest.raises(NoSuchPortError):
        ctl.pools_info("")   # Live check 7 / C5: empty name


@pytest.mark.kernel_warnings(r"invalid bridge name vale\d+Z$")
def test_vale_list(ctl):
    with contextlib.ExitStack() as st:
        names = [f"{sw('A')}:a", f"{sw('A')}:b", f"{sw('B')}:c"]
        for n in names:
            open_port(st, n)
        a, b_, c = (ctl.vale_list(n) for n in names)
        assert a.bridge_idx == b_.bridge_idx != c.bridge_idx, "C5: VALE_LIST by name"
        assert (a.port_idx, b_.port_idx, c.port_idx) == (0, 1, 0), "E3: port numbers from 0"
        assert ctl.vale_list(f"{sw('A')}:zz").port_idx == 255, "Live check 7: missing port -> 255"
        found, bridge, port = {}, 0, 0
        while True:
            try:
                e = ctl.vale_list("", bridge_idx=bridge, port_idx=port)
            except NetmapOSError as exc:
                assert exc.errno == errno.ENOENT, "Live check 7: iteration ends with ENOENT"
                break
            found[e.name] = (e.bridge_idx, e.port_idx)
            bridge, port = e.bridge_idx, e.port_idx + 1
        for n, entry in zip(names, (a, b_, c)):
            assert found.get(n) == (entry.bridge_idx, entry.port_idx), f"Live check 7: {n} listed"
    for bad, code in ((f"{sw('Z')}:x", errno.ENOENT), (sw("Z"), errno.ENOENT),
                      ("foo:x", errno.EINVAL)):
        with pytest.raises(NetmapOSError) as e:
            ctl.vale_list(bad)
        assert e.value.errno == code, f"Live check 7: VALE_LIST {bad!r} -> {errno.errorcode[code]}"


def test_vale_newif_attach_detach_delif(ctl):
    ifname = f"pyif{PID}"
    created = ctl.vale_newif(ifname)
    try:
        assert (created.tx_rings, created.rx_rings, created.tx_slots, created.rx_slots) == (1, 1, 1024, 1024)
        assert created.mem_id > 1, "Live check 7: VALE_NEWIF gets a new allocator"
        req = rq.vale_newif(ifname, tx_slots=64)
        sent = req.body_bytes()
        with pytest.raises(NetmapOSError) as e:
            ctl.request(req)
        assert e.value.errno == errno.EEXIST and req.body_bytes() == sent, "Live check 7 / C5: EEXIST"
        with contextlib.ExitStack() as st:
            s = sw("V")
            open_port(st, f"{s}:e")
            assert ctl.vale_attach(f"{s}:{ifname}") == 1, "Live check 7: next free port index"
            with pytest.raises(PortBusyError):
                ctl.vale_attach(f"{s}:{ifname}")
            with pytest.raises(PortBusyError):
                ctl.vale_delif(ifname)   # still attached
            assert ctl.vale_detach(f"{s}:{ifname}") == 1
            with pytest.raises(InvalidRequestError):
                ctl.vale_attach(f"{s}:nosuch{PID}")
    finally:
        ctl.vale_delif(ifname)
    with pytest.raises(NoSuchPortError):
        ctl.vale_delif(ifname)
    with pytest.raises(InvalidRequestError):
        ctl.vale_newif("p" * 16)   # Live check 7 / C5: 16 characters
    clamped = ctl.vale_newif(ifname, tx_rings=20, rx_rings=20, tx_slots=5000, rx_slots=5000)
    try:
        assert (clamped.tx_rings, clamped.tx_slots) == (16, 4096), "C5 / E4: clamps 16 rings, 4096 slots"
    finally:
        ctl.vale_delif(ifname)


def test_port_hdr(ctl):
    with contextlib.ExitStack() as st:
        name = f"{sw('H')}:a"
        open_port(st, name)
        ctl.port_hdr_set(name, 12)
        assert ctl.port_hdr_get(name) == 12, "C5: PORT_HDR_SET then GET"
        with pytest.raises(InvalidRequestError):
            ctl.port_hdr_set(name, 11)


@pytest.mark.parametrize("build,code", [
    (lambda: rq.build(0, "", None, check=False), errno.EINVAL),
    (lambda: rq.build(16, "", None, check=False), errno.EINVAL),
    (lambda: rq.build(99, "", None, check=False), errno.EINVAL),
    (lambda: rq.build(abi.NETMAP_REQ_PORT_INFO_GET, "", np.zeros(1, abi.nmreq_port_info_get),
                      reserved=1), errno.EINVAL),
    pytest.param(lambda: rq.build(abi.NETMAP_REQ_PORT_INFO_GET, "", np.zeros(1, abi.nmreq_port_info_get),
                                  version=13), errno.EINVAL,
                 marks=pytest.mark.kernel_warnings(r"API mismatch: got 13 need 14")),
    pytest.param(lambda: rq.build(abi.NETMAP_REQ_PORT_INFO_GET, "", np.zeros(1, abi.nmreq_port_info_get),
                                  version=16), errno.EINVAL,
                 marks=pytest.mark.kernel_warnings(r"API mismatch: got 16 need 14")),
    (lambda: rq.build(abi.NETMAP_REQ_PORT_INFO_GET, "", None, check=False), errno.EINVAL),
    (lambda: rq.build(abi.NETMAP_REQ_VALE_DELIF, "x", np.zeros(1, abi.nmreq_port_hdr), check=False),
     errno.EINVAL),
], ids=["reqtype-0", "reqtype-16", "reqtype-99", "reserved-1", "version-13", "version-16",
        "null-body", "body-on-delif"])
def test_malformed_requests(ctl, build, code):
    with pytest.raises(NetmapOSError) as e:
        ctl.request(build())
    assert e.value.errno == code, "Live check 7 / C1-C3"


def test_version_15_is_accepted(ctl):
    req = rq.build(abi.NETMAP_REQ_PORT_INFO_GET, "", np.zeros(1, abi.nmreq_port_info_get), version=15)
    assert rq.decode_port_info(ctl.request(req)).mem_id == 1, "Live check 7 / C1: version 15 OK"


def test_register_errors():
    name = f"{sw('E')}:a"
    dev = Device()
    try:
        dev.ctrl(rq.register(pspec(name)))
        with pytest.raises(PortBusyError):
            dev.ctrl(rq.register(pspec(f"{sw('E')}:b")))   # Live check 7 / L9: second REGISTER
    finally:
        dev.close()
    for reqtype, status, cls in ((1000, errno.EOPNOTSUPP, NotSupportedError),
                                 (0, errno.EINVAL, InvalidRequestError)):
        opt = rq.option(reqtype)
        req = rq.build(abi.NETMAP_REQ_REGISTER, name, rq.register(pspec(name)).body, [opt])
        dev = Device()
        try:
            with pytest.raises(cls):
                dev.ctrl(req)
        finally:
            dev.close()
        assert req.option_status() == [(reqtype, status)], f"Live check 7 / C4: option type {reqtype}"


@pytest.mark.kernel_warnings(r"invalid bridge name vale\d+M:n{16}$")
def test_port_name_length_limit():
    s = sw("M")
    with contextlib.ExitStack() as st:
        open_port(st, f"{s}:" + "n" * 15)   # E1: 15 characters after the colon work
    with pytest.raises(OutOfMemoryError), contextlib.ExitStack() as st:
        open_port(st, f"{s}:" + "n" * 16)   # Live check 7 / E1: 16 -> ENOMEM


def test_legacy_regif_matches_nioctrl():
    dev = Device()
    try:
        req = rq.legacy_register(f"{sw('G')}:a"[:15])
        dev.regif_legacy(req)
        info = rq.decode_legacy_register(req)
        assert (info.offset, info.memsize, info.tx_slots, info.rx_rings) == (0, 42_369_024, 1024, 1), \
            "C9: NIOCREGIF registers like NIOCCTRL REGISTER"
    finally:
        dev.close()
