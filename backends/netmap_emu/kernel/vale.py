"""The emulated kernel's VALE control path: switches, ports (ephemeral and persistent), REGISTER
of VALE names, VALE_ATTACH/DETACH/LIST/NEWIF/DELIF and the virtio-net header length.

An ephemeral port's interface is named by its full ``valeSW:PORT``; a persistent one by its bare
name, listed in its switch as ``valeSW:NAME`` once attached. A port goes with its last binding
(ephemeral) or by VALE_DELIF (persistent); a switch with its last port. Senders of a switch
reload their view of it when its segment's generation moves (:func:`bump`). Every function
here runs under the namespace lock, with the registry prepared.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import re

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import (
    InvalidRequestError,
    NetmapOSError,
    NoSuchPortError,
    OutOfMemoryError,
    PortBusyError,
)
from netmap_core.portspec import PortSpec, kernel_spec
from netmap_core.regmodes import bound_rings

from ..shm.allocator import Allocator
from ..shm.geometry import GLOBAL_PARAMS, Geometry, geometry, private_params
from ..shm.namespace import Namespace
from ..shm.switch import SwitchSeg, attach_seg, create_seg, destroy_seg
from . import memory
from .bindings import new_binding
from .memory import clamp
from .pipes import Registered, busy_check
from .registry import Registry, Store
from .state import Binding, Parent, Switch, ValePort

__all__ = ["split_vale_name", "is_persistent", "find_port", "would_be_port", "segment_of", "bump",
           "register", "drop_binding", "newif", "delif", "attach", "detach", "list_port",
           "list_next", "set_hdr_len", "hdr_len_of", "vale_config"]

_MODES = (abi.NR_REG_ALL_NIC, abi.NR_REG_ONE_NIC)
#: tunables (netmap's sysctl dev.netmap.max_bridges); ``$PYNETMAP_EMU_MAX_BRIDGES`` sets it for
#: every process of a namespace (give all of them the same value)
vale_config = {"max_bridges": int(os.environ.get("PYNETMAP_EMU_MAX_BRIDGES", abi.NM_BRIDGES))}


# --- names ----------------------------------------------------------------------------------

def split_vale_name(name: str) -> tuple[str, str]:
    """``valeSW:PORT`` -> (``valeSW``, ``PORT``) with netmap's limits (spec E1): the switch name
    is ``[A-Za-z0-9_]`` within 16 characters and ``:PORT`` at most 16 characters (ENOMEM, as
    the kernel's create path reports); a name without ':' is no VALE name (ENXIO)."""
    spec = kernel_spec(name)
    if spec.switch is None:
        if ":" not in name:
            raise NoSuchPortError(errno.ENXIO, f"{name}: a VALE port name needs 'valeSW:PORT'")
        raise OutOfMemoryError(errno.ENOMEM, f"{name}: switch name {name.split(':', 1)[0]!r} must be "
                               f"[A-Za-z0-9_] and at most {abi.IFNAMSIZ} characters")
    sw, port = spec.switch, spec.port
    if len(sw) > abi.IFNAMSIZ:
        raise OutOfMemoryError(errno.ENOMEM, f"{name}: switch name {sw!r} must be [A-Za-z0-9_] "
                               f"and at most {abi.IFNAMSIZ} characters")
    if not port:
        raise InvalidRequestError(errno.EINVAL, f"{name}: empty port name after ':'")
    if len(port) + 1 > abi.IFNAMSIZ:
        raise OutOfMemoryError(errno.ENOMEM, f"{name}: port part {':' + port!r} is {len(port) + 1} "
                               f"characters; allowed: at most {abi.IFNAMSIZ}")
    return sw, port


def is_persistent(reg: Registry, name: str) -> bool:
    p = reg.parents.get(name)
    return bool(p is not None and p.vale is not None and p.vale.persistent)


def find_port(reg: Registry, kname: str) -> str | None:
    """The interface REGISTER of ``kname`` addresses: an existing ephemeral port, an attached
    persistent one (``valeSW:NAME``) or a persistent interface by its bare name; None when a
    new ephemeral port would be created. EINVAL for an existing but unattached interface
    named through a switch (spec E3)."""
    parents = reg.parents
    p = parents.get(kname)
    if p is not None:
        if p.vale is not None:
            return kname
        raise PortBusyError(errno.EBUSY, f"{kname}: already exists as the parent of pipes opened before "
                            "the port (close them, or open the VALE port first)")
    if kname[:3] != "val":
        return kname if is_persistent(reg, kname) else None
    sw, port = split_vale_name(kname)
    q = parents.get(port)
    if q is not None:
        if q.vale is not None and q.vale.persistent and q.vale.switch == sw:
            return port
        if q.vale is None:   # a pipe parent: nothing can attach it
            why = (f"{port!r} is the parent of netmap pipes ({port}{{N), not a VALE interface, and "
                   "cannot be attached; use another port name")
        elif q.vale.switch is not None:
            why = (f"{port!r} is attached to {q.vale.switch}; open {q.vale.switch}:{port}, or detach "
                   f"it first (vale-ctl -d {q.vale.switch}:{port}) and attach it to {sw}")
        else:
            why = (f"{port!r} is an interface not attached to {sw}; attach it first "
                   f"(VALE_ATTACH / vale-ctl -a {sw}:{port})")
        raise InvalidRequestError(errno.EINVAL, f"{kname}: {why}")
    return None


def _port(reg: Registry, pname: str) -> tuple[Parent, ValePort]:
    p = reg.parents[pname]
    assert p.vale is not None
    return p, p.vale


def _set_vale(reg: Registry, pname: str, **changes) -> ValePort:
    p, v = _port(reg, pname)
    v = dataclasses.replace(v, **changes)
    reg.parents[pname] = dataclasses.replace(p, vale=v)
    return v


# --- switches ---------------------------------------------------------------------------------

def segment_of(ns: Namespace, reg: Registry, sw: str) -> SwitchSeg | None:
    """This process's mapping of switch ``sw``'s segment (None if no such switch)."""
    rec = reg.switches.get(sw)
    return None if rec is None else attach_seg(ns, rec.idx, rec.gen)


def bump(ns: Namespace, reg: Registry, sw: str | None) -> None:
    """Tell senders that switch ``sw``'s ports, rings or monitors changed (they reload)."""
    seg = segment_of(ns, reg, sw) if sw is not None else None
    if seg is not None:
        with seg.exclusive():
            seg.bump()


def _new_switch(ns: Namespace, reg: Registry, sw: str) -> Switch:
    used = {r.idx for r in reg.switches.values()}
    limit = vale_config["max_bridges"]
    idx = next((i for i in range(limit) if i not in used), None)
    if idx is None:
        raise OutOfMemoryError(errno.ENOMEM, f"{sw}: all {limit} VALE switches are in use "
                               "(dev.netmap.max_bridges)")
    gen, _ = memory.fresh_gen(ns, reg, lambda g: create_seg(ns, idx, g))
    rec = Switch(sw, idx, gen, tuple(range(abi.NM_BDG_MAXPORTS)), 0)
    reg.switches[sw] = rec
    return rec


def _destroy_switch(ns: Namespace, reg: Registry, sw: str) -> list[str]:
    rec = reg.switches.pop(sw)
    return [f"switch {sw}"] + [f"segment {s}" for s in destroy_seg(ns, rec.idx, rec.gen)]


def _add_port(ns: Namespace, reg: Registry, sw: str, pname: str, create: bool) -> int:
    """Give ``pname`` a port index on ``sw`` (creating the switch) - netmap's free list: the
    first ``active`` entries are in use, a new port takes entry ``active`` (spec E2, E3)."""
    rec = reg.switches.get(sw)
    if rec is None:
        if not create:
            raise InvalidRequestError(errno.EINVAL, f"{sw}: no such switch")
        rec = _new_switch(ns, reg, sw)
    if rec.active + 2 >= abi.NM_BDG_MAXPORTS:
        raise OutOfMemoryError(errno.ENOMEM, f"{sw}: {rec.active} ports active; a switch keeps "
                               f"{abi.NM_BDG_MAXPORTS - 2} at most (two slots reserved for a NIC and "
                               "its host)")
    idx = rec.free[rec.active]
    ports = tuple(sorted((*rec.ports, (idx, pname))))
    reg.switches[sw] = dataclasses.replace(rec, active=rec.active + 1, ports=ports)
    seg = attach_seg(ns, rec.idx, rec.gen)
    seg.forget_port(idx)
    with seg.exclusive():
        seg.bump()
    return idx


def _remove_port(ns: Namespace, reg: Registry, sw: str, idx: int, out: list[str]) -> None:
    rec = reg.switches[sw]
    seg = attach_seg(ns, rec.idx, rec.gen)
    with seg.exclusive():   # no sender is inside a forwarding pass of this switch now
        free = list(rec.free)
        pos = free.index(idx)
        last = rec.active - 1
        free[pos], free[last] = free[last], free[pos]
        rec = dataclasses.replace(rec, free=tuple(free), active=last,
                                  ports=tuple(pp for pp in rec.ports if pp[0] != idx))
        reg.switches[sw] = rec
        seg.bump()
    if not rec.ports:
        out += _destroy_switch(ns, reg, sw)


# --- ports ------------------------------------------------------------------------------------

def _new_port(name: str, mem_id: int, g: tuple[int, int, int, int], persistent: bool) -> Parent:
    ntx, nrx, txs, rxs = g
    v = ValePort(None, None, persistent, ntx, nrx, txs, rxs, (-1,) * ntx, (-1,) * nrx)
    return Parent(name, mem_id, False, txs, rxs, (), v)


def _geometry_hints(hints: dict) -> tuple[int, int, int, int]:
    txr = clamp(hints.get("tx_rings", 0), 1, 1, abi.NM_BDG_MAXRINGS)
    rxr = clamp(hints.get("rx_rings", 0), 1, 1, abi.NM_BDG_MAXRINGS)
    txs = clamp(hints.get("tx_slots", 0), abi.NM_BRIDGE_RINGSIZE, 1, abi.NM_BDG_MAXSLOTS)
    rxs = clamp(hints.get("rx_slots", 0), abi.NM_BRIDGE_RINGSIZE, 1, abi.NM_BDG_MAXSLOTS)
    return txr, rxr, txs, rxs


def _existing_mems(reg: Registry) -> list[int]:
    return sorted({memory.GLOBAL_MEM_ID, *reg.mems})


def _port_mem(ns: Namespace, store: Store, name: str, want: int, g, extra: int) -> int:
    """The allocator of a new port: ``want`` if given (it must exist; 1 is created on
    demand), else a new private one sized by netmap_mem_private_new (npipes = 2, spec A5).
    Commits a txn marker naming it before touching it."""
    reg = store.reg
    if want:
        if want not in reg.mems and want != memory.GLOBAL_MEM_ID:
            raise InvalidRequestError(errno.EINVAL, f"{name}: nr_mem_id={want} names no allocator; "
                                      f"existing: {_existing_mems(reg)}")
        memory.mark(store, want)
        if want not in reg.mems:
            memory.create_mem(ns, reg, want, GLOBAL_PARAMS, False)
        return want
    txr, rxr, txs, rxs = g
    mem_id = memory.new_mem_id(reg)
    memory.mark(store, mem_id)
    params = private_params(txr, txs, rxr, rxs, extra, abi.NM_BDG_PRIV_NPIPES)
    memory.create_mem(ns, reg, mem_id, params, True)
    return mem_id


def would_be_port(reg: Registry, hints: dict) -> tuple[int, Geometry, tuple[int, int, int, int]]:
    """(mem_id, geometry, rings/slots) a new default-sized port would get, creating nothing
    (PORT_INFO_GET / POOLS_INFO_GET on a VALE name that does not exist yet, spec C5)."""
    g = _geometry_hints(hints)
    want = hints.get("mem_id", 0)
    if want:
        if want in reg.mems:
            return want, geometry(reg.mems[want].params), g
        if want == memory.GLOBAL_MEM_ID:
            return want, geometry(GLOBAL_PARAMS), g
        raise InvalidRequestError(errno.EINVAL, f"nr_mem_id={want} names no allocator")
    txr, rxr, txs, rxs = g
    return memory.new_mem_id(reg), geometry(private_params(txr, txs, rxr, rxs, 0, abi.NM_BDG_PRIV_NPIPES)), g


def _ensure_rings(reg: Registry, a: Allocator, pname: str, tx_ids, rx_ids, name: str) -> None:
    """Create the port's missing rings among those bound (RX first, then TX, spec A7)."""
    p, v = _port(reg, pname)
    geom = a.geom
    new_rx = [k for k in rx_ids if v.rx[k] < 0]
    new_tx = [k for k in tx_ids if v.tx[k] < 0]
    for n in ([v.rxs] if new_rx else []) + ([v.txs] if new_tx else []):
        if n > geom.max_slots():
            raise OutOfMemoryError(errno.ENOMEM, f"{name}: {n} slots do not fit a ring object of "
                                   f"mem_id {a.mem_id} (at most {geom.max_slots()})")
    tx, rx, rings = list(v.tx), list(v.rx), list(p.rings)
    for objs, ids, n, d in ((rx, new_rx, v.rxs, abi.NR_RX), (tx, new_tx, v.txs, abi.NR_TX)):
        for k in ids:
            obj = memory.take_obj(reg, a.mem_id, "ring", geom.ring_pool.objtotal)
            a.init_ring(obj, n, k, d, a.alloc_bufs(n))
            a.init_single(obj, n, d)
            objs[k] = obj
            rings.append(obj)
    if new_rx or new_tx:
        reg.parents[pname] = dataclasses.replace(p, rings=tuple(rings),
                                                 vale=dataclasses.replace(v, tx=tuple(tx), rx=tuple(rx)))


def register(ns: Namespace, store: Store, spec: PortSpec, hints: dict) -> Registered:
    """REGISTER a VALE port (ephemeral ``valeSW:PORT`` created on the fly, an attached
    persistent ``valeSW:NAME``, or a persistent interface by its bare name): rings, netmap_if,
    extra buffers, the binding; senders told to reload. Commits."""
    reg = store.reg
    kname, mode, ringid, flags = spec.name, spec.mode, spec.ringid, int(spec.flags)
    pname = find_port(reg, kname)
    extra_req = max(0, min(int(hints.get("extra_bufs", 0)), abi.NM_BDG_MAX_EXTRA_BUFS))
    want_mem = int(hints.get("mem_id", 0))
    try:
        if pname is None:
            sw, _ = split_vale_name(kname)
            g = _geometry_hints(hints)
            pname = kname
            mem_id = _port_mem(ns, store, kname, want_mem, g, extra_req)   # commits the txn marker
            reg.parents[pname] = _new_port(pname, mem_id, g, False)
            _set_vale(reg, pname, switch=sw, port=_add_port(ns, reg, sw, pname, True))
        else:
            mem_id = reg.parents[pname].mem_id
            if want_mem and want_mem != mem_id:
                raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={want_mem} differs from the "
                                          f"port's allocator {mem_id}")
            memory.mark(store, mem_id)
        _, v = _port(reg, pname)
        if v.hdr_len and not flags & abi.NR_ACCEPT_VNET_HDR:
            raise NetmapOSError(errno.EIO, f"{kname}: the port exchanges {v.hdr_len}-byte virtio-net "
                                "headers; register with NR_ACCEPT_VNET_HDR")
        a = memory.mapped(ns, reg, mem_id)
        ntx, nrx = v.ntx, v.nrx
        b = bound_rings(mode, ringid, flags, tx=ntx, rx=nrx, name=kname, allowed=_MODES)
        tx_ids, rx_ids = list(b.tx), list(b.rx)
        busy_check(reg, _port_users(reg, pname), tx_ids, rx_ids, flags, kname)
        _ensure_rings(reg, a, pname, tx_ids, rx_ids, kname)
        _, v = _port(reg, pname)
        geom = a.geom
        if_obj, if_off, extra = memory.write_netmap_if(reg, a, kname, pname if v.persistent else kname,
                                                       v.tx, v.rx, tx_ids, rx_ids, extra_req)
        bnd = new_binding(ns, reg, kind="vale", mem_id=mem_id, parent=pname, pipe=None, end=0, if_obj=if_obj,
                          tx=tuple(tx_ids), rx=tuple(rx_ids), excl=bool(flags & abi.NR_EXCLUSIVE),
                          flags=flags, name=kname, extra=int(extra.size))
        memory.finish(store)
        bump(ns, reg, v.switch)   # new port or newly bound rings: senders reload
    except BaseException:
        memory.undo(ns, store)
        raise
    info = RegisterInfo(
        name=kname, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id, memsize=geom.memsize,
        offset=if_off, tx_rings=ntx, rx_rings=nrx, tx_slots=v.txs, rx_slots=v.rxs,
        host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    return Registered(bnd.bid, info, a, tuple(v.tx[k] for k in tx_ids), tuple(v.rx[k] for k in rx_ids),
                      tuple(tx_ids), tuple(rx_ids), pname)


# --- unregister --------------------------------------------------------------------------------

def _port_users(reg: Registry, pname: str) -> list[Binding]:
    return [b for b in reg.bindings.by("parent", pname) if b.kind == "vale"]


def _free_rings(reg: Registry, a: Allocator, pname: str, objs: list[int], cand: list[np.ndarray]) -> None:
    p, v = _port(reg, pname)
    cand.append(memory.slot_bufs(a, objs))   # kring records kept until reuse, as for pipes
    memory.release_rings(reg, p.mem_id, objs)
    gone = set(objs)
    reg.parents[pname] = dataclasses.replace(
        p, rings=tuple(o for o in p.rings if o not in gone),
        vale=dataclasses.replace(v, tx=tuple(-1 if x in gone else x for x in v.tx),
                                 rx=tuple(-1 if x in gone else x for x in v.rx)))


def drop_binding(ns: Namespace, reg: Registry, b: Binding, a: Allocator, cand: list[np.ndarray]) -> list[str]:
    """Step 3 of unregister (binding ``b`` already left the registry): free rings of its port
    nobody binds any more, destroy an ephemeral port that lost its last user, and a switch
    that lost its last port."""
    pname = b.parent
    p = reg.parents.get(pname) if pname is not None else None
    if p is None or p.vale is None:
        return []
    assert pname is not None
    out: list[str] = []
    v = p.vale
    users = _port_users(reg, pname)
    sw = v.switch
    if b.kind == "vale":
        bound_tx = {k for u in users for k in u.tx}
        bound_rx = {k for u in users for k in u.rx}
        unused = [v.tx[k] for k in range(v.ntx) if v.tx[k] >= 0 and k not in bound_tx]
        unused += [v.rx[k] for k in range(v.nrx) if v.rx[k] >= 0 and k not in bound_rx]
        if unused:
            seg = segment_of(ns, reg, sw) if sw is not None else None
            if seg is not None:
                with seg.exclusive():   # senders must not be copying into these rings
                    _free_rings(reg, a, pname, unused, cand)
                    seg.bump()
            else:
                _free_rings(reg, a, pname, unused, cand)
    if not users and not reg.pipes.any("parent", pname) and not v.persistent:
        if sw is not None and v.port is not None:
            _remove_port(ns, reg, sw, v.port, out)
        del reg.parents[pname]
        out.append(f"VALE port {pname} destroyed")
    return out


# --- persistent interfaces and attach/detach ------------------------------------------------

def newif(ns: Namespace, store: Store, name: str, tx_rings: int, rx_rings: int, tx_slots: int,
          rx_slots: int, mem_id: int) -> dict:
    """VALE_NEWIF: a persistent VALE interface ``name`` (spec C5, E5). Returns the effective
    geometry as a dict. EINVAL for a bad name or mem_id, EEXIST if the interface exists."""
    if not name or len(name) >= abi.IFNAMSIZ or name[:3] == "val" or not re.match(r"^[^\s:{}/@*^-]+$", name):
        why = ("is empty" if not name else
               f"is {len(name)} characters, more than the limit of {abi.IFNAMSIZ - 1} (IFNAMSIZ)"
               if len(name) >= abi.IFNAMSIZ else
               "starts with 'val' (that names a VALE switch port)" if name[:3] == "val" else
               "contains one of ':{}/@*^-' or a space")
        raise InvalidRequestError(errno.EINVAL, f"VALE_NEWIF {name!r}: the interface name {why}; need "
                                  f"1..{abi.IFNAMSIZ - 1} characters, not starting with 'val', "
                                  "without ':{}/@*^-'")
    reg = store.reg
    if name in reg.parents:
        raise NetmapOSError(errno.EEXIST, f"VALE_NEWIF {name!r}: the interface exists")
    hints = {"tx_rings": tx_rings, "rx_rings": rx_rings, "tx_slots": tx_slots, "rx_slots": rx_slots}
    g = _geometry_hints(hints)
    memory.mark(store)
    try:
        mid = _port_mem(ns, store, name, mem_id, g, 0)
        reg.parents[name] = _new_port(name, mid, g, True)
        memory.finish(store)
    except BaseException:
        memory.undo(ns, store)
        raise
    return {"tx_rings": g[0], "rx_rings": g[1], "tx_slots": g[2], "rx_slots": g[3], "mem_id": mid}


def delif(ns: Namespace, store: Store, name: str) -> None:
    """VALE_DELIF: ENXIO if absent, EINVAL if not a persistent VALE interface, EBUSY while
    attached or open."""
    reg = store.reg
    p = reg.parents.get(name)
    if p is None:
        raise NoSuchPortError(errno.ENXIO, f"VALE_DELIF {name!r}: no such interface")
    v = p.vale
    if v is None or not v.persistent:
        raise InvalidRequestError(errno.EINVAL, f"VALE_DELIF {name!r}: not a persistent VALE interface")
    if v.switch is not None or _port_users(reg, name) or reg.pipes.any("parent", name):
        if v.switch:
            raise PortBusyError(errno.EBUSY, f"VALE_DELIF {name!r}: attached to {v.switch}; detach it "
                                f"first (VALE_DETACH / vale-ctl -d {v.switch}:{name})")
        raise PortBusyError(errno.EBUSY, f"VALE_DELIF {name!r}: in use (open, or the parent of open "
                            "pipes); close it first")
    del reg.parents[name]
    if not memory.in_use(reg, p.mem_id) and p.mem_id in reg.mems:
        memory.destroy_mem(ns, reg, p.mem_id)
    store.commit()


def attach(ns: Namespace, store: Store, name: str, mode: int, mem_id: int) -> int:
    """VALE_ATTACH ``valeSW:NAME`` of a persistent interface; returns the port index.
    A second attach (to any switch) is EBUSY: netmap's kernel renames the port and may crash
    there (spec E5), the emulator refuses it."""
    if name[:4] != abi.NM_BDG_NAME or ":" not in name:
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: need 'valeSW:IFNAME'")
    sw, port = split_vale_name(name)
    reg = store.reg
    if mem_id and mem_id != memory.GLOBAL_MEM_ID and mem_id not in reg.mems:
        raise InvalidRequestError(errno.EINVAL,
                                  f"VALE_ATTACH {name!r}: nr_mem_id={mem_id} names no allocator")
    if mode not in (abi.NR_REG_ALL_NIC, abi.NR_REG_NIC_SW):
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: nr_mode={mode}; allowed: "
                                  "NR_REG_ALL_NIC, NR_REG_NIC_SW")
    eph = reg.parents.get(name)
    if eph is not None and eph.vale is not None:
        raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: an ephemeral port is already on the switch")
    p = reg.parents.get(port)
    if p is None or p.vale is None:
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: no interface {port!r} to attach "
                                  "(create one with VALE_NEWIF / vale-ctl -n)")
    if p.vale.switch is not None:
        raise PortBusyError(errno.EBUSY,
                            f"VALE_ATTACH {name!r}: {port!r} is already attached to {p.vale.switch}")
    if _port_users(reg, port):
        raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: {port!r} is open; close it first")
    try:
        idx = _add_port(ns, reg, sw, port, True)
        _set_vale(reg, port, switch=sw, port=idx)
        store.commit()
    except BaseException:
        memory.undo(ns, store)
        raise
    return idx


