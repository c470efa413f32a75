"""One VALE switch's shared state: a small shm segment (generation counter, lookup name,
learning table) and the fcntl byte that forwarding holds shared and reconfiguration exclusive.

Segment layout (``/<prefix>v<bridge_idx>.<gen>``, 16 KiB)::

    0   u32 magic 'PNMV'   4 u32 version   8 u64 ports_gen (bumped on every port/ring/monitor change)
    16  u64 lookup_gen     24 u64 lookup_errors (batches a lookup failed, any process)
    32..63 reserved
    64  lookup name (utf-8, NUL padded, 256 B): "" = learning bridge, else "module:qualname"
    320 the last lookup failure (utf-8, NUL padded, 192 B; the installer reads it)
    512 learning table (LearningBridge: 1024 + 256 u64 words)

Locking (on the namespace lock file, see :mod:`.namespace`): byte
``VALE_BASE + gen`` is held shared by every forwarding pass and exclusive while ports are
added or removed, so a sender never writes into a ring that is being freed; a dead holder's
lock is dropped by the OS. Forwarding never waits for the namespace lock while holding it.
Both waits are bounded (see :mod:`.namespace`).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import threading

import numpy as np

from netmap_core import abi
from netmap_core.errors import NetmapOSError

from . import namespace as _ns
from .namespace import VALE_BASE
from .segment import create_private_shm, is_ghost, map_private_shm, unlink_segments

__all__ = ["SwitchSeg", "SEG_SIZE", "TABLE_BUCKETS", "TABLE_PORTS", "TABLE_BYTES", "create_seg",
           "attach_seg", "destroy_seg", "segment_name"]

SEG_SIZE = 16384
_SH_NB = fcntl.LOCK_SH | fcntl.LOCK_NB
_MAGIC = 0x564D4E50  # "PNMV"
_LOOKUP_OFS, _LOOKUP_LEN = 64, 256
_ERROR_OFS, _ERROR_LEN = 320, 192
_TABLE_OFS = 512
#: the learning table: ``TABLE_BUCKETS`` MAC entries then ``TABLE_PORTS`` last-source words,
#: u64 each (the learning bridge of :mod:`netmap_emu.datapath.lookup` gives them meaning)
TABLE_BUCKETS = abi.NM_BDG_HASH
TABLE_PORTS = 256
TABLE_BYTES = (TABLE_BUCKETS + TABLE_PORTS) * 8


def segment_name(ns, idx: int, gen: int) -> str:
    return f"/{ns.shm_prefix}v{idx}.{gen}"


class SwitchSeg:
    """A process's mapping of one switch segment plus its per-process thread lock."""

    def __init__(self, ns, name: str, gen: int, mm: mmap.mmap) -> None:
        self.ns = ns
        self.name = name
        self.gen = gen
        self.mm = mm
        self.words = np.frombuffer(mm, dtype=np.uint64, count=4)
        self.table = memoryview(mm)[_TABLE_OFS:_TABLE_OFS + TABLE_BYTES]
        self._table_words = np.frombuffer(self.table, dtype=np.uint64)
        self.lockpos = VALE_BASE + gen
        self.mutex = threading.Lock()   # fcntl locks do not exclude threads of one process

    def forget_port(self, port: int) -> None:
        """Reset port ``port``'s last learned source (its index is being reused by a new port).
        Table entries pointing at the port stay, as in netmap (no ageing)."""
        self._table_words[TABLE_BUCKETS + port] = 0

    def clear_table(self) -> None:
        """Forget everything learned (netmap clears it when the default lookup is restored)."""
        self._table_words[:] = 0

    @property
    def ports_gen(self) -> int:
        return int(self.words[1])

    def bump(self) -> None:
        self.words[1] += np.uint64(1)

    @property
    def lookup_gen(self) -> int:
        return int(self.words[2])

    @property
    def lookup_name(self) -> str:
        raw = bytes(self.mm[_LOOKUP_OFS:_LOOKUP_OFS + _LOOKUP_LEN])
        return raw.split(b"\0", 1)[0].decode()

    def set_lookup_name(self, name: str) -> None:
        data = name.encode()
        if len(data) >= _LOOKUP_LEN:
            raise ValueError(f"lookup name {name!r} longer than {_LOOKUP_LEN - 1} bytes")
        self.mm[_LOOKUP_OFS:_LOOKUP_OFS + _LOOKUP_LEN] = data + bytes(_LOOKUP_LEN - len(data))
        self.words[3] = 0
        self.words[2] += np.uint64(1)

    @property
    def lookup_errors(self) -> int:
        return int(self.words[3])

    @property
    def lookup_error(self) -> str:
        """The last lookup failure any sender recorded since the lookup was set ("" if none).
        Writers do not exclude each other: two failing at once may mix their texts."""
        if not self.words[3]:
            return ""
        raw = bytes(self.mm[_ERROR_OFS:_ERROR_OFS + _ERROR_LEN])
        return raw.split(b"\0", 1)[0].decode(errors="replace")

    def record_lookup_error(self, text: str, batches: int = 1) -> None:
        data = text.encode(errors="replace")[:_ERROR_LEN - 1]
        self.mm[_ERROR_OFS:_ERROR_OFS + _ERROR_LEN] = data + bytes(_ERROR_LEN - len(data))
        self.words[3] += np.uint64(batches)

    @contextlib.contextmanager
    def shared(self):
        """Held around one forwarding pass (shared with other senders, not with reconfiguration).
        Waits like a sync (:func:`~.namespace.sync_timeout`): a process stopped while changing
        the switch raises :class:`LockTimeoutError` naming it, the sync is retried later."""
        mutex, fd, pos = self.mutex, self.ns.fd, self.lockpos
        if not mutex.acquire(False):   # the fast path computes no deadline
            _ns.take_mutex(mutex, _ns.wait_deadline(_ns.sync_timeout()), self._what())
        try:
            try:
                fcntl.lockf(fd, _SH_NB, 1, pos)
            except OSError:
                _ns.acquire(fd, pos, _ns.wait_deadline(_ns.sync_timeout()), self._what(), shared=True,
                            env=_ns.ENV_SYNC_TIMEOUT)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, pos)
        finally:
            mutex.release()

    @contextlib.contextmanager
    def exclusive(self):
        """Held (with the namespace lock) while the switch's ports or rings change. Waits like
        the kernel (:func:`~.namespace.lock_timeout`) for forwarding passes to end: a process
        stopped inside one raises :class:`LockTimeoutError` naming it."""
        deadline = _ns.wait_deadline(_ns.lock_timeout())
        _ns.take_mutex(self.mutex, deadline, self._what())
        try:
            fd = self.ns.fd
            _ns.acquire(fd, self.lockpos, deadline, self._what())
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, self.lockpos)
        finally:
            self.mutex.release()

    def _what(self) -> str:
        return f"the lock of VALE switch segment {self.name}"


