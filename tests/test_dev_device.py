"""The netmap backend's plumbing without /dev/netmap: a recording stand-in for the system calls.

The stand-in reads each request through the user pointers the backend built (as the kernel
does) and answers with scripted values; it makes no claim about kernel semantics. What is
checked is the backend's side: what it sends, how it maps, shares and releases memory, when it
calls which ioctl, and what strict mode refuses before any syscall.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select

import numpy as np
import pytest

from layout import build
from netmap_core import abi
from netmap_core.control import ListEntry
from netmap_core.errors import (
    ClosedPortError,
    InvalidRequestError,
    NetmapOSError,
    NoSuchPortError,
    NotSupportedError,
    RingProtocolError,
)
from netmap_core.port import Port
from netmap_core.portspec import Conf, ExtMem, Offset, PortSpec
from netmap_dev import Device, Mapping, MemoryRegistry, NetmapBackend, requests as rq
from netmap_dev.control import DevControl


def spec(name: str = "vale0:a", mode: int = abi.NR_REG_ALL_NIC, **kw) -> PortSpec:
    return PortSpec(text=kw.pop("text", name), name=name, mode=mode, **kw)


class Seen:
    """One NIOCCTRL as the stand-in read it through the pointers."""

    def __init__(self, buf) -> None:
        self.header = np.frombuffer(bytes(buf), abi.nmreq_header)[0].copy()
        self.reqtype = int(self.header["nr_reqtype"])
        self.name = bytes(self.header["nr_name"]).decode()
        self.body_addr = int(self.header["nr_body"])
        size = abi.NMREQ_BODY_SIZE.get(self.reqtype, 0)
        dtype = abi.NMREQ_BODY_DTYPE.get(self.reqtype)
        self.body = (np.frombuffer(ctypes.string_at(self.body_addr, size), dtype)[0].copy()
                     if self.body_addr and dtype is not None else None)
        self.options: list[tuple[int, np.void]] = []
        nxt = int(self.header["nr_options"])
        while nxt:
            head = np.frombuffer(ctypes.string_at(nxt, 24), abi.nmreq_option)[0]
            dtype = abi.NMREQ_OPT_DTYPE.get(int(head["nro_reqtype"]), abi.nmreq_option)
            raw = ctypes.string_at(nxt, dtype.itemsize)
            self.options.append((nxt, np.frombuffer(raw, dtype)[0].copy()))
            nxt = int(head["nro_next"])

    def reply(self, **values) -> None:
        """Write body fields back through nr_body (copyout)."""
        for k, v in values.items():
            self.body[k] = v
        ctypes.memmove(self.body_addr, self.body.tobytes(), self.body.dtype.itemsize)

    def option_status(self, index: int, status: int) -> None:
        ctypes.memmove(self.options[index][0] + 12, status.to_bytes(4, "little"), 4)


class FakeOps:
    """Records every call; answers NIOCCTRL with ``handlers[reqtype](seen, fd)``."""

    def __init__(self, region: bytes = b"") -> None:
        self.calls: list[tuple] = []
        self.seen: list[Seen] = []
        self.handlers: dict = {}
        self.on_sync = None
        self.region = region
        self.revents = 0
        self._next = 100
        self.open_fds: set[int] = set()
        self.maps: list[Mapping] = []

    def open(self, path):
        self._next += 1
        self.open_fds.add(self._next)
        self.calls.append(("open", path, self._next))
        return self._next

    def close(self, fd):
        self.open_fds.remove(fd)
        self.calls.append(("close", fd))

    def ioctl(self, fd, request, buf):
        self.calls.append(("ioctl", fd, request))
        if request == abi.NIOCCTRL:
            seen = Seen(buf)
            self.seen.append(seen)
            handler = self.handlers.get(seen.reqtype)
            if handler is None:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            handler(seen, fd)
            buf[:] = np.frombuffer(seen.header.tobytes(), np.uint8)  # header copied back
        elif self.on_sync is not None:
            self.on_sync(fd, request)

    def sync(self, fd, request):
        self.ioctl(fd, request, None)

    def poll(self, fd, events, timeout_ms):
        self.calls.append(("poll", fd, events, timeout_ms))
        return self.revents

    def mmap(self, fd, length, what):
        m = Mapping.anonymous(length, what)
        m.array[:len(self.region)] = np.frombuffer(self.region, np.uint8)
        m.via_fd = fd
        self.maps.append(m)
        self.calls.append(("mmap", fd, length))
        return m

    def remap(self, mapping, fd):
        self.calls.append(("remap", fd))
        mapping.via_fd = fd

    def map_file(self, path):
        self.calls.append(("map_file", path))
        return Mapping.of_file(path)

    def kinds(self) -> list[str]:
        return [c[0] if c[0] != "ioctl" else _IOCTLS.get(c[2], hex(c[2])) for c in self.calls]


_IOCTLS = {abi.NIOCCTRL: "NIOCCTRL", abi.NIOCTXSYNC: "NIOCTXSYNC", abi.NIOCRXSYNC: "NIOCRXSYNC"}

REGION, _, LAYOUT = build(tx=(8,), rx=(8,))
MEMSIZE = -(-len(REGION) // 4096) * 4096


def register_reply(mem_id=2, **extra):
    def handler(seen: Seen, fd: int) -> None:
        seen.reply(nr_offset=0, nr_memsize=MEMSIZE, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8,
                   nr_rx_slots=8, nr_mem_id=mem_id, **extra)
    return handler


@pytest.fixture
def fake():
    ops = FakeOps(bytes(REGION))
    ops.handlers[abi.NETMAP_REQ_REGISTER] = register_reply()
    return ops


@pytest.fixture
def backend(fake):
    return NetmapBackend("/dev/netmap-fake", fake, MemoryRegistry())


# --- REGISTER -----------------------------------------------------------------------------------

def test_register_sends_the_spec_and_maps_the_region(fake, backend):
    s = spec("vale0:a", abi.NR_REG_ONE_NIC, ringid=0, flags=abi.NR_EXCLUSIVE, conf=Conf(tx_slots=8))
    b = backend.register(s, rules="netmap", extra_bufs=4, rx_slots=8)
    (seen,) = fake.seen
    assert (seen.reqtype, seen.name, int(seen.header["nr_version"])) == (1, "vale0:a", 14)
    body = seen.body
    assert (int(body["nr_mode"]), int(body["nr_flags"]), int(body["nr_extra_bufs"]),
            int(body["nr_tx_slots"]), int(body["nr_rx_slots"])) == (4, abi.NR_EXCLUSIVE, 4, 8, 8)
    assert fake.kinds() == ["open", "NIOCCTRL", "mmap"]
    assert (b.info.memsize, b.info.mem_id, b.info.tx_slots, b.info.name) == (MEMSIZE, 2, 8, "vale0:a")
    assert b.fileno() == fake.calls[0][2]
    port = Port(b, s)
    assert [r.num_slots for r in port.tx_rings + port.rx_rings] == [8, 8]
    port.tx_rings[0].fill(1, template=b"x" * 60)
    assert bytes(b.region[:len(REGION)]) != bytes(REGION), "writes go to the mapped region"
    port.close()
    assert fake.kinds()[-1] == "close" and not fake.open_fds


def test_one_mapping_per_mem_id_handed_over_then_retired(fake, backend):
    a = backend.register(spec("vale0:a"), rules="netmap")
    b = backend.register(spec("vale0:b"), rules="netmap")
    fake.handlers[abi.NETMAP_REQ_REGISTER] = register_reply(mem_id=3)
    c = backend.register(spec("vale0:c"), rules="netmap")
    assert [k for k in fake.kinds() if k == "mmap"] == ["mmap", "mmap"], "mem_id 2 mapped once"
    assert a.region.ctypes.data == b.region.ctypes.data != c.region.ctypes.data
    fd_a, fd_b = a.fileno(), b.fileno()
    mapping = backend.registry.get(2)
    assert mapping.via_fd == fd_a
    a.close()
    # the shared mapping moves to b's descriptor before a's closes, so a unregisters at once
    assert fake.calls[-2:] == [("remap", fd_b), ("close", fd_a)]
    assert mapping.via_fd == fd_b and mapping.array is not None
    view = b.region
    n = len(fake.calls)
    b.close()
    assert fake.calls[n:] == [("close", fd_b)], "the last user retires the mapping, no remap"
    assert mapping.array is None and backend.registry.get(2) is None
    assert view[:16].tolist() == [0] * 16, "a stale view reads zeros after retire, no crash"
    c.close()
    a.close()  # idempotent
    assert not fake.open_fds


def test_register_failure_closes_the_descriptor(fake, backend):
    def fail(seen, fd):
        raise OSError(errno.ENXIO, "No such device or address")
    fake.handlers[abi.NETMAP_REQ_REGISTER] = fail
    with pytest.raises(NoSuchPortError, match="NETMAP_REQ_REGISTER on 'eth9' failed with ENXIO") as e:
        backend.register(spec("eth9"), rules="netmap")
    assert e.value.errno == errno.ENXIO
    assert fake.kinds() == ["open", "NIOCCTRL", "close"] and not fake.open_fds


def test_rejected_option_is_named(fake, backend):
    def fail(seen, fd):
        seen.option_status(0, errno.EOPNOTSUPP)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    fake.handlers[abi.NETMAP_REQ_REGISTER] = fail
    with pytest.raises(NotSupportedError, match="option NETMAP_REQ_OPT_OFFSETS: nro_status 95"):
        backend.register(spec("vale0:a", offset=Offset(64)), rules="netmap")
    assert not fake.open_fds


def test_unconsumed_option_after_success_undoes_the_registration(fake, backend):
    ok = register_reply()

    def unconsumed(seen, fd):
        ok(seen, fd)
        seen.option_status(0, errno.EOPNOTSUPP)
    fake.handlers[abi.NETMAP_REQ_REGISTER] = unconsumed
    with pytest.raises(NotSupportedError):
        backend.register(spec("vale0:a", offset=Offset(64)), rules="netmap")
    assert "mmap" not in fake.kinds() and not fake.open_fds


def test_share_resolves_the_mem_id_first(fake, backend):
    def info(seen, fd):
        assert seen.name == "vale0:other"
        seen.reply(nr_memsize=MEMSIZE, nr_mem_id=7)
    fake.handlers[abi.NETMAP_REQ_PORT_INFO_GET] = info
    fake.handlers[abi.NETMAP_REQ_REGISTER] = register_reply(mem_id=7)
    b = backend.register(spec("vale0:a", share="netmap:vale0:other"), rules="netmap")
    assert [s.reqtype for s in fake.seen] == [abi.NETMAP_REQ_PORT_INFO_GET, abi.NETMAP_REQ_REGISTER]
    assert int(fake.seen[1].body["nr_mem_id"]) == 7
    b.close()
    with pytest.raises(InvalidRequestError, match="is in mem_id 7 but mem_id 3 was also asked for"):
        backend.register(spec("vale0:a", share="vale0:other", mem_id=3), rules="netmap")
    assert not fake.open_fds


def test_extmem_region_is_the_file_mapping(fake, backend, tmp_path):
    path = tmp_path / "extmem"
    path.write_bytes(bytes(MEMSIZE))
    got = {}

    def reg(seen, fd):
        (addr, opt), = seen.options
        assert int(opt["nro_opt"]["nro_reqtype"]) == abi.NETMAP_REQ_OPT_EXTMEM
        got["usrptr"], got["memsize"] = int(opt["nro_usrptr"]), int(opt["nro_info"]["nr_memsize"])
        got["buf_num"] = int(opt["nro_info"]["nr_buf_pool_objtotal"])
        ctypes.memmove(got["usrptr"], bytes(REGION), len(REGION))  # the kernel lays out the rings
        register_reply(mem_id=9)(seen, fd)
        seen.option_status(0, 0)
    fake.handlers[abi.NETMAP_REQ_REGISTER] = reg
    b = backend.register(spec("vale0:x", extmem=ExtMem(str(path), buf_num=100)), rules="netmap")
    assert (got["memsize"], got["buf_num"]) == (MEMSIZE, 100)
    assert b.region.ctypes.data == got["usrptr"]
    assert "mmap" not in fake.kinds(), "extmem: /dev/netmap is not mapped"
    Port(b, spec("vale0:x")).tx_rings[0].fill(1, template=b"\xab" * 60)
    b.close()
    assert path.read_bytes()[:len(REGION)] != bytes(REGION), "ring writes reached the file"


def test_register_options_are_checked(backend):
    with pytest.raises(InvalidRequestError, match=r"unknown option\(s\) \['slots'\]"):
        backend.register(spec(), rules="netmap", slots=8)
    with pytest.raises(InvalidRequestError, match="rules='loose'"):
        backend.register(spec(), rules="loose")


# --- syncs, poll and the strict rules -----------------------------------------------------------

def opened(backend, rules, **kw):
    s = spec(**kw)
    b = backend.register(s, rules=rules)
    return b, Port(b, s)


def test_syncs_are_argumentless_ioctls(fake, backend):
    b, port = opened(backend, "netmap")
    port.txsync()
    port.rxsync()
    assert fake.calls[-2:] == [("ioctl", b.fileno(), abi.NIOCTXSYNC), ("ioctl", b.fileno(), abi.NIOCRXSYNC)]
    fake.on_sync = lambda fd, req: (_ for _ in ()).throw(OSError(errno.ENXIO, "x"))
    with pytest.raises(NoSuchPortError, match="NIOCRXSYNC on 'vale0:a' failed with ENXIO"):
        port.rxsync()
    port.close()
    with pytest.raises(ClosedPortError):
        b.txsync()


@pytest.mark.parametrize("timeout,ms", [(None, None), (0, 0), (0.0001, 1), (1.5, 1500)])
def test_poll_timeout_in_seconds(fake, backend, timeout, ms):
    b, port = opened(backend, "netmap")
    fake.revents = select.POLLOUT
    assert port.poll(select.POLLOUT, timeout) == select.POLLOUT
    assert fake.calls[-1] == ("poll", b.fileno(), select.POLLOUT, ms)


def test_netmap_rules_let_the_kernel_judge(fake, backend):
    b, port = opened(backend, "netmap")
    tx = port.tx_rings[0]
    tx.header["head"] = 100   # raw: the setter refuses it
    port.txsync()
    assert fake.kinds()[-1] == "NIOCTXSYNC"


def test_strict_tx_refuses_before_the_syscall(fake, backend):
    b, port = opened(backend, "strict")
    tx = port.tx_rings[0]
    n = len(fake.calls)
    tx.header["head"] = tx.header["cur"] = 8   # raw: the setters refuse 8
    with pytest.raises(RingProtocolError, match=r"vale0:a:tx0: head=8 is illegal; allowed: \[0, 7\]"):
        port.txsync()
    tx.head, tx.cur = 3, 2
    with pytest.raises(RingProtocolError, match="cur=2"):
        port.txsync()
    assert len(fake.calls) == n, "nothing reached the kernel"
    tx.cur = 3
    fake.on_sync = lambda fd, req: b.region.__setitem__(
        slice(tx.offset + 28, tx.offset + 32), np.frombuffer((2).to_bytes(4, "little"), np.uint8))
    port.txsync()   # stand-in "kernel" leaves tail at 2 (= head - 1)
    assert fake.kinds()[-1] == "NIOCTXSYNC" and tx.tail == 2
    tx.head = tx.cur = 1   # wraps from 3 over 7 to 1: inside [rhead 3, rtail 2]
    port.txsync()
    tx.head = tx.cur = 3   # now rhead 1, rtail 2: 3 is outside
    with pytest.raises(RingProtocolError, match="head=3"):
        port.txsync()


def test_strict_rx_and_poll_check_the_rings_poll_syncs(fake, backend):
    b, port = opened(backend, "strict")
    rx, tx = port.rx_rings[0], port.tx_rings[0]
    rx.head = rx.cur = 1   # nothing received: RX tail is 0
    with pytest.raises(RingProtocolError, match="rx0: head=1"):
        port.rxsync()
    with pytest.raises(RingProtocolError, match="rx0: head=1"):
        port.poll(select.POLLIN, 0)
    port.poll(select.POLLOUT, 0)   # poll(POLLOUT) runs no RX part: RX is not checked
    rx.head = rx.cur = 0
    tx.header["head"] = tx.header["cur"] = 9
    with pytest.raises(RingProtocolError, match="tx0: head=9"):
        port.poll(select.POLLIN, 0)   # the TX part runs on every poll without NR_NO_TX_POLL


def test_strict_shadow_is_shared_by_the_descriptors_of_a_ring(fake, backend):
    """Two strict descriptors of one port bind the same rings: what a sync through one hands
    over is legal for the other (the kernel's kring moved for both)."""
    _, p1 = opened(backend, "strict")
    _, p2 = opened(backend, "strict")
    r1, r2 = p1.rx_rings[0], p2.rx_rings[0]
    assert r1.offset == r2.offset and p1.info.mem_id == p2.info.mem_id
    r1.header["tail"] = 3          # what the (fake) kernel's rxsync reports as received
    p1.rxsync()
    r2.head = r2.cur = 2           # release two of them through the other descriptor
    p2.rxsync()
    p1.close()
    r2.head = r2.cur = 3           # the shadow survives the close of one of its holders
    p2.rxsync()
    p2.close()


def test_strict_poll_checks_only_tx_rings_the_kernel_syncs(fake, backend):
    """Without POLLOUT netmap's poll skips a TX ring with nothing to send (head == hwcur), so
    its cur is not checked then (and what the user wrote there is not taken as synced)."""
    _, port = opened(backend, "strict")
    tx = port.tx_rings[0]
    tx.header["cur"] = 9
    port.poll(select.POLLIN, 0)
    assert fake.kinds()[-1] == "poll"
    with pytest.raises(RingProtocolError, match="tx0: cur=9"):
        port.poll(select.POLLOUT, 0)
    port.close()


def test_strict_poll_skips_tx_with_no_tx_poll(fake, backend):
    fake.handlers[abi.NETMAP_REQ_REGISTER] = register_reply(nr_flags=abi.NR_NO_TX_POLL)
    b, port = opened(backend, "strict", flags=abi.NR_NO_TX_POLL)
    port.tx_rings[0].header["head"] = 9
    port.poll(select.POLLIN, 0)
    assert fake.kinds()[-1] == "poll"
    with pytest.raises(RingProtocolError):
        port.poll(select.POLLOUT, 0)


# --- control ------------------------------------------------------------------------------------

def test_control_requests_on_one_unregistered_descriptor(fake):
    def listing(seen, fd):
        seen.header["nr_name"] = b"vale1:b"
        seen.reply(nr_bridge_idx=1, nr_port_idx=0)
    fake.handlers[abi.NETMAP_REQ_VALE_LIST] = listing
    fake.handlers[abi.NETMAP_REQ_PORT_INFO_GET] = lambda s, fd: s.reply(nr_memsize=343019520, nr_mem_id=1)
    ctl = DevControl("/dev/netmap-fake", fake)
    assert ctl.vale_list(bridge_idx=1) == ListEntry("vale1:b", 1, 0)
    info = ctl.port_info()
    assert (info.memsize, info.mem_id) == (343019520, 1)
    assert fake.kinds() == ["open", "NIOCCTRL", "NIOCCTRL"]
    assert int(fake.seen[0].body["nr_bridge_idx"]) == 1
    ctl.close()
    assert not fake.open_fds


def test_failed_control_request_leaves_the_body_as_sent(fake):
    def exists(seen, fd):
        raise OSError(errno.EEXIST, "File exists")
    fake.handlers[abi.NETMAP_REQ_VALE_NEWIF] = exists
    ctl = DevControl("/dev/netmap-fake", fake)
    req = rq.vale_newif("pv0", tx_slots=64)
    sent = req.body_bytes()
    with pytest.raises(NetmapOSError, match="NETMAP_REQ_VALE_NEWIF on 'pv0' failed with EEXIST") as e:
        ctl.request(req)
    assert e.value.errno == errno.EEXIST and req.body_bytes() == sent
    with pytest.raises(NetmapOSError):
        ctl.vale_newif("pv0")
    ctl.close()


def test_device_open_failure_is_typed():
    class Denied(FakeOps):
        def open(self, path):
            raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(NetmapOSError, match="cannot open /dev/x read-write") as e:
        Device("/dev/x", Denied())
    assert e.value.errno == errno.EACCES


# --- real mappings (anonymous memory and memfds, no device) -------------------------------------

def mapped(addr: int) -> bool:
    with open("/proc/self/maps") as f:
        return any(int(line.split("-", 1)[0], 16) == addr for line in f)


def test_mapping_unmaps_when_the_last_view_goes():
    m = Mapping.anonymous(1 << 16)
    view = m.array[100:200]
    view[:] = 7
    addr = m.addr
    m.retire()
    assert m.array is None and view.tolist() == [0] * 100 and mapped(addr)
    del view
    assert not mapped(addr), "the placeholder is unmapped with the last view"


def test_mapping_remap_keeps_the_address():
    a, b = os.memfd_create("nm-a"), os.memfd_create("nm-b")
    try:
        for fd, byte in ((a, b"A"), (b, b"B")):
            os.ftruncate(fd, 8192)
            os.pwrite(fd, byte * 16, 0)
        m = Mapping.of_fd(a, 8192, "memfd")
        view = m.array[:16]
        assert bytes(view) == b"A" * 16
        m.remap(b)
        assert m.via_fd == b and bytes(view) == b"B" * 16
        view[:] = ord("C")
        assert os.pread(b, 16, 0) == b"C" * 16, "the mapping is shared with the file"
        m.retire()
    finally:
        os.close(a)
        os.close(b)


def test_mapping_errors_are_typed(tmp_path):
    with pytest.raises(NetmapOSError, match="mmap of 4096 bytes failed with EBADF"):
        Mapping.of_fd(987654, 4096, "bad fd")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(InvalidRequestError, match="needs a non-empty file"):
        Mapping.of_file(str(empty))
    with pytest.raises(NetmapOSError, match="cannot open read-write") as e:
        Mapping.of_file(str(tmp_path / "missing"))
    assert e.value.errno == errno.ENOENT
