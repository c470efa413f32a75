"""Allocator geometry: netmap's pool sizing (spec A2-A5) as pure arithmetic.

An allocator is three pools laid out from offset 0 (netmap_if | netmap_ring | buffers); this
module turns requested (object size, count) pairs into the exact offsets and totals netmap uses.
"""
from __future__ import annotations

from dataclasses import dataclass

from netmap_core import abi
from netmap_core.errors import InvalidRequestError

__all__ = ["Pool", "Geometry", "geometry", "private_params", "GLOBAL_PARAMS", "PRIV_MIN_PARAMS"]

PAGE_SIZE = abi.PAGE_SIZE
MAX_CLUSTSIZE = abi.MAX_CLUSTSIZE
_OBJ_ALIGN = abi.NM_BUF_ALIGN


def _params(pools) -> tuple:
    return tuple((pools[k].size, pools[k].num) for k in ("if", "ring", "buf"))


#: dev.netmap.{if,ring,buf}_{size,num} (mem_id 1) as ((size, num) per pool)
GLOBAL_PARAMS = _params(abi.NETMAP_GLOBAL_PARAMS)
#: dev.netmap.priv_* (netmap_min_priv_params)
PRIV_MIN_PARAMS = _params(abi.NETMAP_MIN_PRIV_PARAMS)


@dataclass(frozen=True)
class Pool:
    """One pool: ``objtotal`` objects of ``objsize`` bytes from region offset ``offset``."""

    offset: int
    objsize: int
    objtotal: int
    clustentries: int
    memtotal: int

    def obj_offset(self, k: int) -> int:
        return self.offset + k * self.objsize


@dataclass(frozen=True)
class Geometry:
    """The three pools of one allocator and its ``nr_memsize``."""

    if_pool: Pool
    ring_pool: Pool
    buf_pool: Pool
    memsize: int

    @property
    def buf_size(self) -> int:
        return self.buf_pool.objsize

    @property
    def nbufs(self) -> int:
        return self.buf_pool.objtotal

    def max_slots(self) -> int:
        """Largest ring (in slots) a ring object of this allocator can hold."""
        return (self.ring_pool.objsize - abi.NETMAP_RING_SLOTS_OFFSET) // abi.netmap_slot.itemsize

    def max_if_rings(self) -> int:
        """Most ``ring_ofs`` entries a netmap_if object of this allocator can hold."""
        return (self.if_pool.objsize - abi.NETMAP_IF_RING_OFS_OFFSET) // 8

    def as_dict(self) -> dict:
        return {"params": [[p.objsize, p.objtotal] for p in (self.if_pool, self.ring_pool, self.buf_pool)]}


def _pool(offset: int, objsize: int, num: int, what: str) -> Pool:
    size = -(-objsize // _OBJ_ALIGN) * _OBJ_ALIGN
    clustentries = 0
    i = 1
    while i * size <= MAX_CLUSTSIZE:
        if (i * size) % PAGE_SIZE == 0:
            clustentries = i
            break
        i += 1
    if clustentries == 0:
        raise InvalidRequestError(22, f"{what} pool: object size {size} fits no cluster <= {MAX_CLUSTSIZE} B")
    nclust = -(-num // clustentries)
    return Pool(offset, size, nclust * clustentries, clustentries, nclust * clustentries * size)


def geometry(params) -> Geometry:
    """Pools from ``((if_size, if_num), (ring_size, ring_num), (buf_size, buf_num))`` (spec A2, A3)."""
    (isz, inum), (rsz, rnum), (bsz, bnum) = params
    ifp = _pool(0, isz, inum, "if")
    ringp = _pool(ifp.memtotal, rsz, rnum, "ring")
    bufp = _pool(ringp.offset + ringp.memtotal, bsz, bnum, "buf")
    total = bufp.offset + bufp.memtotal
    total = -(-total // PAGE_SIZE) * PAGE_SIZE
    return Geometry(ifp, ringp, bufp, total)


def private_params(txr: int, txd: int, rxr: int, rxd: int, extra_bufs: int, npipes: int):
    """``netmap_mem_private_new()``: the ``priv_*`` minimum enlarged for the given port (spec A5)."""
    (isz, inum), (rsz, rnum), (bsz, bnum) = PRIV_MIN_PARAMS
    txr += 1  # one fake host ring per direction
    rxr += 1
    isz = max(isz, abi.NETMAP_IF_RING_OFS_OFFSET + 8 * (txr + rxr))
    inum = max(inum, 2 + 4 * npipes)
    rsz = max(rsz, abi.NETMAP_RING_SLOTS_OFFSET + abi.netmap_slot.itemsize * max(txd, rxd))
    rnum = max(rnum, txr + rxr + 8 * npipes)
    bnum = max(bnum, (4 * npipes + rxr) * rxd + (4 * npipes + txr) * txd + 2 + extra_bufs)
    return ((isz, inum), (rsz, rnum), (bsz, bnum))
