"""The emulated kernel's control path: REGISTER/unregister of pipe ends, reclaim and recovery.

Every function here runs under the namespace lock and keeps one invariant: the registry file is
the truth and is replaced atomically. An operation that touches an allocator first commits a
``txn`` marker naming it; if its process dies before the final commit, the next lock holder
rebuilds that allocator's buffer bitmap from what the registry says is alive (ring slots and
live extra-buffer lists) and unlinks segments the registry does not know.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import InvalidRequestError, OutOfMemoryError, PortBusyError
from netmap_core.regmodes import bound_rings

from . import allocator as _alloc
from .layout import GLOBAL_PARAMS, private_params
from .namespace import Namespace

__all__ = ["PipeName", "parse_pipe", "Registered", "register_pipe", "unregister", "prepare",
           "peer_bound", "gc", "snapshot", "NM_MAXPIPES", "NM_PIPE_MAXRINGS", "NM_PIPE_MAXSLOTS",
           "EXTRA_BUFS_MAX"]

NM_MAXPIPES = 64
NM_PIPE_MAXRINGS = 256
NM_PIPE_MAXSLOTS = 4096
NM_BDG_MAXRINGS = 16
NM_BRIDGE_RINGSIZE = 1024
EXTRA_BUFS_MAX = 524288
GLOBAL_MEM_ID = 1
#: called by unregister as ``hook(ns, reg, binding, allocator, cand)`` after the binding and its
#: pipe left the registry; a hook frees what it owns (appending freed buffers to ``cand``)
DROP_HOOKS: list = []
_END_NAMES = ("master", "slave")


@dataclass(frozen=True)
class PipeName:
    """``PARENT{ID`` (end 0, master) or ``PARENT}ID`` (end 1, slave)."""

    parent: str
    pipe_id: str
    end: int


def parse_pipe(name: str) -> PipeName | None:
    for i, ch in enumerate(name):
        if ch in "{}":
            return PipeName(name[:i], name[i + 1:], 0 if ch == "{" else 1)
    return None


@dataclass(frozen=True)
class Registered:
    """What :func:`register_pipe` hands to the binding."""

    bid: int
    info: RegisterInfo
    alloc: _alloc.Allocator
    tx_objs: tuple[int, ...]
    rx_objs: tuple[int, ...]
    tx_ids: tuple[int, ...]
    rx_ids: tuple[int, ...]


def _clamp(v: int, dflt: int, lo: int, hi: int) -> int:
    """netmap's ``nm_bound_var``: below ``lo`` (0 = unset) -> default, above ``hi`` -> hi."""
    if v < lo:
        return dflt
    return min(v, hi)


# --- registry helpers --------------------------------------------------------------------------

def _alloc_of(ns: Namespace, reg: dict, mem_id: int) -> _alloc.Allocator:
    return _alloc.attach(ns, mem_id, reg["mems"][str(mem_id)])


def _mem_ring_objs(reg: dict, mem_id: int) -> list[int]:
    out = []
    for b in reg["bindings"].values():   # rings a binding owns itself (monitors)
        if b["mem_id"] == mem_id:
            out.extend(b.get("rings", ()))
    for parent in reg["parents"].values():
        if parent["mem_id"] != mem_id:
            continue
        out.extend(parent.get("rings", ()))   # rings the parent owns itself (VALE ports)
        for pipe in parent["pipes"].values():
            for side in ("tx", "rx"):
                for objs in pipe[side]:
                    out.extend(o for o in objs if o >= 0)
    return out


def _slot_bufs(a: _alloc.Allocator, objs) -> np.ndarray:
    out = [np.zeros(0, dtype=np.int64)]
    for o in objs:
        try:
            out.append(a.slots(o)["buf_idx"].astype(np.int64))
        except OSError:  # never initialised (cannot happen for a committed ring): nothing to count
            pass
    return np.concatenate(out)


