"""pynetmap through a VALE switch: one sender port to one receiver port, one sender to N
receiver ports (broadcast frames, so every receiver gets every packet), and learned unicast
from one port to another on switches of 2..252 ports (the rest idle), all with the batch API.

A VALE switch copies each frame into the destination port's buffers and drops what does not fit
in a full receive ring (as netmap does), so these rows are lossy: receivers stop after a quiet
timeout and the loss is reported. Mpps is the aggregate delivered to all receivers. Each run uses
a switch of its own (``vale<run>:``); ports are created by the open and vanish with the close.
Receivers write their RX buffers once during set-up: the emulator's shared memory gets its pages
on first touch (netmap's allocator at creation), ~2 ms per 1000 buffers that would otherwise
fall into the first timed milliseconds of every run.

The ``ports<N>`` rows show what the size of the switch costs per packet: the receiver's process
also opens N - 2 idle ports and teaches the switch its MAC (one frame sent before the start),
so every frame of the sender is a unicast the learning bridge sends to the receiver alone.
"""
from __future__ import annotations

import numpy as np

from .harness import Role, Scenario, now
from .msgloop import frame
from .peer_pynetmap import _sync, available, batch_receiver, batch_sender, open_spec, send_batches

#: switch sizes of the ``ports<N>`` rows (a switch takes at most 252 active ports, spec E2)
PORT_COUNTS = (2, 16, 64, 252)
SENDER_MAC = bytes.fromhex("020000000001")   # the source MAC of msgloop.frame
RECEIVER_MAC = bytes.fromhex("020000000002")
IDLE_SLOTS = 64                              # idle ports: small rings, nothing is sent to them


def _port(name: str, slots_key: str = "slots"):
    return lambda p: f"vale{p.run}:{name}@conf:slots={p.extra[slots_key]}"


_SENDER = _port("s")   # unicast_sender's default port


def _touch(port) -> None:
    """Write every buffer of the port's RX rings once (set-up, untimed): the emulator's shared
    memory gets its pages on first touch, which netmap's kernel allocator does at creation."""
    for ring in port.rx_rings:
        ring.buffers[ring.slots["buf_idx"].astype(np.int64)] = 0


def touched_receiver(blocking: bool, name: str):
    """``batch_receiver`` on port ``name`` whose RX buffers were touched before the start."""
    inner = batch_receiver(blocking, _port(name), lossy=True)

    def run(p, ctx, ready):
        with open_spec(p, _port(name)(p)) as first:   # keeps the port while inner opens it again
            _touch(first)
            return inner(p, ctx, ready)
    return run


def _scenario(backend: str, tag: str, receivers: int, blocking: bool, slots: int) -> Scenario:
    how = "poll" if blocking else "spin"
    roles = [Role("sender", batch_sender(blocking, _port("s")))]
    roles += [Role(f"receiver{i}", touched_receiver(blocking, f"r{i}")) for i in range(receivers)]
    what = "one receiver" if receivers == 1 else f"{receivers} receivers (broadcast, aggregate Mpps)"
    return Scenario(
        id=f"vale-{tag}-1to{receivers}-{how}",
        title=f"pynetmap {backend} VALE switch, one sender to {what}, batch API, "
              f"{'blocking in poll' if blocking else 'spinning'}",
        family="pynetmap", kind="batched", batch=f"<={slots - 1}", roles=tuple(roles),
        fanout=receivers, lossy=True, extra={"backend": backend}, quick=blocking,
        available=available(backend, "vale{name}:w"))


# --- learned unicast on a switch of N ports ------------------------------------------------
def unicast_sender(blocking: bool, port_name=_SENDER):
    """Sender role: like ``batch_sender``, but every frame is addressed to RECEIVER_MAC, and
    one empty txsync after the start barrier (when every port is open) and before the clock
    starts: the emulator's sender then builds its view of the switch (one shared-memory map
    per port, once per change of the switch) outside the timed part."""
    def run(p, ctx, ready):
        from netmap_core import POLLOUT

        with open_spec(p, port_name(p)) as port:
            ring = port.tx_rings[0]
            f = np.frombuffer(RECEIVER_MAC + frame(p.size)[6:], np.uint8)
            ring.buffers[ring.slots["buf_idx"].astype(np.int64), :p.size] = f
            wait = _sync(port, blocking, POLLOUT)
            ready()
            port.txsync()   # nothing to send: builds this process's view of the switch, untimed
            t0 = now()
            send_batches(port, ring, p, wait, p.packets)
            t_sent = now()
        return {"t_start": t0, "t_sent": t_sent}
    return run


def _teach(port, mac: bytes) -> None:
    """Send one broadcast frame from ``mac`` so the learning bridge maps ``mac`` to ``port``."""
    ring = port.tx_rings[0]
    i = ring.head
    data = frame(60)
    ring.buf(i)[:60] = np.frombuffer(data[:6] + mac + data[12:], np.uint8)
    ring.slots["len"][i] = 60
    ring.advance(1)
    port.txsync()


def ports_receiver(blocking: bool, nports: int):
    """Receiver role of a ``ports<N>`` row: opens N - 2 idle ports and a second handle on its
    own port to touch its RX buffers and teach the switch RECEIVER_MAC, then receives as
    ``batch_receiver``."""
    inner = batch_receiver(blocking, _port("r0"), lossy=True)

    def run(p, ctx, ready):
        handles = []
        try:
            handles.append(open_spec(p, _port("r0")(p)))      # creates the receiver's port
            for j in range(nports - 2):
                handles.append(open_spec(p, f"vale{p.run}:i{j}@conf:slots={IDLE_SLOTS}"))
            _touch(handles[0])
            _teach(handles[0], RECEIVER_MAC)
            return inner(p, ctx, ready)
        finally:
            for h in reversed(handles):
                h.close()
    return run


def _ports_scenario(backend: str, tag: str, nports: int, slots: int) -> Scenario:
    roles = (Role("sender", unicast_sender(True)), Role("receiver0", ports_receiver(True, nports)))
    return Scenario(
        id=f"vale-{tag}-ports{nports}-poll",
        title=f"pynetmap {backend} VALE switch of {nports} ports ({nports - 2} idle), learned "
              f"unicast from one port to another, batch API, blocking in poll",
        family="pynetmap", kind="batched", batch=f"<={slots - 1}", roles=roles, lossy=True,
        extra={"backend": backend, "nports": nports}, quick=False, sizes=(60,),
        available=available(backend, "vale{name}:w"))


def scenarios(cfg) -> list[Scenario]:
    out = []
    for backend, tag in (("emu", "emu"), ("netmap", "dev")):
        out.append(_scenario(backend, tag, 1, False, cfg.slots))
        for n in cfg.vale_receivers:
            out.append(_scenario(backend, tag, n, True, cfg.slots))
        for n in PORT_COUNTS:
            out.append(_ports_scenario(backend, tag, n, cfg.slots))
    return out
