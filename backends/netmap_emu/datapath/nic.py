"""The rings of an interface port (``netmap:IFNAME``): RX rings filled from the binding's
AF_PACKET ring, TX rings sent with one sendmmsg per txsync, all in the registering process.

One :class:`NicPort` per binding owns the socket and demultiplexes what it captures: frames
the stack transmits on the interface (``PACKET_OUTGOING``) go to the host RX ring, every other
frame to the NIC RX ring, in capture order; a frame whose ring is full stops the walk (it waits
for the next rxsync), one longer than a buffer or meant for an unbound ring is dropped and
counted. The host TX ring is drained and its frames are counted as dropped: AF_PACKET cannot
hand a frame to the local stack as if received (spec/deviations.md). Rings are private to the
binding, so a thread lock (not the namespace's fcntl bytes) serialises its syncs.
"""
from __future__ import annotations

import errno
import select
import threading

import numpy as np

from netmap_core import abi
from netmap_core.errors import NetmapOSError, RingProtocolError

from ..shm import kring
from ..shm.allocator import Allocator
from .afpacket import PACKET_OUTGOING, AfPacket, InterfaceGone, copy_frames
from .ring import NOT_CHANGED, RingController, span

__all__ = ["NicPort", "NicRxRing", "NicTxRing", "InterfaceGoneError", "gone_error"]


class InterfaceGoneError(NetmapOSError):
    """A sync on an interface port whose interface went away (errno EIO, as netmap.ko's syncs
    answer once the adapter left netmap mode) or down (ENETDOWN). Catch NetmapOSError to run
    unchanged on both backends."""


def gone_error(exc: InterfaceGone, port: str) -> InterfaceGoneError:
    """The error for an interface that went away or down under an open port."""
    code = errno.EIO if exc.errno in (None, errno.ENXIO) else exc.errno
    return InterfaceGoneError(code, f"{port}: {exc.strerror or exc}")


class NicPort:
    """The AF_PACKET socket of one interface binding and its bound RX rings (NIC ``rx``, host
    ``host_rx``, None when not bound). Counters: ``dropped`` (too long, or for an unbound
    ring), ``host_tx_dropped`` (frames the application put on the host TX ring)."""

    def __init__(self, sock: AfPacket, a: Allocator, name: str) -> None:
        self.sock = sock
        self.name = name
        self.lock = threading.Lock()
        self.rx: NicRxRing | None = None
        self.host_rx: NicRxRing | None = None
        self.buffers = a.buffers
        self.buf_size = a.geom.buf_size
        self.buf_base = a.arr.ctypes.data + a.geom.buf_pool.offset
        self.dropped = 0
        self.host_tx_dropped = 0

    def ring(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
             ringid: int) -> RingController:
        host = ringid >= 1
        if int(a.blocks[obj, kring.DIR]) == abi.NR_TX:
            return NicTxRing(a, obj, name, strict, lockfd, ns_dir, self, host)
        r = NicRxRing(a, obj, name, strict, lockfd, ns_dir, self)
        if host:
            self.host_rx = r
        else:
            self.rx = r
        return r

    def fill(self) -> None:
        """Move ready frames into the bound RX rings (lock held). Parses as many ready blocks as
        the rings have room for at once (``RxBlocks.ready``) and copies their frames with a few
        numpy calls per ring; a syscall (poll, to notice a vanished interface) only when no
        block is ready."""
        sock = self.sock
        blocks = sock.rx
        rings = (self.rx, self.host_rx)
        while True:
            rooms = [0 if r is None else r.room() for r in rings]
            f = blocks.ready(rooms[0] + rooms[1])
            if f is None:
                try:
                    sock.check()
                except InterfaceGone as exc:
                    raise gone_error(exc, self.name) from None
                return
            out = f.pkttype == PACKET_OUTGOING
            big = f.length > self.buf_size
            nic = rings[0]
            if nic is not None and not out.any() and not big.any():
                # the common case: every frame arrived from the wire and fits a buffer
                take = min(len(out), rooms[0])
                if take:
                    nic.deliver(blocks.ring, f.start[:take], f.length[:take])
                blocks.consume(take)
                if take < len(out):
                    return
                continue
            target = out.astype(np.int8)
            for t, r in enumerate(rings):
                if r is None:
                    target[target == t] = -1
            target[big] = -1
            take = len(target)
            for t in (0, 1):
                over = np.flatnonzero(np.cumsum(target == t) > rooms[t])
                if over.size:
                    take = min(take, int(over[0]))
            tk = target[:take]
            self.dropped += int(np.count_nonzero(tk < 0))
            for t, r in enumerate(rings):
                if r is not None:
                    sel = np.flatnonzero(tk == t)
                    if sel.size:
                        r.deliver(blocks.ring, f.start[sel], f.length[sel])
            blocks.consume(take)
            if take < len(target):
                return   # a ring is full: the rest waits in its block

    def wait(self, seconds: float, want_tx: bool, want_rx: bool) -> None:
        """Sleep until the socket has a ready block (``want_rx``) or send room (``want_tx``),
        an error, or ``seconds`` pass. Raises the typed error if the interface is gone."""
        p = select.poll()
        p.register(self.sock.fd, (select.POLLIN if want_rx else 0) | (select.POLLOUT if want_tx else 0))
        for _, ev in p.poll(max(seconds, 0.0) * 1000.0):
            if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                try:
                    self.sock.check()
                except InterfaceGone as exc:
                    raise gone_error(exc, self.name) from None


