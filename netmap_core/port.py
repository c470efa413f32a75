"""A registered netmap port: the netmap_if view, its bound rings, sync, poll and close.

The Port owns its binding (one registration, like one /dev/netmap file descriptor); the rings
are views into the allocator's shared region. A ring keeps the binding alive (``tx =
open(...).tx_rings[0]`` keeps the port registered while ``tx`` lives) and raises
ClosedPortError once the port is closed, so a stale ring never writes into the memory of a
later registration.
"""
from __future__ import annotations

import math
import numbers
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import abi, rules as _rules
from .backend import Binding, RegisterInfo, get_backend
from .errors import ClosedPortError, InvalidRequestError
from .portspec import PortSpec, parse_portspec
from .ring import Ring, RingOwner, as_region

if TYPE_CHECKING:
    import asyncio

__all__ = ["Port", "open_port", "POLLIN", "POLLOUT", "POLLERR", "MAX_POLL_TIMEOUT"]

POLLIN, POLLOUT, POLLERR = select.POLLIN, select.POLLOUT, select.POLLERR
ENV_RULES = "PYNETMAP_RULES"
#: the longest finite poll timeout, in seconds (about 11.6 days; poll(2) itself stops at
#: 2**31 ms); wait longer with None (no limit) or a loop
MAX_POLL_TIMEOUT = 1e6


def check_timeout(timeout: object) -> float | None:
    """A poll ``timeout`` as seconds: None (wait forever), or a finite number in
    0..MAX_POLL_TIMEOUT. Anything else (negative, nan, inf, too large, not a number) is an
    InvalidRequestError: unlike poll(2), a negative value does not mean "forever" here."""
    if timeout is None:
        return None
    if not isinstance(timeout, numbers.Real):
        raise InvalidRequestError(
            22, f"poll: timeout={timeout!r} is not a number of seconds; allowed: None (wait "
            f"forever), 0 (do not wait) or 0..{MAX_POLL_TIMEOUT:g} seconds")
    t = float(timeout)
    if not 0.0 <= t <= MAX_POLL_TIMEOUT:   # also refuses nan
        what = "is negative" if t < 0 else ("is not a number" if math.isnan(t) else "is too large")
        raise InvalidRequestError(
            22, f"poll: timeout={timeout!r} {what}; allowed: None (wait forever), 0 (do not "
            f"wait) or a finite 0..{MAX_POLL_TIMEOUT:g} seconds; pass None to wait without a limit")
    return timeout if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) else t


def _bound_run(ofs: np.ndarray) -> tuple[int, int]:
    """libnetmap's first/last ring: the first run of non-zero ``ring_ofs`` entries (spec A9).
    Returns (first, last) inclusive, or (0, -1) when nothing is bound."""
    nz = np.flatnonzero(ofs)
    if nz.size == 0:
        return 0, -1
    first = int(nz[0])
    last = first
    while last + 1 < ofs.size and ofs[last + 1] != 0:
        last += 1
    return first, last


