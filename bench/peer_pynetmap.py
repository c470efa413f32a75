"""pynetmap over a netmap pipe (``netmap:NAME{0`` sends, ``netmap:NAME}0`` receives): the batch
API spinning on txsync/rxsync and blocking in poll, the per-packet API, and a bare Python loop
over the same slots without pynetmap calls (the baseline the per-packet API is judged against).

Buffers are pre-filled with the frame once; the pipe swaps buffers, so they stay filled.
Per-packet work "none": the sender sets each slot's ``len``, the receiver takes the slot back.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .harness import Role, Scenario, Skip, now, unique_name
from .msgloop import SEQ, SEQ_OFFSET, frame

WAIT = 0.05       # poll timeout (s); the loops simply poll again
FIRST_WAIT = 5.0  # lossy receivers: how long the first packet may take


_warmed: dict[tuple[str, str], str | None] = {}


def available(backend: str, warm_spec: str = "netmap:{name}{{0"):
    """A Scenario.available hook: None when ``backend`` can run the row, else why not.

    The first check per backend and kind of port opens and closes one port in this (parent)
    process, so every module the backend loads lazily is imported once here and not again in
    each forked role, where it would add import time to every run's set-up."""
    def check() -> str | None:
        if backend == "netmap" and not os.path.exists("/dev/netmap"):
            return "no /dev/netmap"
        try:
            import netmap_core
        except ImportError as exc:
            return f"netmap_core not importable: {exc}"
        ok, why = netmap_core.probe(backend)
        if not ok:
            return f"backend {backend} unusable: {why}"
        key = (backend, warm_spec)
        if key not in _warmed:
            spec = warm_spec.format(name=unique_name("w"))
            try:
                netmap_core.open(spec, backend=backend).close()
                _warmed[key] = None
            except (NotImplementedError, netmap_core.NetmapError) as exc:
                _warmed[key] = f"cannot open {spec!r} on backend {backend}: {type(exc).__name__}: {exc}"
        return _warmed[key]
    return check


def pipe_end(end: str):
    """Port name of one end (``{0`` / ``}0``) of the run's pipe; the first opener sizes the rings."""
    return lambda p: f"netmap:{p.run}{end}@conf:slots={p.extra['slots']}"


_TX_END, _RX_END = pipe_end("{0"), pipe_end("}0")   # the roles' default ports


def open_end(p, end: str):
    return open_spec(p, pipe_end(end)(p))


OPEN_TRIES = 5    # ENOMEM from a racing open of a new pipe's other end: try again (untimed)


def open_spec(p, spec: str):
    """Open ``spec`` on the row's backend; a backend that cannot do it skips the row.

    Both roles open their end of a new pipe at the same time. On netmap 89607e1 the open that
    loses that race can fail with ENOMEM (the kernel logs "netmap_ring request size 65792 too
    large": the loser builds the pipe's parent on the global allocator, whose ring objects are
    too small for 4096 slots); seen in 3 of 20 concurrent opens in the lab guest. The other end
    then exists, so the open is simply tried again."""
    import netmap_core

    for attempt in range(OPEN_TRIES):
        try:
            return netmap_core.open(spec, backend=p.extra["backend"])
        except netmap_core.OutOfMemoryError as exc:
            if attempt == OPEN_TRIES - 1:
                raise Skip(f"cannot open {spec!r} on backend {p.extra['backend']}: "
                           f"{type(exc).__name__}: {exc} ({OPEN_TRIES} tries)") from exc
            time.sleep(0.05 * (attempt + 1))
        except (NotImplementedError, netmap_core.NetmapError) as exc:
            raise Skip(f"cannot open {spec!r} on backend {p.extra['backend']}: "
                       f"{type(exc).__name__}: {exc}") from exc


def prefill(ring, size: int) -> None:
    """Write the frame into every buffer the ring's slots point at (untimed)."""
    ring.buffers[ring.slots["buf_idx"].astype(np.int64), :size] = np.frombuffer(frame(size), np.uint8)


def _sync(port, blocking: bool, events: int):
    from netmap_core import POLLIN

    if blocking:
        return lambda: port.poll(events, WAIT)
    return port.rxsync if events == POLLIN else port.txsync


