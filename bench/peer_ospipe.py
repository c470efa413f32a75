"""os.pipe: a byte stream, written with unbuffered ``FileIO.write`` and read with ``readinto``.

One frame per write (writes up to PIPE_BUF are atomic, so a read of one frame returns exactly one
frame), or 256 frames per write (the reader loops until the whole message is in). The pipe
capacity is raised to 1 MB (F_SETPIPE_SZ) when allowed, which only helps the pipe.
"""
from __future__ import annotations

import fcntl
import os

from .harness import Role, Scenario
from .msgloop import exact_reader, recv_loop, send_loop

PER = 256
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _prepare(p, state):
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    return r, w


def _finish(ctx):
    for fd in ctx:
        os.close(fd)


def _scenario(per: int) -> Scenario:
    def sender(p, ctx, ready):
        f = open(ctx[1], "wb", buffering=0, closefd=False)  # noqa: SIM115 -- a view of the pipe's fd
        return send_loop(f.write, p, per, ready)

    def receiver(p, ctx, ready):
        f = open(ctx[0], "rb", buffering=0, closefd=False)  # noqa: SIM115 -- a view of the pipe's fd
        recv = f.readinto if per == 1 else exact_reader(f.readinto)
        return recv_loop(recv, p, per, ready)

    suffix = "" if per == 1 else f"-x{per}"
    return Scenario(
        id=f"os-pipe{suffix}", title=f"os.pipe{f' x{per}' if per > 1 else ''}",
        family="peer", kind="per-message" if per == 1 else "batched", batch=str(per),
        roles=(Role("sender", sender), Role("receiver", receiver)), quantum=per,
        prepare=_prepare, finish=_finish)


def scenarios(cfg) -> list[Scenario]:
    return [_scenario(1), _scenario(PER)]
