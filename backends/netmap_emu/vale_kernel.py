"""The emulated kernel's VALE control path: switches, ports (ephemeral and persistent),
REGISTER of VALE names, attach/detach/list/newif/delif, all in the namespace registry.

Registry records (namespace lock held for every function here)::

    reg["switches"][SW] = {"idx": bridge index 0..7, "gen": segment generation,
                           "free": netmap's port-index free list (254 entries), "active": n,
                           "ports": {port index: parent name}}
    reg["parents"][NAME] = {"mem_id", "auto": False, "tx_slots", "rx_slots", "pipes": {},
                            "rings": [ring objects owned by the port],
                            "vale": {"switch", "port", "persistent", "ntx", "nrx", "txs", "rxs",
                                     "tx": [obj or -1], "rx": [obj or -1], "hdr_len"}}
    reg["bindings"][bid] = {..., "kind": "vale", "parent": NAME, "pipe": None}
    reg["segments"][shm name] = "switch SW"

An ephemeral port's parent name is its full ``valeSW:PORT``; a persistent port's is the bare
interface name, listed in its switch as ``valeSW:NAME`` once attached. Ports are destroyed
with their last binding (ephemeral) or by VALE_DELIF (persistent); a switch with its last port.
"""
from __future__ import annotations

import errno
import os
import re

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.regmodes import bound_rings
from netmap_core.errors import (InvalidRequestError, NetmapOSError, NoSuchPortError, OutOfMemoryError,
                                PortBusyError)

from . import allocator as _alloc
from . import kernel as _k
from .layout import GLOBAL_PARAMS, geometry, private_params
from .namespace import Namespace
from .vale_switch import attach_seg, create_seg, destroy_seg, seg_name

__all__ = ["MAX_BRIDGES", "split_vale_name", "register_vale", "is_persistent", "drop_hook",
           "find_port", "switch_of", "newif", "delif", "attach", "detach", "list_port", "list_next",
           "would_be_port", "set_hdr_len", "hdr_len_of", "bump", "vale_config"]

MAX_BRIDGES = abi.NM_BRIDGES                         # dev.netmap.max_bridges (8)
NM_BDG_MAXPORTS = abi.NM_BDG_MAXPORTS                  # 254 port slots
NM_BDG_MAXRINGS = abi.NM_BDG_MAXRINGS
NM_BDG_MAXSLOTS = abi.NM_BDG_MAXSLOTS
NM_BRIDGE_RINGSIZE = abi.NM_BRIDGE_RINGSIZE
EXTRA_MAX = abi.NM_BDG_MAX_EXTRA_BUFS
_IDENT = re.compile(r"^[A-Za-z0-9_]*$")
#: tunables (netmap's sysctl dev.netmap.max_bridges); ``$PYNETMAP_EMU_MAX_BRIDGES`` sets it for
#: every process of a namespace (give all of them the same value)
vale_config = {"max_bridges": int(os.environ.get("PYNETMAP_EMU_MAX_BRIDGES", abi.NM_BRIDGES))}


def _err(cls, code, msg):
    return cls(code, msg)


# --- names ----------------------------------------------------------------------------------

def split_vale_name(name: str) -> tuple[str, str]:
    """``valeSW:PORT`` -> (``valeSW``, ``PORT``) with netmap's limits (spec E1): the switch name
    is ``[A-Za-z0-9_]`` within 16 characters and ``:PORT`` at most 16 characters (ENOMEM, as
    the kernel's create path reports); a name without ':' is no VALE name (ENXIO)."""
    i = name.find(":")
    if i < 0:
        raise NoSuchPortError(errno.ENXIO, f"{name}: a VALE port name needs 'valeSW:PORT'")
    sw, port = name[:i], name[i + 1:]
    if i > abi.IFNAMSIZ or not _IDENT.match(sw):
        raise OutOfMemoryError(errno.ENOMEM, f"{name}: switch name {sw!r} must be [A-Za-z0-9_] "
                               f"and at most {abi.IFNAMSIZ} characters")
    if not port:
        raise InvalidRequestError(errno.EINVAL, f"{name}: empty port name after ':'")
    if len(port) + 1 > abi.IFNAMSIZ:
        raise OutOfMemoryError(errno.ENOMEM, f"{name}: port part {':' + port!r} is {len(port) + 1} "
                               f"characters; allowed: at most {abi.IFNAMSIZ}")
    return sw, port