def _referenced(a: _alloc.Allocator, reg: dict, mem_id: int) -> np.ndarray:
    """Buffers the registry says are in use: every slot of every ring and every extra-buffer
    list of every binding of ``mem_id`` (as a bool mask over the buffer pool)."""
    mask = np.zeros(a.geom.nbufs, dtype=bool)
    mask[:2] = True
    refs = _slot_bufs(a, _mem_ring_objs(reg, mem_id))
    mask[refs[(refs >= 0) & (refs < a.geom.nbufs)]] = True
    for b in reg["bindings"].values():
        if b["mem_id"] == mem_id:
            mask[a.walk_list(a.bufs_head(b["if"]))] = True
    return mask


def _new_mem_id(reg: dict) -> int:
    """Spec A18: one above the most recently created live allocator, skipping ids in use."""
    used = {int(k) for k in reg["mems"]} | {GLOBAL_MEM_ID}
    live = [(m["seq"], int(k)) for k, m in reg["mems"].items() if int(k) != GLOBAL_MEM_ID]
    cand = max(live)[1] if live else GLOBAL_MEM_ID
    for _ in range(0x10000):
        cand = cand + 1 if cand < 0xFFFF else 2
        if cand not in used:
            return cand
    raise OutOfMemoryError(errno.ENOMEM, "every 16-bit mem_id is in use")


def _create_mem(ns: Namespace, reg: dict, mem_id: int, params, priv: bool) -> _alloc.Allocator:
    reg["gen"] += 1
    reg["seq"] += 1
    a = _alloc.create(ns, mem_id, reg["gen"], params, priv)
    reg["mems"][str(mem_id)] = {
        "gen": reg["gen"], "seq": reg["seq"], "params": [list(p) for p in params], "priv": priv,
        "memsize": a.geom.memsize, "if_used": [], "ring_used": [],
    }
    return a


def _take_obj(used: list[int], total: int, what: str, mem_id: int) -> int:
    taken = set(used)
    for k in range(total):
        if k not in taken:
            used.append(k)
            used.sort()
            return k
    raise OutOfMemoryError(errno.ENOMEM, f"mem_id {mem_id}: all {total} {what} objects are in use")


def _destroy_mem(ns: Namespace, reg: dict, mem_id: int) -> list[str]:
    rec = reg["mems"].pop(str(mem_id))
    return _alloc.destroy_segments([ns.shm_name("m", mem_id, rec["gen"]), ns.shm_name("k", mem_id, rec["gen"])])


def _mem_users(reg: dict, mem_id: int) -> bool:
    """An allocator is in use while a binding or a parent (pipe parent, VALE port) names it."""
    return (any(o["mem_id"] == mem_id for o in reg["bindings"].values())
            or any(p["mem_id"] == mem_id for p in reg["parents"].values()))


def _sweep_orphans(ns: Namespace, reg: dict) -> list[str]:
    """Unlink segments of this namespace that no registered allocator owns."""
    keep = set(reg.get("segments", {}))   # other registered segments (VALE switches)
    for k, m in reg["mems"].items():
        keep.add(ns.shm_name("m", int(k), m["gen"]))
        keep.add(ns.shm_name("k", int(k), m["gen"]))
    return _alloc.destroy_segments([s for s in ns.list_segments() if s not in keep])


def _recover(ns: Namespace, reg: dict) -> list[str]:
    """Finish after a process that died inside a registry transaction (see module doc)."""
    done = []
    for mem_id in reg["txn"].get("mems", []):
        if str(mem_id) in reg["mems"]:
            a = _alloc_of(ns, reg, mem_id)
            mask = _referenced(a, reg, mem_id)
            a.bitmap[:] = mask
            done.append(f"mem_id {mem_id}: buffer bitmap rebuilt after an interrupted update")
    done += [f"orphan segment {s}" for s in _sweep_orphans(ns, reg)]
    reg["txn"] = None
    ns.save(reg)
    return done