_SEGS: dict[str, SwitchSeg] = {}
_SEGS_LOCK = threading.Lock()


def create_seg(ns, idx: int, gen: int) -> SwitchSeg:
    """Create the segment of a new switch (namespace lock held), its memory reserved; nothing
    is left behind on failure (errors: see :mod:`.segment`)."""
    name = segment_name(ns, idx, gen)
    mm = create_private_shm(name, SEG_SIZE)
    words = np.frombuffer(mm, dtype=np.uint32, count=2)
    words[0], words[1] = _MAGIC, 1
    seg = SwitchSeg(ns, name, gen, mm)
    with _SEGS_LOCK:
        _SEGS[name] = seg
    return seg


def attach_seg(ns, idx: int, gen: int) -> SwitchSeg:
    """This process's mapping of an existing switch segment (cached)."""
    name = segment_name(ns, idx, gen)
    with _SEGS_LOCK:
        seg = _SEGS.get(name)
        if seg is not None:
            return seg
    mm = map_private_shm(name, SEG_SIZE)
    if is_ghost(mm):   # a teardown meeting a switch whose segment is gone (see .segment)
        return SwitchSeg(ns, name, gen, mm)
    if int(np.frombuffer(mm, dtype=np.uint32, count=1)[0]) != _MAGIC:
        raise NetmapOSError(errno.EINVAL, f"shm {name}: not a VALE switch segment (changed behind "
                            "the emulator's back); run 'pynetmap emu gc'")
    seg = SwitchSeg(ns, name, gen, mm)
    with _SEGS_LOCK:
        return _SEGS.setdefault(name, seg)


def destroy_seg(ns, idx: int, gen: int) -> list[str]:
    """Unlink a switch segment (mappings stay valid until dropped); returns what was removed."""
    name = segment_name(ns, idx, gen)
    with _SEGS_LOCK:
        _SEGS.pop(name, None)
    return unlink_segments([name])
