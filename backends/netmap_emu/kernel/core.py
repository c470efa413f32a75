"""The emulated kernel of one namespace: the operations every registration goes through -
prepare (recovery and reclaim of dead processes), unregister in one stated order, gc, ls.

Every method runs under the namespace lock (:meth:`Kernel.op` takes it). Closing a binding
(:meth:`Kernel.drop`) undoes, in this order, what its REGISTER did:

    1. the binding's record goes, with its netmap_if and its extra-buffer list
    2. its pipe, when no binding of either end is left (rings freed)
    3. VALE: rings of the port nobody binds any more; the port itself, if ephemeral and
       unused; the switch, if that was its last port                  (:mod:`.vale`)
    4. monitors: a monitor stops receiving (zero-copy rings freed); the last binding of a
       monitored port orphans its monitors (spec G5)                  (:mod:`.monitors`)
    5. the allocator, when nothing names it any more; else the freed buffers nobody else
       references go back to its bitmap
"""
from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from netmap_core.errors import LockTimeoutError, OutOfMemoryError

from ..shm import allocator as shm_alloc
from ..shm.namespace import REGISTRY, Namespace, cap_waits, owner_id
from ..shm.segment import tolerate_missing
from ..shm.switch import segment_name as switch_segment
from . import memory, monitors, vale
from .registry import Registry, Store, peek
from .state import Binding

__all__ = ["Kernel", "kernel_for", "END_NAMES"]

END_NAMES = ("master", "slave")
T = TypeVar("T")
#: how long an operation waits to finish closes that had timed out (see ``_retry_abandoned``)
_RETRY_WAIT = 0.05


