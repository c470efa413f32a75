"""pynetmap through a VALE switch: one sender port to one receiver port, and one sender to N
receiver ports (broadcast frames, so every receiver gets every packet), batch API.

A VALE switch copies each frame into the destination port's buffers and drops what does not fit
in a full receive ring (as netmap does), so these rows are lossy: receivers stop after a quiet
timeout and the loss is reported. Mpps is the aggregate delivered to all receivers. Each run uses
a switch of its own (``vale<run>:``); ports are created by the open and vanish with the close.
"""
from __future__ import annotations

from .harness import Role, Scenario
from .peer_pynetmap import available, batch_receiver, batch_sender


def _port(name: str):
    return lambda p: f"vale{p.run}:{name}@conf:slots={p.extra['slots']}"


def _scenario(backend: str, tag: str, receivers: int, blocking: bool, slots: int) -> Scenario:
    how = "poll" if blocking else "spin"
    roles = [Role("sender", batch_sender(blocking, _port("s")))]
    roles += [Role(f"receiver{i}", batch_receiver(blocking, _port(f"r{i}"), lossy=True))
              for i in range(receivers)]
    what = "one receiver" if receivers == 1 else f"{receivers} receivers (broadcast, aggregate Mpps)"
    return Scenario(
        id=f"vale-{tag}-1to{receivers}-{how}",
        title=f"pynetmap {backend} VALE switch, one sender to {what}, batch API, "
              f"{'blocking in poll' if blocking else 'spinning'}",
        family="pynetmap", kind="batched", batch=f"<={slots - 1}", roles=tuple(roles),
        fanout=receivers, lossy=True, extra={"backend": backend}, quick=blocking,
        available=available(backend, "vale{name}:w"))


def scenarios(cfg) -> list[Scenario]:
    out = []
    for backend, tag in (("emu", "emu"), ("netmap", "dev")):
        out.append(_scenario(backend, tag, 1, False, cfg.slots))
        for n in cfg.vale_receivers:
            out.append(_scenario(backend, tag, n, True, cfg.slots))
    return out
