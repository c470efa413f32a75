"""REGISTER of a pipe end (``PARENT{ID`` master, ``PARENT}ID`` slave): the parent interface and
its allocator on demand, the pipe, the rings this binding needs, a netmap_if, extra buffers.

Rings are created in netmap's order (spec A7, F6): the end's own RX, own TX, then the peer's
RX (sharing our TX ring's buffers) and TX (sharing our RX ring's). Namespace lock held.
"""
from __future__ import annotations

import dataclasses
import errno
from dataclasses import dataclass

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import InvalidRequestError, OutOfMemoryError, PortBusyError
from netmap_core.portspec import PortSpec
from netmap_core.regmodes import bound_rings

from ..shm.allocator import Allocator
from ..shm.geometry import GLOBAL_PARAMS, private_params
from ..shm.namespace import Namespace
from . import memory
from .bindings import new_binding
from .memory import clamp
from .registry import Registry, Store
from .state import Binding, Parent, Pipe, pipe_key

__all__ = ["pipe_end", "Registered", "register", "busy_check"]

_MODES = (abi.NR_REG_ALL_NIC, abi.NR_REG_ONE_NIC)


def pipe_end(spec: PortSpec) -> int:
    """0 for the master end (``PARENT{ID``), 1 for the slave (``PARENT}ID``)."""
    return 0 if spec.pipe == "{" else 1


@dataclass(frozen=True)
class Registered:
    """What a REGISTER hands to the binding: its id, the answer, the allocator and the bound
    rings (ring objects and ring ids per direction)."""

    bid: int
    info: RegisterInfo
    alloc: Allocator
    tx_objs: tuple[int, ...]
    rx_objs: tuple[int, ...]
    tx_ids: tuple[int, ...]
    rx_ids: tuple[int, ...]
    pname: str = ""


def busy_check(reg: Registry, others: list[Binding], tx_ids, rx_ids, flags: int, kname: str) -> None:
    """Exclusive use (spec B17): EBUSY if a ring is bound by ``others`` exclusively, or is
    bound at all and this REGISTER asks NR_EXCLUSIVE."""
    for o in others:
        shared = (set(o.tx) & set(tx_ids)) or (set(o.rx) & set(rx_ids))
        if shared and (o.excl or flags & abi.NR_EXCLUSIVE):
            raise PortBusyError(errno.EBUSY, f"{kname}: ring(s) already bound"
                                + (" exclusively (NR_EXCLUSIVE)" if o.excl else "")
                                + f" by another registration (pid {o.pid})")