def is_persistent(reg: dict, name: str) -> bool:
    p = reg["parents"].get(name)
    return bool(p and p.get("vale", {}).get("persistent"))


def _listed(pname: str, v: dict) -> str:
    return f"{v['switch']}:{pname}" if v["persistent"] else pname


# --- switches ---------------------------------------------------------------------------------

def _switches(reg: dict) -> dict:
    return reg.setdefault("switches", {})


def switch_of(ns: Namespace, reg: dict, sw: str):
    """(record, segment) of switch ``sw`` or (None, None)."""
    rec = _switches(reg).get(sw)
    if rec is None:
        return None, None
    return rec, attach_seg(ns, rec["idx"], rec["gen"])


def _new_switch(ns: Namespace, reg: dict, sw: str) -> dict:
    used = {r["idx"] for r in _switches(reg).values()}
    limit = vale_config["max_bridges"]
    idx = next((i for i in range(limit) if i not in used), None)
    if idx is None:
        raise OutOfMemoryError(errno.ENOMEM, f"{sw}: all {limit} VALE switches are in use "
                               "(dev.netmap.max_bridges)")
    reg["gen"] += 1
    gen = reg["gen"]
    create_seg(ns, idx, gen)
    rec = {"idx": idx, "gen": gen, "free": list(range(NM_BDG_MAXPORTS)), "active": 0, "ports": {}}
    _switches(reg)[sw] = rec
    reg.setdefault("segments", {})[seg_name(ns, idx, gen)] = f"switch {sw}"
    return rec


def _destroy_switch(ns: Namespace, reg: dict, sw: str) -> list[str]:
    rec = _switches(reg).pop(sw)
    name = seg_name(ns, rec["idx"], rec["gen"])
    reg.get("segments", {}).pop(name, None)
    return [f"switch {sw}"] + [f"segment {s}" for s in destroy_seg(ns, rec["idx"], rec["gen"])]


def bump(ns: Namespace, reg: dict, sw: str | None) -> None:
    """Tell senders that switch ``sw``'s ports/rings changed (they reload before forwarding)."""
    if sw is None:
        return
    rec, seg = switch_of(ns, reg, sw)
    if seg is not None:
        with seg.exclusive():
            seg.bump()


def _add_port(ns: Namespace, reg: dict, sw: str, pname: str, create: bool) -> int:
    """Give ``pname`` a port index on ``sw`` (creating the switch) - netmap's free list: the
    first ``active`` entries are in use, a new port takes entry ``active`` (spec E2, E3)."""
    rec = _switches(reg).get(sw)
    if rec is None:
        if not create:
            raise InvalidRequestError(errno.EINVAL, f"{sw}: no such switch")
        rec = _new_switch(ns, reg, sw)
    if rec["active"] + 2 >= NM_BDG_MAXPORTS:
        raise OutOfMemoryError(errno.ENOMEM, f"{sw}: {rec['active']} ports active; a switch keeps "
                               f"{NM_BDG_MAXPORTS - 2} at most (two slots reserved for a NIC and its host)")
    idx = rec["free"][rec["active"]]
    rec["active"] += 1
    rec["ports"][str(idx)] = pname
    seg = attach_seg(ns, rec["idx"], rec["gen"])
    seg.bridge.forget_port(idx)
    with seg.exclusive():
        seg.bump()
    return idx


def _remove_port(ns: Namespace, reg: dict, sw: str, idx: int, out: list) -> None:
    rec = _switches(reg)[sw]
    seg = attach_seg(ns, rec["idx"], rec["gen"])
    with seg.exclusive():   # no sender is inside a forwarding pass of this switch now
        del rec["ports"][str(idx)]
        free = rec["free"]
        pos = free.index(idx)
        last = rec["active"] - 1
        free[pos], free[last] = free[last], free[pos]
        rec["active"] = last
        seg.bump()
    if not rec["ports"]:
        out += _destroy_switch(ns, reg, sw)