def detach(ns: Namespace, store: Store, name: str) -> int:
    """VALE_DETACH: returns the former port index; EBUSY for an ephemeral port or one in use,
    ENXIO for an unknown port."""
    reg = store.reg
    eph = reg.parents.get(name)
    if eph is not None and eph.vale is not None and not eph.vale.persistent:
        raise PortBusyError(errno.EBUSY, f"VALE_DETACH {name!r}: an ephemeral port leaves with its last user")
    sw, port = split_vale_name(name) if ":" in name else (None, name)
    p = reg.parents.get(port)
    if p is None or p.vale is None or p.vale.switch is None or (sw and p.vale.switch != sw):
        raise NoSuchPortError(errno.ENXIO, f"VALE_DETACH {name!r}: no such port on a switch")
    if _port_users(reg, port):
        raise PortBusyError(errno.EBUSY, f"VALE_DETACH {name!r}: the port is open; close it first")
    idx = p.vale.port
    assert idx is not None
    out: list[str] = []
    _remove_port(ns, reg, p.vale.switch, idx, out)
    _set_vale(reg, port, switch=None, port=None)
    store.commit()
    return idx


# --- lookups ----------------------------------------------------------------------------------

def list_next(reg: Registry, bridge_idx: int, port_idx: int) -> tuple[str, int, int] | None:
    """VALE_LIST with an empty name: the first (name, bridge, port) at or after the indexes."""
    for rec in sorted(reg.switches.values(), key=lambda r: r.idx):
        if rec.idx < bridge_idx:
            continue
        start = port_idx if rec.idx == bridge_idx else 0
        for idx, pname in rec.ports:
            if idx >= start:
                _, v = _port(reg, pname)
                return v.listed(pname), rec.idx, idx
    return None


