"""One emulated allocator as mapped in this process: the netmap region and its kernel-private
state (kring records, see :mod:`.kring`, and the buffer bitmap).

The region (POSIX shm ``m``) holds exactly what netmap's mmap shows; the kernel state (POSIX shm
``k``) holds what the kernel keeps to itself and applications never map::

    kernel state:  header (64 B) | one kring record per ring object (64 B) | bitmap (1 B/buffer)

Bitmap, ring/if objects and kring initialisation change only under the namespace lock.
"""
from __future__ import annotations

import errno
import mmap
import threading

import numpy as np

from netmap_core import abi
from netmap_core.errors import NetmapOSError, OutOfMemoryError

from . import kring
from .geometry import Geometry, geometry
from .segment import create_private_shm, is_ghost, map_private_shm, unlink_segments

__all__ = ["Allocator", "attach", "create", "destroy", "forget"]


def _offset(dt: np.dtype, name: str) -> int:
    fields = dt.fields
    assert fields is not None
    return int(fields[name][1])


_BUFS_HEAD = _offset(abi.netmap_if, "ni_bufs_head")


def _kstate_size(g: Geometry) -> int:
    size = kring.HEADER_SIZE + kring.KRING.itemsize * g.ring_pool.objtotal + g.buf_pool.objtotal
    return -(-size // abi.PAGE_SIZE) * abi.PAGE_SIZE


class Allocator:
    """A mapped allocator. ``region``/``arr`` are the netmap region (shared by every binding of
    this mem_id in the process); ``ks``/``ks64``/``ksw`` view the kernel state."""

    def __init__(self, mem_id: int, gen: int, geom: Geometry, priv: bool, rname: str, kname: str,
                 region: mmap.mmap, kmap: mmap.mmap) -> None:
        self.mem_id = mem_id
        self.gen = gen
        self.geom = geom
        self.priv = priv
        self.rname = rname
        self.kname = kname
        self.region = region
        self.arr = np.frombuffer(region, dtype=np.uint8)
        self.kmap = kmap
        self.ks = memoryview(kmap).cast("I")
        self.ks64 = memoryview(kmap).cast("Q")
        nr = geom.ring_pool.objtotal
        self.header = np.ndarray((), dtype=kring.HEADER, buffer=kmap)
        #: kring records as u32 words, (ring objects, KRING_WORDS); ``krings`` the same by field
        self.blocks = np.ndarray((nr, kring.KRING_WORDS), dtype=np.uint32, buffer=kmap,
                                 offset=kring.HEADER_SIZE)
        self.krings = np.ndarray((nr,), dtype=kring.KRING, buffer=kmap, offset=kring.HEADER_SIZE)
        self.bitmap = np.frombuffer(kmap, dtype=np.uint8, count=geom.nbufs,
                                    offset=kring.HEADER_SIZE + kring.KRING.itemsize * nr)
        bp = geom.buf_pool
        pool = self.arr[bp.offset: bp.offset + bp.objtotal * bp.objsize]
        self.buffers = pool.reshape(bp.objtotal, bp.objsize)
        self.refs = 0  # local bindings using this mapping
        #: stands in for an allocator whose segments no longer exist (see :func:`attach`)
        self.ghost = False
        self.pair_mutex: dict[int, threading.Lock] = {}

    # --- geometry ---------------------------------------------------------------------------
    def ring_offset(self, obj: int) -> int:
        return self.geom.ring_pool.obj_offset(obj)

    def if_offset(self, obj: int) -> int:
        return self.geom.if_pool.obj_offset(obj)

    def block_word(self, obj: int, w: int) -> int:
        """Index into ``ks`` of word ``w`` of ring object ``obj``'s kring block."""
        return (kring.HEADER_SIZE + kring.KRING.itemsize * obj) // 4 + w

    def slots(self, obj: int) -> np.ndarray:
        """The slot array of ring object ``obj``, sized from the kernel state: the ring header's
        ``num_slots`` is application-writable and never trusted."""
        off = self.ring_offset(obj)
        n = int(self.blocks[obj, kring.NUM_SLOTS])
        if not 0 < n <= self.geom.max_slots():
            raise OSError(errno.EINVAL, f"mem_id {self.mem_id}: ring object {obj} has no valid kring")
        return np.ndarray((n,), dtype=abi.netmap_slot, buffer=self.region,
                          offset=off + abi.NETMAP_RING_SLOTS_OFFSET)

    def mutex(self, obj: int) -> threading.Lock:
        m = self.pair_mutex.get(obj)
        if m is None:
            m = self.pair_mutex.setdefault(obj, threading.Lock())
        return m

    # --- buffers (namespace lock held) -------------------------------------------------------
    def alloc_bufs(self, k: int, *, partial: bool = False) -> np.ndarray:
        """First-fit: the ``k`` lowest free buffer indexes (fewer if ``partial``), marked used."""
        free = np.flatnonzero(self.bitmap == 0)
        if free.size < k and not partial:
            raise OutOfMemoryError(errno.ENOMEM, f"mem_id {self.mem_id}: {k} buffers needed, "
                                   f"{free.size} free of {self.geom.nbufs}")
        got = free[:k].astype(np.uint32)
        self.bitmap[got] = 1
        return got

    def free_bufs(self, idx) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        idx = idx[(idx >= 2) & (idx < self.geom.nbufs)]
        self.bitmap[idx] = 0

    def walk_list(self, head: int) -> np.ndarray:
        """An extra-buffer list from ``head`` through each buffer's first u32, stopping at an
        index outside [2, objtotal) or at a loop (spec A13: tolerant of garbage)."""
        nb = self.geom.nbufs
        seen = np.zeros(0, dtype=np.int64)
        out: list[int] = []
        visited: set[int] = set()
        idx = int(head)
        nxt = self.buffers[:, :4].view("<u4")  # (nbufs, 1): the link word of every buffer
        while 2 <= idx < nb and idx not in visited:
            visited.add(idx)
            out.append(idx)
            idx = int(nxt[idx, 0])
        return np.array(out, dtype=np.int64) if out else seen

    # --- rings (namespace lock held) -------------------------------------------------------
    def init_ring(self, obj: int, n: int, ringid: int, direction: int, bufs: np.ndarray) -> None:
        """Write a fresh netmap_ring at ring object ``obj`` (spec A7, A10)."""
        off = self.ring_offset(obj)
        hdr = np.ndarray((), dtype=abi.netmap_ring, buffer=self.region, offset=off)
        hdr["buf_ofs"] = self.geom.buf_pool.offset - off
        hdr["num_slots"] = n
        hdr["nr_buf_size"] = self.geom.buf_size
        hdr["ringid"] = ringid
        hdr["dir"] = direction
        hdr["head"] = 0
        hdr["cur"] = 0
        hdr["tail"] = n - 1 if direction == abi.NR_TX else 0
        hdr["buf_align"] = 0
        self.blocks[obj, kring.NUM_SLOTS] = n
        self.blocks[obj, kring.DIR] = direction
        s = self.slots(obj)
        s["buf_idx"] = bufs
        s["len"] = self.geom.buf_size
        s["flags"] = 0
        s["ptr"] = 0

    def init_pair(self, tobj: int, robj: int, n: int) -> None:
        """Kring state of a fresh TX ring ``tobj`` whose slots feed RX ring ``robj`` (a pipe
        pair; ``robj == tobj`` for an unpaired TX ring): TX 0/0/n-1, RX 0/0/0 (spec A10)."""
        b = self.blocks
        b[tobj, :] = 0
        b[robj, :] = 0
        b[tobj, kring.RTAIL] = n - 1
        b[robj, kring.PEER_TAIL] = n - 1  # TX pipe_tail lives in the peer's record
        b[tobj, kring.HWTAIL] = n - 1
        b[tobj, kring.PEER] = robj + 1
        b[robj, kring.PEER] = tobj + 1
        b[tobj, kring.NUM_SLOTS] = n
        b[robj, kring.NUM_SLOTS] = n
        b[tobj, kring.DIR] = abi.NR_TX
        b[robj, kring.DIR] = abi.NR_RX

    def init_single(self, obj: int, n: int, direction: int) -> None:
        """Kring state of a fresh unpaired ring (VALE, monitors; its own peer): TX hwcur 0,
        hwtail n-1, rhead/rcur 0, rtail n-1; RX all 0 (spec A10)."""
        b = self.blocks
        b[obj, :] = 0
        if direction == abi.NR_TX:
            b[obj, kring.PEER_TAIL] = n - 1
            b[obj, kring.RTAIL] = n - 1
        b[obj, kring.PEER] = obj + 1
        b[obj, kring.NUM_SLOTS] = n
        b[obj, kring.DIR] = direction

    def clear_block(self, obj: int) -> None:
        self.blocks[obj, :] = 0

    def write_if(self, obj: int, name: str, ntx: int, nrx: int, ring_ofs: list[int], bufs_head: int) -> int:
        """Write a netmap_if (spec A8) at if object ``obj``; returns its region offset."""
        off = self.if_offset(obj)
        nif = np.ndarray((), dtype=abi.netmap_if, buffer=self.region, offset=off)
        nif["ni_name"] = name.encode()[: abi.IFNAMSIZ - 1] + b"\0"
        nif["ni_flags"] = abi.NI_PRIV_MEM if self.priv else 0
        nif["ni_tx_rings"] = ntx
        nif["ni_rx_rings"] = nrx
        nif["ni_host_tx_rings"] = 1
        nif["ni_host_rx_rings"] = 1
        nif["ni_bufs_head"] = bufs_head
        ofs = np.ndarray((len(ring_ofs),), dtype="<i8", buffer=self.region,
                         offset=off + abi.NETMAP_IF_RING_OFS_OFFSET)
        ofs[:] = ring_ofs
        return off

    def bufs_head(self, if_obj: int) -> int:
        off = self.if_offset(if_obj) + _BUFS_HEAD
        return int(self.arr[off: off + 4].view("<u4")[0])

    def push_extra(self, bufs: np.ndarray) -> int:
        """Link ``bufs`` (ascending) into a list, each pushed at the head (spec A13)."""
        head = 0
        link = self.buffers[:, :4].view("<u4")
        for idx in bufs.tolist():
            link[idx, 0] = head
            head = idx
        return head


_MAPS: dict[str, Allocator] = {}
_MAPS_LOCK = threading.Lock()


def _names(ns, mem_id: int, gen: int) -> tuple[str, str]:
    return ns.shm_name("m", mem_id, gen), ns.shm_name("k", mem_id, gen)


def create(ns, mem_id: int, gen: int, params, priv: bool) -> Allocator:
    """Create both segments of a new allocator (namespace lock held), their memory reserved,
    and map them. On failure neither segment is left behind (see :mod:`.segment` for the
    errors: a name taken, /dev/shm full, no descriptor left)."""
    g = geometry(params)
    rname, kname = _names(ns, mem_id, gen)
    region = create_private_shm(rname, g.memsize)
    try:
        kmap = create_private_shm(kname, _kstate_size(g))
    except BaseException:
        region.close()
        unlink_segments([rname])
        raise
    a = Allocator(mem_id, gen, g, priv, rname, kname, region, kmap)
    a.header["magic"] = kring.MAGIC
    a.header["version"] = kring.VERSION
    a.header["nrings"] = g.ring_pool.objtotal
    a.header["nbufs"] = g.nbufs
    a.bitmap[list(abi.NETMAP_RESERVED_BUFS)] = 1  # buffers 0 and 1 are reserved (spec A6)
    with _MAPS_LOCK:
        _MAPS[rname] = a
    return a


def attach(ns, mem_id: int, gen: int, params, priv: bool) -> Allocator:
    """The process's mapping of allocator ``mem_id`` incarnation ``gen`` (cached)."""
    rname, kname = _names(ns, mem_id, gen)
    with _MAPS_LOCK:
        a = _MAPS.get(rname)
        if a is not None:
            return a
    g = geometry(params)
    region = map_private_shm(rname, g.memsize)
    kmap = map_private_shm(kname, _kstate_size(g))
    a = Allocator(mem_id, gen, g, priv, rname, kname, region, kmap)
    if is_ghost(region) or is_ghost(kmap):
        # a teardown meeting an allocator whose segments are gone: it reads zeros (no ring,
        # no list, no buffer in use) and what it writes goes nowhere; never cached
        a.ghost = True
        return a
    h = a.header
    if h["magic"] != kring.MAGIC or h["nrings"] != g.ring_pool.objtotal or h["nbufs"] != g.nbufs:
        raise NetmapOSError(errno.EINVAL, f"shm {kname}: kernel state does not match the registry "
                            "(changed behind the emulator's back); run 'pynetmap emu gc'")
    with _MAPS_LOCK:
        return _MAPS.setdefault(rname, a)


def forget(a: Allocator) -> None:
    """Drop the process's cached mapping (the mmap lives on while ring views reference it)."""
    with _MAPS_LOCK:
        if _MAPS.get(a.rname) is a:
            del _MAPS[a.rname]


def destroy(ns, mem_id: int, gen: int) -> list[str]:
    """Unlink both segments of allocator (mem_id, gen) and drop the process's cached mapping;
    returns the segments that existed."""
    names = _names(ns, mem_id, gen)
    with _MAPS_LOCK:
        _MAPS.pop(names[0], None)
    return unlink_segments(names)