# --- ports ------------------------------------------------------------------------------------

def _new_port_rec(mem_id: int, ntx: int, nrx: int, txs: int, rxs: int, persistent: bool) -> dict:
    return {"mem_id": mem_id, "auto": False, "tx_slots": txs, "rx_slots": rxs, "pipes": {},
            "rings": [], "vale": {"switch": None, "port": None, "persistent": persistent,
                                  "ntx": ntx, "nrx": nrx, "txs": txs, "rxs": rxs,
                                  "tx": [-1] * ntx, "rx": [-1] * nrx, "hdr_len": 0}}


def _geometry_hints(hints: dict) -> tuple[int, int, int, int]:
    txr = _k._clamp(hints.get("tx_rings", 0), 1, 1, NM_BDG_MAXRINGS)
    rxr = _k._clamp(hints.get("rx_rings", 0), 1, 1, NM_BDG_MAXRINGS)
    txs = _k._clamp(hints.get("tx_slots", 0), NM_BRIDGE_RINGSIZE, 1, NM_BDG_MAXSLOTS)
    rxs = _k._clamp(hints.get("rx_slots", 0), NM_BRIDGE_RINGSIZE, 1, NM_BDG_MAXSLOTS)
    return txr, rxr, txs, rxs


def _port_mem(ns: Namespace, reg: dict, name: str, want: int, geom_hints, extra: int) -> int:
    """The allocator of a new port: ``want`` if given (it must exist; 1 is created on
    demand), else a new private one sized by netmap_mem_private_new (npipes = 2, spec A5).
    Commits a txn marker naming it before touching it."""
    if want:
        if str(want) in reg["mems"]:
            reg["txn"] = {"mems": [want]}
            ns.save(reg)
        else:
            if want != _k.GLOBAL_MEM_ID:
                raise InvalidRequestError(errno.EINVAL, f"{name}: nr_mem_id={want} names no allocator; "
                                          f"existing: {sorted([1] + [int(k) for k in reg['mems']])}")
            reg["txn"] = {"mems": [want]}
            ns.save(reg)
            _k._create_mem(ns, reg, want, GLOBAL_PARAMS, False)
        return want
    txr, rxr, txs, rxs = geom_hints
    mem_id = _k._new_mem_id(reg)
    reg["txn"] = {"mems": [mem_id]}
    ns.save(reg)
    _k._create_mem(ns, reg, mem_id, private_params(txr, txs, rxr, rxs, extra, abi.NM_BDG_PRIV_NPIPES), True)
    return mem_id


def would_be_port(reg: dict, hints: dict):
    """(mem_id, geometry, rings/slots) a new default-sized port would get, creating nothing
    (PORT_INFO_GET / POOLS_INFO_GET on a VALE name that does not exist yet, spec C5)."""
    g = _geometry_hints(hints)
    want = hints.get("mem_id", 0)
    if want:
        if str(want) in reg["mems"]:
            m = reg["mems"][str(want)]
            return want, geometry(m["params"]), g
        if want == _k.GLOBAL_MEM_ID:
            return want, geometry(GLOBAL_PARAMS), g
        raise InvalidRequestError(errno.EINVAL, f"nr_mem_id={want} names no allocator")
    txr, rxr, txs, rxs = g
    return (_k._new_mem_id(reg), geometry(private_params(txr, txs, rxr, rxs, 0, abi.NM_BDG_PRIV_NPIPES)), g)


