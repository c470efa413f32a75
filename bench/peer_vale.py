"""pynetmap through a VALE switch: one sender port to one receiver port, one sender to N
receiver ports (broadcast frames, so every receiver gets every packet), and learned unicast
from one port to another on switches of 2..252 ports (the rest idle), all with the batch API.

A VALE switch copies each frame into the destination port's buffers and drops what does not fit
in a full receive ring (as netmap does), so these rows are lossy: receivers stop after a quiet
timeout and the loss is reported, per receiver too (its count, and on the emulator the drops its
RX ring's counter recorded). Mpps is the aggregate delivered to all receivers. Each run uses a
switch of its own (``vale<run>:``); ports are created by the open and vanish with the close.

The ``paced`` broadcast rows show that what those rows lose is what a receiver could not keep up
with: the sender never has more packets in flight to a receiver than that receiver's RX ring
holds, counting what each receiver reports it received and handed back (a shared array, the
feedback channel a real application would need; netmap's switch gives a sender no backpressure),
and waits (sleeping, so a receiver sharing its CPU runs) when it is that far ahead. They run at
the slowest receiver's rate and lose nothing.
Receivers write their RX buffers once during set-up: the emulator's shared memory gets its pages
on first touch (netmap's allocator at creation), ~2 ms per 1000 buffers that would otherwise
fall into the first timed milliseconds of every run.

The ``ports<N>`` rows show what the size of the switch costs per packet: the receiver's process
also opens N - 2 idle ports and teaches the switch its MAC (one frame sent before the start),
so every frame of the sender is a unicast the learning bridge sends to the receiver alone.
"""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from .harness import Role, Scenario, now
from .msgloop import SEQ_OFFSET, frame
from .peer_pynetmap import (
    FIRST_WAIT,
    WAIT,
    _sync,
    available,
    batch_receiver,
    batch_sender,
    open_spec,
    prefill,
    send_batches,
)

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


def rx_drops(p, name: str) -> int:
    """What the emulator's counters say the switch dropped for port ``name``'s RX rings (spec
    E22; read after the run, untimed); -1 where there are no such counters (netmap)."""
    if p.extra.get("backend") != "emu":
        return -1
    from netmap_emu.stats import snapshot

    port = f"vale{p.run}:{name}"
    return sum(r.drops for r in snapshot().rings if r.dir == "rx" and r.port.endswith(port))


def touched_receiver(blocking: bool, name: str):
    """``batch_receiver`` on port ``name`` whose RX buffers were touched before the start."""
    inner = batch_receiver(blocking, _port(name), lossy=True)

    def run(p, ctx, ready):
        with open_spec(p, _port(name)(p)) as first:   # keeps the port while inner opens it again
            _touch(first)
            out = inner(p, ctx, ready)
            return {**out, "drops": rx_drops(p, name)}
    return run


# --- broadcast with a sender that waits for room -------------------------------------------
#: the paced sender sends once every receiver has room for this many (or for all that is left)
PACED_MIN_BATCH = 256
#: how long the paced sender sleeps while a receiver is a ring behind
PACED_PAUSE = 20e-6
#: ... and gives up when no receiver hands anything back for this long
PACED_GIVE_UP = 5.0


class Credits:
    """Shared by the roles of one paced run (made before they fork): per receiver, its RX ring's
    usable slots and the packets it has received and handed back to the switch; and what the
    sender sent, set once it has finished (-1 until then)."""

    def __init__(self, receivers: int) -> None:
        ctx = mp.get_context("fork")
        self.room = ctx.RawArray("q", receivers)
        self.done = ctx.RawArray("q", receivers)
        self.sent = ctx.RawValue("q", -1)


