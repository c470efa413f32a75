"""multiprocessing.Pipe (the default duplex kind: an AF_UNIX stream socketpair with
length-prefixed messages) via ``send_bytes`` / ``recv_bytes_into`` - no pickling.

One frame per message, or 256 frames per message.
"""
from __future__ import annotations

import multiprocessing as mp

from .harness import Role, Scenario
from .msgloop import recv_loop, send_loop

PER = 256


def _prepare(p, state):
    return mp.Pipe()


def _finish(ctx):
    for c in ctx:
        c.close()


def _scenario(per: int) -> Scenario:
    def sender(p, ctx, ready):
        return send_loop(ctx[0].send_bytes, p, per, ready)

    def receiver(p, ctx, ready):
        return recv_loop(ctx[1].recv_bytes_into, p, per, ready)

    suffix = "" if per == 1 else f"-x{per}"
    return Scenario(
        id=f"mp-pipe{suffix}", title=f"multiprocessing.Pipe{f' x{per}' if per > 1 else ''}",
        family="peer", kind="per-message" if per == 1 else "batched", batch=str(per),
        roles=(Role("sender", sender), Role("receiver", receiver)), quantum=per,
        prepare=_prepare, finish=_finish)


def scenarios(cfg) -> list[Scenario]:
    return [_scenario(1), _scenario(PER)]
