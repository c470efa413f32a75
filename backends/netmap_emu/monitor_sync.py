"""How monitors move data: copies into copy monitors and buffer swaps with zero-copy monitors
(spec G3, G4), and the emulated kernel side of a monitor's own rings (G2, G5).

Two kring words of netmap's kernel state serve monitors (the allocator leaves words 9..11 of a
kring block unused)::

    W_GONE  word 9   of a monitor's ring: 1 once the monitored port left netmap mode (G5)
    W_MON   word 10  of a watched ring (a pipe ring, or a zero-copy monitor's ring that another
                     zero-copy monitor chains to): a topology generation, 0 = nobody watches

A sync of a watched ring reads ``W_MON`` without a lock, loads the matching :class:`Watch`
(taking the namespace lock if the generation moved, before it takes any ring lock), and uses it
under the ring's lock only if ``W_MON`` still holds that generation: whoever changes what a ring
delivers to rewrites ``W_MON`` under that same ring lock, so nothing is ever written into a
monitor ring that is being freed. Delivery into a monitor ring takes that ring's lock (the lock
order is always monitored ring -> monitor ring, down a chain, never back).
"""
from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from netmap_core import abi
from netmap_core.errors import NetmapOSError

from . import allocator as _alloc
from . import kernel as _k
from .namespace import Namespace, namespace
from .vale_sync import RxTarget, _Ctl, _span

__all__ = ["W_GONE", "W_MON", "Watch", "copy_to_monitors", "swap_with_monitor", "watch_for",
           "MonitorRxCtl", "MonitorTxCtl", "PipeMonitors"]

W_GONE = 9
try:
    from .sync import W_MON   # the pipe sync's call-out reads the same word
except ImportError:           # a core without the pipe call-out: monitors of pipes see nothing
    W_MON = 10

_TXMON = np.uint16(abi.NS_TXMON)
_NOT_TXMON = np.uint16(0xFFFF ^ abi.NS_TXMON)
_CHANGED = np.uint16(abi.NS_BUF_CHANGED)


# --- copies and swaps ---------------------------------------------------------------------------

def copy_to_monitors(mons, slots: np.ndarray, buffers: np.ndarray, *, tx: bool) -> None:
    """Copy ``slots`` (a netmap_slot array, in order) with their payload into each copy monitor
    ring of ``mons``: the most recent ones that fit, ``len`` truncated to the monitor's buffer
    size, flags copied (NS_TXMON set for TX traffic, cleared otherwise). Costs one lease/commit
    (two fcntl calls) per monitor and one row copy per slot."""
    nb = buffers.shape[0]
    for t in mons:
        first, space = t.lease()
        m = 0
        try:
            k = slots.shape[0]
            m = min(k, space)
            if m == 0:
                continue
            s = slots[k - m:]
            src = s["buf_idx"].astype(np.int64)
            src[(src >= nb) | (src < 0)] = 0
            lens = np.minimum(s["len"].astype(np.int64), t.buffers.shape[1])
            n = t.slots.shape[0]
            d = np.arange(first, first + m, dtype=np.int64)
            d[d >= n] -= n
            dbuf = t.slots["buf_idx"][d].astype(np.int64)
            dbuf[(dbuf >= t.buffers.shape[0]) | (dbuf < 0)] = 0
            w = int(min(lens.max(), buffers.shape[1], t.buffers.shape[1]))
            t.buffers[dbuf, :w] = buffers[src, :w]
            t.slots["len"][d] = lens
            t.slots["flags"][d] = (s["flags"] & _NOT_TXMON) | (_TXMON if tx else 0)
        finally:
            t.commit(m)


def swap_with_monitor(t: RxTarget, slots: np.ndarray, idx: np.ndarray, *, tx: bool) -> int:
    """Zero-copy delivery (spec G4): swap the parent slots ``slots[idx]`` (completed TX slots or
    released RX slots, in ring order) with the free slots of monitor ring ``t`` - the most
    recent ones that fit. The monitor slot gets the parent's ``buf_idx``, ``len`` and flags
    (NS_TXMON set for TX traffic, cleared otherwise); the parent slot gets the monitor's
    ``buf_idx`` and ``len`` and NS_BUF_CHANGED. No payload moves. The caller holds the parent
    ring's lock; buffer indexes are moved, never used, so garbage an application wrote travels
    as it would in netmap. Returns the number of slots swapped."""
    first, space = t.lease()
    m = 0
    try:
        k = int(idx.size)
        m = min(k, space)
        if m:
            src = idx[k - m:]
            n = t.n
            d = np.arange(first, first + m, dtype=np.int64)
            d[d >= n] -= n
            pb, pl, pf = slots["buf_idx"], slots["len"], slots["flags"]
            mb, ml, mf = t.slots["buf_idx"], t.slots["len"], t.slots["flags"]
            b_in, l_in, f_in = pb[src], pl[src], pf[src]
            # the monitor's free slots first: until commit() publishes them nobody reads them
            b_out, l_out = mb[d], ml[d]
            mb[d] = b_in
            ml[d] = l_in
            mf[d] = (f_in & _NOT_TXMON) | (_TXMON if tx else 0)
            pb[src] = b_out
            pl[src] = l_out
            pf[src] = f_in | _CHANGED
    finally:
        t.commit(m)
    return m