def send_batches(port, ring, p, wait, limit: int) -> None:
    """The timed sender loop of the batch rows: publish up to ``limit`` free slots of length
    ``size`` with ``Ring.fill`` (work ``none``: no buffer is touched, one or two numpy stores)
    or, for work ``seq``, take them with ``Ring.ready`` and write a sequence number through
    ``Ring.field``; one txsync per batch; ``wait`` when the ring is full; finally linger until
    the receiver has everything."""
    txsync, space, fill = port.txsync, ring.space, ring.fill
    seqf = ring.field(SEQ_OFFSET, "<u8")  # the sequence field of every buffer
    lens = ring.slots["len"]
    n, size, seq = p.packets, p.size, p.work == "seq"
    sent = 0
    while sent < n:
        if seq:
            k = space()
            if k == 0:
                wait()
                continue
            b = ring.ready(min(k, n - sent, limit))
            k = len(b)
            lens[b.slot_idx] = size
            seqf[b.buf_idx] = np.arange(sent, sent + k, dtype="<u8")
            ring.advance(k)
        else:
            k = fill(min(n - sent, limit), lengths=size)
            if k == 0:
                wait()
                continue
        txsync()
        sent += k
    _linger(port, ring)


# --- batch API: Ring.fill / release, or numpy over Ring.ready() / buffers / advance ---------
def batch_sender(blocking: bool, port_name=_TX_END):
    """Sender role: fills every free slot (at most ``batch``), publishes with one txsync."""
    def run(p, ctx, ready):
        from netmap_core import POLLOUT

        with open_spec(p, port_name(p)) as port:
            ring = port.tx_rings[0]
            prefill(ring, p.size)
            wait = _sync(port, blocking, POLLOUT)
            limit = p.extra.get("batch") or p.packets
            ready()
            t0 = now()
            send_batches(port, ring, p, wait, limit)
            t_sent = now()
        return {"t_start": t0, "t_sent": t_sent}
    return run


def _linger(port, ring) -> None:
    """Stay open until the receiver has released everything (so nothing is torn down early)."""
    from netmap_core import POLLOUT

    t_end = now() + 5.0
    while ring.tx_pending() and now() < t_end:
        port.poll(POLLOUT, 0.05)


def batch_receiver(blocking: bool, port_name=_RX_END, lossy: bool = False):
    """Receiver role: takes every received slot (``Ring.release``; work ``seq``: ``Ring.ready``,
    checking the sequence numbers with numpy, then ``advance``).

    ``lossy`` (a switch may drop): stop after ``quiet`` seconds without a packet (FIRST_WAIT
    before the first one), count only reordering as errors (not gaps), and time the run to the
    last packet."""
    def run(p, ctx, ready):
        from netmap_core import POLLIN

        with open_spec(p, port_name(p)) as port:
            ring = port.rx_rings[0]
            wait = _sync(port, blocking, POLLIN)
            seqf, n, seq = ring.field(SEQ_OFFSET, "<u8"), p.packets, p.work == "seq"
            release = ring.release
            got = bad = batches = expect = 0
            t_first = 0.0
            quiet = p.extra.get("quiet", 0.5)
            ready()
            last = now() + FIRST_WAIT - quiet
            while got < n:
                if seq:
                    b = ring.ready()
                    k = len(b)
                else:
                    k = release()     # work none: give every received slot back, unread
                if not k:
                    wait()
                    if lossy and now() - last > quiet:
                        break
                    continue
                if not got:
                    t_first = now()
                if seq:
                    col = seqf[b.buf_idx]
                    if lossy:
                        bad += int(col[0] < expect) + int(np.count_nonzero(col[1:] <= col[:-1]))
                    else:
                        bad += int(np.count_nonzero(col != np.arange(expect, expect + k, dtype="<u8")))
                    expect = int(col[-1]) + 1
                    ring.advance(k)
                got += k
                batches += 1
                if lossy:
                    last = now()
            t_end = last if lossy else now()
            port.rxsync()  # hand the last slots back
        out = {"t_end": t_end, "packets": got, "bad": bad, "batches": batches}
        if got:
            out["t_first"] = t_first
        return out
    return run


