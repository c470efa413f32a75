"""AF_PACKET raw sockets over a veth pair (no network namespace): the sender ``send``s whole
Ethernet frames on pnmbenchA, the receiver ``recv_into``s them on pnmbenchB.

The receiver binds to the benchmark's ethertype (0x88B5), so no BPF filter is involved; the
sender's socket uses protocol 0, so its own frames are not looped back to it. veth can drop
frames under load, so this row is lossy: the receiver stops after a quiet timeout and the loss is
reported. The pair is created once before the row and deleted after it (root and ``ip`` needed).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess

from .harness import Role, Scenario, Skip, now
from .msgloop import ETHERTYPE, SEQ, SEQ_OFFSET, frame

IF_TX, IF_RX = "pnmbenchA", "pnmbenchB"
CHUNK = 256          # the receiver reads the clock once per CHUNK frames
FIRST_WAIT = 5.0     # seconds the first frames may take
_SO_RCVBUFFORCE = 33


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _available() -> str | None:
    if not hasattr(socket, "AF_PACKET"):
        return "no AF_PACKET on this platform"
    if os.geteuid() != 0:
        return "needs root (creates a veth pair, opens raw sockets)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is missing"
    return None


def _setup():
    _ip("link", "del", IF_TX)  # a leftover from an interrupted run
    r = _ip("link", "add", IF_TX, "type", "veth", "peer", "name", IF_RX)
    if r.returncode:
        raise Skip(f"ip link add {IF_TX} type veth peer name {IF_RX}: {r.stderr.strip()}")
    for name in (IF_TX, IF_RX):
        r = _ip("link", "set", name, "up")
        if r.returncode:
            _teardown(None)
            raise Skip(f"ip link set {name} up: {r.stderr.strip()}")
    return IF_TX


def _teardown(state) -> None:
    _ip("link", "del", IF_TX)  # deletes both ends


def _sender(p, ctx, ready):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((IF_TX, 0))
    send = s.send
    try:
        if p.work == "seq":
            buf = bytearray(frame(p.size))
            pack_into = SEQ.pack_into
            ready()
            t0 = now()
            for seq in range(p.packets):
                pack_into(buf, SEQ_OFFSET, seq)
                send(buf)
        else:
            data = frame(p.size)
            ready()
            t0 = now()
            for _ in range(p.packets):
                send(data)
    finally:
        s.close()
    return {"t_start": t0}


def _receiver(p, ctx, ready):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 << 20)
    s.bind((IF_RX, ETHERTYPE))
    quiet = p.extra.get("quiet", 0.3)  # seconds without a frame that end the run
    s.settimeout(FIRST_WAIT)
    recv_into = s.recv_into
    buf = bytearray(2048)
    got = bad = 0
    chunks, tail = divmod(p.packets, CHUNK)
    seq = p.work == "seq"
    unpack_from = SEQ.unpack_from
    expect = 0
    ready()
    t_last = now()
    try:
        for c in range(chunks + 1):
            m = CHUNK if c < chunks else tail
            if seq:
                for i in range(m):  # noqa: B007 -- i is read after a timeout, below
                    recv_into(buf)
                    v = unpack_from(buf, SEQ_OFFSET)[0]
                    if v < expect:  # reordered or duplicated (gaps are losses, counted apart)
                        bad += 1
                    expect = v + 1
            else:
                for i in range(m):  # noqa: B007 -- i is read after a timeout, below
                    recv_into(buf)
            got += m
            t_last = now()
            if c == 0:
                s.settimeout(quiet)
    except TimeoutError:
        got += i  # frames of the unfinished chunk (timed to the last full chunk)
    finally:
        s.close()
    return {"t_end": t_last, "packets": got, "bad": bad, "batches": got}


def scenarios(cfg) -> list[Scenario]:
    return [Scenario(
        id="af-packet-veth", title="AF_PACKET raw socket over veth", family="peer",
        kind="per-message", batch="1", roles=(Role("sender", _sender), Role("receiver", _receiver)),
        lossy=True, available=_available, setup=_setup, teardown=_teardown)]