def find_port(reg: dict, kname: str):
    """The parent name REGISTER of ``kname`` addresses: an existing ephemeral port, an attached
    persistent one (``valeSW:NAME``) or a persistent interface by its bare name; None when a
    new ephemeral port would be created. Raises EINVAL for an existing but unattached
    interface named through a switch (spec E3)."""
    parents = reg["parents"]
    if kname in parents:
        if "vale" in parents[kname]:
            return kname
        raise PortBusyError(errno.EBUSY, f"{kname}: already exists as the parent of pipes opened before "
                            "the port (close them, or open the VALE port first)")
    if kname[:3] != "val":
        return kname if is_persistent(reg, kname) else None
    sw, port = split_vale_name(kname)
    p = parents.get(port)
    if p is not None:
        v = p.get("vale")
        if v is not None and v["persistent"] and v["switch"] == sw:
            return port
        raise InvalidRequestError(errno.EINVAL, f"{kname}: {port!r} is an existing interface not "
                                  f"attached to {sw}; attach it first (VALE_ATTACH / vale-ctl -a)")
    return None


def _ensure_rings(a: _alloc.Allocator, mrec: dict, prec: dict, tx_ids, rx_ids, name: str) -> bool:
    """Create the port's missing rings among those bound (RX first, then TX, spec A7).
    Returns True when a new RX ring appeared (senders must reload)."""
    v = prec["vale"]
    geom = a.geom
    new_rx = [k for k in rx_ids if v["rx"][k] < 0]
    new_tx = [k for k in tx_ids if v["tx"][k] < 0]
    for n in ([v["rxs"]] if new_rx else []) + ([v["txs"]] if new_tx else []):
        if n > geom.max_slots():
            raise OutOfMemoryError(errno.ENOMEM, f"{name}: {n} slots do not fit a ring object of "
                                   f"mem_id {a.mem_id} (at most {geom.max_slots()})")
    for side, ids, n, d in (("rx", new_rx, v["rxs"], abi.NR_RX), ("tx", new_tx, v["txs"], abi.NR_TX)):
        for k in ids:
            obj = _k._take_obj(mrec["ring_used"], geom.ring_pool.objtotal, "ring", a.mem_id)
            a.init_ring(obj, n, k, d, a.alloc_bufs(n))
            init_kring(a, obj, n, d)
            v[side][k] = obj
            prec["rings"].append(obj)
    return bool(new_rx)


def init_kring(a: _alloc.Allocator, obj: int, n: int, direction: int) -> None:
    """Kernel state of a fresh unpaired ring (its own 'peer'): TX hwcur 0, hwtail n-1,
    rhead/rcur 0, rtail n-1; RX all 0 (spec A10)."""
    b = a.blocks
    b[obj, :] = 0
    if direction == abi.NR_TX:
        b[obj, _alloc.W_PEER_HWTAIL] = n - 1
        b[obj, _alloc.W_RTAIL] = n - 1
    b[obj, _alloc.W_PEER] = obj + 1
    b[obj, _alloc.W_NSLOTS] = n
    b[obj, _alloc.W_DIR] = direction


_MODES = (abi.NR_REG_ALL_NIC, abi.NR_REG_ONE_NIC)


def _select(mode: int, ringid: int, flags: int, ntx: int, nrx: int, name: str):
    """Bound ring ids per direction (spec H1): a VALE port has no host rings, so ALL_NIC or ONE_NIC."""
    b = bound_rings(mode, ringid, flags, tx=ntx, rx=nrx, name=name, allowed=_MODES)
    return list(b.tx), list(b.rx)


