"""The kernel's answers to the datapath's questions, asked from inside a sync: what a switch
looks like now (for its senders) and what a watched ring delivers to (for monitors).

The datapath never imports the kernel: a binding hands its rings these callables, which take
the namespace lock, read the registry and return shared-memory ring references.
"""
from __future__ import annotations

import threading

from .datapath.delivery import RxTarget
from .datapath.monitor import PipeMonitors, Watch, Watches
from .datapath.vale import Describe, SwitchView
from .kernel import memory, monitors
from .kernel.core import Kernel
from .shm.allocator import Allocator
from .shm.namespace import sync_timeout
from .shm.switch import SwitchSeg

__all__ = ["switch_view", "monitors_of"]


def switch_view(kernel: Kernel, sw: str) -> Describe:
    """The :data:`~netmap_emu.datapath.vale.Describe` of switch ``sw``."""
    ns = kernel.ns

    def describe(seg: SwitchSeg) -> SwitchView:
        with kernel.op(sync_timeout()) as reg:   # asked inside a sync: wait like one
            gen, lgen = seg.ports_gen, seg.lookup_gen
            rec = reg.switches.get(sw)
            port_of: dict[str, int] = {}
            nrx: dict[int, int] = {}
            hdr: dict[int, int] = {}
            rx_rings: dict[tuple[int, int], tuple[Allocator, int]] = {}
            for p, pname in (rec.ports if rec is not None else ()):
                par = reg.parents[pname]
                v = par.vale
                assert v is not None
                port_of[pname] = p
                nrx[p] = v.nrx
                hdr[p] = v.hdr_len
                bound = {r for b in reg.bindings.by("parent", pname) if b.kind == "vale" for r in b.rx}
                a = memory.mapped(ns, reg, par.mem_id)
                for r in sorted(bound):
                    if v.rx[r] >= 0:
                        rx_rings[(p, r)] = (a, v.rx[r])
            mon_tx, mon_rx, z_tx, z_rx = monitors.switch_watchers(ns, reg, port_of)
            return SwitchView(gen, lgen, port_of, nrx, hdr, rx_rings, mon_tx, mon_rx, z_tx, z_rx)

    return describe


_PIPE_MONITORS: dict[str, PipeMonitors] = {}
_LOCK = threading.Lock()


def monitors_of(kernel: Kernel) -> PipeMonitors:
    """The process's :class:`PipeMonitors` of ``kernel``'s namespace (its :class:`Watches`
    resolve rings through the kernel)."""
    ns = kernel.ns

    def resolve(a: Allocator, obj: int, i_mon: int) -> Watch:
        with kernel.op(sync_timeout()) as reg:   # asked inside a sync: wait like one
            g = a.ks[i_mon]
            copies, zmon, peer = monitors.ring_watchers(ns, reg, a.mem_id, obj)

            def target(ref: tuple[Allocator, int]) -> RxTarget:
                return RxTarget(ref[0], ref[1], ns.fd, ns.dir)

            return Watch(g, tuple(map(target, copies)), None if zmon is None else target(zmon),
                         tuple(map(target, peer)))

    with _LOCK:
        pm = _PIPE_MONITORS.get(ns.name)
        if pm is None:
            pm = _PIPE_MONITORS[ns.name] = PipeMonitors(Watches(resolve))
        return pm
