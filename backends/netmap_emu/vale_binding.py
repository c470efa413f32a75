"""REGISTER of VALE names and monitors on the emulator, and the binding whose syncs forward.

A VALE binding is an :class:`netmap_emu.binding.EmuBinding` (same poll, wake FIFO, close and
crash reclaim) whose ring controllers are VALE's: txsync forwards through the switch, rxsync
releases and reveals what senders published.
"""
from __future__ import annotations

import os

from netmap_core import abi

from . import kernel as _k
from . import vale_kernel as _vk
from .binding import EmuBinding
from .namespace import Namespace
from .vale_sync import SwitchRuntime, ValeRxCtl, ValeTxCtl, runtime_for

__all__ = ["register", "ValeBinding", "MONITOR_FLAGS"]

MONITOR_FLAGS = abi.NR_MONITOR_TX | abi.NR_MONITOR_RX | abi.NR_ZCOPY_MON

class ValeBinding(EmuBinding):
    """A registered VALE port (one /dev/netmap fd bound to it)."""

    def __init__(self, ns: Namespace, r: _k.Registered, rules: str, runtime: SwitchRuntime | None,
                 pname: str) -> None:
        super().__init__(ns, r, rules)
        strict = rules == "strict"
        a, pfx = r.alloc, r.info.name
        self._tx = tuple(ValeTxCtl(ns, a, o, f"{pfx}:tx{k}", strict, runtime, pname)
                         for o, k in zip(r.tx_objs, r.tx_ids))
        self._rx = tuple(ValeRxCtl(ns, a, o, f"{pfx}:rx{k}", strict, runtime, pname)
                         for o, k in zip(r.rx_objs, r.rx_ids))
        self.runtime = runtime
        self.port_name = pname

    def peer_bound(self) -> bool:   # pipes only
        return False


def _runtime(ns: Namespace, reg: dict, pname: str) -> SwitchRuntime | None:
    v = reg["parents"][pname]["vale"]
    if v["switch"] is None:
        return None
    rec = reg["switches"][v["switch"]]
    return runtime_for(ns, v["switch"], rec["idx"], rec["gen"])


def register(ns: Namespace, spec, kname: str, pn, hints: dict, rules: str):
    """REGISTER ``kname`` if it is a VALE port, a persistent VALE interface or a monitor
    request; None when it is none of these (the caller handles pipes)."""
    flags = int(spec.flags)
    if flags & MONITOR_FLAGS:
        from . import monitor

        return monitor.register(ns, spec, kname, pn, hints, rules)
    if pn is not None:
        return None
    with ns.locked():
        if kname[:3] != "val" and not _vk.is_persistent(ns.load(), kname):
            return None
        r, reg = _vk.register_vale(ns, kname, spec.mode, spec.ringid, flags, hints, os.getpid())
        pname = reg["bindings"][str(r.bid)]["parent"]
        rt = _runtime(ns, reg, pname)
    try:
        return ValeBinding(ns, r, rules, rt, pname)
    except BaseException:
        with ns.locked():
            _k.unregister(ns, r.bid)
        ns.release_live(r.bid)
        raise