class NicRxRing(RingController):
    """A NIC or host RX ring: rxsync releases ``[hwcur, head)``, then fills from the socket
    (which may also fill the binding's other RX ring), then shows ``tail = hwtail``."""

    __slots__ = ("port",)

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
                 port: NicPort) -> None:
        super().__init__(a, obj, name, strict, lockfd, ns_dir, hwtail_word=kring.PEER_TAIL)
        self.port = port

    def room(self) -> int:
        """Free slots: an RX ring holds at most n-1 unreleased slots (spec L3)."""
        ks = self.ks
        return (ks[self.i_hwcur] - ks[self.i_hwtail] - 1) % self.n

    def deliver(self, src: np.ndarray, start: np.ndarray, length: np.ndarray) -> None:
        """Copy frames into the slots from hwtail on (they fit: ``room()`` was asked) with one
        ``copy_frames``, then publish the new hwtail. Each slot's buf_idx is checked first."""
        ks, n = self.ks, self.n
        t = ks[self.i_hwtail]
        k = len(start)
        e = t + k
        bidx = self.bidx[t:e] if e <= n else np.concatenate((self.bidx[t:], self.bidx[: e - n]))
        if int(bidx.max()) >= self.nbufs:
            j = int(np.argmax(bidx >= self.nbufs))
            raise RingProtocolError(self.name, f"slot[{(t + j) % n}].buf_idx", int(bidx[j]),
                                    f"0..{self.nbufs - 1} (a buffer of the pool) in a slot "
                                    "released to the kernel")
        copy_frames(src, start, length, self.port.buffers, bidx)
        if e <= n:
            self.lens[t:e] = length
            self.f16[t:e] = 0
        else:
            self.lens[t:] = length[: n - t]
            self.lens[: e - n] = length[n - t:]
            self.f16[t:] = 0
            self.f16[: e - n] = 0
        ks[self.i_hwtail] = e % n

    def rxsync(self) -> int:
        port = self.port
        with port.lock:
            rw, ks = self.rw, self.ks
            if self.rx_prologue(rw[5], rw[6]):
                return 1
            hwcur, rhead = ks[self.i_hwcur], ks[self.i_rhead]
            if rhead != hwcur:
                f16 = self.f16
                if rhead > hwcur:
                    f16[hwcur:rhead] &= NOT_CHANGED
                else:
                    f16[hwcur:] &= NOT_CHANGED
                    f16[:rhead] &= NOT_CHANGED
                ks[self.i_hwcur] = rhead
            port.fill()
            t = ks[self.i_hwtail]
            ks[self.i_rtail] = t
            rw[7] = t
            self.timestamp()
        return 0


class NicTxRing(RingController):
    """A NIC TX ring (txsync sends ``[hwcur, head)``, a frame per slot, with one sendmmsg)
    or the host TX ring (drained, counted as dropped). What the kernel took is free at once:
    ``tail = hwcur - 1``."""

    __slots__ = ("port", "host")

    def __init__(self, a: Allocator, obj: int, name: str, strict: bool, lockfd: int, ns_dir: str,
                 port: NicPort, host: bool) -> None:
        super().__init__(a, obj, name, strict, lockfd, ns_dir, hwtail_word=kring.PEER_TAIL)
        self.port = port
        self.host = host

    def pending(self) -> bool:
        return bool(self.rw[5] != self.ks[self.i_hwcur])

    def txsync(self) -> int:
        port = self.port
        with port.lock:
            if port.sock.gone:   # known gone: every sync fails, as on netmap.ko, even with nothing to send
                try:
                    port.sock.check()
                except InterfaceGone as exc:
                    raise gone_error(exc, self.name) from None
            rw, ks, n = self.rw, self.ks, self.n
            head = rw[5]
            if self.tx_prologue(head, rw[6]):
                return 1
            hwcur = ks[self.i_hwcur]
            head = ks[self.i_rhead]
            if head != hwcur:
                idx = span(hwcur, head, n)
                if self.host:
                    port.host_tx_dropped += len(idx)   # a frame per slot, as on the NIC ring
                    done = len(idx)
                else:
                    done = self._send(idx)
                if done:
                    self.clear_changed(idx[:done])
                    hwcur = (hwcur + done) % n
                    ks[self.i_hwcur] = hwcur
            t = (hwcur - 1) % n
            ks[self.i_hwtail] = t
            ks[self.i_rtail] = t
            rw[7] = t
        return 0

    def _send(self, idx: np.ndarray) -> int:
        """Send slots ``idx``, each as one frame (NS_MOREFRAG is not looked at, as netmap's
        generic adapter does not); returns how many went."""
        bidx = self.bidx[idx].astype(np.uint64)
        lens = self.lens[idx]
        if int(bidx.max()) >= self.nbufs or int(lens.max()) > self.buf_size:
            self.strict_slots(((int(idx[0]), int(idx[-1]) + 1),) if idx[-1] >= idx[0] else
                              ((int(idx[0]), self.n), (0, int(idx[-1]) + 1)), "handed to the kernel")
        port = self.port
        try:
            return port.sock.send(port.buf_base + bidx * np.uint64(self.buf_size), lens,
                                  np.ones(len(idx), dtype=np.uint64))
        except InterfaceGone as exc:
            raise gone_error(exc, self.name) from None
