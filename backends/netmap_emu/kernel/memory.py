"""Allocators as the kernel keeps them: create (mem_id choice, spec A18), map, hand out netmap_if
and ring objects, destroy; the buffers the registry says are in use; and crash recovery.

An operation that changes an allocator's memory first commits ``meta.txn`` naming it
(:func:`mark`); if its process dies before the operation's final commit, the next lock holder
rebuilds that allocator's buffer bitmap from what the committed registry says is alive (ring
slots, live extra-buffer lists) and unlinks segments the registry does not know
(:func:`recover`). All of it runs under the namespace lock.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np

from netmap_core import abi
from netmap_core.errors import NetmapError, OutOfMemoryError

from ..shm import allocator as shm_alloc
from ..shm.allocator import Allocator
from ..shm.namespace import ENV_NS, Namespace
from ..shm.segment import SegmentExistsError, tolerate_missing, unlink_segments
from ..shm.switch import segment_name
from .bindings import drop_uncommitted
from .registry import Registry, Store
from .state import Mem

__all__ = ["GLOBAL_MEM_ID", "mapped", "new_mem_id", "fresh_gen", "create_mem", "take_obj", "release_objs",
           "release_rings", "destroy_mem", "in_use", "ring_objs", "slot_bufs", "referenced",
           "free_unreferenced", "mark", "finish", "undo", "recover", "known_segments",
           "sweep_orphans", "clamp", "write_netmap_if"]

GLOBAL_MEM_ID = abi.NETMAP_GLOBAL_MEM_ID
#: names tried before giving up when segment names are taken by someone else
_GEN_TRIES = 8
#: how far past a taken name the next try jumps, at most (unpredictable to a squatter)
_GEN_JUMP = 1 << 16
T = TypeVar("T")


def clamp(v: int, dflt: int, lo: int, hi: int) -> int:
    """netmap's ``nm_bound_var``: below ``lo`` (0 = unset) -> default, above ``hi`` -> hi."""
    if v < lo:
        return dflt
    return min(v, hi)


def mapped(ns: Namespace, reg: Registry, mem_id: int) -> Allocator:
    """This process's mapping of allocator ``mem_id``."""
    m = reg.mems[mem_id]
    return shm_alloc.attach(ns, mem_id, m.gen, m.params, m.priv)


def new_mem_id(reg: Registry) -> int:
    """Spec A18: one above the most recently created live allocator, skipping ids in use."""
    live = [(m.seq, k) for k, m in reg.mems.items() if k != GLOBAL_MEM_ID]
    cand = max(live)[1] if live else GLOBAL_MEM_ID
    for _ in range(0x10000):
        cand = cand + 1 if cand < 0xFFFF else 2
        if cand not in reg.mems and cand != GLOBAL_MEM_ID:
            return cand
    raise OutOfMemoryError(errno.ENOMEM, "every 16-bit mem_id is in use")


def fresh_gen(ns: Namespace, reg: Registry, make: Callable[[int], T]) -> tuple[int, T]:
    """``make(gen)`` with a new generation number (segments named after it), which then
    becomes ``meta.gen``. A name already taken is not fatal: a segment of ours that nothing
    names (its creator died before recording it) is unlinked and the name reused; another
    user's (squatting a predictable name) is skipped for a generation a random distance
    further on, a bounded number of times."""
    gen = reg.meta.gen + 1
    taken: list[SegmentExistsError] = []
    for _ in range(_GEN_TRIES):
        try:
            out = make(gen)
        except SegmentExistsError as exc:
            mine = exc.owner == os.getuid() and exc.name not in known_segments(ns, reg)
            if not (mine and unlink_segments([exc.name])):
                taken.append(exc)
                gen += 1 + secrets.randbelow(_GEN_JUMP)
            continue
        reg.meta = dataclasses.replace(reg.meta, gen=gen)
        return gen, out
    if not taken:   # only names of ours, which kept coming back after each unlink
        raise SegmentExistsError(f"gen {gen}", os.getuid(), f"namespace {ns.name!r}: segment names "
                                 "of ours reappear after being unlinked; run 'pynetmap emu gc'")
    names = ", ".join(f"{e.name} (uid {e.owner})" for e in taken)
    raise SegmentExistsError(taken[-1].name, taken[-1].owner,
                             f"{len(taken)} segment names of namespace {ns.name!r} in a row are "
                             f"taken by someone else: {names}; have their owner (or root) remove "
                             f"them, or use another namespace (${ENV_NS})")