def register_vale(ns: Namespace, kname: str, mode: int, ringid: int, flags: int, hints: dict,
                  pid: int) -> tuple[_k.Registered, dict]:
    """REGISTER a VALE port (ephemeral ``valeSW:PORT`` created on the fly, an attached
    persistent ``valeSW:NAME``, or a persistent interface by its bare name): rings, netmap_if,
    extra buffers; the binding record; senders told to reload. Namespace lock held.
    Returns the registration and the committed registry."""
    reg, _ = _k.prepare(ns)
    pname = find_port(reg, kname)
    extra_req = max(0, min(int(hints.get("extra_bufs", 0)), EXTRA_MAX))
    want_mem = int(hints.get("mem_id", 0))
    created = pname is None
    try:
        if created:
            sw, _port = split_vale_name(kname)
            g = _geometry_hints(hints)
            pname = kname
            mem_id = _port_mem(ns, reg, kname, want_mem, g, extra_req)   # commits the txn marker
            prec = _new_port_rec(mem_id, g[0], g[1], g[2], g[3], False)
            reg["parents"][pname] = prec
            prec["vale"]["switch"] = sw
            prec["vale"]["port"] = _add_port(ns, reg, sw, pname, True)
        else:
            prec = reg["parents"][pname]
            mem_id = prec["mem_id"]
            if want_mem and want_mem != mem_id:
                raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={want_mem} differs from the "
                                          f"port's allocator {mem_id}")
            reg["txn"] = {"mems": [mem_id]}
            ns.save(reg)
        v = prec["vale"]
        if v["hdr_len"] and not flags & abi.NR_ACCEPT_VNET_HDR:
            raise NetmapOSError(errno.EIO, f"{kname}: the port exchanges {v['hdr_len']}-byte virtio-net "
                                "headers; register with NR_ACCEPT_VNET_HDR")
        mrec = reg["mems"][str(mem_id)]
        a = _k._alloc_of(ns, reg, mem_id)
        ntx, nrx = v["ntx"], v["nrx"]
        tx_ids, rx_ids = _select(mode, ringid, flags, ntx, nrx, kname)
        for o in reg["bindings"].values():
            if o.get("kind") != "vale" or o["parent"] != pname:
                continue
            shared = (set(o["tx"]) & set(tx_ids)) or (set(o["rx"]) & set(rx_ids))
            if shared and (o["excl"] or flags & abi.NR_EXCLUSIVE):
                raise PortBusyError(errno.EBUSY, f"{kname}: ring(s) already bound"
                                    + (" exclusively (NR_EXCLUSIVE)" if o["excl"] else "")
                                    + f" by another registration (pid {o['pid']})")
        _ensure_rings(a, mrec, prec, tx_ids, rx_ids, kname)
        geom = a.geom
        if ntx + nrx + 2 > geom.max_if_rings():
            raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {ntx + nrx + 2} ring_ofs entries do not fit "
                                   f"a netmap_if of mem_id {mem_id}")
        if_obj = _k._take_obj(mrec["if_used"], geom.if_pool.objtotal, "netmap_if", mem_id)
        extra = a.alloc_bufs(extra_req, partial=True)
        head = a.push_extra(extra)
        if_off = a.if_offset(if_obj)
        ofs = ([a.ring_offset(v["tx"][k]) - if_off if k in tx_ids else 0 for k in range(ntx)] + [0]
               + [a.ring_offset(v["rx"][k]) - if_off if k in rx_ids else 0 for k in range(nrx)] + [0])
        a.write_if(if_obj, pname if v["persistent"] else kname, ntx, nrx, ofs, head)
        bid = reg["next_bid"]
        reg["next_bid"] = bid + 1
        ns.hold_live(bid)
        try:
            path = ns.fifo_path(bid)
            _k._unlink(path)
            os.mkfifo(path, 0o600)
            reg["bindings"][str(bid)] = {
                "pid": pid, "mem_id": mem_id, "parent": pname, "pipe": None, "end": 0, "kind": "vale",
                "if": if_obj, "tx": tx_ids, "rx": rx_ids, "excl": bool(flags & abi.NR_EXCLUSIVE),
                "flags": flags, "name": kname, "extra": int(extra.size),
            }
            reg["txn"] = None
            ns.save(reg)
        except BaseException:
            ns.release_live(bid)
            _k._unlink(ns.fifo_path(bid))
            raise
        bump(ns, reg, v["switch"])   # new port or newly bound rings: senders reload
    except BaseException:
        _undo(ns)
        raise
    info = RegisterInfo(
        name=kname, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id, memsize=geom.memsize,
        offset=if_off, tx_rings=ntx, rx_rings=nrx, tx_slots=v["txs"], rx_slots=v["rxs"],
        host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    return _k.Registered(bid, info, a, tuple(v["tx"][k] for k in tx_ids), tuple(v["rx"][k] for k in rx_ids),
                         tuple(tx_ids), tuple(rx_ids)), reg


def _undo(ns: Namespace) -> None:
    """Roll back to the last committed registry after a failed operation: rebuild the bitmaps
    of allocators it was touching, unlink segments (allocators, switches) it does not know."""
    disk = ns.load()
    if disk["txn"] is not None:
        _k._recover(ns, disk)
    else:
        _k._sweep_orphans(ns, disk)


# --- unregister --------------------------------------------------------------------------------

def _port_users(reg: dict, pname: str) -> list[dict]:
    return [b for b in reg["bindings"].values() if b.get("kind") == "vale" and b["parent"] == pname]


def _free_rings(a: _alloc.Allocator, reg: dict, prec: dict, objs, cand: list) -> None:
    mrec = reg["mems"][str(prec["mem_id"])]
    v = prec["vale"]
    for o in objs:
        cand.append(_k._slot_bufs(a, [o]))   # kring block kept until reuse, as for pipes
        if o in mrec["ring_used"]:
            mrec["ring_used"].remove(o)
        if o in prec["rings"]:
            prec["rings"].remove(o)
        for side in ("tx", "rx"):
            v[side] = [-1 if x == o else x for x in v[side]]


def drop_hook(ns: Namespace, reg: dict, b: dict, a: _alloc.Allocator, cand: list) -> list[str]:
    """Called by the core's unregister after binding ``b`` left the registry (its netmap_if
    and extra list already handled): free rings nobody binds any more, destroy an ephemeral
    port that lost its last user, and a switch that lost its last port."""
    pname = b.get("parent")
    prec = reg["parents"].get(pname)
    if prec is None or "vale" not in prec:
        return []
    out: list[str] = []
    v = prec["vale"]
    users = _port_users(reg, pname)
    sw = v["switch"]
    if b.get("kind") == "vale":
        bound_tx = {k for u in users for k in u["tx"]}
        bound_rx = {k for u in users for k in u["rx"]}
        unused = [v["tx"][k] for k in range(v["ntx"]) if v["tx"][k] >= 0 and k not in bound_tx]
        unused += [v["rx"][k] for k in range(v["nrx"]) if v["rx"][k] >= 0 and k not in bound_rx]
        if unused:
            if sw is not None:
                rec, seg = switch_of(ns, reg, sw)
                with seg.exclusive():   # senders must not be copying into these rings
                    _free_rings(a, reg, prec, unused, cand)
                    seg.bump()
            else:
                _free_rings(a, reg, prec, unused, cand)
    if not users and not prec["pipes"] and not v["persistent"]:
        if sw is not None:
            _remove_port(ns, reg, sw, v["port"], out)
        del reg["parents"][pname]
        out.append(f"VALE port {pname} destroyed")
    return out


# --- persistent interfaces and attach/detach ------------------------------------------------

def newif(ns: Namespace, name: str, tx_rings: int, rx_rings: int, tx_slots: int, rx_slots: int,
          mem_id: int) -> dict:
    """VALE_NEWIF: a persistent VALE interface ``name`` (spec C5, E5). Returns the effective
    geometry as a dict. EINVAL for a bad name or mem_id, EEXIST if the interface exists."""
    if not name or len(name) >= abi.IFNAMSIZ or name[:3] == "val" or not re.match(r"^[^\s:{}/@*^-]+$", name):
        raise InvalidRequestError(errno.EINVAL, f"VALE_NEWIF {name!r}: need an interface name of 1..15 "
                                  "characters, not starting with 'val', without ':{}/@*^-'")
    reg, _ = _k.prepare(ns)
    if name in reg["parents"]:
        raise NetmapOSError(errno.EEXIST, f"VALE_NEWIF {name!r}: the interface exists")
    hints = {"tx_rings": tx_rings, "rx_rings": rx_rings, "tx_slots": tx_slots, "rx_slots": rx_slots}
    g = _geometry_hints(hints)
    reg["txn"] = {"mems": []}
    ns.save(reg)
    try:
        mid = _port_mem(ns, reg, name, mem_id, g, 0)
        reg["parents"][name] = _new_port_rec(mid, g[0], g[1], g[2], g[3], True)
        reg["txn"] = None
        ns.save(reg)
    except BaseException:
        _undo(ns)
        raise
    return {"tx_rings": g[0], "rx_rings": g[1], "tx_slots": g[2], "rx_slots": g[3], "mem_id": mid}


def delif(ns: Namespace, name: str) -> None:
    """VALE_DELIF: ENXIO if absent, EINVAL if not a persistent VALE interface, EBUSY while
    attached or open."""
    reg, _ = _k.prepare(ns)
    p = reg["parents"].get(name)
    if p is None:
        raise NoSuchPortError(errno.ENXIO, f"VALE_DELIF {name!r}: no such interface")
    v = p.get("vale")
    if v is None or not v["persistent"]:
        raise InvalidRequestError(errno.EINVAL, f"VALE_DELIF {name!r}: not a persistent VALE interface")
    if v["switch"] is not None or _port_users(reg, name) or p["pipes"]:
        raise PortBusyError(errno.EBUSY, f"VALE_DELIF {name!r}: in use"
                            + (f" (attached to {v['switch']})" if v["switch"] else ""))
    del reg["parents"][name]
    mem_id = p["mem_id"]
    users = any(o["mem_id"] == mem_id for o in reg["bindings"].values())
    users = users or any(q["mem_id"] == mem_id for q in reg["parents"].values())
    if not users and str(mem_id) in reg["mems"]:
        a = _k._alloc_of(ns, reg, mem_id)
        _alloc.forget(a)
        _k._destroy_mem(ns, reg, mem_id)
    ns.save(reg)


def attach(ns: Namespace, name: str, mode: int, mem_id: int) -> int:
    """VALE_ATTACH ``valeSW:NAME`` of a persistent interface; returns the port index.
    A second attach (to any switch) is EBUSY: netmap's kernel renames the port and may crash
    there (spec E5), the emulator refuses it."""
    if name[:4] != abi.NM_BDG_NAME or ":" not in name:
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: need 'valeSW:IFNAME'")
    sw, port = split_vale_name(name)
    reg, _ = _k.prepare(ns)
    if mem_id and mem_id != _k.GLOBAL_MEM_ID and str(mem_id) not in reg["mems"]:
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: nr_mem_id={mem_id} names no allocator")
    if mode not in (abi.NR_REG_ALL_NIC, abi.NR_REG_NIC_SW):
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: nr_mode={mode}; allowed: "
                                  "NR_REG_ALL_NIC, NR_REG_NIC_SW")
    p = reg["parents"].get(port)
    if name in reg["parents"] and "vale" in reg["parents"][name]:
        raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: an ephemeral port is already on the switch")
    if p is None or "vale" not in p:
        raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: no interface {port!r} to attach "
                                  "(create one with VALE_NEWIF / vale-ctl -n)")
    v = p["vale"]
    if v["switch"] is not None:
        raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: {port!r} is already attached to {v['switch']}")
    if _port_users(reg, port):
        raise PortBusyError(errno.EBUSY, f"VALE_ATTACH {name!r}: {port!r} is open; close it first")
    idx = _add_port(ns, reg, sw, port, True)
    v["switch"], v["port"] = sw, idx
    ns.save(reg)
    return idx