class Kernel:
    """One namespace's emulated kernel as this process drives it."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.store = Store(ns.path(REGISTRY))

    @contextlib.contextmanager
    def op(self, timeout: float | None = None) -> Iterator[Registry]:
        """Hold the namespace lock with the registry prepared (see :meth:`prepare`); ``timeout``:
        see :meth:`Namespace.locked`."""
        with self.ns.locked(timeout):
            reg, _ = self.prepare()
            yield reg

    # --- recovery and reclaim --------------------------------------------------------------
    def prepare(self) -> tuple[Registry, list[str]]:
        """Load the registry, finish an interrupted operation and reclaim the bindings of dead
        processes, as their close would have. Returns the registry and what was done.
        Liveness is checked once per owning process (all of a dead process's bindings go
        together), so the cost grows with the number of processes, not of ports."""
        reg = self.store.begin()
        done = memory.recover(self.ns, self.store) if reg.meta.txn is not None else []
        me = owner_id()
        for owner in reg.bindings.values_of("owner"):
            if owner == me:
                continue
            first = reg.bindings.first("owner", owner)
            if first is None or self.ns.is_alive(first.bid, first.pid):
                continue
            for b in reg.bindings.by("owner", owner):
                done.append(f"binding {b.bid} ({b.name}, pid {b.pid}, dead) reclaimed")
                done += self.drop(b.bid)
                _unlink(self.ns.fifo_path(b.bid))
        if self.ns.abandoned:
            done += self._retry_abandoned(reg)
        return reg, done

    def free_first(self, body: Callable[[], T]) -> T:
        """Run ``body`` (namespace lock held), an operation that frees: a close, a reclaim, gc.
        If the registry cannot be written for lack of space (a full /dev/shm also holds the
        registry), run it again with its commits deferred: everything it frees is unlinked
        first, then one commit writes the result into the space just freed. Should even that
        commit fail, the segments are gone but the registry still names them; teardown
        tolerates that (:func:`..shm.segment.tolerate_missing`), so the next operation or gc
        finishes the job. Raises OutOfMemoryError (ENOSPC) then."""
        try:
            return body()
        except OutOfMemoryError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        self.store.begin()
        with self.store.deferred():
            out = body()
        self.store.commit()
        return out

    def _retry_abandoned(self, reg: Registry) -> list[str]:
        """Drop the bindings whose close timed out on a lock (a stopped holder), if that lock
        is free now; waits briefly: an unrelated operation must not pay for them."""
        done: list[str] = []
        end = time.monotonic() + _RETRY_WAIT
        old = cap_waits(end)
        if old is not None and old < end:
            cap_waits(old)
        try:
            for bid in sorted(self.ns.abandoned):
                if bid in reg.bindings:
                    try:
                        done += self.drop(bid)
                    except LockTimeoutError:
                        break   # still held: the next operation tries again
                    done.append(f"binding {bid} (its close had timed out) reclaimed")
                self.ns.abandoned.discard(bid)
        finally:
            cap_waits(old)
        return done

    # --- unregister ------------------------------------------------------------------------
    def drop(self, bid: int) -> list[str]:
        """Unregister binding ``bid`` (close or reclaim) in the order of the module doc;
        commits. Returns what was destroyed."""
        with tolerate_missing():   # segments may be gone already (see free_first)
            return self._drop(bid)

    def _drop(self, bid: int) -> list[str]:
        reg, store, ns = self.store.reg, self.store, self.ns
        b = reg.bindings[bid]
        mem_id = b.mem_id
        a = memory.mapped(ns, reg, mem_id)
        memory.mark(store, mem_id)
        out: list[str] = []
        try:
            # 1. the binding, its netmap_if and extra buffers
            cand = [a.walk_list(a.bufs_head(b.if_obj))]
            del reg.bindings[bid]
            memory.release_objs(reg, mem_id, "if", (b.if_obj,))
            # 2. its pipe, once both ends are unbound
            if b.kind == "pipe":
                out += self._drop_pipe(reg, a, b, cand)
            elif b.kind == "nic":   # an interface binding owns its rings
                cand.append(memory.slot_bufs(a, b.rings))
                memory.release_rings(reg, mem_id, b.rings)
            # 3. VALE ports and switches, 4. monitors
            out += vale.drop_binding(ns, reg, b, a, cand)
            out += monitors.drop_binding(ns, reg, b, a, cand)
            # 5. the allocator, or the buffers nobody references any more
            if not memory.in_use(reg, mem_id):
                shm_alloc.forget(a)
                out += [f"segment {s}" for s in memory.destroy_mem(ns, reg, mem_id)]
            else:
                memory.free_unreferenced(a, reg, mem_id, cand)
            memory.finish(store)
        except BaseException:
            memory.undo(ns, store)
            raise
        return out

    @staticmethod
    def _drop_pipe(reg: Registry, a, b: Binding, cand: list[np.ndarray]) -> list[str]:
        assert b.parent is not None and b.pipe is not None
        key = f"{b.parent}{{{b.pipe}"
        pipe = reg.pipes.get(key)
        if pipe is None:
            return []
        if any(o.pipe == b.pipe for o in reg.bindings.by("parent", b.parent)):
            return []
        del reg.pipes[key]
        objs = pipe.objs()
        cand.append(memory.slot_bufs(a, objs))
        memory.release_rings(reg, a.mem_id, objs)
        parent = reg.parents.get(b.parent)
        if parent is not None and parent.auto and not reg.pipes.any("parent", b.parent):
            del reg.parents[b.parent]
        return [f"pipe {key} destroyed"]

    def unregister(self, bid: int) -> None:
        """Close binding ``bid``. Idempotent. The last binding of the namespace also sweeps
        wake FIFOs left by processes killed inside an open (cheap only then: a listing of the
        directory; with ports alive they wait for this moment or for gc)."""
        with self.ns.locked():
            def close() -> None:
                reg, _ = self.prepare()
                if bid in reg.bindings:
                    self.drop(bid)
                if not reg.bindings:
                    self._sweep_fifos(reg)
            self.free_first(close)

    def _sweep_fifos(self, reg: Registry) -> list[str]:
        done = []
        for leaf in os.listdir(self.ns.dir):
            stale = leaf.startswith("wake.") and leaf[5:].isdigit() and int(leaf[5:]) not in reg.bindings
            if stale and _unlink(self.ns.path(leaf)) and int(leaf[5:]) not in self.ns.local_bids:
                done.append(f"stale wake FIFO {leaf}")
        return done

    def peer_bound(self, bid: int) -> bool:
        """Whether the other end of binding ``bid``'s pipe has a live binding."""
        with self.op() as reg:
            me = reg.bindings.get(bid)
            if me is None or me.kind != "pipe":
                return False
            return any(o.kind == "pipe" and o.pipe == me.pipe and o.end != me.end
                       for o in reg.bindings.by("parent", me.parent))

    # --- inspection and cleanup --------------------------------------------------------------
    def snapshot(self, timeout: float = 1.0) -> dict:
        """What ``ls`` shows: allocators, pipes, switches (bridge index, ports, segment) and
        bindings (with kind and liveness), changing nothing: dead processes' bindings are
        shown, not reclaimed. When another process keeps the namespace lock (for ``timeout``
        seconds, or it is seen stopped) the registry is read without it, as last committed,
        and ``locked_by`` names that process."""
        ns = self.ns
        try:
            with ns.locked(timeout, early=True):
                return self._snapshot(self.store.begin(), None)
        except LockTimeoutError as exc:
            reg = peek(ns.path(REGISTRY)) or Registry()
            return self._snapshot(reg, {"pid": exc.holder_pid, "state": exc.holder_state,
                                        "detail": exc.detail})

    def _snapshot(self, reg: Registry, locked_by: dict | None) -> dict:
        ns = self.ns
        segs = set(ns.list_segments())
        mems = []
        for k in sorted(reg.mems):
            m = reg.mems[k]
            names = [ns.shm_name(x, k, m.gen) for x in "mk"]
            mems.append({"mem_id": k, "memsize": m.memsize, "segments": names,
                         "present": [s in segs for s in names], "rings": len(m.ring_used),
                         "ifs": len(m.if_used)})
        pipes = []
        for key in sorted(reg.pipes):
            p = reg.pipes[key]
            parent = reg.parents.get(p.parent)
            pipes.append({"parent": p.parent, "pipe": p.pipe_id,
                          "mem_id": parent.mem_id if parent is not None else None,
                          "tx_rings": list(p.ntx), "rx_rings": list(p.nrx),
                          "slots": [list(p.txs), list(p.rxs)]})
        binds = []
        for bid in sorted(reg.bindings):
            b = reg.bindings[bid]
            binds.append({"bid": bid, "name": b.name, "pid": b.pid, "mem_id": b.mem_id,
                          "alive": ns.is_alive(bid, b.pid), "end": END_NAMES[b.end], "kind": b.kind,
                          "tx": list(b.tx), "rx": list(b.rx), "extra_bufs": b.extra})
        switches = []
        for name in sorted(reg.switches):
            sw = reg.switches[name]
            seg = switch_segment(ns, sw.idx, sw.gen)
            ports = {}
            for k, pname in sorted(sw.ports):
                v = reg.parents[pname].vale if pname in reg.parents else None
                ports[k] = v.listed(pname) if v is not None and v.persistent else pname
            switches.append({"name": name, "bridge_idx": sw.idx, "ports": ports, "segment": seg,
                             "present": seg in segs})
        known = memory.known_segments(ns, reg)
        return {"namespace": ns.name, "dir": ns.dir, "mems": mems, "pipes": pipes, "switches": switches,
                "bindings": binds, "orphan_segments": sorted(segs - known),
                "interrupted": reg.meta.txn is not None, "locked_by": locked_by}

    def gc(self, *, remove_empty: bool = True) -> list[str]:
        """Remove what dead processes left: reclaim their bindings, finish an interrupted
        update, destroy unused allocators, unlink orphan segments and stale wake FIFOs, and
        (``remove_empty``) delete the namespace when nothing lives in it."""
        ns = self.ns
        with ns.locked(), tolerate_missing():
            # frees first: what no committed record names needs no write to remove, and on a
            # full /dev/shm the registry's commits below need the space
            reg = self.store.begin()
            done = [f"orphan segment {s}" for s in memory.sweep_orphans(ns, reg)]
            done += self._sweep_fifos(reg)

            def reclaim() -> list[str]:
                reg, out = self.prepare()
                unused = [k for k in reg.mems if not memory.in_use(reg, k)]
                for mem_id in unused:   # e.g. left by a process that died between creating and binding it
                    out += [f"unused allocator mem_id {mem_id}: segment {s}"
                            for s in memory.destroy_mem(ns, reg, mem_id)]
                self.store.commit()
                return out

            done += self.free_first(reclaim)
            reg = self.store.reg
            done += [f"orphan segment {s}" for s in memory.sweep_orphans(ns, reg)]
            done += self._sweep_fifos(reg)
            if remove_empty and reg.empty() and not ns.local_bids and not ns.list_segments():
                self.store.close()
                ns.remove()
                done.append(f"empty namespace {ns.name} removed")
        return done


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


_KERNELS: dict[str, Kernel] = {}
_KERNELS_LOCK = threading.Lock()


def kernel_for(ns: Namespace) -> Kernel:
    """The process-wide :class:`Kernel` of namespace ``ns``."""
    with _KERNELS_LOCK:
        k = _KERNELS.get(ns.name)
        if k is None or k.ns is not ns:
            k = _KERNELS[ns.name] = Kernel(ns)
        return k