def _drop(ns: Namespace, reg: dict, bid: str) -> list[str]:
    """Unregister binding ``bid`` (close or reclaim): free its extra buffers and netmap_if; when
    the pipe has no binding left, free its rings; when the allocator has no user left, destroy
    it (spec A13, A17, F7, L6). Commits the registry."""
    b = reg["bindings"][bid]
    mem_id = b["mem_id"]
    mrec = reg["mems"][str(mem_id)]
    a = _alloc_of(ns, reg, mem_id)
    reg["txn"] = {"mems": [mem_id]}
    ns.save(reg)
    cand = [a.walk_list(a.bufs_head(b["if"]))]
    del reg["bindings"][bid]
    if b["if"] in mrec["if_used"]:
        mrec["if_used"].remove(b["if"])
    parent = reg["parents"].get(b["parent"])
    out = []
    if parent is not None and b["pipe"] in parent["pipes"]:
        still = any(o["parent"] == b["parent"] and o["pipe"] == b["pipe"] for o in reg["bindings"].values())
        if not still:
            pipe = parent["pipes"].pop(b["pipe"])
            objs = [o for side in ("tx", "rx") for end in pipe[side] for o in end if o >= 0]
            cand.append(_slot_bufs(a, objs))
            for o in objs:  # the kring blocks stay as they are until reused: the committed
                # registry may still name these rings if we die before the commit below
                if o in mrec["ring_used"]:
                    mrec["ring_used"].remove(o)
            out.append(f"pipe {b['parent']}{'{'}{b['pipe']} destroyed")
            if parent["auto"] and not parent["pipes"]:
                del reg["parents"][b["parent"]]
    for hook in DROP_HOOKS:   # VALE ports and monitors clean up what they own
        out += hook(ns, reg, b, a, cand)
    if not _mem_users(reg, mem_id):
        _alloc.forget(a)
        out += [f"segment {s}" for s in _destroy_mem(ns, reg, mem_id)]
    else:
        c = np.concatenate(cand) if cand else np.zeros(0, dtype=np.int64)
        c = c[(c >= 2) & (c < a.geom.nbufs)]
        if c.size:
            keep = _referenced(a, reg, mem_id)
            a.free_bufs(c[~keep[c]])
    reg["txn"] = None
    ns.save(reg)
    return out


def prepare(ns: Namespace) -> tuple[dict, list[str]]:
    """Load the registry, finish an interrupted transaction and reclaim bindings whose process
    died, as a close would (namespace lock held). Returns the registry and what was done."""
    reg = ns.load()
    done = _recover(ns, reg) if reg["txn"] else []
    for leaf in os.listdir(ns.dir):   # what a process killed inside the lock may leave
        if leaf.startswith(".registry.json.") and _unlink(ns.path(leaf)):
            done.append(f"stale temp file {leaf}")
        elif leaf.startswith("wake.") and leaf[5:] not in reg["bindings"] and _unlink(ns.path(leaf)):
            done.append(f"stale wake FIFO {leaf}")
    for bid, b in list(reg["bindings"].items()):
        if not ns.is_alive(int(bid), b["pid"]):
            done.append(f"binding {bid} ({b['name']}, pid {b['pid']}, dead) reclaimed")
            done += _drop(ns, reg, bid)
            _unlink(ns.fifo_path(int(bid)))
    return reg, done


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# --- REGISTER ----------------------------------------------------------------------------------

_MODES = (abi.NR_REG_ALL_NIC, abi.NR_REG_ONE_NIC)


def _select(mode: int, ringid: int, flags: int, ntx: int, nrx: int, name: str):
    """Bound ring ids per direction (spec H1): a pipe has no host rings, so ALL_NIC or ONE_NIC."""
    b = bound_rings(mode, ringid, flags, tx=ntx, rx=nrx, name=name, allowed=_MODES)
    return list(b.tx), list(b.rx)


