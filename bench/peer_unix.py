"""AF_UNIX socketpairs of the message kinds: SOCK_DGRAM and SOCK_SEQPACKET, ``send`` /
``recv_into``; one frame per message, or 256 frames per message.

A 256 x 1514-byte message (387 KB) exceeds the default socket buffer, so both buffers are raised
to 4 MB (SO_SNDBUFFORCE as root, else up to net.core.wmem_max); if the message still does not
fit, the row is skipped with the reason.
"""
from __future__ import annotations

import socket

from .harness import Role, Scenario, Skip
from .msgloop import recv_loop, send_loop

PER = 256
BUF = 4 << 20
_FORCE = {socket.SO_SNDBUF: 32, socket.SO_RCVBUF: 33}  # SO_SNDBUFFORCE, SO_RCVBUFFORCE


def _grow(sock: socket.socket) -> None:
    for opt, force in _FORCE.items():
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, BUF)


def _scenario(kind: int, label: str, per: int) -> Scenario:
    def prepare(p, state):
        a, b = socket.socketpair(socket.AF_UNIX, kind)
        if per > 1:
            _grow(a)
            _grow(b)
            room = a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            if room < per * p.size + 4096:
                a.close()
                b.close()
                raise Skip(f"a {per * p.size}-byte message exceeds SO_SNDBUF={room}")
        return a, b

    def finish(ctx):
        for s in ctx:
            s.close()

    def sender(p, ctx, ready):
        return send_loop(ctx[0].send, p, per, ready)

    def receiver(p, ctx, ready):
        return recv_loop(ctx[1].recv_into, p, per, ready)

    suffix = "" if per == 1 else f"-x{per}"
    return Scenario(
        id=f"unix-{label}{suffix}",
        title=f"AF_UNIX {label.upper()} socketpair{f' x{per}' if per > 1 else ''}",
        family="peer", kind="per-message" if per == 1 else "batched", batch=str(per),
        roles=(Role("sender", sender), Role("receiver", receiver)), quantum=per,
        prepare=prepare, finish=finish)


def scenarios(cfg) -> list[Scenario]:
    return [_scenario(k, label, per)
            for k, label in ((socket.SOCK_DGRAM, "dgram"), (socket.SOCK_SEQPACKET, "seqpacket"))
            for per in (1, PER)]