# --- per-packet API: a Python loop over ring.bufs(k) / ring.payloads(k) --------------------
def _slot_sender(bare: bool):
    def run(p, ctx, ready):
        with open_end(p, "{0") as port:
            ring = port.tx_rings[0]
            prefill(ring, p.size)
            txsync, space, advance = port.txsync, ring.space, ring.advance
            bufs, lens = ring.bufs, ring.slots["len"]
            words, halves, data = _raw(ring)
            bs, nslots = ring.buf_size, ring.num_slots
            n, size, seq = p.packets, p.size, p.work == "seq"
            limit = p.extra.get("batch") or n
            pack_into = SEQ.pack_into
            sent = 0
            ready()
            t0 = now()
            while sent < n:
                k = space()
                if k == 0:
                    txsync()
                    continue
                k = min(k, n - sent, limit)
                i = ring.head
                if bare:
                    for s in range(sent, sent + k):
                        o = words[4 * i] * bs
                        b = data[o:o + bs]
                        if seq:
                            pack_into(b, SEQ_OFFSET, s)
                        halves[8 * i + 2] = size
                        i += 1
                        if i == nslots:
                            i = 0
                else:
                    s = sent
                    for i, b in bufs(k):
                        if seq:
                            pack_into(b, SEQ_OFFSET, s)
                            s += 1
                        lens[i] = size
                advance(k)
                txsync()
                sent += k
            _linger(port, ring)
        return {"t_start": t0}
    return run


def _slot_receiver(bare: bool):
    def run(p, ctx, ready):
        with open_end(p, "}0") as port:
            ring = port.rx_rings[0]
            rxsync, space, advance = port.rxsync, ring.space, ring.advance
            payloads = ring.payloads
            words, halves, data = _raw(ring)
            bs, nslots = ring.buf_size, ring.num_slots
            n, seq = p.packets, p.work == "seq"
            unpack_from = SEQ.unpack_from
            got = bad = batches = expect = 0
            ready()
            while got < n:
                k = space()
                if k == 0:
                    rxsync()
                    continue
                i = ring.head
                if bare:
                    for _ in range(k):
                        o = words[4 * i] * bs
                        pk = data[o:o + halves[8 * i + 2]]
                        if seq:
                            s = unpack_from(pk, SEQ_OFFSET)[0]
                            if s != expect:
                                bad += 1
                            expect = s + 1
                        i += 1
                        if i == nslots:
                            i = 0
                else:
                    for _i, pk in payloads(k):
                        if seq:
                            s = unpack_from(pk, SEQ_OFFSET)[0]
                            if s != expect:
                                bad += 1
                            expect = s + 1
                advance(k)
                got += k
                batches += 1
            t_end = now()
            rxsync()
        return {"t_end": t_end, "packets": got, "bad": bad, "batches": batches}
    return run


def _raw(ring):
    """Plain memoryviews over the ring's slots (as u32 words and u16 halves) and buffer pool."""
    raw = memoryview(ring.slots.view(np.uint8)).cast("B")
    return raw.cast("I"), raw.cast("H"), memoryview(ring.buffers.reshape(-1)).cast("B")


def scenarios(cfg) -> list[Scenario]:
    out = []
    for backend, tag in (("emu", "emu"), ("netmap", "dev")):
        avail = available(backend)
        extra = {"backend": backend}
        batch = f"<={min(cfg.slots - 1, cfg.batch or cfg.slots)}"
        rows = [
            ("batch-spin", "batch API, spin on txsync/rxsync", "pynetmap",
             batch_sender(False), batch_receiver(False)),
            ("batch-poll", "batch API, blocking in poll", "pynetmap",
             batch_sender(True), batch_receiver(True)),
            ("per-packet", "per-packet API (ring.bufs/payloads, Python loop)", "pynetmap",
             _slot_sender(False), _slot_receiver(False)),
            ("bare-loop", "bare Python loop over the same slots (memoryview, no pynetmap calls)",
             "baseline", _slot_sender(True), _slot_receiver(True)),
        ]
        for key, what, family, snd, rcv in rows:
            out.append(Scenario(
                id=f"pnm-{tag}-{key}", title=f"pynetmap {backend} pipe: {what}", family=family,
                kind="batched", batch=batch, roles=(Role("sender", snd), Role("receiver", rcv)),
                extra=extra, available=avail))
    return out