def create_mem(ns: Namespace, reg: Registry, mem_id: int, params, priv: bool) -> Allocator:
    """Create allocator ``mem_id`` (its segments, memory reserved, and its record). Nothing
    is left behind when it fails (OutOfMemoryError when /dev/shm cannot hold it)."""
    gen, a = fresh_gen(ns, reg, lambda g: shm_alloc.create(ns, mem_id, g, params, priv))
    seq = reg.meta.seq + 1
    reg.meta = dataclasses.replace(reg.meta, seq=seq)
    reg.mems[mem_id] = Mem(mem_id, gen, seq, tuple(tuple(p) for p in params), priv, a.geom.memsize)
    return a


def take_obj(reg: Registry, mem_id: int, what: str, total: int) -> int:
    """The lowest free ``what`` ("if" or "ring") object of allocator ``mem_id``, marked used."""
    m = reg.mems[mem_id]
    used = m.if_used if what == "if" else m.ring_used
    taken = set(used)
    for k in range(total):
        if k not in taken:
            new = tuple(sorted((*used, k)))
            reg.mems[mem_id] = (dataclasses.replace(m, if_used=new) if what == "if"
                                else dataclasses.replace(m, ring_used=new))
            return k
    label = "netmap_if" if what == "if" else "ring"
    raise OutOfMemoryError(errno.ENOMEM, f"mem_id {mem_id}: all {total} {label} objects are in use")


def write_netmap_if(reg: Registry, a: Allocator, kname: str, if_name: str, tx_objs: Sequence[int],
                    rx_objs: Sequence[int], tx_ids: Sequence[int], rx_ids: Sequence[int],
                    extra_req: int, *, host_tx: int | None = None,
                    host_rx: int | None = None) -> tuple[int, int, np.ndarray]:
    """A netmap_if for a new binding (spec A8, A13, A16): a free if object, ``ring_ofs`` of the
    bound rings among ``tx_objs``/``rx_objs`` (others 0), each direction followed by its host
    ring (the ring object ``host_tx``/``host_rx`` when bound, else 0), and up to ``extra_req``
    extra buffers linked from ``ni_bufs_head``. Returns (if object, its region offset, the extra
    buffers)."""
    ntx, nrx = len(tx_objs), len(rx_objs)
    geom = a.geom
    if ntx + nrx + 2 > geom.max_if_rings():
        raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {ntx + nrx + 2} ring_ofs entries do not fit "
                               f"a netmap_if object of mem_id {a.mem_id} ({geom.if_pool.objsize} B)")
    if_obj = take_obj(reg, a.mem_id, "if", geom.if_pool.objtotal)
    extra = a.alloc_bufs(extra_req, partial=True)
    head = a.push_extra(extra)
    if_off = a.if_offset(if_obj)
    def host(obj: int | None) -> int:
        return 0 if obj is None else a.ring_offset(obj) - if_off

    ofs = ([a.ring_offset(tx_objs[k]) - if_off if k in tx_ids else 0 for k in range(ntx)] + [host(host_tx)]
           + [a.ring_offset(rx_objs[k]) - if_off if k in rx_ids else 0 for k in range(nrx)] + [host(host_rx)])
    a.write_if(if_obj, if_name, ntx, nrx, ofs, head)
    return if_obj, if_off, extra


def release_objs(reg: Registry, mem_id: int, what: str, objs: Iterable[int]) -> None:
    m = reg.mems.get(mem_id)
    if m is None:
        return
    gone = set(objs)
    if what == "if":
        reg.mems[mem_id] = dataclasses.replace(m, if_used=tuple(o for o in m.if_used if o not in gone))
    else:
        reg.mems[mem_id] = dataclasses.replace(m, ring_used=tuple(o for o in m.ring_used if o not in gone))


def release_rings(reg: Registry, mem_id: int, objs: Iterable[int]) -> None:
    """Ring objects back to the pool. Their kring records stay as they are until reused: the
    committed registry may still name these rings if we die before the next commit."""
    release_objs(reg, mem_id, "ring", objs)


def destroy_mem(ns: Namespace, reg: Registry, mem_id: int) -> list[str]:
    m = reg.mems.pop(mem_id)
    return shm_alloc.destroy(ns, mem_id, m.gen)


def in_use(reg: Registry, mem_id: int) -> bool:
    """An allocator is in use while a binding or an interface (pipe parent, VALE port) names it."""
    return reg.bindings.any("mem", mem_id) or reg.parents.any("mem", mem_id)