def detach(ns: Namespace, name: str) -> int:
    """VALE_DETACH: returns the former port index; EBUSY for an ephemeral port or one in use,
    ENXIO for an unknown port."""
    reg, _ = _k.prepare(ns)
    if name in reg["parents"] and "vale" in reg["parents"][name] and not reg["parents"][name]["vale"]["persistent"]:
        raise PortBusyError(errno.EBUSY, f"VALE_DETACH {name!r}: an ephemeral port leaves with its last user")
    sw, port = split_vale_name(name) if ":" in name else (None, name)
    p = reg["parents"].get(port)
    if p is None or "vale" not in p or p["vale"]["switch"] is None or (sw and p["vale"]["switch"] != sw):
        raise NoSuchPortError(errno.ENXIO, f"VALE_DETACH {name!r}: no such port on a switch")
    if _port_users(reg, port):
        raise PortBusyError(errno.EBUSY, f"VALE_DETACH {name!r}: the port is open")
    v = p["vale"]
    idx = v["port"]
    out: list[str] = []
    _remove_port(ns, reg, v["switch"], idx, out)
    v["switch"], v["port"] = None, None
    ns.save(reg)
    return idx


# --- lookups ----------------------------------------------------------------------------------

def _ordered_switches(reg: dict):
    return sorted(_switches(reg).items(), key=lambda kv: kv[1]["idx"])


