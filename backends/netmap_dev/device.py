"""The system-call edge of the netmap backend: /dev/netmap descriptors, ioctls, poll, mmap.

Everything that touches the kernel goes through one ``SysOps`` object, so tests can inject a
fake one and check the plumbing; regions are mapped once per mem_id and shared (refcounted).
"""
from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import math
import mmap as _mmap
import os
import select
import threading
import weakref

import numpy as np

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, NetmapOSError, error_from_errno

from . import requests

__all__ = ["Mapping", "SysOps", "SYSTEM", "MemoryRegistry", "REGISTRY", "Device"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED = 0x10   # Linux; the mmap module does not export it
_PROT_RW = _mmap.PROT_READ | _mmap.PROT_WRITE
_NIOCTXSYNC, _NIOCRXSYNC = abi.NIOCTXSYNC, abi.NIOCRXSYNC


def _sys_mmap(addr: int | None, length: int, flags: int, fd: int, what: str) -> int:
    got = _libc.mmap(addr, length, _PROT_RW, flags, fd, 0)
    if got is None or got == _MAP_FAILED:
        code = ctypes.get_errno()
        raise error_from_errno(code, f"{what}: mmap of {length} bytes failed with "
                               f"{_errno.errorcode.get(code, code)}")
    return got


def _munmap_quietly(addr: int, length: int) -> None:
    _libc.munmap(addr, length)


def errno_of(exc: OSError) -> int:
    """The errno of a failed system call. OSError.errno is None only for an OSError made
    without one, which no system call raises."""
    assert exc.errno is not None, f"{exc!r} carries no errno"
    return exc.errno


class Mapping:
    """One mapping of an allocator region (or of an ``@extmem`` file) at a fixed address.

    We call mmap ourselves rather than use the ``mmap`` module: its objects keep a duplicate
    of the descriptor (which would keep the port registered after close) and cannot be closed
    while numpy views exist. ``array`` is a writable uint8 view; every ring and buffer view
    derived from it keeps the address range reserved, and the range is unmapped only when the
    last such view is gone. ``retire()`` releases the netmap memory at once: the range is
    replaced by zero-filled private memory, so stale views read zeros instead of crashing.
    """

    __slots__ = ("addr", "length", "array", "via_fd", "users", "what", "__weakref__")

    def __init__(self, addr: int, length: int, via_fd: int | None, what: str) -> None:
        self.addr = addr
        self.length = length
        self.via_fd = via_fd     # the descriptor the kernel sees this mapping through
        self.what = what
        self.users: list[Device] = []    # owners (devices) sharing it, see MemoryRegistry
        buf = (ctypes.c_ubyte * length).from_address(addr)
        weakref.finalize(buf, _munmap_quietly, addr, length)
        # through a memoryview (which holds buf): numpy's stubs do not take ctypes arrays
        self.array: np.ndarray | None = np.frombuffer(memoryview(buf), dtype=np.uint8)

    @classmethod
    def of_fd(cls, fd: int, length: int, what: str) -> Mapping:
        """Map ``length`` bytes of a registered /dev/netmap descriptor at offset 0 (shared)."""
        return cls(_sys_mmap(None, length, _mmap.MAP_SHARED, fd, what), length, fd, what)

    @classmethod
    def anonymous(cls, length: int, what: str = "anonymous") -> Mapping:
        return cls(_sys_mmap(None, length, _mmap.MAP_SHARED | _mmap.MAP_ANONYMOUS, -1, what),
                   length, None, what)

    @classmethod
    def of_file(cls, path: str) -> Mapping:
        """Map a whole file shared, read-write (``@extmem:file=``); the descriptor is closed."""
        what = f"@extmem file {path!r}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise error_from_errno(errno_of(exc), f"{what}: cannot open read-write: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size <= 0:
                raise InvalidRequestError(_errno.EINVAL, f"{what}: size {size}; an extmem region "
                                          "needs a non-empty file")
            return cls(_sys_mmap(None, size, _mmap.MAP_SHARED, fd, what), size, None, what)
        finally:
            os.close(fd)

    def remap(self, fd: int) -> None:
        """Re-map the same range through another descriptor of the same allocator."""
        _sys_mmap(self.addr, self.length, _mmap.MAP_SHARED | _MAP_FIXED, fd, self.what)
        self.via_fd = fd

    def retire(self) -> None:
        """Drop the mapped memory now (see the class docstring). Idempotent."""
        if self.array is None:
            return
        try:
            _sys_mmap(self.addr, self.length, _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS | _MAP_FIXED,
                      -1, self.what)
        except OSError:
            pass  # keep the mapping: it goes when the last view does, nothing is left dangling
        self.array = None
        self.via_fd = None

    def __repr__(self) -> str:
        state = "retired" if self.array is None else f"via fd {self.via_fd}"
        return f"<Mapping {self.what} {self.length} B at {self.addr:#x} {state} users={len(self.users)}>"


class SysOps:
    """The real system calls. Tests substitute an object with the same methods."""

    def open(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, buf: np.ndarray | None) -> None:
        """``buf`` None: an argument-less ioctl (the syncs); otherwise a writable buffer the
        kernel reads and whose new contents are copied back."""
        if buf is None:
            fcntl.ioctl(fd, request)
        else:
            fcntl.ioctl(fd, request, buf.data, True)   # the array's own memory, as a memoryview

    #: an argument-less ioctl (NIOCTXSYNC, NIOCRXSYNC): fcntl.ioctl itself, so a sync adds no
    #: Python call level (each costs microseconds on an emulated CPU, once a batch)
    sync = staticmethod(fcntl.ioctl)

    def poll(self, fd: int, events: int, timeout_ms: int | None) -> int:
        p = select.poll()
        p.register(fd, events)
        revents = 0
        for _, ev in p.poll(timeout_ms):
            revents |= ev
        return revents

    def mmap(self, fd: int, length: int, what: str) -> Mapping:
        return Mapping.of_fd(fd, length, what)

    def remap(self, mapping: Mapping, fd: int) -> None:
        mapping.remap(fd)

    def map_file(self, path: str) -> Mapping:
        return Mapping.of_file(path)


SYSTEM = SysOps()


class MemoryRegistry:
    """One mapping per mem_id in the process, shared by every registration of that allocator
    (as libnetmap does), so rings of different ports address one buffer pool.

    A mapping made through descriptor A keeps A's registration alive in the kernel; when A
    closes while others still use the mapping, it is re-mapped in place through a remaining
    descriptor, so closing a port unregisters it at once.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, Mapping] = {}
        self._lock = threading.Lock()

    def acquire(self, mem_id: int, length: int, device: Device) -> Mapping:
        """The mapping of ``mem_id`` (mapping it through ``device`` if there is none yet)."""
        with self._lock:
            m = self._by_id.get(mem_id)
            if m is None or m.length < length:
                m = device.mmap(length, f"/dev/netmap region of mem_id {mem_id}")
                self._by_id[mem_id] = m
            m.users.append(device)
            return m

    def adopt(self, mem_id: int, mapping: Mapping, device: Device) -> Mapping:
        """Make an ``@extmem`` mapping the region of ``mem_id``."""
        with self._lock:
            self._by_id[mem_id] = mapping
            mapping.users.append(device)
            return mapping

    def release(self, mem_id: int, mapping: Mapping, device: Device) -> None:
        with self._lock:
            mapping.users.remove(device)
            if not mapping.users:
                if self._by_id.get(mem_id) is mapping:
                    del self._by_id[mem_id]
                mapping.retire()
            elif mapping.via_fd == device.fd:
                try:
                    mapping.users[0].remap(mapping)
                except OSError:
                    pass  # still correct: this registration lingers until the mapping goes

    def get(self, mem_id: int) -> Mapping | None:
        return self._by_id.get(mem_id)


REGISTRY = MemoryRegistry()


class Device:
    """One open /dev/netmap file descriptor (one registration at most, as in netmap)."""

    def __init__(self, path: str = abi.NETMAP_DEVICE_NAME, ops: SysOps = SYSTEM) -> None:
        self.ops = ops
        self.path = path
        self.label = path   # what errors call it; the port name once registered
        try:
            self.fd = ops.open(path)
        except OSError as exc:
            raise error_from_errno(errno_of(exc), f"cannot open {path} read-write: {exc.strerror}") from None

    def ctrl(self, req: requests.Request) -> None:
        """NIOCCTRL: the kernel reads the header, body and options; on success the body and
        consumed options hold the results. Raises the typed error of the kernel's errno."""
        try:
            self.ops.ioctl(self.fd, abi.NIOCCTRL, req.header.view(np.uint8))
        except OSError as exc:
            raise requests.error_for(req, errno_of(exc)) from None
        requests.check_options(req)

    def regif_legacy(self, nmreq: np.ndarray) -> None:
        """Legacy NIOCREGIF with a ``struct nmreq`` (see requests.legacy_register)."""
        try:
            self.ops.ioctl(self.fd, abi.NIOCREGIF, nmreq.view(np.uint8))
        except OSError as exc:
            code = errno_of(exc)
            raise error_from_errno(code, f"NIOCREGIF on {self.path} failed with "
                                   f"{_errno.errorcode.get(code, code)}") from None

    def _sync_error(self, exc: OSError, what: str) -> NetmapOSError:
        code = errno_of(exc)
        return error_from_errno(code, f"{what} on {self.label!r} failed with "
                                f"{_errno.errorcode.get(code, code)}")

    def txsync(self) -> None:
        """NIOCTXSYNC: one non-blocking syscall over every bound TX ring."""
        try:
            self.ops.sync(self.fd, _NIOCTXSYNC)
        except OSError as exc:
            raise self._sync_error(exc, "NIOCTXSYNC") from None

    def rxsync(self) -> None:
        """NIOCRXSYNC: one non-blocking syscall over every bound RX ring."""
        try:
            self.ops.sync(self.fd, _NIOCRXSYNC)
        except OSError as exc:
            raise self._sync_error(exc, "NIOCRXSYNC") from None

    def poll(self, events: int, timeout: float | None) -> int:
        """poll(2) on the descriptor; ``timeout`` in seconds (None: forever). Returns revents."""
        ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
        return self.ops.poll(self.fd, events, ms)

    def mmap(self, length: int, what: str) -> Mapping:
        return self.ops.mmap(self.fd, length, what)

    def remap(self, mapping: Mapping) -> None:
        self.ops.remap(mapping, self.fd)

    def close(self) -> None:
        """Close the descriptor: the kernel unregisters the port. Idempotent."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.ops.close(fd)

    def __repr__(self) -> str:
        return f"<Device {self.path} fd={self.fd} {self.label!r}>"