def ring_objs(reg: Registry, mem_id: int) -> list[int]:
    """Every ring object of ``mem_id`` the registry names: rings bindings own (monitors),
    rings interfaces own (VALE ports) and the rings of their pipes."""
    out: list[int] = []
    for b in reg.bindings.by("mem", mem_id):
        out.extend(b.rings)
    for p in reg.parents.by("mem", mem_id):
        out.extend(p.rings)
        for pipe in reg.pipes.by("parent", p.name):
            out.extend(pipe.objs())
    return out


def slot_bufs(a: Allocator, objs: Iterable[int]) -> np.ndarray:
    """The buffer indexes in the slots of ring objects ``objs``."""
    out = [np.zeros(0, dtype=np.int64)]
    for o in objs:
        try:
            out.append(a.slots(o)["buf_idx"].astype(np.int64))
        except OSError:  # never initialised (cannot happen for a committed ring): nothing to count
            pass
    return np.concatenate(out)


def referenced(a: Allocator, reg: Registry, mem_id: int) -> np.ndarray:
    """Buffers the registry says are in use: every slot of every ring and every extra-buffer
    list of every binding of ``mem_id`` (as a bool mask over the buffer pool)."""
    mask = np.zeros(a.geom.nbufs, dtype=bool)
    mask[list(abi.NETMAP_RESERVED_BUFS)] = True
    refs = slot_bufs(a, ring_objs(reg, mem_id))
    mask[refs[(refs >= 0) & (refs < a.geom.nbufs)]] = True
    for b in reg.bindings.by("mem", mem_id):
        mask[a.walk_list(a.bufs_head(b.if_obj))] = True
    return mask


def free_unreferenced(a: Allocator, reg: Registry, mem_id: int, cand: list[np.ndarray]) -> None:
    """Free the candidate buffers ``cand`` that nothing in the registry references any more."""
    c = np.concatenate(cand) if cand else np.zeros(0, dtype=np.int64)
    c = c[(c >= 2) & (c < a.geom.nbufs)]
    if c.size:
        keep = referenced(a, reg, mem_id)
        a.free_bufs(c[~keep[c]])


# --- transactions -------------------------------------------------------------------------

def mark(store: Store, *mem_ids: int) -> None:
    """Commit "an operation is changing these allocators" before touching their memory."""
    reg = store.reg
    txn = tuple(sorted(set(reg.meta.txn or ()) | set(mem_ids)))
    reg.meta = dataclasses.replace(reg.meta, txn=txn)
    store.commit()


def finish(store: Store) -> None:
    """The operation's final commit: its changes and "no operation in progress"."""
    reg = store.reg
    if reg.meta.txn is not None:
        reg.meta = dataclasses.replace(reg.meta, txn=None)
    store.commit()


def undo(ns: Namespace, store: Store) -> list[str]:
    """After a failed operation: forget its uncommitted changes, then repair what it did to
    memory from the committed registry (bitmaps rebuilt, unknown segments unlinked). Called
    while the operation's error propagates, so it raises nothing of its own: if even clearing
    the marker cannot be written (/dev/shm full), the marker stays committed and the next lock
    holder repairs again."""
    store.rollback()
    drop_uncommitted(ns, store.reg)
    try:
        return recover(ns, store)
    except NetmapError:
        store.rollback()
        return []


def recover(ns: Namespace, store: Store) -> list[str]:
    """Finish after an operation that did not reach its final commit (see the module doc).
    An allocator whose segments are already gone has no bitmap to rebuild."""
    reg = store.reg
    done = []
    with tolerate_missing():
        for mem_id in reg.meta.txn or ():
            if mem_id in reg.mems:
                a = mapped(ns, reg, mem_id)
                if a.ghost:
                    done.append(f"mem_id {mem_id}: segments already removed")
                    continue
                a.bitmap[:] = referenced(a, reg, mem_id)
                done.append(f"mem_id {mem_id}: buffer bitmap rebuilt after an interrupted update")
    done += [f"orphan segment {s}" for s in sweep_orphans(ns, reg)]
    if reg.meta.txn is not None:
        reg.meta = dataclasses.replace(reg.meta, txn=None)
        store.commit()
    return done


def known_segments(ns: Namespace, reg: Registry) -> set[str]:
    keep = {segment_name(ns, s.idx, s.gen) for s in reg.switches.values()}
    for k, m in reg.mems.items():
        keep.add(ns.shm_name("m", k, m.gen))
        keep.add(ns.shm_name("k", k, m.gen))
    return keep


def sweep_orphans(ns: Namespace, reg: Registry) -> list[str]:
    """Unlink segments of this namespace that no allocator or switch of the registry owns."""
    keep = known_segments(ns, reg)
    return unlink_segments([s for s in ns.list_segments() if s not in keep])