def list_next(reg: dict, bridge_idx: int, port_idx: int):
    """VALE_LIST with an empty name: the first (name, bridge, port) at or after the indexes."""
    for sw, rec in _ordered_switches(reg):
        if rec["idx"] < bridge_idx:
            continue
        start = port_idx if rec["idx"] == bridge_idx else 0
        for idx in sorted(int(k) for k in rec["ports"]):
            if idx >= start:
                pname = rec["ports"][str(idx)]
                return _listed(pname, reg["parents"][pname]["vale"]), rec["idx"], idx
    return None


def list_port(reg: dict, name: str) -> tuple[int, int]:
    """VALE_LIST with a name: (bridge index, port index); port 255 when the switch exists but
    the port does not; EINVAL without the 'vale' prefix (checked first, as netmap_vale_list
    does), then ENOENT without ':' or without the switch."""
    if name[:4] != abi.NM_BDG_NAME:
        raise InvalidRequestError(errno.EINVAL, f"VALE_LIST {name!r}: the name must start with 'vale'")
    if ":" not in name:
        raise NetmapOSError(errno.ENOENT, f"VALE_LIST {name!r}: not a valeSW:PORT name")
    sw, port = name.split(":", 1)
    rec = _switches(reg).get(sw)
    if rec is None:
        raise NetmapOSError(errno.ENOENT, f"VALE_LIST {name!r}: no switch {sw!r}")
    for k, pname in rec["ports"].items():
        if pname in (name, port):
            return rec["idx"], int(k)
    return rec["idx"], abi.NM_BDG_NOPORT


