"""Traffic counters of an emulator namespace, per port and ring, as frozen snapshots: what
``pynetmap top`` shows (this module's :func:`snapshot` is its ``emu`` entry in ``pynetmap.stats``).

The counters are kring words 16-21 (``shm/kring.py``), added to once per sync by the sync that
moved the slots. A snapshot takes no lock and writes nothing: it reads the registry as last
committed (SQLite's read-only snapshot, as ``emu ls`` does when the lock is held) and each
ring's three u64 words, each one aligned load. A snapshot costs one registry read and a few
word reads per ring (about a millisecond for a few dozen ports); rates come from two of them.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from netmap_core.counters import RingCounters

from .kernel import memory
from .kernel.registry import Registry, peek
from .shm import allocator as shm_alloc, kring
from .shm.allocator import Allocator
from .shm.namespace import LOCK_FILE, REGISTRY, base_dir, namespace, namespace_name

__all__ = ["Counters", "snapshot"]

#: what a snapshot says about where its numbers come from
NOTE = "emulator kring counters: slots and bytes per sync, drops where a switch drops"


@dataclass(frozen=True)
class Counters:
    """Every counted ring of one namespace at one instant (``time``: ``time.monotonic()``)."""

    backend: str
    namespace: str
    time: float
    rings: tuple[RingCounters, ...]
    note: str = NOTE


# allocators this module mapped, by segment name; dropped when the registry no longer names them
_MAPPED: dict[str, Allocator] = {}


def _exists(name: str) -> bool:
    base = base_dir(create=False)
    return bool(base) and os.path.isfile(os.path.join(base, name, LOCK_FILE))


def snapshot(name: str | None = None) -> Counters:
    """The counters of namespace ``name`` (default: ``$PYNETMAP_EMU_NS``), creating nothing:
    a namespace that does not exist has no rings."""
    ns_name = namespace_name(name)
    if not _exists(ns_name):
        return Counters("emu", ns_name, time.monotonic(), ())
    ns = namespace(ns_name)
    reg = peek(ns.path(REGISTRY)) or Registry()
    allocs = _allocators(ns, reg)
    rings: list[RingCounters] = []
    for pname in sorted(reg.parents):
        par = reg.parents[pname]
        v = par.vale
        a = allocs.get(par.mem_id)
        if v is None or v.switch is None or a is None:
            continue
        port = v.listed(pname)
        for d, objs in (("tx", v.tx), ("rx", v.rx)):
            rings += [_ring(a, obj, port, "vale", v.switch, d, r) for r, obj in enumerate(objs) if obj >= 0]
    for key in sorted(reg.pipes):
        p = reg.pipes[key]
        parent = reg.parents.get(p.parent)
        a = allocs.get(parent.mem_id) if parent is not None else None
        if a is None:
            continue
        for end, brace in enumerate("{}"):
            port = f"{p.parent}{brace}{p.pipe_id}"
            for d, objs in (("tx", p.tx[end]), ("rx", p.rx[end])):
                rings += [_ring(a, obj, port, "pipe", None, d, r) for r, obj in enumerate(objs) if obj >= 0]
    return Counters("emu", ns_name, time.monotonic(), tuple(rings))


def _ring(a: Allocator, obj: int, port: str, kind: str, switch: str | None, d: str, r: int) -> RingCounters:
    i = a.block_word(obj, kring.SLOTS) // 2
    ks64 = a.ks64
    return RingCounters(port, kind, switch, d, r, ks64[i], ks64[i + 1], ks64[i + 2] if d == "rx" else 0)


def _allocators(ns, reg: Registry) -> dict[int, Allocator]:
    """The allocators the registry names, mapped (cached); ones it no longer names are let go."""
    out: dict[int, Allocator] = {}
    for mem_id in reg.mems:
        try:
            a = memory.mapped(ns, reg, mem_id)
        except OSError:   # destroyed since the registry was read (NetmapOSError is one)
            continue
        if a.ghost:
            continue
        out[mem_id] = _MAPPED[a.rname] = a
    live = {a.rname for a in out.values()}
    for rname in [r for r in _MAPPED if r not in live]:
        a = _MAPPED.pop(rname)
        if a.refs == 0:
            shm_alloc.forget(a)
    return out
