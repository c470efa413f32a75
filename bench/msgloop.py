"""The frame and the sender/receiver loops every message-based peer shares, so the per-packet
work is the same code whichever transport carries it.

A peer supplies only ``send(buffer)`` and ``recv_into(buffer) -> nbytes``; a message carries one
frame (``per=1``) or ``per`` frames back to back (batched: numpy does the per-packet work).
"""
from __future__ import annotations

import struct

import numpy as np

from .harness import Params, now

__all__ = ["ETHERTYPE", "SEQ_OFFSET", "SEQ", "frame", "frames", "send_loop", "recv_loop",
           "exact_reader"]

ETHERTYPE = 0x88B5          # IEEE local experimental ethertype
SEQ_OFFSET = 14             # right after the Ethernet header
SEQ = struct.Struct("<Q")


def frame(size: int) -> bytes:
    """A broadcast Ethernet frame of ``size`` bytes, ethertype 0x88B5, zero payload."""
    if not 22 <= size <= 65535:
        raise ValueError(f"frame size {size} out of range 22..65535")
    eth = bytes.fromhex("ffffffffffff" "020000000001") + ETHERTYPE.to_bytes(2, "big")
    return eth + bytes(size - len(eth))


def frames(size: int, per: int) -> np.ndarray:
    """``per`` copies of :func:`frame` as a contiguous ``(per, size)`` uint8 array."""
    return np.tile(np.frombuffer(frame(size), np.uint8), (per, 1))


def seq_column(arr2d: np.ndarray) -> np.ndarray:
    """The 8-byte sequence field of every row of a ``(k, size)`` uint8 array, as a u8 view."""
    return arr2d[:, SEQ_OFFSET:SEQ_OFFSET + 8].view("<u8")[:, 0]


def send_loop(send, p: Params, per: int, ready) -> dict:
    """Send ``p.packets`` frames, ``per`` per message; work ``seq`` numbers them from 0."""
    n = p.packets // per
    if per == 1:
        if p.work == "seq":
            buf = bytearray(frame(p.size))
            pack_into = SEQ.pack_into
            ready()
            t0 = now()
            for s in range(n):
                pack_into(buf, SEQ_OFFSET, s)
                send(buf)
        else:
            data = frame(p.size)
            ready()
            t0 = now()
            for _ in range(n):
                send(data)
        return {"t_start": t0}
    arr = frames(p.size, per)
    flat = arr.reshape(-1)
    if p.work == "seq":
        col = seq_column(arr)
        ramp = np.arange(per, dtype="<u8")
        ready()
        t0 = now()
        for m in range(n):
            np.add(ramp, m * per, out=col)
            send(flat)
    else:
        ready()
        t0 = now()
        for _ in range(n):
            send(flat)
    return {"t_start": t0}


def recv_loop(recv_into, p: Params, per: int, ready) -> dict:
    """Receive ``p.packets`` frames, ``per`` per message; work ``seq`` checks their order."""
    n = p.packets // per
    bad = 0
    if per == 1:
        buf = bytearray(p.size)
        if p.work == "seq":
            unpack_from = SEQ.unpack_from
            expect = 0
            ready()
            for _ in range(n):
                recv_into(buf)
                s = unpack_from(buf, SEQ_OFFSET)[0]
                if s != expect:
                    bad += 1
                expect = s + 1
        else:
            ready()
            for _ in range(n):
                recv_into(buf)
        return {"t_end": now(), "packets": n, "bad": bad, "batches": n}
    arr = np.zeros((per, p.size), np.uint8)
    flat = arr.reshape(-1)
    if p.work == "seq":
        col = seq_column(arr)
        ramp = np.arange(per, dtype="<u8")
        expect = 0
        ready()
        for _ in range(n):
            recv_into(flat)
            bad += int(np.count_nonzero(col != ramp + expect))
            expect = int(col[-1]) + 1
    else:
        ready()
        for _ in range(n):
            recv_into(flat)
    return {"t_end": now(), "packets": n * per, "bad": bad, "batches": n}


def exact_reader(readinto):
    """``recv_into`` for a byte stream: keeps reading until the buffer is full."""
    def recv_into(buf) -> int:
        mv = memoryview(buf).cast("B")
        total = len(mv)
        got = readinto(mv)
        while got < total:
            k = readinto(mv[got:])
            if not k:
                raise EOFError(f"stream closed after {got} of {total} bytes")
            got += k
        return got
    return recv_into