def list_port(reg: Registry, name: str) -> tuple[int, int]:
    """VALE_LIST with a name: (bridge index, port index); port 255 when the switch exists but
    the port does not; EINVAL without the 'vale' prefix (checked first, as netmap_vale_list
    does), then ENOENT without ':' or without the switch."""
    if name[:4] != abi.NM_BDG_NAME:
        raise InvalidRequestError(errno.EINVAL, f"VALE_LIST {name!r}: the name must start with 'vale'")
    if ":" not in name:
        raise NetmapOSError(errno.ENOENT, f"VALE_LIST {name!r}: not a valeSW:PORT name")
    sw, port = name.split(":", 1)
    rec = reg.switches.get(sw)
    if rec is None:
        raise NetmapOSError(errno.ENOENT, f"VALE_LIST {name!r}: no switch {sw!r}")
    for k, pname in rec.ports:
        if pname in (name, port):
            return rec.idx, k
    return rec.idx, abi.NM_BDG_NOPORT


def set_hdr_len(ns: Namespace, store: Store, name: str, hdr_len: int) -> None:
    """PORT_HDR_SET: VALE ports only, existing (ENXIO), length 0, 10 or 12 (EINVAL)."""
    reg = store.reg
    pname = _existing(reg, name)
    if hdr_len not in abi.NM_VNET_HDR_LENS:
        raise InvalidRequestError(errno.EINVAL, f"PORT_HDR_SET {name!r}: nr_hdr_len={hdr_len}; "
                                  f"allowed: {list(abi.NM_VNET_HDR_LENS)}")
    v = _set_vale(reg, pname, hdr_len=hdr_len)
    store.commit()
    bump(ns, reg, v.switch)


def hdr_len_of(reg: Registry, name: str) -> int:
    """PORT_HDR_GET: the port's virtio-net header length (0 for non-VALE ports)."""
    p = reg.parents.get(name)
    if p is not None and p.vale is None:
        return 0
    _, v = _port(reg, _existing(reg, name))
    return v.hdr_len


def _existing(reg: Registry, name: str) -> str:
    try:
        pname = find_port(reg, name) if name[:3] == "val" or name in reg.parents else None
    except NetmapOSError:
        pname = None
    if pname is None or pname not in reg.parents:
        raise NoSuchPortError(errno.ENXIO, f"{name!r}: no such VALE port")
    return pname
