"""An AF_PACKET socket bound to one interface: a TPACKET_V3 RX ring walked a block at a time
with numpy, and sendmmsg(2) (through ctypes) for batches of frames straight from netmap buffers.

Every syscall an interface port makes is here. The socket is private to the process that
registered the port; the RX ring's blocks are the kernel's until their status says
TP_STATUS_USER, then ours until we write TP_STATUS_KERNEL back (TPACKET_V3, packet(7)).
Opening it asks for promiscuous mode through a PACKET_MR_PROMISC membership, which the kernel
drops when the socket closes.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import socket
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["AfPacket", "Frames", "InterfaceGone", "block_timeout_ms", "copy_frames", "frame_offsets",
           "ifindex", "interface_mtu", "ENV_RETIRE_MS", "PACKET_OUTGOING"]

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
MSG_DONTWAIT = 0x40
_SIOCGIFMTU = 0x8921
#: ``$PYNETMAP_EMU_IF_RETIRE_MS``: how long the kernel keeps a TPACKET_V3 block open before
#: handing it over part-filled (the emulator's counterpart of ``dev.netmap.generic_mit``):
#: the latency bound of a received frame, traded against frames per block
ENV_RETIRE_MS = "PYNETMAP_EMU_IF_RETIRE_MS"


def block_timeout_ms() -> int:
    """The block retire timeout in ms (default 1; 1..1000)."""
    try:
        v = int(os.environ.get(ENV_RETIRE_MS, "1"))
    except ValueError:
        v = 1
    return min(max(v, 1), 1000)

# struct tpacket_block_desc (version, offset_to_priv, then tpacket_hdr_v1), byte offsets
_BD_STATUS, _BD_NUM_PKTS, _BD_FIRST = 8, 12, 16
# struct tpacket3_hdr, then the sockaddr_ll at TPACKET_ALIGN(sizeof(tpacket3_hdr)) = 48
_H_NEXT, _H_SNAPLEN, _H_MAC, _LL_PKTTYPE = 0, 12, 24, 48 + 10
_HDR_WORDS = np.array([_H_SNAPLEN // 4, _H_MAC // 4])

_libc = ctypes.CDLL(None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int


class InterfaceGone(OSError):
    """The interface went away (deleted, or moved to another network namespace) or down while
    the socket was bound to it."""


@dataclass(frozen=True)
class Frames:
    """The frames of one ready block not consumed yet: absolute offsets (into the RX ring
    mapping) of each frame's first byte, its captured length and its sll_pkttype."""

    start: np.ndarray   # int64
    length: np.ndarray  # int64
    pkttype: np.ndarray  # uint8


