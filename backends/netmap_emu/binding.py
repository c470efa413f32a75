"""One registration on the emulator (what a /dev/netmap file descriptor is in netmap).

Ring ownership is netmap's: the application owns ``[head, tail)`` of each bound ring, the
emulated kernel the rest, and only ``txsync``/``rxsync``/``poll`` (run in this process under
the ring pair's fcntl lock) move ``tail``. ``fileno()`` is a private FIFO that a peer's sync
writes one byte into when this binding is sleeping (or armed) in ``poll``.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import time
import weakref

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import ClosedPortError, InvalidRequestError, LockTimeoutError, NetmapOSError

from .datapath.afpacket import AfPacket
from .datapath.monitor import MonitorRxRing, MonitorTxRing, gone_error
from .datapath.nic import InterfaceGoneError, NicPort
from .datapath.pipe import PipeRing
from .datapath.ring import RingController
from .datapath.vale import SwitchRuntime, ValeRxRing, ValeTxRing, runtime_for
from .kernel.core import Kernel
from .kernel.pipes import Registered
from .shm import allocator as shm_alloc, kring
from .shm.allocator import Allocator
from .shm.namespace import MIN_WAIT, cap_waits
from .shm.segment import fd_exhausted
from .shm.switch import SwitchSeg
from .shm.wake import fence
from .views import monitors_of, switch_view

__all__ = ["EmuBinding", "PipeBinding", "ValeBinding", "MonitorBinding", "NicBinding", "SLEEP_SLICE",
           "SPIN_SECONDS", "SPIN_FLOOR", "SpinPolicy"]

POLLIN, POLLOUT, POLLERR = select.POLLIN, select.POLLOUT, select.POLLERR
#: longest uninterrupted sleep in poll: a lost wakeup costs at most this much latency
SLEEP_SLICE = 0.1
#: the longest poll watches the peer's published indexes before it sleeps. A sleep and wakeup
#: costs tens of µs; a peer running on another core usually publishes sooner than that.
SPIN_SECONDS = 200e-6
#: the shortest: a binding whose peer keeps taking longer than SPIN_SECONDS spins this long
SPIN_FLOOR = 5e-6


class SpinPolicy:
    """How long poll watches the published words before it sleeps, learnt from this binding's
    last waits (an adaptive mutex's rule). A wait that ended within SPIN_SECONDS of the spin's
    start (a wake byte, or the re-check after arming) lets the next spin last as long as that
    wait or twice the budget, whichever is longer; a longer wait, or a poll that timed out,
    halves the budget. Always within [SPIN_FLOOR, SPIN_SECONDS]: spinning longer than the peer
    takes only burns a CPU that a process sharing it could use, and a sleep and wakeup costs
    more than a spin that catches the peer. Cost: a few float operations per poll that waited.
    The sleep protocol does not depend on it: any budget, the floor included, loses no wakeup."""

    __slots__ = ("budget",)

    def __init__(self) -> None:
        self.budget = SPIN_SECONDS

    def waited(self, seconds: float, ended: bool) -> None:
        """Learn from a poll that spun and then slept: ``seconds`` from the spin's start until
        the ring was ready (``ended``) or the poll gave up (``ended`` False)."""
        if ended and seconds < SPIN_SECONDS:
            self.budget = min(SPIN_SECONDS, max(2.0 * self.budget, seconds))
        else:
            self.budget = max(SPIN_FLOOR, 0.5 * self.budget)


class _Owner:
    """What must be undone when the binding goes away (also run at interpreter exit)."""

    def __init__(self, kernel: Kernel, bid: int, alloc: Allocator, fd: int) -> None:
        self.kernel, self.ns, self.bid, self.alloc, self.fd = kernel, kernel.ns, bid, alloc, fd
        self.pid = os.getpid()

    def __call__(self) -> None:
        if os.getpid() != self.pid:  # an inherited copy in a forked child: the parent owns it
            os.close(self.fd)
            return
        if self.ns.held_here():
            # the garbage collector ran us inside an open/close of this thread, whose registry
            # copy is in flight: close when that section ends
            self.ns.deferred.append(self)
            return
        try:
            self.kernel.unregister(self.bid)
        except LockTimeoutError:
            # a process stopped while holding a lock the unregister needs: the binding is dead
            # to everyone now (its liveness lock goes below) and the next operation of any
            # process, this one included, reclaims it
            self.ns.abandoned.add(self.bid)
            raise
        finally:
            self.ns.release_live(self.bid)
            os.close(self.fd)
            try:
                os.unlink(self.ns.fifo_path(self.bid))
            except FileNotFoundError:
                pass
            self.alloc.refs -= 1
            if self.alloc.refs <= 0:
                shm_alloc.forget(self.alloc)


class EmuBinding:
    """One registration. ``region`` is the allocator's mapping (a uint8 array shared by all
    bindings of the mem_id in this process); the netmap_if is at ``info.offset``. Subclasses
    give the ring controllers of their port kind (:meth:`_rings`)."""

    def __init__(self, kernel: Kernel, r: Registered, rules: str) -> None:
        ns = kernel.ns
        self.info: RegisterInfo = r.info
        self.rules = rules
        self.bid = r.bid
        self._ns = ns
        self._kernel = kernel
        a = r.alloc
        self.region = a.arr
        strict = rules == "strict"
        pfx = r.info.name
        self._tx: tuple[RingController, ...] = tuple(
            self._ring(a, o, f"{pfx}:tx{k}", strict) for o, k in zip(r.tx_objs, r.tx_ids))
        self._rx: tuple[RingController, ...] = tuple(
            self._ring(a, o, f"{pfx}:rx{k}", strict) for o, k in zip(r.rx_objs, r.rx_ids))
        try:
            fd = os.open(ns.fifo_path(r.bid), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:   # the caller unregisters; the FIFO is ours to remove
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ns.fifo_path(r.bid))
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise fd_exhausted(exc.errno, f"{r.info.name}: opening its wake FIFO") from exc
            raise NetmapOSError(exc.errno or errno.EIO, f"{r.info.name}: opening its wake FIFO: "
                                f"{exc.strerror}") from exc
        a.refs += 1
        self._no_tx_poll = bool(r.info.flags & abi.NR_NO_TX_POLL)
        self._fd = fd
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)
        self._closed = False
        self._armed = False
        self.spin = SpinPolicy()
        #: (want TX, want RX) -> the kring words _spin watches
        self._watch: dict[tuple[bool, bool], tuple[int, ...]] = {}
        self._finalizer = weakref.finalize(self, _Owner(kernel, r.bid, a, fd))

    def _ring(self, a: Allocator, obj: int, name: str, strict: bool) -> RingController:
        raise NotImplementedError

    # --- syncs -------------------------------------------------------------------------------
    def _check(self) -> None:
        if self._closed:
            raise ClosedPortError(f"binding {self.info.name!r} is closed")

    def txsync(self) -> None:
        """NIOCTXSYNC: every bound TX ring. Never blocks. A rejected head/cur reinitialises the
        ring and returns normally (rules="netmap", spec B8) or raises (rules="strict")."""
        self._check()
        for c in self._tx:
            c.txsync()

    def rxsync(self) -> None:
        """NIOCRXSYNC: every bound RX ring (timestamps updated). Never blocks."""
        self._check()
        for c in self._rx:
            c.rxsync()

    # --- poll ----------------------------------------------------------------------------------
    def _scan(self, want_tx: int, want_rx: int) -> int:
        """One call of netmap_poll (spec B13): returns revents. As in netmap, the TX rings are
        scanned a second time if POLLOUT is wanted and none was ready, and the RX rings a second
        time if none was ready (the kernel's retry after joining the wait queue), whatever
        POLLERR says: so a TX head that the first sync adopted (B8) is sent by the second. The
        second scan skips rings whose sync would change nothing (``RingController.idle``).
        A ring whose sync could not get a lock in time (its holder is stopped, say) is not
        ready, as netmap's poll skips a busy ring; the next pass tries it again.
        Ring controllers: ``txsync()``/``rxsync()`` (1 if the prologue failed), ``pending()``,
        ``rw`` (the ring's u32 words: head 5, cur 6, tail 7), optionally ``idle()``."""
        revents = 0
        if want_tx or not self._no_tx_poll:
            retry = False
            while True:
                for c in self._tx:
                    if not want_tx and not c.pending():
                        continue
                    if retry and c.idle():
                        continue
                    try:
                        if c.txsync():
                            revents |= POLLERR
                    except LockTimeoutError:
                        continue
                    rw = c.rw
                    if want_tx and rw[6] != rw[7]:
                        revents |= POLLOUT
                        want_tx = 0
                if retry or not want_tx:
                    break
                retry = True
        if want_rx:
            retry = False
            while True:
                for c in self._rx:
                    if retry and c.idle():
                        continue
                    try:
                        if c.rxsync():
                            revents |= POLLERR
                    except LockTimeoutError:
                        continue
                    rw = c.rw
                    if rw[6] != rw[7]:
                        revents |= POLLIN
                if retry or revents & POLLIN:
                    break
                retry = True
        return revents

    def _drain(self) -> None:
        """Empty the wake FIFO: read until a read returns less than it asked for, so the usual
        one pending byte costs one read(2), not a second one that only finds EAGAIN."""
        self._check()   # closed by another thread: its FIFO descriptor is gone (or reused)
        try:
            while len(os.read(self._fd, 4096)) == 4096:
                pass
        except BlockingIOError:
            pass
        except OSError as exc:
            if self._closed:
                raise ClosedPortError(f"binding {self.info.name!r} was closed during poll") from exc
            raise

    def _spin(self, want_tx: int, want_rx: int) -> bool:
        """Watch (without locks) the pipe_tail words peers publish, for at most the spin
        policy's budget, yielding the CPU between looks. True if one changed."""
        key = (bool(want_tx), bool(want_rx))
        words = self._watch.get(key)
        if words is None:
            words = self._watch[key] = tuple(
                c.published for c in (self._tx if want_tx else ()) + (self._rx if want_rx else ()))
        if not words or self._closed:
            return False
        ks = (self._tx or self._rx)[0].ks
        clock, yield_ = time.perf_counter, os.sched_yield
        end = clock() + self.spin.budget
        if len(words) == 1:   # the usual case: one ring
            i = words[0]
            v = ks[i]
            while ks[i] == v:
                if clock() >= end:
                    return False
                yield_()  # let a peer sharing this core run
            return True
        seen = [ks[i] for i in words]
        while True:
            for i, v in zip(words, seen):
                if ks[i] != v:
                    return True
            if clock() >= end:
                return False
            yield_()

    def _arm(self, want_tx: int, want_rx: int, on: bool) -> None:
        self._armed = on
        bid = self.bid
        for c in (self._tx if want_tx else ()) + (self._rx if want_rx else ()):
            c.arm(bid) if on else c.disarm(bid)

    def poll(self, events: int, timeout: float | None) -> int:
        """netmap's poll: sync (TX part if POLLOUT was asked or NR_NO_TX_POLL is unset, RX part
        if POLLIN was asked), report POLLOUT/POLLIN when ``cur != tail`` on a bound ring (POLLERR
        if a prologue failed), else sleep until a peer's sync or ``timeout`` seconds (None,
        negative or infinite: forever). A call that reports nothing leaves the binding armed:
        the next peer sync makes ``fileno()`` readable. Costs one sync per bound ring per pass;
        sleeping costs no CPU. Returns within ``timeout`` (plus :data:`~netmap_emu.shm.namespace.MIN_WAIT`
        at most) even when another process holding a ring's lock is stopped: that ring is not
        ready."""
        self._check()
        if timeout is not None:
            if timeout != timeout:   # NaN
                raise InvalidRequestError(errno.EINVAL, "poll timeout=nan; allowed: seconds >= 0, "
                                          "or None (or a negative number) to wait forever")
            if timeout < 0 or timeout == math.inf:
                timeout = None
        if timeout is None:
            return self._poll(events, None)
        start = time.monotonic()
        deadline = start + timeout
        # no lock wait inside this call may end later than this
        old = cap_waits(max(deadline, start + MIN_WAIT))
        try:
            return self._poll(events, deadline)
        finally:
            cap_waits(old)

    def _poll(self, events: int, deadline: float | None) -> int:
        want_tx = events & POLLOUT
        want_rx = events & POLLIN
        if self._armed:  # wake bytes can only be pending after we armed
            self._drain()
        revents = self._scan(want_tx, want_rx)
        if revents:
            if self._armed:
                self._arm(POLLOUT, POLLIN, False)
            return revents
        clock = time.monotonic
        spun = clock()   # when the spin began (0.0: no spin, a zero timeout)
        if deadline is None or deadline > spun:
            if self._spin(want_tx, want_rx):
                revents = self._scan(want_tx, want_rx)
                if revents:
                    return revents
        else:
            spun = 0.0
        while True:
            self._check()   # another thread may have closed the port while we slept
            # sleep protocol: publish "about to sleep", fence, re-check, then block
            self._arm(want_tx, want_rx, True)
            fence()
            revents = self._scan(want_tx, want_rx)
            if revents:
                self._arm(want_tx, want_rx, False)
                if spun:
                    self.spin.waited(clock() - spun, True)
                return revents
            if deadline is None:
                wait = SLEEP_SLICE
            else:
                wait = min(SLEEP_SLICE, deadline - clock())
                if wait <= 0:
                    if spun:
                        self.spin.waited(clock() - spun, False)
                    return 0  # stays armed, like an fd on netmap's wait queue
            if self._poller.poll(wait * 1000.0):
                self._drain()   # raises ClosedPortError if another thread closed the port
            else:
                self._check()   # a slice with no wake byte: nothing to drain
            revents = self._scan(want_tx, want_rx)
            if revents:
                self._arm(want_tx, want_rx, False)
                if spun:
                    self.spin.waited(clock() - spun, True)
                return revents

    def fileno(self) -> int:
        """A FIFO that becomes readable when a peer's sync may have made this binding ready,
        once a ``poll`` found nothing ready (it arms the binding). Never read it yourself:
        ``poll`` drains it."""
        self._check()
        return self._fd

    # --- beyond netmap ----------------------------------------------------------------------
    def peer_bound(self) -> bool:
        """Whether the other end of this pipe is registered by a live process (not a netmap
        call: netmap has no way to ask). False for ports that are not pipe ends."""
        self._check()
        return False

    def kring(self, direction: str, i: int = 0):
        """The kernel-private state of bound ring ``i`` (``"tx"`` or ``"rx"``) as a
        :class:`netmap_core.rules.KRing` (for tests and debugging)."""
        return (self._tx if direction == "tx" else self._rx)[i].kring()

    def close(self) -> None:
        """Unregister (idempotent): free extra buffers and the netmap_if; destroy the pipe when
        both ends are gone and the allocator when its last user leaves (spec L6)."""
        if not self._closed:
            self._closed = True
            self._tx = self._rx = ()
            self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<EmuBinding {self.info.name!r} bid={self.bid} mem_id={self.info.mem_id}>"


class PipeBinding(EmuBinding):
    """A registered pipe end."""

    def _ring(self, a: Allocator, obj: int, name: str, strict: bool) -> RingController:
        return PipeRing(a, obj, name, strict, self._ns.fd, self._ns.dir, monitors_of(self._kernel))

    def peer_bound(self) -> bool:
        """Whether the other end of this pipe is registered by a live process (not a netmap
        call: netmap has no way to ask). Reclaims bindings of dead processes on the way."""
        self._check()
        return self._kernel.peer_bound(self.bid)


class ValeBinding(EmuBinding):
    """A registered VALE port: txsync forwards through the switch, rxsync releases and shows
    what senders published."""

    def __init__(self, kernel: Kernel, r: Registered, rules: str,
                 switch: tuple[str, SwitchSeg] | None) -> None:
        self.runtime: SwitchRuntime | None = None
        if switch is not None:
            sw, seg = switch
            ns = kernel.ns
            self.runtime = runtime_for(ns.name, sw, seg, ns.fd, ns.dir, switch_view(kernel, sw))
        self.port_name = r.pname
        super().__init__(kernel, r, rules)

    def _ring(self, a: Allocator, obj: int, name: str, strict: bool) -> RingController:
        ns = self._ns
        cls = ValeTxRing if int(a.blocks[obj, kring.DIR]) == abi.NR_TX else ValeRxRing
        return cls(a, obj, name, strict, ns.fd, ns.dir, self.runtime, self.port_name)


class MonitorBinding(EmuBinding):
    """A registered monitor. Its RX rings are filled by the monitored port's syncs; its TX ring
    refuses to send. Once the port leaves netmap mode (spec G5) rxsync does nothing:
    ``rules="netmap"`` returns normally as NIOCRXSYNC does, ``rules="strict"`` raises EIO;
    poll reports POLLERR either way."""

    def _ring(self, a: Allocator, obj: int, name: str, strict: bool) -> RingController:
        ns = self._ns
        if int(a.blocks[obj, kring.DIR]) == abi.NR_TX:
            return MonitorTxRing(a, obj, name, strict, ns.fd, ns.dir)
        return MonitorRxRing(a, obj, name, strict, ns.fd, ns.dir, monitors_of(self._kernel).watches)

    def rxsync(self) -> None:
        """NIOCRXSYNC on every bound RX ring (see the class doc for a monitor whose port left)."""
        self._check()
        failed = False
        for c in self._rx:
            if c.rxsync() and isinstance(c, MonitorRxRing) and c.gone():
                failed = True
        if failed and self.rules == "strict":
            raise gone_error(self.info.name)

    def gone(self) -> bool:
        """Whether the monitored port left netmap mode (not a netmap call)."""
        return any(isinstance(c, MonitorRxRing) and c.gone() for c in self._rx)



class NicBinding(EmuBinding):
    """A registered interface (``netmap:IFNAME``): its rings are fed and drained through an
    AF_PACKET socket of this process (``datapath/nic.py``), which this binding owns and closes.
    ``poll`` sleeps in poll(2) on that socket and ``fileno()`` is the socket: it is readable
    when the kernel has retired a block of received frames."""

    def __init__(self, kernel: Kernel, r: Registered, rules: str, sock: AfPacket) -> None:
        self.nic = NicPort(sock, r.alloc, r.info.name)
        self._sock_closer = weakref.finalize(self, sock.close)
        try:
            super().__init__(kernel, r, rules)
        except BaseException:
            self._sock_closer()
            raise

    def _ring(self, a: Allocator, obj: int, name: str, strict: bool) -> RingController:
        hdr = np.ndarray((), dtype=abi.netmap_ring, buffer=a.region, offset=a.ring_offset(obj))
        return self.nic.ring(a, obj, name, strict, self._ns.fd, self._ns.dir, int(hdr["ringid"]))

    def poll(self, events: int, timeout: float | None) -> int:
        """netmap's poll on an interface: sync as ``EmuBinding.poll`` does, and while nothing is
        ready sleep in poll(2) on the AF_PACKET socket (a ready block: POLLIN; send room:
        POLLOUT) in slices of at most SLEEP_SLICE. POLLERR, as netmap.ko answers, once the
        interface is deleted (or goes down): the syncs then raise the error."""
        self._check()
        if timeout is not None and timeout != timeout:
            raise InvalidRequestError(errno.EINVAL, "poll timeout=nan; allowed: seconds >= 0, "
                                      "or None (or a negative number) to wait forever")
        forever = timeout is None or timeout < 0 or timeout == math.inf
        deadline = 0.0 if forever else time.monotonic() + float(timeout or 0.0)
        want_tx, want_rx = events & POLLOUT, events & POLLIN
        while True:
            try:
                revents = self._scan(want_tx, want_rx)
                if revents:
                    return revents
                wait = SLEEP_SLICE if forever else min(SLEEP_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    return 0
                self.nic.wait(wait, bool(want_tx), bool(want_rx))
            except InterfaceGoneError:
                return POLLERR
            self._check()

    def fileno(self) -> int:
        """The AF_PACKET socket: readable when a block of received frames is ready."""
        self._check()
        return self.nic.sock.fd

    def close(self) -> None:
        """Unregister, then close the socket (which ends promiscuous mode for it)."""
        if not self._closed:
            super().close()
            self._sock_closer()