def paced_sender(p, ctx: Credits, ready):
    """Sender role of a paced row: like ``batch_sender``, but it never has more packets in
    flight to a receiver (sent - handed back) than the receiver's RX ring holds."""
    with open_spec(p, _SENDER(p)) as port:
        ring = port.tx_rings[0]
        prefill(ring, p.size)
        txsync, lens, seqf = port.txsync, ring.slots["len"], ring.field(SEQ_OFFSET, "<u8")
        n, size, seq = p.packets, p.size, p.work == "seq"
        done = ctx.done
        ready()
        window = min(ctx.room)   # the receivers wrote it before the barrier
        t0 = now()
        sent = 0
        behind, stuck = min(done), now() + PACED_GIVE_UP
        while sent < n:
            room = min(window - (sent - min(done)), ring.space(), n - sent)
            if room < min(PACED_MIN_BATCH, n - sent):
                if min(done) != behind:
                    behind, stuck = min(done), now() + PACED_GIVE_UP
                elif now() > stuck:   # a receiver stopped (its quiet timeout): the run is short
                    break
                time.sleep(PACED_PAUSE)
                continue
            b = ring.ready(room)
            k = len(b)
            lens[b.slot_idx] = size
            if seq:
                seqf[b.buf_idx] = np.arange(sent, sent + k, dtype="<u8")
            ring.advance(k)
            txsync()
            sent += k
        t_sent = now()
        ctx.sent.value = sent
    return {"t_start": t0, "t_sent": t_sent, "sent": sent}


def paced_receiver(index: int, name: str):
    """Receiver role of a paced row: ``batch_receiver``'s loop (blocking in poll); whenever its
    ring is empty it hands the slots back (rxsync) and publishes how many packets it has
    handed back before it sleeps, so a sender waiting for that room is never held up by the
    receiver's sleep.
    It stops when it has all the sender sent, or after a quiet timeout once the sender has
    finished (not before: a slower receiver holds the sender back, and a descheduled one can
    keep every receiver waiting longer than any quiet timeout)."""
    def run(p, ctx: Credits, ready):
        from netmap_core import POLLIN

        with open_spec(p, _port(name)(p)) as port:
            _touch(port)
            ring = port.rx_rings[0]
            ctx.room[index] = ring.num_slots - 1
            done = ctx.done
            seqf, n, seq = ring.field(SEQ_OFFSET, "<u8"), p.packets, p.work == "seq"
            got = bad = batches = expect = 0
            t_first = 0.0
            quiet = p.extra.get("quiet", 0.5)
            ready()
            last = now() + FIRST_WAIT - quiet
            while got < n:
                if ring.empty:
                    port.rxsync()        # hand the slots back and say so before sleeping: the
                    done[index] = got    # sender may be waiting for exactly this room
                    if not ring.empty:
                        continue
                    port.poll(POLLIN, WAIT)
                    sent = ctx.sent.value
                    if sent >= 0 and (got >= sent or now() - last > quiet):
                        break
                    continue
                b = ring.ready()
                k = len(b)
                if not got:
                    t_first = now()
                if seq:
                    col = seqf[b.buf_idx]
                    bad += int(np.count_nonzero(col != np.arange(expect, expect + k, dtype="<u8")))
                    expect = int(col[-1]) + 1
                ring.advance(k)
                got += k
                batches += 1
                last = now()
            port.rxsync()
            done[index] = got
            out = {"t_end": last, "packets": got, "bad": bad, "batches": batches,
                   "drops": rx_drops(p, name)}
        if got:
            out["t_first"] = t_first
        return out
    return run


def _paced_scenario(backend: str, tag: str, receivers: int, slots: int) -> Scenario:
    roles = [Role("sender", paced_sender)]
    roles += [Role(f"receiver{i}", paced_receiver(i, f"r{i}")) for i in range(receivers)]
    return Scenario(
        id=f"vale-{tag}-1to{receivers}-paced-poll",
        title=f"pynetmap {backend} VALE switch, one sender to {receivers} receivers (broadcast, "
              f"aggregate Mpps), the sender waits for room in every receiver's ring, blocking in poll",
        family="pynetmap", kind="batched", batch=f"<={slots - 1}", roles=tuple(roles),
        fanout=receivers, lossy=True, extra={"backend": backend}, quick=True,
        prepare=lambda p, s: Credits(receivers), available=available(backend, "vale{name}:w"))


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
            if n > 1:
                out.append(_paced_scenario(backend, tag, n, cfg.slots))
        for n in PORT_COUNTS:
            out.append(_ports_scenario(backend, tag, n, cfg.slots))
    return out