def interface_mtu(ifname: str) -> int:
    """The MTU of ``ifname`` (SIOCGIFMTU on a throwaway datagram socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16si20x", ifname.encode()[:15], 0)
        return int(struct.unpack("16si20x", fcntl.ioctl(s.fileno(), _SIOCGIFMTU, req))[1])


def ifindex(ifname: str) -> int:
    """The interface index of ``ifname`` in this network namespace, 0 if there is none."""
    return _ifindex(ifname)


def _ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return 0


class AfPacket:
    """A packet socket on ``ifname`` with a TPACKET_V3 RX ring of ``nblocks`` blocks of
    ``block_size`` bytes, retired by the kernel after ``retire_ms`` even when not full.
    Raises PermissionError (no CAP_NET_RAW), LookupError (no such interface), OSError."""

    def __init__(self, ifname: str, *, block_size: int = 1 << 18, nblocks: int = 16,
                 frame_size: int = 2048, retire_ms: int | None = None) -> None:
        self.ifname = ifname
        self.ifindex = _ifindex(ifname)
        if not self.ifindex:
            raise LookupError(f"no interface {ifname!r} in this network namespace")
        self.sock = s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            # struct tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov,
            # sizeof_priv, feature_req_word
            req = struct.pack("7I", block_size, nblocks, frame_size,
                              block_size // frame_size * nblocks,
                              retire_ms or block_timeout_ms(), 0, 0)
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.map = mmap.mmap(s.fileno(), block_size * nblocks, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            # bind only after the ring exists: every frame from now on lands in it
            s.bind((ifname, ETH_P_ALL))
            # struct packet_mreq: ifindex, type, alen, address[8]
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                         struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b""))
        except BaseException:
            s.close()
            raise
        self.fd = s.fileno()
        self.ring = np.frombuffer(self.map, dtype=np.uint8)
        self.r32 = np.frombuffer(self.map, dtype="<u4")
        self.w32 = memoryview(self.map).cast("I")
        self.block_size = block_size
        self.nblocks = nblocks
        self.block = 0                 # the block the walk is in
        self.pending: Frames | None = None   # its unconsumed frames, once parsed
        self.gone = False
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self._tx: tuple[np.ndarray, np.ndarray, int] | None = None

    # --- receive ------------------------------------------------------------------------------
    def ready(self) -> Frames | None:
        """The unconsumed frames of the current block, or None if the kernel still owns it.
        Parses a block once: the frame chain (``tp_next_offset``) is followed in runs of equal
        stride, each run found and verified with one vectorised read, so a block of same-size
        frames costs a few numpy calls whatever its frame count."""
        if self.pending is not None:
            return self.pending
        base = self.block * self.block_size
        w = self.w32
        if w[(base + _BD_STATUS) // 4] & TP_STATUS_USER == 0:
            return None
        n = w[(base + _BD_NUM_PKTS) // 4]
        r32 = self.r32
        offs = frame_offsets(r32, base + w[(base + _BD_FIRST) // 4], n, base + self.block_size)
        words = r32[(offs // 4)[:, None] + _HDR_WORDS].astype(np.int64)   # snaplen, mac | net
        self.pending = Frames(offs + (words[:, 1] & 0xFFFF), words[:, 0],
                              self.ring[offs + _LL_PKTTYPE])
        return self.pending

    def consume(self, k: int) -> None:
        """The first ``k`` pending frames are done with; a block whose frames are all done goes
        back to the kernel."""
        f = self.pending
        assert f is not None
        if k < len(f.start):
            self.pending = Frames(f.start[k:], f.length[k:], f.pkttype[k:])
            return
        self.pending = None
        self.w32[(self.block * self.block_size + _BD_STATUS) // 4] = TP_STATUS_KERNEL
        self.block = (self.block + 1) % self.nblocks

    def check(self) -> None:
        """Raise InterfaceGone if the socket reports an error (the interface went down or
        away); one poll(2) with no wait."""
        if self.gone:
            raise InterfaceGone(errno.ENXIO, f"interface {self.ifname!r} was deleted while open")
        for _, ev in self.poller.poll(0):
            if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                self._raise_error()

    def _raise_error(self) -> None:
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.ENETDOWN
        if _ifindex(self.ifname) != self.ifindex:
            self.gone = True
            raise InterfaceGone(errno.ENXIO, f"interface {self.ifname!r} (ifindex {self.ifindex}) "
                                "was deleted or left this network namespace while open")
        raise InterfaceGone(code, f"interface {self.ifname!r}: {os.strerror(code)} (is it down?)")

    # --- transmit -----------------------------------------------------------------------------
    def send(self, addr: np.ndarray, length: np.ndarray, frags: np.ndarray) -> int:
        """Send frames made of the memory pieces ``addr[i]``/``length[i]``; frame j is the next
        ``frags[j]`` pieces. One sendmmsg(2), non-blocking: returns how many frames the kernel
        took (0 when its queue is full)."""
        m = len(frags)
        if m == 0:
            return 0
        iov, msgs = self._tx_arrays(len(addr))
        iov[: len(addr), 0] = addr
        iov[: len(addr), 1] = length
        first = np.zeros(m, dtype=np.uint64)
        np.cumsum(frags[:-1], out=first[1:])
        msgs[:m, 2] = iov.ctypes.data + 16 * first
        msgs[:m, 3] = frags
        sent = _sendmmsg(self.fd, msgs.ctypes.data, m, MSG_DONTWAIT)
        if sent >= 0:
            return sent
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR):
            return 0
        if _ifindex(self.ifname) != self.ifindex:
            self.gone = True
            raise InterfaceGone(errno.ENXIO, f"interface {self.ifname!r} was deleted while open")
        raise InterfaceGone(code, f"sendmmsg on interface {self.ifname!r}: {os.strerror(code)}")

    def _tx_arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._tx is None or self._tx[2] < n:
            size = max(n, 1024)
            iov = np.zeros((size, 2), dtype=np.uint64)     # struct iovec: base, len
            msgs = np.zeros((size, 8), dtype=np.uint64)    # struct mmsghdr: 56 + 4 (+4) bytes
            self._tx = (iov, msgs, size)
        return self._tx[0], self._tx[1]

    def close(self) -> None:
        """Close the socket (the kernel drops the promiscuous membership with it)."""
        self.pending = None
        del self.w32, self.ring, self.r32
        try:
            self.map.close()
        finally:
            self.sock.close()


def frame_offsets(nxt: np.ndarray, first: int, n: int, end: int) -> np.ndarray:
    """Offsets of the ``n`` frames of a block starting at ``first`` (frames end before
    ``end``; ``nxt`` is the ring as u32 words), following ``tp_next_offset`` in runs of equal
    stride."""
    out = []
    o = first
    left = n
    while left:
        step = int(nxt[(o + _H_NEXT) // 4])
        if step == 0 or left == 1:
            out.append(np.array([o], dtype=np.int64))
            left -= 1
            if step == 0:
                break
            o += step
            continue
        k = min(left, (end - o - 1) // step + 1)
        cand = o + step * np.arange(k, dtype=np.int64)
        same = nxt[cand // 4] == step
        if same.all():
            out.append(cand)
            left -= k
            o = int(cand[-1]) + step
        else:   # cand[j] is still a frame (its predecessor pointed at it) but strides differently
            j = int(np.argmin(same))
            out.append(cand[:j])
            left -= j
            o = int(cand[j])
    if left:
        raise ValueError(f"TPACKET_V3 block: {left} frame(s) missing from the tp_next_offset chain")
    return np.concatenate(out) if len(out) > 1 else out[0]


def copy_frames(src: np.ndarray, start: np.ndarray, length: np.ndarray, buffers: np.ndarray,
                rows: np.ndarray) -> None:
    """Copy frame i (``src[start[i]: start[i] + length[i]]``) to the beginning of
    ``buffers[rows[i]]`` (a C-contiguous 2-D array). Each frame moves as one opaque item of
    the longest frame's width (rounded up to 8 bytes, at most a buffer): frames of equal stride
    straight from a strided view of ``src``, others through one gather. Bytes past a frame's
    length in its buffer are unspecified (netmap leaves them too). Cost: one item copy per
    frame inside numpy, a few µs per call."""
    m = len(start)
    if m == 0:
        return
    objsize = buffers.shape[1]
    width = min((int(length.max()) + 7) & ~7, objsize)
    item = np.dtype((np.void, width))
    dst = np.ndarray((buffers.shape[0],), dtype=item, buffer=buffers, strides=(objsize,))
    first = int(start[0])
    stride = int(start[1] - start[0]) if m > 1 else width
    if (stride > 0 and first + stride * (m - 1) + width <= src.size
            and (m <= 2 or bool((np.diff(start) == stride).all()))):
        dst[rows] = np.ndarray((m,), dtype=item, buffer=src, offset=first, strides=(stride,))
        return
    idx = start[:, None] + np.arange(width)
    dst[rows] = np.ascontiguousarray(src.take(idx, mode="clip")).view(item)[:, 0]