# --- what a watched ring delivers to --------------------------------------------------------------

@dataclass(frozen=True)
class Watch:
    """What one watched ring delivers to, valid while its ``W_MON`` word equals ``gen``."""

    gen: int
    copies: tuple = ()                 # copy monitors' RX rings (RxTarget)
    zmon: Optional[RxTarget] = None    # the first (or, for a monitor ring, next) zero-copy monitor
    peer_copies: tuple = ()            # a pipe TX ring: copy monitors of the peer RX ring it fills


_WATCH: dict[tuple[str, int], Watch] = {}
_WATCH_LOCK = threading.Lock()


def watch_for(ns: Namespace, a: _alloc.Allocator, obj: int, i_mon: int) -> Optional[Watch]:
    """The Watch of ring ``obj`` for its current ``W_MON`` generation, rebuilt from the
    registry when the generation moved (namespace lock; call it holding no ring lock).
    None when nobody watches the ring."""
    g = a.ks[i_mon]
    if not g:
        return None
    key = (a.rname, obj)
    w = _WATCH.get(key)
    if w is not None and w.gen == g:
        return w
    from . import monitor_topology as _topo   # late: the topology imports this module

    with ns.locked():
        reg, _ = _k.prepare(ns)
        g = a.ks[i_mon]
        copies, zmon, peer = _topo.watch_targets(ns, reg, a.mem_id, obj)
        w = Watch(g, tuple(copies), zmon, tuple(peer))
    with _WATCH_LOCK:
        _WATCH[key] = w
        if len(_WATCH) > 4096:   # views of long-gone rings: drop all but this one
            _WATCH.clear()
            _WATCH[key] = w
    return w


def _valid(a: _alloc.Allocator, obj: int, i_mon: int) -> Optional[Watch]:
    """The cached Watch of ring ``obj`` if it matches ``W_MON`` now (ring lock held)."""
    w = _WATCH.get((a.rname, obj))
    g = a.ks[i_mon]
    return w if w is not None and g and w.gen == g else None


# --- pipe rings: the call-out netmap_emu.sync runs on watched rings -------------------------------

class PipeMonitors:
    """Monitors of pipe rings. :mod:`netmap_emu.sync` calls, for a ring whose ``W_MON`` is set:
    ``prepare(ctl)`` before taking the pair lock, then under it ``before(ctl, a, b)`` with the
    slots ``[a, b)`` a txsync hands over / an rxsync releases (before they move), and, at the
    end of a txsync that passed its prologue, ``after(ctl, old_hwtail)``. In netmap's order:

    * TX copy monitors copy the handed-over slots (``before``, NS_TXMON);
    * the peer RX ring's copy monitors copy what this txsync makes visible there (``after``):
      netmap's pipe txsync notifies the peer ring, whose intercepted notify runs its monitors,
      so they see frames before the receiver syncs (spec G3, netmap's script 014);
    * a TX zero-copy monitor swaps the slots this txsync found completed - released by the
      peer since the last sync, ``(old hwtail, hwtail]`` (``after``, script 027);
    * an RX zero-copy monitor swaps the released slots before the pipe hands them back to the
      sender, so the sender gets the monitor's buffers (``before``, script 017).
    """

    def __init__(self) -> None:
        self._ns: dict[str, Namespace] = {}
        self._peer_tail: dict[tuple[str, int], int] = {}   # peer's pipe_tail before a txsync moved it

    def _namespace(self, ns_dir: str) -> Namespace:
        ns = self._ns.get(ns_dir)
        if ns is None:
            ns = self._ns[ns_dir] = namespace(os.path.basename(ns_dir))
        return ns

    def prepare(self, ctl) -> None:
        watch_for(self._namespace(ctl.ns_dir), ctl.alloc, ctl.obj, ctl.i_mon)

    def before(self, ctl, first: int, last: int) -> None:
        w = _valid(ctl.alloc, ctl.obj, ctl.i_mon)
        if w is None:
            return
        if ctl.tx:
            if w.copies:
                copy_to_monitors(w.copies, ctl.slots[_span(first, last, ctl.n)], ctl.alloc.buffers, tx=True)
            if w.peer_copies:
                self._peer_tail[(ctl.alloc.rname, ctl.obj)] = ctl.ks[ctl.i_peer_ptail]
        elif w.zmon is not None:
            swap_with_monitor(w.zmon, ctl.slots, _span(first, last, ctl.n), tx=False)

    def after(self, ctl, old_hwtail: int) -> None:
        start = self._peer_tail.pop((ctl.alloc.rname, ctl.obj), None)
        w = _valid(ctl.alloc, ctl.obj, ctl.i_mon)
        if w is None:
            return
        n = ctl.n
        if start is not None and w.peer_copies:
            end = ctl.ks[ctl.i_peer_ptail]
            if start < n and end < n and end != start:   # the peer's slots equal ours (spec F5)
                copy_to_monitors(w.peer_copies, ctl.slots[_span(start, end, n)], ctl.alloc.buffers, tx=False)
        hwtail = ctl.ks[ctl.i_hwtail]
        if w.zmon is not None and old_hwtail < n and hwtail < n and hwtail != old_hwtail:
            swap_with_monitor(w.zmon, ctl.slots, _span((old_hwtail + 1) % n, (hwtail + 1) % n, n), tx=True)