class _Watch:
    """One registration of a port's descriptor in an event loop for :meth:`Port.wait`: ``fut``
    completes when the descriptor fires or the port is closed; undone once, by whichever
    comes first of the waiter and close() (the descriptor number may be reused after close)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, read: bool, write: bool) -> None:
        self.loop, self.fd, self.read, self.write = loop, fd, read, write
        self.fut: asyncio.Future[None] = loop.create_future()
        self.live = True
        if read:
            loop.add_reader(fd, self.fire)
        if write:
            loop.add_writer(fd, self.fire)

    def fire(self) -> None:
        if not self.fut.done():
            self.fut.set_result(None)

    def undo(self) -> None:
        if self.live:
            self.live = False
            if self.read:
                self.loop.remove_reader(self.fd)
            if self.write:
                self.loop.remove_writer(self.fd)

    def closing(self) -> None:
        """Port.close(): from the loop's thread, unregister before the descriptor is closed;
        from another thread, only wake the waiter (its re-poll raises ClosedPortError)."""
        import asyncio

        try:
            same = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            same = False
        if same:
            self.undo()
            self.fire()
        else:
            self.loop.call_soon_threadsafe(self.fire)


class Port:
    """One registration of a netmap port.

    Attributes: ``spec`` (the parsed name), ``info`` (REGISTER's results), ``tx_rings`` /
    ``rx_rings`` (bound hardware rings, in ring-id order), ``host_tx_rings`` /
    ``host_rx_rings``, and ``first/last_tx_ring`` / ``first/last_rx_ring`` (ring ids as
    libnetmap derives them; a port that binds nothing in a direction has last < first).
    """

    def __init__(self, binding: Binding, spec: PortSpec) -> None:
        self._binding = binding
        self.spec = spec
        self.info: RegisterInfo = binding.info
        self.rules: str = binding.rules
        region = as_region(binding.region)
        self.region = region
        off = self.info.offset
        if off < 0 or off + abi.netmap_if.itemsize > region.shape[0]:
            raise InvalidRequestError(22, f"{spec.text}: nr_offset={off} outside the region")
        self.nifp = np.ndarray((), dtype=abi.netmap_if, buffer=region, offset=off)
        ntx, nrx = int(self.nifp["ni_tx_rings"]), int(self.nifp["ni_rx_rings"])
        nhtx, nhrx = int(self.nifp["ni_host_tx_rings"]), int(self.nifp["ni_host_rx_rings"])
        total = ntx + nhtx + nrx + nhrx
        if off + abi.NETMAP_IF_RING_OFS_OFFSET + 8 * total > region.shape[0]:
            raise InvalidRequestError(22, f"{spec.text}: netmap_if ring counts {total} overflow the region")
        self.ring_ofs = np.ndarray((total,), dtype="<i8", buffer=region,
                                   offset=off + abi.NETMAP_IF_RING_OFS_OFFSET)
        # a C string: the kernel reuses netmap_if memory without clearing past the NUL
        self.name = self.nifp["ni_name"].item().split(b"\0", 1)[0].decode(errors="replace")
        # the rings' tie to this port: keeps the binding registered while a ring lives, and
        # closed by close() (not a reference to the Port, so a dropped Port is freed at once)
        owner = self._owner = RingOwner(binding, spec.text)

        def build(index: int, kind: str, rid: int) -> Ring | None:
            rel = int(self.ring_ofs[index])
            if rel == 0:
                return None
            return Ring(region, off + rel, name=f"{self.name}:{kind}{rid}", owner=owner)

        tx = [build(i, "tx", i) for i in range(ntx + nhtx)]
        rx = [build(ntx + nhtx + i, "rx", i) for i in range(nrx + nhrx)]
        self.tx_rings = tuple(r for r in tx[:ntx] if r is not None)
        self.host_tx_rings = tuple(r for r in tx[ntx:] if r is not None)
        self.rx_rings = tuple(r for r in rx[:nrx] if r is not None)
        self.host_rx_rings = tuple(r for r in rx[nrx:] if r is not None)
        self.first_tx_ring, self.last_tx_ring = _bound_run(self.ring_ofs[: ntx + nhtx])
        self.first_rx_ring, self.last_rx_ring = _bound_run(self.ring_ofs[ntx + nhtx:])
        self._closed = False
        # wake-ups of the Port.wait() calls in progress, run by close() before the descriptor goes
        self._on_close: set[Callable[[], None]] = set()

    # --- the backend's operations ---------------------------------------------------------
    def _b(self) -> Binding:
        if self._closed:
            raise ClosedPortError(f"port {self.spec.text!r} is closed")
        return self._binding

    def txsync(self) -> None:
        """Hand filled TX slots ``[old head, head)`` to the port and reclaim sent ones (NIOCTXSYNC).
        Never blocks. Cost: one syscall on the device; on the emulator, the kernel work."""
        if self._closed:
            self._b()         # raises ClosedPortError
        self._binding.txsync()

    def rxsync(self) -> None:
        """Return released RX slots and pick up new packets (NIOCRXSYNC). Never blocks."""
        if self._closed:
            self._b()
        self._binding.rxsync()

    def poll(self, events: int = POLLIN, timeout: float | None = None) -> int:
        """netmap's poll: sync, then wait until a TX ring has room or an RX ring has packets
        beyond ``cur`` (``cur != tail``). ``timeout`` in seconds: None waits forever, 0 does
        not wait, a finite value up to MAX_POLL_TIMEOUT waits at most that long; a negative,
        nan, infinite or larger value is an InvalidRequestError (it never means "forever").
        Returns revents (POLLIN / POLLOUT / POLLERR), 0 on timeout."""
        if timeout is not None:
            timeout = check_timeout(timeout)
        return self._b().poll(events, timeout)

    def fileno(self) -> int:
        """A descriptor that select/poll/epoll/asyncio can wait on. On the device it is the
        netmap descriptor: readable when an RX ring is ready, writable when a TX ring is (the
        kernel runs netmap's poll for the events asked). On the emulator it becomes readable
        when a peer's sync may have made this port ready, for either direction. Call
        :meth:`poll` (or a sync) after it fires; :meth:`wait` does all this."""
        return self._b().fileno()

    async def wait(self, events: int = POLLIN) -> int:
        """asyncio: wait until ``poll(events, 0)`` reports something, without blocking the loop.
        A :meth:`close` meanwhile (from any task or thread) ends the wait with ClosedPortError."""
        import asyncio

        loop = asyncio.get_running_loop()
        # A netmap descriptor answers only the events it is asked for: waiting for POLLOUT
        # through a reader never fires (epoll asks netmap's poll for POLLIN only). A binding
        # whose descriptor merely signals change is watched for reading whatever is awaited.
        by_events = getattr(self._binding, "fileno_reports_events", False)
        read = not by_events or bool(events & POLLIN)
        write = by_events and bool(events & POLLOUT)

        while True:
            revents = self.poll(events, 0)
            if revents:
                return revents
            watch = _Watch(loop, self.fileno(), read, write)
            self._on_close.add(watch.closing)
            try:
                revents = self.poll(events, 0)  # re-check: the event may predate add_reader
                if revents:
                    return revents
                await watch.fut
            finally:
                self._on_close.discard(watch.closing)
                watch.undo()

    def close(self) -> None:
        """Unregister: rings, extra buffers and the netmap_if go back to the port. Idempotent."""
        if not self._closed:
            self._closed = True
            self._owner.closed = True   # every ring of this port now refuses to be used
            for wake in list(self._on_close):
                wake()                  # a Port.wait() in progress raises ClosedPortError
            self._binding.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- extra buffers --------------------------------------------------------------------
    @property
    def bufs_head(self) -> int:
        """``ni_bufs_head``: first extra buffer (0 ends the list, linked through each buffer's
        first 4 bytes). Whatever list it names at close is freed."""
        return int(self.nifp["ni_bufs_head"])

    @bufs_head.setter
    def bufs_head(self, value: int) -> None:
        self.nifp["ni_bufs_head"] = value

    def extra_buffers(self) -> list[int]:
        """Walk the extra-buffer list (stops at 0, at an index outside the mapping, or a loop)."""
        ring = next(iter(self.tx_rings + self.rx_rings + self.host_tx_rings + self.host_rx_rings), None)
        if ring is None:
            return []
        out: list[int] = []
        seen: set[int] = set()
        idx = self.bufs_head
        while 2 <= idx < ring.nbufs and idx not in seen:
            seen.add(idx)
            out.append(idx)
            idx = int(ring.buffers[idx, :4].view("<u4")[0])
        return out

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"mem_id={self.info.mem_id}"
        return (f"<Port {self.spec.text!r} {state} tx={len(self.tx_rings)} rx={len(self.rx_rings)} "
                f"rules={self.rules}>")


def open_port(portspec: str | PortSpec, *, backend: str | None = None,
              rules: str | None = None, **options: Any) -> Port:
    """Open (register) a port by its netmap name, e.g. ``netmap:pipe{1``, ``vale0:a``.

    ``backend``: ``"netmap"`` (/dev/netmap) or ``"emu"``; default ``$PYNETMAP_BACKEND``, else
    netmap when /dev/netmap is usable, else the emulator. ``rules``: ``"strict"`` or
    ``"netmap"`` (see :mod:`netmap_core.rules`); default ``$PYNETMAP_RULES``, else strict on the
    emulator and netmap on the device. Other keyword options go to the backend (``extra_bufs``,
    ring/slot hints, ...).
    """
    spec = portspec if isinstance(portspec, PortSpec) else parse_portspec(portspec)
    be = get_backend(backend)
    import os

    mode = rules or os.environ.get(ENV_RULES) or ("netmap" if be.name == "netmap" else "strict")
    binding = be.register(spec, rules=_rules.check_mode(mode), **options)
    try:
        return Port(binding, spec)
    except BaseException:
        binding.close()
        raise