def register_pipe(ns: Namespace, kname: str, pn: PipeName, mode: int, ringid: int, flags: int,
                  hints: dict, pid: int) -> Registered:
    """REGISTER one end of pipe ``pn`` (namespace lock held): create the parent, the pipe and the
    rings this binding needs, a netmap_if and the extra buffers; commit; return the binding data."""
    reg, _ = prepare(ns)
    if not pn.parent or not pn.pipe_id:
        raise InvalidRequestError(errno.EINVAL, f"{kname}: a pipe name needs PARENT{{ID or PARENT}}ID, both non-empty")
    want_mem = hints.get("mem_id", 0)
    parent = reg["parents"].get(pn.parent)
    if want_mem and want_mem != GLOBAL_MEM_ID and str(want_mem) not in reg["mems"]:
        raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={want_mem} names no allocator; "
                                  f"existing: {sorted([GLOBAL_MEM_ID] + [int(k) for k in reg['mems']])}")
    if parent is not None and want_mem and want_mem != parent["mem_id"]:
        raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={want_mem} differs from the parent "
                                  f"{pn.parent!r}'s allocator {parent['mem_id']}")
    pipe = parent["pipes"].get(pn.pipe_id) if parent else None
    if pipe is None:
        h_txr = _clamp(hints.get("tx_rings", 0), 1, 1, NM_PIPE_MAXRINGS)
        h_rxr = _clamp(hints.get("rx_rings", 0), 1, 1, NM_PIPE_MAXRINGS)
    if parent is not None and pipe is None and len(parent["pipes"]) >= NM_MAXPIPES:
        raise OutOfMemoryError(errno.ENOMEM, f"{kname}: parent {pn.parent!r} already has {NM_MAXPIPES} pipes (NM_MAXPIPES)")
    e = pn.end
    extra_req = max(0, min(int(hints.get("extra_bufs", 0)), EXTRA_BUFS_MAX))

    reg["txn"] = {"mems": [want_mem or parent["mem_id"]] if (want_mem or parent) else []}
    ns.save(reg)
    new_mem = None
    try:
        # --- the parent and its allocator ---------------------------------------------------
        if parent is None:
            txs = _clamp(hints.get("tx_slots", 0), NM_BRIDGE_RINGSIZE, 1, NM_PIPE_MAXSLOTS)
            rxs = _clamp(hints.get("rx_slots", 0), NM_BRIDGE_RINGSIZE, 1, NM_PIPE_MAXSLOTS)
            if want_mem:
                mem_id = want_mem
                if str(mem_id) not in reg["mems"]:  # the global allocator, created on demand
                    new_mem = mem_id
                    _create_mem(ns, reg, mem_id, GLOBAL_PARAMS, False)
            else:
                mem_id = new_mem = _new_mem_id(reg)
                reg["txn"] = {"mems": [mem_id]}
                ns.save(reg)
                # an auto-created parent is sized like a default VALE port (npipes = 2, spec A5, F1)
                params = private_params(min(h_txr, NM_BDG_MAXRINGS), txs, min(h_rxr, NM_BDG_MAXRINGS), rxs,
                                        extra_req, 2)
                _create_mem(ns, reg, mem_id, params, True)
            parent = reg["parents"][pn.parent] = {"mem_id": mem_id, "auto": True, "tx_slots": txs,
                                                  "rx_slots": rxs, "pipes": {}}
        mem_id = parent["mem_id"]
        mrec = reg["mems"][str(mem_id)]
        a = _alloc_of(ns, reg, mem_id)

        # --- the pipe --------------------------------------------------------------------------
        if pipe is None:
            txs = _clamp(hints.get("tx_slots", 0), parent["tx_slots"], 1, NM_PIPE_MAXSLOTS)
            rxs = _clamp(hints.get("rx_slots", 0), parent["rx_slots"], 1, NM_PIPE_MAXSLOTS)
            mine = (h_txr, h_rxr, txs, rxs)
            peer = (h_rxr, h_txr, rxs, txs)
            ends = (mine, peer) if e == 0 else (peer, mine)
            pipe = {"ntx": [ends[0][0], ends[1][0]], "nrx": [ends[0][1], ends[1][1]],
                    "txs": [ends[0][2], ends[1][2]], "rxs": [ends[0][3], ends[1][3]],
                    "tx": [[-1] * ends[0][0], [-1] * ends[1][0]],
                    "rx": [[-1] * ends[0][1], [-1] * ends[1][1]]}
            parent["pipes"][pn.pipe_id] = pipe
        ntx, nrx = pipe["ntx"][e], pipe["nrx"][e]
        tx_ids, rx_ids = _select(mode, ringid, flags, ntx, nrx, kname)

        # --- exclusive use (spec B17) ----------------------------------------------------------
        for o in reg["bindings"].values():
            if o["parent"] != pn.parent or o["pipe"] != pn.pipe_id or o["end"] != e:
                continue
            shared = (set(o["tx"]) & set(tx_ids)) or (set(o["rx"]) & set(rx_ids))
            if shared and (o["excl"] or flags & abi.NR_EXCLUSIVE):
                raise PortBusyError(errno.EBUSY, f"{kname}: ring(s) already bound"
                                    + (" exclusively (NR_EXCLUSIVE)" if o["excl"] else "")
                                    + f" by another registration (pid {o['pid']})")

        # --- rings: own RX, own TX, then the peer's RX and TX (spec A7, F6) -------------------
        geom = a.geom
        new_rx = [k for k in rx_ids if pipe["rx"][e][k] < 0]
        new_tx = [k for k in tx_ids if pipe["tx"][e][k] < 0]
        for n in ([pipe["rxs"][e]] if new_rx else []) + ([pipe["txs"][e]] if new_tx else []):
            if n > geom.max_slots():
                raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {n} slots do not fit a ring object of "
                                       f"mem_id {mem_id} (at most {geom.max_slots()})")
        p = 1 - e
        for k in new_rx:
            obj = _take_obj(mrec["ring_used"], geom.ring_pool.objtotal, "ring", mem_id)
            a.init_ring(obj, pipe["rxs"][e], k, abi.NR_RX, a.alloc_bufs(pipe["rxs"][e]))
            pipe["rx"][e][k] = obj
        for k in new_tx:
            obj = _take_obj(mrec["ring_used"], geom.ring_pool.objtotal, "ring", mem_id)
            a.init_ring(obj, pipe["txs"][e], k, abi.NR_TX, a.alloc_bufs(pipe["txs"][e]))
            pipe["tx"][e][k] = obj
        for k in new_tx:  # the peer's RX ring k shares our TX ring k's buffers
            src = pipe["tx"][e][k]
            obj = _take_obj(mrec["ring_used"], geom.ring_pool.objtotal, "ring", mem_id)
            a.init_ring(obj, pipe["txs"][e], k, abi.NR_RX, a.slots(src)["buf_idx"])
            pipe["rx"][p][k] = obj
            a.init_pair(src, obj, pipe["txs"][e])
        for k in new_rx:
            src = pipe["rx"][e][k]
            obj = _take_obj(mrec["ring_used"], geom.ring_pool.objtotal, "ring", mem_id)
            a.init_ring(obj, pipe["rxs"][e], k, abi.NR_TX, a.slots(src)["buf_idx"])
            pipe["tx"][p][k] = obj
            a.init_pair(obj, src, pipe["rxs"][e])

        # --- netmap_if and extra buffers (spec A8, A13, A16) --------------------------------
        if ntx + nrx + 2 > geom.max_if_rings():
            raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {ntx + nrx + 2} ring_ofs entries do not fit "
                                   f"a netmap_if object of mem_id {mem_id} ({geom.if_pool.objsize} B)")
        if_obj = _take_obj(mrec["if_used"], geom.if_pool.objtotal, "netmap_if", mem_id)
        extra = a.alloc_bufs(extra_req, partial=True)
        head = a.push_extra(extra)
        if_off = a.if_offset(if_obj)
        ofs = ([a.ring_offset(pipe["tx"][e][k]) - if_off if k in tx_ids else 0 for k in range(ntx)] + [0]
               + [a.ring_offset(pipe["rx"][e][k]) - if_off if k in rx_ids else 0 for k in range(nrx)] + [0])
        a.write_if(if_obj, kname, ntx, nrx, ofs, head)

        # --- commit ------------------------------------------------------------------------------
        bid = reg["next_bid"]
        reg["next_bid"] = bid + 1
        ns.hold_live(bid)
        try:
            path = ns.fifo_path(bid)
            _unlink(path)
            os.mkfifo(path, 0o600)
            reg["bindings"][str(bid)] = {
                "pid": pid, "mem_id": mem_id, "parent": pn.parent, "pipe": pn.pipe_id, "end": e,
                "if": if_obj, "tx": tx_ids, "rx": rx_ids, "excl": bool(flags & abi.NR_EXCLUSIVE),
                "flags": flags, "name": kname, "extra": int(extra.size),
            }
            reg["txn"] = None
            ns.save(reg)
        except BaseException:
            ns.release_live(bid)
            _unlink(ns.fifo_path(bid))
            raise
    except BaseException:
        # undo from the last committed registry: rebuild bitmaps, unlink new segments
        disk = ns.load()
        if disk["txn"] is not None:
            if new_mem is not None and new_mem not in disk["txn"]["mems"]:
                disk["txn"]["mems"].append(new_mem)
            _recover(ns, disk)
        raise

    info = RegisterInfo(
        name=kname, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id, memsize=geom.memsize,
        offset=if_off, tx_rings=ntx, rx_rings=nrx, tx_slots=pipe["txs"][e], rx_slots=pipe["rxs"][e],
        host_tx_rings=0, host_rx_rings=0, extra_bufs=int(extra.size))
    return Registered(bid, info, a, tuple(pipe["tx"][e][k] for k in tx_ids),
                      tuple(pipe["rx"][e][k] for k in rx_ids), tuple(tx_ids), tuple(rx_ids))