def install() -> None:
    """Register :class:`PipeMonitors` as the pipe syncs' call-out (once per process)."""
    from . import sync

    hooks = getattr(sync, "MONITOR_HOOKS", None)
    if hooks is not None and not hooks:
        hooks.append(PipeMonitors())


install()


# --- a monitor's own rings ----------------------------------------------------------------------

class MonitorRxCtl(_Ctl):
    """An RX ring of a monitor. rxsync (netmap_monitor_rxsync): prologue, hand the released
    slots ``[hwcur, head)`` to the next zero-copy monitor of a chain, ``hwcur = head`` (flags
    are left alone), ``tail = hwtail``. Once the monitored port has left netmap mode it does
    nothing and reports failure (EIO; poll adds POLLERR, spec G5)."""

    __slots__ = ("i_gone", "i_mon")

    def __init__(self, ns: Namespace, a: _alloc.Allocator, obj: int, name: str, strict: bool) -> None:
        super().__init__(ns, a, obj, name, strict, None, "")
        self.i_gone = a.block_word(obj, W_GONE)
        self.i_mon = a.block_word(obj, W_MON)

    def pending(self) -> bool:
        return False

    def txsync(self) -> int:   # not used on RX rings
        return 0

    def gone(self) -> bool:
        return bool(self.ks[self.i_gone])

    def rxsync(self) -> int:
        err = 0
        if self.ks[self.i_gone]:
            err = 1
        else:
            if self.ks[self.i_mon]:
                watch_for(self.ns, self.alloc, self.obj, self.i_mon)
            self._lock()
            try:
                err = self._rx()
            finally:
                self._unlock()
        t = time.time_ns() // 1000
        self.ts64[0], self.ts64[1] = divmod(t, 1_000_000)
        return err

    def _rx(self) -> int:
        rw, ks, n = self.rw, self.ks, self.n
        head, cur = rw[5], rw[6]
        hwcur = ks[self.i_hwcur]
        err = self.rx_prologue(head, cur)
        rhead = ks[self.i_rhead]
        if rhead != hwcur and rhead < n and hwcur < n:
            w = _valid(self.alloc, self.obj, self.i_mon)
            if w is not None and w.zmon is not None:
                swap_with_monitor(w.zmon, self.slots, _span(hwcur, rhead, n), tx=False)
            ks[self.i_hwcur] = rhead
        hwtail = ks[self.i_hwtail]
        ks[self.i_rtail] = hwtail
        rw[7] = hwtail
        return err


class MonitorTxCtl(_Ctl):
    """The TX ring of a monitor: monitors cannot inject (spec G2). txsync runs the prologue
    (adopting head/cur as netmap does) and then fails like netmap's monitor txsync: nothing is
    sent, ``tail`` never moves, poll reports POLLERR; NIOCTXSYNC itself still returns 0."""

    __slots__ = ()

    def pending(self) -> bool:
        return self.rw[5] != self.ks[self.i_hwcur]

    def txsync(self) -> int:
        self._lock()
        try:
            # a monitor cannot transmit (G2): the prologue still runs, the sync always fails
            self.tx_prologue(self.rw[5], self.rw[6])
            return 1
        finally:
            self._unlock()


def gone_error(name: str) -> NetmapOSError:
    return NetmapOSError(errno.EIO, f"{name}: the monitored port left netmap mode; the monitor "
                         "receives nothing more (close it and open a new one)")