def set_hdr_len(ns: Namespace, name: str, hdr_len: int) -> None:
    """PORT_HDR_SET: VALE ports only, existing (ENXIO), length 0, 10 or 12 (EINVAL)."""
    reg, _ = _k.prepare(ns)
    pname = _existing(reg, name)
    if hdr_len not in abi.NM_VNET_HDR_LENS:
        raise InvalidRequestError(errno.EINVAL, f"PORT_HDR_SET {name!r}: nr_hdr_len={hdr_len}; "
                                  f"allowed: {list(abi.NM_VNET_HDR_LENS)}")
    v = reg["parents"][pname]["vale"]
    v["hdr_len"] = hdr_len
    ns.save(reg)
    bump(ns, reg, v["switch"])


def hdr_len_of(reg: dict, name: str) -> int:
    """PORT_HDR_GET: the port's virtio-net header length (0 for non-VALE ports)."""
    p = reg["parents"].get(name)
    if p is not None and "vale" not in p:
        return 0
    pname = _existing(reg, name)
    return int(reg["parents"][pname]["vale"]["hdr_len"])


def _existing(reg: dict, name: str) -> str:
    try:
        pname = find_port(reg, name) if name[:3] == "val" or name in reg["parents"] else None
    except NetmapOSError:
        pname = None
    if pname is None or pname not in reg["parents"]:
        raise NoSuchPortError(errno.ENXIO, f"{name!r}: no such VALE port")
    return pname


# every process that may reclaim a VALE binding (any registry operation can) must run this
if drop_hook not in _k.DROP_HOOKS:
    _k.DROP_HOOKS.append(drop_hook)
from . import monitor as _monitor  # noqa: E402,F401 - installs the monitors' unregister hook too