def register(ns: Namespace, store: Store, spec: PortSpec, hints: dict) -> Registered:
    """REGISTER pipe end ``spec`` (registry prepared, namespace lock held); commits."""
    reg = store.reg
    kname, mode, ringid, flags = spec.name, spec.mode, spec.ringid, int(spec.flags)
    parent_name, pipe_id, e = spec.parent, spec.pipe_id or "", pipe_end(spec)
    if not parent_name or not pipe_id:
        raise InvalidRequestError(errno.EINVAL,
                                  f"{kname}: a pipe name needs PARENT{{ID or PARENT}}ID, both non-empty")
    want_mem = hints.get("mem_id", 0)
    parent = reg.parents.get(parent_name)
    if want_mem and want_mem != memory.GLOBAL_MEM_ID and want_mem not in reg.mems:
        raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={want_mem} names no allocator; "
                                  f"existing: {sorted({memory.GLOBAL_MEM_ID, *reg.mems})}")
    if parent is not None and want_mem and want_mem != parent.mem_id:
        raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={want_mem} differs from the parent "
                                  f"{parent_name!r}'s allocator {parent.mem_id}")
    key = pipe_key(parent_name, pipe_id)
    pipe = reg.pipes.get(key)
    h_txr = clamp(hints.get("tx_rings", 0), 1, 1, abi.NM_PIPE_MAXRINGS)
    h_rxr = clamp(hints.get("rx_rings", 0), 1, 1, abi.NM_PIPE_MAXRINGS)
    if parent is not None and pipe is None and len(reg.pipes.by("parent", parent_name)) >= abi.NM_MAXPIPES:
        raise OutOfMemoryError(errno.ENOMEM, f"{kname}: parent {parent_name!r} already has "
                               f"{abi.NM_MAXPIPES} pipes (NM_MAXPIPES)")
    extra_req = max(0, min(int(hints.get("extra_bufs", 0)), abi.NM_BDG_MAX_EXTRA_BUFS))

    first = want_mem or (parent.mem_id if parent else 0)
    memory.mark(store, *([first] if first else []))
    try:
        # --- the parent and its allocator -------------------------------------------------------
        made = False   # True: the allocator is made for this pipe, sized by its hints
        if parent is None:
            txs = clamp(hints.get("tx_slots", 0), abi.NM_BRIDGE_RINGSIZE, 1, abi.NM_PIPE_MAXSLOTS)
            rxs = clamp(hints.get("rx_slots", 0), abi.NM_BRIDGE_RINGSIZE, 1, abi.NM_PIPE_MAXSLOTS)
            if want_mem:
                mem_id = want_mem
                if mem_id not in reg.mems:  # the global allocator, created on demand
                    memory.create_mem(ns, reg, mem_id, GLOBAL_PARAMS, False)
            else:
                made = True
                mem_id = memory.new_mem_id(reg)
                memory.mark(store, mem_id)
                # an auto-created parent is sized like a default VALE port (npipes = 2, spec A5, F1)
                params = private_params(min(h_txr, abi.NM_BDG_MAXRINGS), txs, min(h_rxr, abi.NM_BDG_MAXRINGS),
                                        rxs, extra_req, abi.NM_BDG_PRIV_NPIPES)
                memory.create_mem(ns, reg, mem_id, params, True)
            parent = Parent(parent_name, mem_id, True, txs, rxs)
            reg.parents[parent_name] = parent
        mem_id = parent.mem_id
        a = memory.mapped(ns, reg, mem_id)

        # --- the pipe -------------------------------------------------------------------------
        if pipe is None:
            txs = clamp(hints.get("tx_slots", 0), parent.tx_slots, 1, abi.NM_PIPE_MAXSLOTS)
            rxs = clamp(hints.get("rx_slots", 0), parent.rx_slots, 1, abi.NM_PIPE_MAXSLOTS)
            mine = (h_txr, h_rxr, txs, rxs)
            peer = (h_rxr, h_txr, rxs, txs)
            ends = (mine, peer) if e == 0 else (peer, mine)
            pipe = Pipe(parent_name, pipe_id, (ends[0][0], ends[1][0]), (ends[0][1], ends[1][1]),
                        (ends[0][2], ends[1][2]), (ends[0][3], ends[1][3]),
                        ((-1,) * ends[0][0], (-1,) * ends[1][0]), ((-1,) * ends[0][1], (-1,) * ends[1][1]))
        ntx, nrx = pipe.ntx[e], pipe.nrx[e]
        b = bound_rings(mode, ringid, flags, tx=ntx, rx=nrx, name=kname, allowed=_MODES)
        tx_ids, rx_ids = list(b.tx), list(b.rx)
        same_end = [o for o in reg.bindings.by("parent", parent_name) if o.pipe == pipe_id and o.end == e]
        busy_check(reg, same_end, tx_ids, rx_ids, flags, kname)

        # --- rings: own RX, own TX, then the peer's RX and TX (spec A7, F6) -----------------
        geom = a.geom
        total = geom.ring_pool.objtotal
        tx = [list(pipe.tx[0]), list(pipe.tx[1])]
        rx = [list(pipe.rx[0]), list(pipe.rx[1])]
        new_rx = [k for k in rx_ids if rx[e][k] < 0]
        new_tx = [k for k in tx_ids if tx[e][k] < 0]
        for n in ([pipe.rxs[e]] if new_rx else []) + ([pipe.txs[e]] if new_tx else []):
            if n > geom.max_slots():
                raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {n} slots do not fit a ring object of "
                                       f"mem_id {mem_id} (at most {geom.max_slots()})")
        need = 2 * (len(new_rx) + len(new_tx))   # each ring and its peer's
        if need > total - len(reg.mems[mem_id].ring_used):
            raise OutOfMemoryError(errno.ENOMEM, _no_ring_room(reg, kname, mem_id, total, need, made,
                                                               h_txr, h_rxr, pipe, extra_req))
        p = 1 - e
        for k in new_rx:
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, pipe.rxs[e], k, abi.NR_RX, a.alloc_bufs(pipe.rxs[e]))
            rx[e][k] = obj
        for k in new_tx:
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, pipe.txs[e], k, abi.NR_TX, a.alloc_bufs(pipe.txs[e]))
            tx[e][k] = obj
        for k in new_tx:  # the peer's RX ring k shares our TX ring k's buffers
            src = tx[e][k]
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, pipe.txs[e], k, abi.NR_RX, a.slots(src)["buf_idx"])
            rx[p][k] = obj
            a.init_pair(src, obj, pipe.txs[e])
        for k in new_rx:
            src = rx[e][k]
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, pipe.rxs[e], k, abi.NR_TX, a.slots(src)["buf_idx"])
            tx[p][k] = obj
            a.init_pair(obj, src, pipe.rxs[e])
        pipe = dataclasses.replace(pipe, tx=(tuple(tx[0]), tuple(tx[1])), rx=(tuple(rx[0]), tuple(rx[1])))
        reg.pipes[key] = pipe

        # --- netmap_if and extra buffers (spec A8, A13, A16) --------------------------------
        if_obj, if_off, extra = memory.write_netmap_if(reg, a, kname, kname, tx[e], rx[e], tx_ids, rx_ids,
                                                       extra_req)

        # --- commit ------------------------------------------------------------------------------
        bnd = new_binding(ns, reg, kind="pipe", mem_id=mem_id, parent=parent_name, pipe=pipe_id, end=e,
                          if_obj=if_obj, tx=tuple(tx_ids), rx=tuple(rx_ids),
                          excl=bool(flags & abi.NR_EXCLUSIVE), flags=flags, name=kname, extra=int(extra.size))
        memory.finish(store)
    except BaseException:
        memory.undo(ns, store)
        raise

    info = RegisterInfo(
        name=kname, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id, memsize=geom.memsize,
        offset=if_off, tx_rings=ntx, rx_rings=nrx, tx_slots=pipe.txs[e], rx_slots=pipe.rxs[e],
        host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    return Registered(bnd.bid, info, a, tuple(tx[e][k] for k in tx_ids), tuple(rx[e][k] for k in rx_ids),
                      tuple(tx_ids), tuple(rx_ids), parent_name)


def _no_ring_room(reg: Registry, kname: str, mem_id: int, total: int, need: int, made: bool,
                  txr: int, rxr: int, pipe: Pipe, extra: int) -> str:
    """ENOMEM text when a pipe's rings do not fit its allocator: why, and what would fit."""
    free = total - len(reg.mems[mem_id].ring_used)
    hint = f"or put the pipe in the global allocator (nr_mem_id 1, {GLOBAL_PARAMS[1][1]} ring objects: " \
           f"add @1 to the name, e.g. 'netmap:{kname}@1')"
    if made:
        fit = 0
        for r in range(max(txr, rxr), 0, -1):
            t, x = min(txr, r), min(rxr, r)
            params = private_params(t, max(pipe.txs), x, max(pipe.rxs), extra, abi.NM_BDG_PRIV_NPIPES)
            if 2 * (t + x) <= params[1][1]:
                fit = r
                break
        return (f"{kname}: {txr} TX and {rxr} RX rings need {need} ring objects (each ring and its "
                f"peer's), but the allocator made for this pipe (mem_id {mem_id}, sized as netmap sizes "
                f"a port with these rings) has {total}: it is too small for {max(txr, rxr)} rings per "
                f"direction; use at most {fit} rings per direction, {hint}")
    return (f"{kname}: needs {need} ring objects (each ring and its peer's) but mem_id {mem_id} has "
            f"{free} of {total} free, the rest used by the other pipes and ports in it; close some, "
            f"use fewer rings, {hint}")

