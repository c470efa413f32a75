"""Ping-pong latency: one 60-byte frame goes A -> B -> A, ``rounds`` times; A times each round
trip. pynetmap (one pipe, both directions, blocking in poll or spinning on rxsync) against
os.pipe (two pipes) and the default socketpair (AF_UNIX SOCK_STREAM), both blocking in read.

The first WARMUP round trips are not recorded.
"""
from __future__ import annotations

import os
import socket

from .harness import Role, Scenario, now
from .msgloop import exact_reader, frame
from .peer_pynetmap import available, open_end, prefill

WARMUP = 50
SIZE = 60


def _pnm_roles(blocking: bool):
    def wait_rx(port, ring):
        from netmap_core import POLLIN

        if blocking:
            while ring.empty:
                port.poll(POLLIN, 1.0)
        else:
            while ring.empty:
                port.rxsync()

    def bounce(port, tx):
        tx.slots["len"][tx.head] = SIZE
        tx.advance(1)
        port.txsync()

    def ping(p, ctx, ready):
        rtts = []
        with open_end(p, "{0") as port:
            tx, rx = port.tx_rings[0], port.rx_rings[0]
            prefill(tx, SIZE)
            ready()
            for _ in range(WARMUP + p.rounds):
                t0 = now()
                bounce(port, tx)
                wait_rx(port, rx)
                rx.advance(1)
                rtts.append((now() - t0) * 1e6)
        return {"rtts": rtts[WARMUP:]}

    def pong(p, ctx, ready):
        with open_end(p, "}0") as port:
            tx, rx = port.tx_rings[0], port.rx_rings[0]
            prefill(tx, SIZE)
            ready()
            for _ in range(WARMUP + p.rounds):
                wait_rx(port, rx)
                rx.advance(1)
                bounce(port, tx)
        return {}

    return (Role("ping", ping), Role("pong", pong))


def _stream_roles():
    """Roles over a ctx whose ``ends(side)`` gives that side's (send, recv_into)."""
    def ping(p, ctx, ready):
        send, recv = ctx.ends(0)
        data, buf = frame(SIZE), bytearray(SIZE)
        rtts = []
        ready()
        for _ in range(WARMUP + p.rounds):
            t0 = now()
            send(data)
            recv(buf)
            rtts.append((now() - t0) * 1e6)
        return {"rtts": rtts[WARMUP:]}

    def pong(p, ctx, ready):
        send, recv = ctx.ends(1)
        buf = bytearray(SIZE)
        ready()
        for _ in range(WARMUP + p.rounds):
            recv(buf)
            send(buf)
        return {}

    return (Role("ping", ping), Role("pong", pong))


class _Pipes:
    """Two os.pipes: A->B and B->A."""

    def __init__(self) -> None:
        self.ab = os.pipe()
        self.ba = os.pipe()

    def ends(self, side: int):
        w = self.ab[1] if side == 0 else self.ba[1]
        r = self.ba[0] if side == 0 else self.ab[0]
        # views of the pipes' fds (close() closes those), kept alive by the methods returned
        fw = open(w, "wb", buffering=0, closefd=False)  # noqa: SIM115
        fr = open(r, "rb", buffering=0, closefd=False)  # noqa: SIM115
        return fw.write, exact_reader(fr.readinto)

    def close(self) -> None:
        for fd in self.ab + self.ba:
            os.close(fd)


class _Socketpair:
    def __init__(self) -> None:
        self.socks = socket.socketpair()

    def ends(self, side: int):
        s = self.socks[side]
        return s.sendall, exact_reader(s.recv_into)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def scenarios(cfg) -> list[Scenario]:
    out = []
    for backend, tag in (("emu", "emu"), ("netmap", "dev")):
        for blocking, how in ((True, "poll"), (False, "spin")):
            out.append(Scenario(
                id=f"pingpong-pnm-{tag}-{how}",
                title=f"pynetmap {backend} pipe, {'blocking in poll' if blocking else 'spinning on rxsync'}",
                family="pynetmap", kind="pingpong", batch="1", roles=_pnm_roles(blocking),
                extra={"backend": backend}, available=available(backend), works=("none",),
                sizes=(SIZE,), quick=blocking))
    out.append(Scenario(
        id="pingpong-os-pipe", title="os.pipe pair, blocking read", family="peer", kind="pingpong",
        batch="1", roles=_stream_roles(), prepare=lambda p, s: _Pipes(), finish=lambda c: c.close(),
        works=("none",), sizes=(SIZE,)))
    out.append(Scenario(
        id="pingpong-socketpair", title="socket.socketpair() (AF_UNIX stream), blocking recv",
        family="peer", kind="pingpong", batch="1", roles=_stream_roles(),
        prepare=lambda p, s: _Socketpair(), finish=lambda c: c.close(), works=("none",),
        sizes=(SIZE,)))
    return out
