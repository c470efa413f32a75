"""One registration on /dev/netmap: the Binding that netmap_core.Port drives.

Sync and poll are the kernel's; in ``rules="strict"`` the binding first checks head/cur of
every bound ring against a per-ring shadow kring, raising instead of letting the kernel reinit.
"""
from __future__ import annotations

import select

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
        self.region = mapping.array
        self._device = device
        self._mapping = mapping
        self._registry = registry
        self._no_tx_poll = bool(info.flags & abi.NR_NO_TX_POLL)
        self._tx: list[tuple[Ring, _rules.KRing]] = []
        self._rx: list[tuple[Ring, _rules.KRing]] = []
        if self.rules == _rules.STRICT:
            tx, rx = bound_rings(self.region, info.offset, info.name)
            self._tx = [(r, _settled(r)) for r in tx]
            self._rx = [(r, _settled(r)) for r in rx]

    # --- strict checks ----------------------------------------------------------------------
    def _check(self, shadows, check) -> None:
        for ring, k in shadows:
            bad = check(k, ring.head, ring.cur)
            if bad is not None:
                raise bad.error(ring.name)

    def _settle(self, shadows) -> list:
        return [(ring, _settled(ring)) for ring, _ in shadows]

    def _live(self) -> Device:
        if self._device.fd < 0:
            raise ClosedPortError(f"port {self.info.name!r} is closed")
        return self._device

    # --- Binding ----------------------------------------------------------------------------
    def txsync(self) -> None:
        dev = self._live()
        if self._tx:
            self._check(self._tx, _rules.strict_tx_check)
        dev.txsync()
        if self._tx:
            self._tx = self._settle(self._tx)

    def rxsync(self) -> None:
        dev = self._live()
        if self._rx:
            self._check(self._rx, _rules.strict_rx_check)
        dev.rxsync()
        if self._rx:
            self._rx = self._settle(self._rx)

    def poll(self, events: int, timeout: float | None) -> int:
        """The kernel's poll. Its TX part runs when POLLOUT is asked or NR_NO_TX_POLL is not set,
        its RX part only for POLLIN (spec B13): strict mode checks exactly those rings."""
        dev = self._live()
        tx_part = bool(events & select.POLLOUT) or not self._no_tx_poll
        rx_part = bool(events & select.POLLIN)
        if tx_part and self._tx:
            self._check(self._tx, _rules.strict_tx_check)
        if rx_part and self._rx:
            self._check(self._rx, _rules.strict_rx_check)
        revents = dev.poll(events, timeout)
        if tx_part and self._tx:
            self._tx = self._settle(self._tx)
        if rx_part and self._rx:
            self._rx = self._settle(self._rx)
        return revents

    def fileno(self) -> int:
        return self._live().fd

    def close(self) -> None:
        """Unmap (or hand the shared mapping to another descriptor), then close: the kernel
        unregisters at once. Idempotent."""
        if self._device.fd < 0:
            return
        try:
            self._registry.release(self.info.mem_id, self._mapping, self._device)
        finally:
            self._tx = self._rx = []
            self._device.close()

    def __repr__(self) -> str:
        state = "closed" if self._device.fd < 0 else f"fd={self._device.fd}"
        return f"<DevBinding {self.info.name!r} mem_id={self.info.mem_id} {state} rules={self.rules}>"
