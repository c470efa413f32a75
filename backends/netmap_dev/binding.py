"""One registration on /dev/netmap: the Binding that netmap_core.Port drives.

Sync and poll are the kernel's; in ``rules="strict"`` the binding first checks head/cur of
every bound ring against a per-ring shadow kring, raising instead of letting the kernel reinit.
"""
from __future__ import annotations

import select
import weakref
from collections.abc import Callable

import numpy as np

from netmap_core import abi, rules as _rules
from netmap_core.backend import RegisterInfo
from netmap_core.errors import ClosedPortError
from netmap_core.ring import Ring

from .device import Device, Mapping, MemoryRegistry

__all__ = ["DevBinding", "bound_rings"]


def bound_rings(region: np.ndarray, offset: int, name: str) -> tuple[list[Ring], list[Ring]]:
    """(TX rings, RX rings) this registration binds: the non-zero ``ring_ofs`` entries of its
    netmap_if (host rings included), as ring views. Sizes are validated by Ring."""
    nifp = np.ndarray((), dtype=abi.netmap_if, buffer=region, offset=offset)
    ntx = int(nifp["ni_tx_rings"]) + int(nifp["ni_host_tx_rings"])
    nrx = int(nifp["ni_rx_rings"]) + int(nifp["ni_host_rx_rings"])
    ofs = np.ndarray((ntx + nrx,), dtype="<i8", buffer=region,
                     offset=offset + abi.NETMAP_IF_RING_OFS_OFFSET)
    tx = [Ring(region, offset + int(ofs[i]), name=f"{name}:tx{i}") for i in range(ntx) if ofs[i]]
    rx = [Ring(region, offset + int(ofs[ntx + i]), name=f"{name}:rx{i}")
          for i in range(nrx) if ofs[ntx + i]]
    return tx, rx


def _settled(ring: Ring) -> _rules.KRing:
    """The kring as a successful sync leaves it: everything up to head handed over, tail the
    kernel's. (For TX: rhead = rcur = head, rtail = tail; for RX: hwcur = head, hwtail = tail.)"""
    head, tail = ring.head, ring.tail
    return _rules.KRing(ring.num_slots, hwcur=head, hwtail=tail, rhead=head, rcur=head, rtail=tail)


def _shows(ring: Ring) -> tuple[int, int, int]:
    """The ring's head, cur and tail as they are in shared memory now."""
    return ring.head, ring.cur, ring.tail


class _ShadowTable:
    """The strict-mode shadow krings of this process, one per ring (its address), shared
    by every live binding of that ring: two descriptors of one pipe end or VALE port bind the
    same rings, and a sync through either moves the kernel's kring for both. (Syncs made by
    other processes stay invisible: strict mode on the device checks what this process knows.)
    Bindings are held weakly, so one dropped without close() does not keep a stale shadow for
    whatever ring the kernel later puts at that offset.

    The kernel can outlive every binding of a ring: a pipe end closed while its peer stays
    open keeps its krings and its ring, and the ring still shows what its last user wrote,
    synced or not (a head moved past the last txsync). So the last shadow of a ring is kept
    when its last binding closes, with the ring's head/cur/tail at that moment; a new binding
    that finds the ring showing exactly those takes that shadow up again, and otherwise starts
    from the ring as it shows. Retired shadows live only as long as this process maps the
    region (another binding of the allocator keeps it, as the open peer end does)."""

    #: retired shadows kept at most (the oldest go first)
    RETIRED = 256

    def __init__(self) -> None:
        self._rings: dict[int, tuple[list, weakref.WeakSet]] = {}
        self._retired: dict[int, tuple[_rules.KRing, tuple[int, int, int]]] = {}

    def bind(self, key: int, ring: Ring, binding: object) -> None:
        """``binding`` starts using ``ring``: it shares the kring the last sync here left, or
        takes up the retired one if the ring shows what it showed then, or starts from the
        ring as it shows now."""
        entry = self._rings.get(key)
        if entry is None or not entry[1]:
            old = self._retired.pop(key, None)
            k = old[0] if old is not None and old[1] == _shows(ring) else _settled(ring)
            entry = ([k], weakref.WeakSet())
            self._rings[key] = entry
        entry[1].add(binding)

    def unbind(self, key: int, binding: object, ring: Ring | None = None) -> None:
        """``binding`` stops using the ring at ``key``; when it was the last, the shadow is
        retired with what ``ring`` shows now (dropped if ``ring`` is not given)."""
        entry = self._rings.get(key)
        if entry is not None:
            entry[1].discard(binding)
            if not entry[1]:
                del self._rings[key]
                if ring is not None:
                    self._retired.pop(key, None)
                    self._retired[key] = (entry[0][0], _shows(ring))
                    while len(self._retired) > self.RETIRED:
                        del self._retired[next(iter(self._retired))]

    def forget(self, lo: int, hi: int) -> None:
        """Drop the retired shadows of rings at addresses in ``[lo, hi)``: their mapping is
        gone, and what the kernel puts there next is not those rings."""
        for key in [k for k in self._retired if lo <= k < hi]:
            del self._retired[key]

    def get(self, key: int) -> _rules.KRing:
        return self._rings[key][0][0]

    def settle(self, key: int, ring: Ring) -> None:
        self._rings[key][0][0] = _settled(ring)