def unregister(ns: Namespace, bid: int) -> None:
    """Close binding ``bid`` (namespace lock held). Idempotent."""
    reg, _ = prepare(ns)
    if str(bid) in reg["bindings"]:
        _drop(ns, reg, str(bid))


def peer_bound(ns: Namespace, bid: int) -> bool:
    """Whether the other end of binding ``bid``'s pipe has a live binding (dead ones reclaimed)."""
    reg, _ = prepare(ns)
    me = reg["bindings"].get(str(bid))
    if me is None:
        return False
    return any(o["parent"] == me["parent"] and o["pipe"] == me["pipe"] and o["end"] != me["end"]
               for o in reg["bindings"].values())


def port_exists(ns: Namespace, name: str) -> bool:
    reg = ns.load()
    return name in reg["parents"]


# --- inspection and cleanup --------------------------------------------------------------------

def snapshot(ns: Namespace) -> dict:
    """What ``ls`` shows: allocators, pipes and bindings (with liveness), without changing anything."""
    reg = ns.load()
    segs = set(ns.list_segments())
    mems = []
    for k, m in sorted(reg["mems"].items(), key=lambda kv: int(kv[0])):
        names = [ns.shm_name(x, int(k), m["gen"]) for x in "mk"]
        mems.append({"mem_id": int(k), "memsize": m["memsize"], "segments": names,
                     "present": [s in segs for s in names], "rings": len(m["ring_used"]),
                     "ifs": len(m["if_used"])})
    pipes = []
    for pname, p in sorted(reg["parents"].items()):
        for pid, pipe in sorted(p["pipes"].items()):
            pipes.append({"parent": pname, "pipe": pid, "mem_id": p["mem_id"],
                          "tx_rings": pipe["ntx"], "rx_rings": pipe["nrx"],
                          "slots": [pipe["txs"], pipe["rxs"]]})
    binds = []
    for bid, b in sorted(reg["bindings"].items(), key=lambda kv: int(kv[0])):
        binds.append({"bid": int(bid), "name": b["name"], "pid": b["pid"], "mem_id": b["mem_id"],
                      "alive": ns.is_alive(int(bid), b["pid"]), "end": _END_NAMES[b["end"]],
                      "tx": b["tx"], "rx": b["rx"], "extra_bufs": b["extra"]})
    known = {ns.shm_name(x, int(k), m["gen"]) for k, m in reg["mems"].items() for x in "mk"}
    return {"namespace": ns.name, "dir": ns.dir, "mems": mems, "pipes": pipes, "bindings": binds,
            "orphan_segments": sorted(segs - known), "interrupted": reg["txn"] is not None}


def gc(ns: Namespace) -> list[str]:
    """Remove what dead processes left (namespace lock held): reclaim their bindings, finish an
    interrupted update, unlink orphan segments and stale wake FIFOs. Returns what was removed."""
    reg, done = prepare(ns)
    unused = [int(k) for k in reg["mems"] if not _mem_users(reg, int(k))]
    for mem_id in unused:   # e.g. left by a process that died between creating and binding it
        done += [f"unused allocator mem_id {mem_id}: segment {s}" for s in _destroy_mem(ns, reg, mem_id)]
    if unused:
        ns.save(reg)
    done += [f"orphan segment {s}" for s in _sweep_orphans(ns, reg)]
    return done
