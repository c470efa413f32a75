"""An AF_PACKET socket bound to one interface: a TPACKET_V3 RX ring walked with numpy, several
ready blocks at a time, and sendmmsg(2) (through ctypes) for batches straight from netmap buffers.

Every syscall an interface port makes is here. The socket is private to the process that
registered the port; the RX ring's blocks are the kernel's until their status says
TP_STATUS_USER, then ours until we write TP_STATUS_KERNEL back (TPACKET_V3, packet(7)).
Opening it asks for promiscuous mode through a PACKET_MR_PROMISC membership, which the kernel
drops when the socket closes.
"""
from __future__ import annotations

import bisect
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

from netmap_core.errors import CorruptRingError

__all__ = ["AfPacket", "Frames", "InterfaceGone", "RxBlocks", "block_timeout_ms", "copy_frames",
           "frame_offsets", "ifindex", "interface_mtu", "ENV_RETIRE_MS", "PACKET_OUTGOING"]

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
#: TPACKET3_HDRLEN: a frame's header and sockaddr_ll, which its data (tp_mac) follows
_FRAME_MIN = 48 + 20
#: BLK_PLUS_PRIV(0): a block's descriptor, which its first frame follows
_BLOCK_HDR = 48

_libc = ctypes.CDLL(None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int


class InterfaceGone(OSError):
    """The interface went away (deleted, or moved to another network namespace) or down while
    the socket was bound to it."""


@dataclass(frozen=True)
class Frames:
    """The frames of ready blocks not consumed yet: absolute offsets (into the RX ring mapping)
    of each frame's first byte, its captured length and its sll_pkttype, and where each
    block's frames end."""

    start: np.ndarray   # int64
    length: np.ndarray  # int64
    pkttype: np.ndarray  # uint8
    ends: tuple[int, ...]   # for each block they come from, the index past its last frame


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
        self.rx = RxBlocks(self.map, block_size, nblocks, f"AF_PACKET RX ring of {ifname!r}")
        self.gone = False
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self._tx: tuple[np.ndarray, np.ndarray, int] | None = None

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
        self.rx.release()
        try:
            self.map.close()
        finally:
            self.sock.close()


class RxBlocks:
    """The walk over a TPACKET_V3 RX ring (``buf``: its mapping, ``nblocks`` blocks of
    ``block_size`` bytes) in ring order: ``block`` is the first block the kernel has not been
    given back, ``pending`` its parsed and unconsumed frames. ``ring`` is the mapping as bytes,
    what ``Frames.start`` indexes. Everything read from a block is checked before use."""

    def __init__(self, buf: mmap.mmap | bytearray, block_size: int, nblocks: int, name: str) -> None:
        self.name = name
        self.ring = np.frombuffer(buf, dtype=np.uint8)
        self.r32 = np.frombuffer(buf, dtype="<u4")
        self.w32 = memoryview(buf).cast("I")
        self.block_size = block_size
        self.nblocks = nblocks
        self.block = 0
        self.pending: Frames | None = None

    def ready(self, limit: int) -> Frames | None:
        """Unconsumed frames, or None if the kernel still owns the current block. What a former
        call parsed and ``consume`` left comes first, alone; else the ready blocks from the
        current one on, as many as it takes to pass ``limit`` frames (at least one), are parsed
        together: per block a few word reads in Python, then, for full blocks of equal frames,
        a dozen numpy calls each over strided views of their headers (``_uniform``), else one
        set of numpy calls for all of their frames, whatever their count (``frame_offsets``
        follows each block's chain)."""
        if self.pending is not None:
            return self.pending
        w, bs, nb = self.w32, self.block_size, self.nblocks
        firsts: list[int] = []
        counts: list[int] = []
        b = self.block
        total = 0
        while len(counts) < nb and total < max(limit, 1):
            base = b * bs
            if w[(base + _BD_STATUS) // 4] & TP_STATUS_USER == 0:
                break
            n = w[(base + _BD_NUM_PKTS) // 4]
            first = w[(base + _BD_FIRST) // 4]
            if n and not _BLOCK_HDR <= first <= bs - _FRAME_MIN:
                raise self._corrupt(b, "offset_to_first_pkt", first, f"{_BLOCK_HDR}..{bs - _FRAME_MIN}")
            firsts.append(base + first)
            counts.append(n)
            total += n
            b = (b + 1) % nb
        if not counts:
            return None
        ends = tuple(np.cumsum(counts).tolist())
        # full blocks (a fast sender): one strided parse per block; part-filled ones (a slow
        # sender, many blocks of a few frames): one vectorised parse for all, fewer numpy calls
        if total >= 512 * len(counts):
            parts = []
            for f, n in zip(firsts, counts):
                p = self._uniform(f, n)
                if p is None:
                    break
                parts.append(p)
            else:
                if len(parts) == 1:
                    self.pending = Frames(*parts[0], ends)
                else:
                    self.pending = Frames(np.concatenate([p[0] for p in parts]),
                                          np.concatenate([p[1] for p in parts]),
                                          np.concatenate([p[2] for p in parts]), ends)
                return self.pending
        offs, room = frame_offsets(self.r32, firsts, counts, bs)
        r32 = self.r32
        i = offs >> 2
        snap = r32[i + _H_SNAPLEN // 4].astype(np.int64)
        mac = r32[i + _H_MAC // 4] & 0xFFFF
        bad = mac + snap > room
        bad |= mac < _FRAME_MIN
        if bad.any():
            j = int(np.argmax(bad))
            raise self._corrupt((self.block + bisect.bisect_right(ends, j)) % nb,
                                f"frame at {int(offs[j]) % bs}: tp_mac={int(mac[j])}, tp_snaplen",
                                int(snap[j]), f"a frame within its {int(room[j])} bytes, data past "
                                f"its {_FRAME_MIN}-byte header")
        self.pending = Frames(offs + mac, snap, self.ring[offs + _LL_PKTTYPE], ends)
        return self.pending

    def _uniform(self, f: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(start, length, pkttype) of the ``n`` frames of a block from offset ``f`` when they
        all step by the first frame's ``tp_next_offset`` (frames of one size): read through
        strided views of the frames' headers, a dozen numpy calls for the block, no gather.
        None when the block is not like that, or holds a frame whose ``tp_mac`` /
        ``tp_snaplen`` do not fit it (the general walk then finds and names it)."""
        bs = self.block_size
        e = f - f % bs + bs
        s = int(self.r32[f >> 2]) if n > 1 else e - f
        if n < 1 or s < _FRAME_MIN or (f | s) & 7 or f + s * (n - 1) + _FRAME_MIN > e:
            return None
        hdr = np.ndarray((n, _FRAME_MIN // 4), dtype="<u4", buffer=self.ring, offset=f,
                         strides=(s, 4))
        if n > 1 and int(np.count_nonzero(hdr[:-1, _H_NEXT // 4] != s)):
            return None
        mac = hdr[:, _H_MAC // 4] & 0xFFFF
        length = hdr[:, _H_SNAPLEN // 4].astype(np.int64)
        top = length + mac
        last_room = e - (f + s * (n - 1))
        if int(mac.min()) < _FRAME_MIN or int(top[-1]) > last_room or (n > 1 and int(top[:-1].max()) > s):
            return None
        start = np.arange(f, f + s * n, s, dtype=np.int64)
        start += mac
        pkttype = self.ring[f + _LL_PKTTYPE: f + s * (n - 1) + _LL_PKTTYPE + 1: s].copy()
        return start, length, pkttype

    def consume(self, k: int) -> None:
        """The first ``k`` pending frames are done with; each block whose frames are all done
        goes back to the kernel (TP_STATUS_KERNEL), in ring order."""
        f = self.pending
        assert f is not None
        ends = f.ends
        done = 0
        while done < len(ends) and ends[done] <= k:
            done += 1
        w, bs = self.w32, self.block_size
        for _ in range(done):
            w[(self.block * bs + _BD_STATUS) // 4] = TP_STATUS_KERNEL
            self.block = (self.block + 1) % self.nblocks
        if done == len(ends):
            self.pending = None
            return
        self.pending = Frames(f.start[k:], f.length[k:], f.pkttype[k:], tuple(e - k for e in ends[done:]))

    def _corrupt(self, block: int, field: str, value: int, allowed: str) -> CorruptRingError:
        return CorruptRingError(self.name, f"block[{block}].{field}",
                                value, allowed, "the mapping of this process's own packet socket "
                                "was overwritten: close the port and open it again")

    def release(self) -> None:
        """Drop the views of the mapping (before it is unmapped)."""
        self.pending = None
        del self.w32, self.ring, self.r32


def frame_offsets(r32: np.ndarray, firsts: list[int], counts: list[int],
                  block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (into the ring, ``r32`` its u32 words) of the frames of several blocks, block
    ``j``'s ``counts[j]`` frames starting at ``firsts[j]``; and each frame's room (bytes to the
    next frame, or to its block's end). Blocks of one frame size (the kernel steps by
    ``tp_next_offset``, the same for frames of equal length) are laid out with ``arange`` and
    verified with one vectorised read for all of them; if any frame's ``tp_next_offset``
    differs, every block's chain is followed in Python (~0.1 µs a frame). Raises
    CorruptRingError when a chain leaves its block or a frame is not 8-byte aligned (the
    kernel's V3_ALIGNMENT)."""
    ends = [f - f % block_size + block_size for f in firsts]
    steps = [int(r32[f >> 2]) if n > 1 else 0 for f, n in zip(firsts, counts)]
    uniform = all(n <= 1 or (s >= _FRAME_MIN and not (f | s) & 7 and f + s * (n - 1) + _FRAME_MIN <= e)
                  for f, n, s, e in zip(firsts, counts, steps, ends))
    if uniform:
        if len(counts) == 1:
            n, s = counts[0], steps[0]
            offs = firsts[0] + s * np.arange(n, dtype=np.int64)
            nxt = r32[offs >> 2]
            room = np.full(n, s, dtype=np.int64)
            if n:
                room[-1] = ends[0] - offs[-1]
                uniform = n == 1 or bool((nxt[:-1] == s).all())
        else:
            cnt = np.array(counts, dtype=np.int64)
            last = np.cumsum(cnt) - 1
            step = np.repeat(np.array(steps, dtype=np.int64), cnt)
            offs = np.arange(len(step), dtype=np.int64)
            offs -= np.repeat(last + 1 - cnt, cnt)
            offs *= step
            offs += np.repeat(np.array(firsts, dtype=np.int64), cnt)
            room = step
            nxt = r32[offs >> 2]
            last = last[cnt > 0]
            nxt[last] = room[last]   # a block's last frame points nowhere (0): not checked
            uniform = bool((nxt == room).all())
            room[last] = np.array(ends, dtype=np.int64)[cnt > 0] - offs[last]
        if uniform:
            return offs, room
    parts, rooms = [], []
    w = r32.data.cast("B").cast("I")
    for f, n, e in zip(firsts, counts, ends):
        out = [0] * n
        o = f
        try:
            for j in range(n):
                out[j] = o
                o += w[o >> 2]
        except IndexError:
            pass   # the chain left the ring: found below
        a = np.array(out, dtype=np.int64)
        r = np.empty(n, dtype=np.int64)
        if n:
            np.subtract(a[1:], a[:-1], out=r[:-1])
            r[-1] = e - a[-1]
            bad = (r < _FRAME_MIN) | (a & 7 != 0)
            if bad.any():
                j = int(np.argmax(bad))
                raise CorruptRingError("AF_PACKET RX ring", f"frame at {int(a[j])}: bytes to the "
                                       "next frame (tp_next_offset) or the block's end", int(r[j]),
                                       f"at least {_FRAME_MIN}, frames 8-byte aligned within the "
                                       f"block ending at {e}", "close the port and open it again")
        parts.append(a)
        rooms.append(r)
    return np.concatenate(parts), np.concatenate(rooms)


#: frames up to this size move in a copy of their own when longer ones are in the same batch,
#: so a mix of short and full-size frames does not copy every short one at the longest width
_SHORT = 256


def copy_frames(src: np.ndarray, start: np.ndarray, length: np.ndarray, buffers: np.ndarray,
                rows: np.ndarray) -> None:
    """Copy frame i (``src[start[i]: start[i] + length[i]]``) to the beginning of
    ``buffers[rows[i]]`` (a C-contiguous 2-D array, 8-byte aligned rows). Each frame moves as
    a row of the longest frame's width (rounded up to 8 bytes, at most a buffer); frames of at
    most 256 bytes among longer ones go in a second such copy. Frames that follow each other
    at one stride (the blocks of a fast sender) are read through a 2-D view of ``src`` per
    run, one fancy write each; others are gathered from a view of ``src`` with an item at
    every byte (one fancy read into a temporary, one fancy write), wherever they lie. Bytes
    past a frame's length in its buffer are unspecified (netmap leaves them too). Cost: one
    or two copies per frame inside numpy, a few µs per call."""
    if len(start) == 0:
        return
    longest = int(length.max())
    if longest > _SHORT and int(length.min()) <= _SHORT:
        short = length <= _SHORT
        _copy(src, start[short], _SHORT, buffers, rows[short])
        short = ~short
        start, length, rows = start[short], length[short], rows[short]
    _copy(src, start, longest, buffers, rows)


def _copy(src: np.ndarray, start: np.ndarray, longest: int, buffers: np.ndarray,
          rows: np.ndarray) -> None:
    objsize = buffers.shape[1]
    width = min((longest + 7) & ~7, objsize)
    top = src.size - width
    if int(start.max()) > top:   # frames too close to the end for a whole item: byte by byte
        near = start > top
        for s, r in zip(start[near].tolist(), rows[near].tolist()):
            buffers[r, : src.size - s] = src[s:]
        keep = ~near
        start, rows = start[keep], rows[keep]
        if not len(start):
            return
    n = len(start)
    if n > 8:
        # frames at one stride (blocks of equal frames) copy from 2-D views of the ring, a
        # run of the same step each: no gather into a temporary. Many runs: the gather below.
        step = np.diff(start)
        cut = np.flatnonzero(step != step[0])
        if len(cut) < 4 and int(step[0]) > 0:
            st0 = int(step[0])   # every step inside a run is step[0]: the cuts are the others
            a = 0
            for b in (*(cut + 1).tolist(), n):
                view = np.ndarray((b - a, width), dtype=np.uint8, buffer=src, offset=int(start[a]),
                                  strides=(st0 if b - a > 1 else width, 1))
                buffers[rows[a:b], :width] = view
                a = b
            return
    items = np.ndarray((top + 1,), dtype=np.dtype((np.void, width)), buffer=src, strides=(1,))
    # written as rows of u64 words: numpy copies a row per index with its fast inner loop,
    # ~1.5x quicker than an opaque item each
    words = width // 8
    dst = np.ndarray((buffers.shape[0], words), dtype=np.uint64, buffer=buffers, strides=(objsize, 8))
    dst[rows] = items[start].view(np.uint64).reshape(len(start), words)