_SHADOWS = _ShadowTable()


class DevBinding:
    """A registered /dev/netmap descriptor with its region (shared per mem_id).

    Ring ownership is netmap's: the application owns ``[head, tail)`` and may touch the rings
    only between syscalls. ``txsync``/``rxsync`` cost one ioctl (plus, in strict mode, a few µs
    per bound ring for the checks); ``poll`` one poll(2).
    """

    #: the descriptor is netmap's own: epoll/select run netmap's poll for the events asked
    fileno_reports_events = True

    def __init__(self, device: Device, info: RegisterInfo, mapping: Mapping,
                 registry: MemoryRegistry, rules: str) -> None:
        self.info = info
        self.rules = _rules.check_mode(rules)
        region = mapping.array
        assert region is not None, "a mapping is retired only once its last user releases it"
        self.region = region
        self._device = device
        self._mapping = mapping
        self._registry = registry
        self._no_tx_poll = bool(info.flags & abi.NR_NO_TX_POLL)
        # strict mode: (ring, its address: the key of its shadow kring in _SHADOWS) per bound
        # ring; bindings of one allocator share one mapping, so one ring has one address
        self._tx: list[tuple[Ring, int]] = []
        self._rx: list[tuple[Ring, int]] = []
        if self.rules == _rules.STRICT:
            tx, rx = bound_rings(self.region, info.offset, info.name)
            base = self.region.ctypes.data
            self._tx = [(r, base + r.offset) for r in tx]
            self._rx = [(r, base + r.offset) for r in rx]
            for r, key in self._tx + self._rx:
                _SHADOWS.bind(key, r, self)

    # --- strict checks ----------------------------------------------------------------------
    def _check(self, shadows: list[tuple[Ring, int]],
               check: Callable[[_rules.KRing, int, int], _rules.Violation | None]) -> None:
        for ring, key in shadows:
            bad = check(_SHADOWS.get(key), ring.head, ring.cur)
            if bad is not None:
                raise bad.error(ring.name)

    @staticmethod
    def _settle(shadows: list[tuple[Ring, int]]) -> None:
        for ring, key in shadows:
            _SHADOWS.settle(key, ring)

    def _live(self) -> Device:
        if self._device.fd < 0:
            raise ClosedPortError(f"port {self.info.name!r} is closed")
        return self._device

    # --- Binding ----------------------------------------------------------------------------
    # Without strict mode (no shadow krings) a sync or poll goes straight to the Device: a
    # sender syncs once per batch, and under emulation each Python call level costs µs.
    def txsync(self) -> None:
        dev = self._device
        if dev.fd < 0:
            self._live()      # raises ClosedPortError
        if not self._tx:
            dev.txsync()
            return
        self._check(self._tx, _rules.strict_tx_check)
        dev.txsync()
        self._settle(self._tx)

    def rxsync(self) -> None:
        dev = self._device
        if dev.fd < 0:
            self._live()      # raises ClosedPortError
        if not self._rx:
            dev.rxsync()
            return
        self._check(self._rx, _rules.strict_rx_check)
        dev.rxsync()
        self._settle(self._rx)

    def poll(self, events: int, timeout: float | None) -> int:
        """The kernel's poll. Its TX part runs when POLLOUT is asked or NR_NO_TX_POLL is not set,
        and then syncs the TX rings with something to send (head != hwcur) or all of them if
        POLLOUT is asked; its RX part syncs every RX ring, only for POLLIN (spec B13). Strict
        mode checks, and afterwards takes the state of, exactly those rings."""
        dev = self._live()
        if not self._tx and not self._rx:
            return dev.poll(events, timeout)
        want_tx = bool(events & select.POLLOUT)
        tx = []
        if want_tx or not self._no_tx_poll:
            tx = [(r, key) for r, key in self._tx
                  if want_tx or r.head != _SHADOWS.get(key).hwcur]
        rx = self._rx if events & select.POLLIN else []
        self._check(tx, _rules.strict_tx_check)
        self._check(rx, _rules.strict_rx_check)
        revents = dev.poll(events, timeout)
        self._settle(tx)
        self._settle(rx)
        return revents

    def fileno(self) -> int:
        return self._live().fd

    def close(self) -> None:
        """Unmap (or hand the shared mapping to another descriptor), then close: the kernel
        unregisters at once. Idempotent."""
        if self._device.fd < 0:
            return
        try:
            for r, key in self._tx + self._rx:   # while the rings are still mapped
                _SHADOWS.unbind(key, self, r)
            self._registry.release(self.info.mem_id, self._mapping, self._device)
            if self._mapping.array is None:      # this process's last user of the region
                _SHADOWS.forget(self._mapping.addr, self._mapping.addr + self._mapping.length)
        finally:
            for _, key in self._tx + self._rx:
                _SHADOWS.unbind(key, self)
            self._tx = self._rx = []
            self._device.close()

    def __repr__(self) -> str:
        state = "closed" if self._device.fd < 0 else f"fd={self._device.fd}"
        return f"<DevBinding {self.info.name!r} mem_id={self.info.mem_id} {state} rules={self.rules}>"
