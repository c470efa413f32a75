"""``pynetmap pkt-gen``: netmap's traffic generator and sink (tx, rx, ping, pong, txseq, rxseq)
with pkt-gen's options and output, as a thin layer over netmap_core's batch API.

Fast path: frames are built once into the TX buffers; per batch numpy sets every slot's len
(and flags), and writes sequence numbers, addresses and checksums through strided views only
when the mode asks for them. A slot whose buffer was replaced (NS_BUF_CHANGED) is refilled, as
pkt-gen does. ping/pong move a batch at a time too; pong echoes with ``Ring.forward`` (a buffer
swap between the port's RX and TX rings).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

import netmap_core
from netmap_core import POLLIN, POLLOUT, abi
from netmap_core.errors import InvalidRequestError, NetmapError
from netmap_core.ring import Ring

from . import frames as fr
from .meter import Meter, Summary

__all__ = ["HELP", "MODES", "Options", "SeqCheck", "parse_args", "main", "run"]

HELP = "netmap's pkt-gen: send, receive, ping-pong or sequence-check frames on a port"
MODES = ("tx", "rx", "ping", "pong", "txseq", "rxseq")
IDLE = 1.0          # s: rx -W stops after this long without a packet; poll timeout of rx loops
DRAIN = 5.0         # s: tx waits at most this long at the end for its frames to be reclaimed
_MOREFRAG, _CHANGED = abi.NS_MOREFRAG, abi.NS_BUF_CHANGED
_SEQ_MODES = ("txseq", "rxseq", "ping", "pong")


@dataclass(frozen=True)
class Options:
    """pkt-gen's options after checking (see :func:`parse_args` for their meaning)."""

    port: str
    mode: str = "rx"
    count: int = 0                 # 0: run until Ctrl-C (rx/pong: or -W idle)
    length: int = 60
    length_max: int = 0            # -l given twice: random lengths length..length_max
    burst: int = 512
    rate: float = 0.0              # pps, 0 = as fast as possible
    report: float = 1.0            # s between rate lines, 0 = none
    wait: float | None = None      # s before starting (None: 0 for pipes and VALE, else 2)
    idle_exit: bool = False        # -W
    src: fr.AddrRange = fr.parse_range("-s", "10.0.0.1:1234", 1234)
    dst: fr.AddrRange = fr.parse_range("-d", "10.1.0.1:4321", 4321)
    smac: bytes = bytes(6)
    dmac: bytes = b"\xff" * 6
    pcap: str | None = None
    frags: int = 1
    random_src: bool = False
    random_dst: bool = False
    scaled: bool = True
    fmt: str = "text"
    backend: str | None = None
    cpu: int | None = None


def _count(text: str) -> int:
    """An integer with an optional K/M/G suffix (x1000 each), as pkt-gen's -n and -R take."""
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:].lower(), 1)
    try:
        value = int(float(text[:-1] if mult > 1 else text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 1000, 10k, 2M)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; allowed: 0 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pynetmap pkt-gen", description=HELP + ". Options as netmap's pkt-gen(8).",
        epilog="Rate lines go to stderr every -T ms; the summary (pkt-gen's 'Sent|Received ... "
               "Speed: ...' lines, or --json / --csv) to stdout. Ctrl-C stops with the summary.")
    p.add_argument("-i", dest="port", required=True, metavar="PORT",
                   help="port name; a bare name gets netmap: prepended (netmap:pipeA{0, vale0:p)")
    p.add_argument("-f", dest="mode", choices=MODES, default="rx", help="function (default rx)")
    p.add_argument("-n", dest="count", type=_count, default=0,
                   help="packets to send/receive (default 0: until Ctrl-C)")
    p.add_argument("-l", dest="length", type=int, action="append", metavar="LEN",
                   help=f"frame length {fr.MIN_LEN}..{fr.MAX_LEN} (default 60); twice: random "
                        "lengths in the range")
    p.add_argument("-b", dest="burst", type=int, default=None,
                   help="slots per sync (default 512; ping/pong 1)")
    p.add_argument("-R", dest="rate", type=_count, default=0, help="packets per second (default: top speed)")
    p.add_argument("-T", dest="report", type=int, default=1000, help="report interval in ms (0: none)")
    p.add_argument("-w", dest="wait", type=float, default=None,
                   help="seconds to wait before starting (default 0 on pipes/VALE, else 2)")
    p.add_argument("-W", dest="idle_exit", action="store_true",
                   help=f"rx/pong: exit after {IDLE:g} s without traffic")
    p.add_argument("-s", dest="src", default="10.0.0.1:1234", metavar="IP[:PORT][-IP[:PORT]]",
                   help="source address range (default 10.0.0.1:1234)")
    p.add_argument("-d", dest="dst", default="10.1.0.1:4321", metavar="IP[:PORT][-IP[:PORT]]",
                   help="destination address range (default 10.1.0.1:4321)")
    p.add_argument("-S", dest="smac", default="00:00:00:00:00:00", help="source MAC")
    p.add_argument("-D", dest="dmac", default="ff:ff:ff:ff:ff:ff", help="destination MAC")
    p.add_argument("-P", dest="pcap", default=None, metavar="FILE",
                   help="use the first frame of a pcap file as the frame (the pcap extra)")
    p.add_argument("-F", dest="frags", type=int, default=1, help="fragments (slots) per packet, 1..63")
    p.add_argument("-z", dest="random_src", action="store_true", help="random source address/port")
    p.add_argument("-Z", dest="random_dst", action="store_true", help="random destination address/port")
    p.add_argument("-N", dest="unscaled", action="store_true", help="do not scale numbers (K/M/G)")
    p.add_argument("-a", dest="cpu", type=int, default=None, help="pin to this CPU")
    p.add_argument("--json", dest="fmt", action="store_const", const="json", default="text",
                   help="summary as one JSON object on stdout")
    p.add_argument("--csv", dest="fmt", action="store_const", const="csv",
                   help="a CSV row per report interval and a total row, on stdout")
    p.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    return p


def _bad(field: str, value: object, allowed: str) -> InvalidRequestError:
    return InvalidRequestError(22, f"pkt-gen: {field}={value!r} is out of range; allowed: {allowed}")


def parse_args(argv: list[str]) -> Options:
    """Options from a command line; bad values raise InvalidRequestError naming the option."""
    a = _parser().parse_args(argv)
    lengths = a.length or [60]
    if len(lengths) > 2:
        raise _bad("-l", lengths, "one length, or two for a random range")
    for ln in lengths:
        if not fr.MIN_LEN <= ln <= fr.MAX_LEN:
            raise _bad("-l", ln, f"{fr.MIN_LEN}..{fr.MAX_LEN}")
    lo, hi = (lengths[0], 0) if len(lengths) == 1 else (min(lengths), max(lengths))
    burst = a.burst if a.burst is not None else (1 if a.mode in ("ping", "pong") else 512)
    if not 1 <= burst <= abi.NM_PIPE_MAXSLOTS:
        raise _bad("-b", burst, f"1..{abi.NM_PIPE_MAXSLOTS}")
    if not 1 <= a.frags <= 63:
        raise _bad("-F", a.frags, "1..63")
    if a.frags > 1 and (hi or a.mode not in ("tx", "rx")):
        raise _bad("-F", a.frags, "1 with -l given twice, and with modes other than tx and rx")
    if a.report < 0:
        raise _bad("-T", a.report, "0 (no rate lines) or more milliseconds")
    if a.wait is not None and a.wait < 0:
        raise _bad("-w", a.wait, "0 or more seconds")
    need = fr.TS_OFF + 8 if a.mode in ("ping", "pong") else fr.SEQ_OFF + 4
    if a.mode in _SEQ_MODES and lo < need:
        raise _bad("-l", lo, f"{need}..{fr.MAX_LEN} in mode {a.mode} (the frame carries "
                             f"{'a sequence number and a timestamp' if need > 46 else 'a sequence number'})")
    port = a.port if ":" in a.port else f"netmap:{a.port}"
    return Options(port=port, mode=a.mode, count=a.count, length=lo, length_max=hi, burst=burst,
                   rate=float(a.rate), report=a.report / 1000, wait=a.wait, idle_exit=a.idle_exit,
                   src=fr.parse_range("-s", a.src, 1234), dst=fr.parse_range("-d", a.dst, 4321),
                   smac=fr.parse_mac("-S", a.smac), dmac=fr.parse_mac("-D", a.dmac), pcap=a.pcap,
                   frags=a.frags, random_src=a.random_src, random_dst=a.random_dst,
                   scaled=not a.unscaled, fmt=a.fmt, backend=a.backend, cpu=a.cpu)


def _template(o: Options) -> bytes:
    if o.pcap:
        from .pcapio import first_frame

        return first_frame(o.pcap)
    return fr.build_frame(o.length_max or o.length, o.src, o.dst, o.smac, o.dmac)


# --- TX ----------------------------------------------------------------------------------------
class _Filler:
    """Writes one TX ring's batches: slot len and flags always; refills replaced buffers; and,
    when the mode needs it, per-frame sequence numbers, addresses and IPv4 checksums."""

    def __init__(self, ring: Ring, o: Options, frame: bytes) -> None:
        self.ring, self.o = ring, o
        self.frame = np.frombuffer(frame, np.uint8)
        self.size = len(frame)
        if self.size > ring.buf_size * o.frags:
            raise InvalidRequestError(
                22, f"pkt-gen: -l {self.size} does not fit {o.frags} slot(s) of {ring.buf_size} "
                f"bytes on {ring.name}; allowed: up to {ring.buf_size * o.frags} (raise -F)")
        self.flags, self.lens = ring.slots["flags"], ring.slots["len"]
        self.room = 0   # free slots seen by the last fill (pkt-gen's min_space)
        self.rng = np.random.default_rng()
        self.vary_src = o.random_src or o.src.varies
        self.vary_dst = o.random_dst or o.dst.varies
        self.seq = o.mode in ("txseq", "ping")
        self.dynamic = self.vary_src or self.vary_dst or self.seq
        if o.frags > 1:
            fs = -(-self.size // o.frags)
            pieces = [self.frame[j * fs:(j + 1) * fs] for j in range(o.frags)]
            self.frag_lens = np.array([len(x) for x in pieces], np.uint16)
            self.frag_rows = np.zeros((o.frags, fs), np.uint8)
            for j, piece in enumerate(pieces):
                self.frag_rows[j, :len(piece)] = piece
            self.frag_flags = np.where(np.arange(o.frags) < o.frags - 1, _MOREFRAG, 0).astype(np.uint16)
        else:
            bufs = ring.slots["buf_idx"].astype(np.intp)
            ring.buffers[bufs, :self.size] = self.frame   # once: later only replaced buffers
        if self.dynamic:
            self.f_seq = ring.field(fr.SEQ_OFF, ">u4")
            self.f_saddr, self.f_daddr = ring.field(fr.IP_OFF + 12, ">u4"), ring.field(fr.IP_OFF + 16, ">u4")
            self.f_sport, self.f_dport = ring.field(fr.UDP_OFF, ">u2"), ring.field(fr.UDP_OFF + 2, ">u2")
            self.f_ipsum, self.f_udpsum = ring.field(fr.IP_OFF + 10, ">u2"), ring.field(fr.UDP_OFF + 6, ">u2")
            self.f_ts = ring.field(fr.TS_OFF, ">u8") if o.mode == "ping" else None

        # fill(limit, counter): up to ``limit`` packets from ``head``, advanced; ``counter``
        # numbers the first. Returns (packets, slots, bytes). Chosen once, not per batch.
        self.static = o.frags == 1 and not self.dynamic and not o.length_max   # one frame for all
        self.fill = (self._fill_frags if o.frags > 1 else
                     self._fill_static if self.static else self._fill_dynamic)

    def _fill_dynamic(self, limit: int, counter: int) -> tuple[int, int, int]:
        """Per-frame lengths, sequence numbers or addresses: a Batch and strided stores."""
        ring, o = self.ring, self.o
        self.room = ring.space()
        b = ring.ready(limit)
        k = len(b)
        if not k:
            return 0, 0, 0
        sel, bidx = b.slot_idx, b.buf_idx
        fl = self.flags[sel]
        if fl.any():
            changed = (fl & _CHANGED) != 0
            if changed.any():
                ring.buffers[bidx[changed], :self.size] = self.frame
            self.flags[sel] = 0
        if o.length_max:
            lens = self.rng.integers(o.length, o.length_max + 1, k, dtype=np.uint16)
            self.lens[sel] = lens
            nbytes = int(lens.sum())
        else:
            self.lens[sel] = self.size
            nbytes = k * self.size
        if self.dynamic:
            self._fields(bidx, counter, k)
        ring.advance(k)
        return k, k, nbytes

    def _fill_static(self, limit: int, counter: int = 0) -> tuple[int, int, int]:
        """The plain tx path: ``Ring.fill`` sets len and clears flags through one or two
        slices of the slot array and copies the frame only into buffers the kernel replaced
        (NS_BUF_CHANGED). No Batch is built: a few numpy calls per batch, whatever its size."""
        room = self.room = self.ring.space()
        k = self.ring.fill(min(limit, room), template=self.frame, changed_only=True)
        return k, k, k * self.size

    def _fields(self, bidx: np.ndarray, counter: int, k: int) -> None:
        o = self.o
        if self.seq:
            self.f_seq[bidx] = (np.arange(counter, counter + k) & 0xFFFFFFFF).astype(np.uint32)
            if self.f_ts is not None:
                self.f_ts[bidx] = time.monotonic_ns()
        addressed = False
        for vary, rnd, rng_, fa, fp in ((self.vary_src, o.random_src, o.src, self.f_saddr, self.f_sport),
                                        (self.vary_dst, o.random_dst, o.dst, self.f_daddr, self.f_dport)):
            if vary:
                addrs, ports = (rng_.random(self.rng, k) if rnd
                                else rng_.at(np.arange(counter, counter + k, dtype=np.int64)))
                fa[bidx] = addrs
                fp[bidx] = ports
                addressed = True
        if addressed:
            self.f_ipsum[bidx] = fr.ip_checksums(self.ring.buffers[bidx, fr.IP_OFF:fr.IP_OFF + 20])
        self.f_udpsum[bidx] = 0   # the payload or ports changed: IPv4 UDP without a checksum

    def _fill_frags(self, limit: int, counter: int) -> tuple[int, int, int]:
        ring, nf = self.ring, self.o.frags
        room = self.room = ring.space()
        k = min(limit, room // nf) * nf
        if k <= 0:
            return 0, 0, 0
        b = ring.ready(k)
        j = np.arange(k) % nf
        ring.buffers[b.buf_idx, :self.frag_rows.shape[1]] = self.frag_rows[j]
        self.lens[b.slot_idx] = self.frag_lens[j]
        self.flags[b.slot_idx] = self.frag_flags[j]
        ring.advance(k)
        return k // nf, k, (k // nf) * self.size


def _pace(o: Options, t0: float, sent: int) -> int:
    """Packets allowed now under -R (all of a burst without -R); sleeps when ahead."""
    if not o.rate:
        return o.burst
    while True:
        allowed = int((time.monotonic() - t0) * o.rate) + 1 - sent
        if allowed > 0:
            return min(allowed, o.burst)
        time.sleep(min(0.001, 1 / o.rate))


def run_tx(port: netmap_core.Port, o: Options, meter: Meter, frame: bytes) -> Summary:
    rings = port.tx_rings
    if not rings:
        raise InvalidRequestError(22, f"pkt-gen: {o.port} binds no TX ring; open one that does")
    fillers = [_Filler(r, o, frame) for r in rings]
    t0 = time.monotonic()
    stopped = False
    try:
        if len(fillers) == 1 and fillers[0].static and not o.rate:
            _tx_static(port, fillers[0], o, meter)
        else:
            _tx_batches(port, fillers, o, meter, t0)
        _drain(port, rings)
    except KeyboardInterrupt:
        stopped = True
    seconds = time.monotonic() - t0
    extra = {"interrupted": True} if stopped else {}
    size = len(frame) if o.pcap else o.length
    return Summary("Sent", meter.packets, meter.bytes, meter.events, size, seconds, extra)


def _tx_static(port: netmap_core.Port, f: _Filler, o: Options, meter: Meter) -> None:
    """The usual tx: one ring, one frame, no -R. The same steps as :func:`_tx_batches` with
    the fewest Python operations per batch: two calls (the ring's prepared fill and txsync)
    and local counters, handed to the meter every few batches (on an emulated CPU every call
    costs microseconds, and a 512-slot batch of the general loop spends ~15 % more)."""
    ring, size, burst, count = f.ring, f.size, o.burst, o.count
    fill, txsync = ring.prepare_fill(f.frame), port.txsync
    sent = events = 0
    due = 1                         # batches until the meter's next look
    try:
        while not count or sent < count:
            k = fill(burst if not count or count - sent >= burst else count - sent)
            if k:
                txsync()
                sent += k
                events += 1
                due -= 1
                if not due:
                    due = meter.totals(sent, sent * size, events, ring.space())
            else:
                ring.cur = ring.tail      # wake only when more room than now appears
                port.poll(POLLOUT, IDLE)
                due = meter.totals(sent, sent * size, events, ring.space(), time.monotonic())
    finally:
        meter.packets, meter.bytes, meter.events = sent, sent * size, events


def _tx_batches(port: netmap_core.Port, fillers: list[_Filler], o: Options, meter: Meter,
                t0: float) -> None:
    """tx over every bound ring, with -R pacing, per-frame fields or fragments."""
    rings = port.tx_rings
    sent = 0
    while not o.count or sent < o.count:
        want = _pace(o, t0, sent) if o.rate else o.burst
        if o.count and want > o.count - sent:
            want = o.count - sent
        moved = 0
        for f in fillers:
            pk, _, nbytes = f.fill(want - moved, sent + moved)
            if pk:
                meter.add(pk, nbytes, f.room)
                moved += pk
                if moved >= want:
                    break
        if moved:
            sent += moved
            port.txsync()
            meter.tick()          # reads the clock every few batches
        else:
            for r in rings:
                r.cur = r.tail    # wake only when more room than now appears
            port.poll(POLLOUT, IDLE)
            meter.tick(time.monotonic())


def _drain(port: netmap_core.Port, rings: tuple[Ring, ...]) -> None:
    """Wait until every published slot was reclaimed (bounded by DRAIN seconds)."""
    end = time.monotonic() + DRAIN
    while any(r.tx_pending() for r in rings) and time.monotonic() < end:
        port.poll(POLLOUT, 0.05)


# --- RX ----------------------------------------------------------------------------------------
class SeqCheck:
    """rxseq: lost and out-of-order frames from the 32-bit sequence numbers of whole batches.

    A number above the highest seen so far + 1 counts the numbers skipped as lost; one at or
    below it is out of order (a late frame also stays counted in the gap it left)."""

    def __init__(self) -> None:
        self.expect: int | None = None
        self.lost = self.disorder = 0

    def check(self, seqs: np.ndarray) -> None:
        if not seqs.size:
            return
        s = seqs.astype(np.int64)
        base = int(s[0]) if self.expect is None else self.expect
        u = base + ((s - base + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)   # unwrapped around base
        top = np.maximum.accumulate(np.concatenate(([base - 1], u)))
        d = u - top[:-1] - 1
        self.lost += int(d[d > 0].sum())
        self.disorder += int(np.count_nonzero(d < 0))
        self.expect = int(top[-1] + 1) & 0xFFFFFFFF


def run_rx(port: netmap_core.Port, o: Options, meter: Meter) -> Summary:
    rings = port.rx_rings
    if not rings:
        raise InvalidRequestError(22, f"pkt-gen: {o.port} binds no RX ring; open one that does")
    seqcheck = SeqCheck() if o.mode == "rxseq" else None
    if seqcheck is None and len(rings) == 1:
        first, last = _rx_one(port, rings[0], o, meter)
        return Summary("Received", meter.packets, meter.bytes, meter.events, o.length, last - first)
    fields = [r.field(fr.SEQ_OFF, ">u4") for r in rings]
    first = last = 0.0
    got = 0
    in_frag = [False] * len(rings)   # the ring's previous slot had NS_MOREFRAG
    try:
        while not o.count or got < o.count:
            moved = 0
            for i, r in enumerate(rings):
                if seqcheck is None:   # the plain path: count and release, no Batch
                    t = r.take(o.count - got if o.count else None)
                    if t.slots:
                        meter.add(t.packets, t.nbytes)
                        moved += t.packets
                    continue
                b = r.ready(o.count - got if o.count else None)
                k = len(b)
                if not k:
                    continue
                more = (r.slots["flags"][b.slot_idx] & _MOREFRAG) != 0
                packets = k - int(np.count_nonzero(more))   # complete packets, as pkt-gen counts
                if seqcheck is not None:
                    starts = np.empty(k, bool)   # first slot of each packet
                    starts[0] = not in_frag[i]
                    starts[1:] = ~more[:-1]
                    seqcheck.check(fields[i][b.buf_idx[starts]])
                in_frag[i] = bool(more[-1])
                meter.add(packets, int(b.len.sum()))
                r.advance(k)
                moved += packets
            now = time.monotonic()
            if moved:
                if not got:
                    first = now
                got += moved
                last = now
            else:
                port.poll(POLLIN, min(IDLE, o.report) if o.report else IDLE)
                if o.idle_exit and got and time.monotonic() - last >= IDLE:
                    break
            meter.tick(now)
        port.rxsync()   # hand the last slots back
    except KeyboardInterrupt:
        pass
    extra = {}
    if seqcheck is not None:
        extra = {"lost": seqcheck.lost, "out_of_order": seqcheck.disorder}
    return Summary("Received", meter.packets, meter.bytes, meter.events, o.length, last - first, extra)


def _rx_one(port: netmap_core.Port, ring: Ring, o: Options, meter: Meter) -> tuple[float, float]:
    """The usual rx: one ring, no rxseq. While packets flow two calls a batch, take and
    rxsync (a poll, which would sync too, costs twice the Python steps); a poll only when a
    sync found nothing. Counts in locals, handed to the meter every few batches. The clock is
    read at the first packet, at the meter's stride and at the end: the last packet's time is
    the end of the count or of the run, or, with -W, the start of the waits that found nothing
    for IDLE seconds (C pkt-gen takes it the same way). Returns the first and last packet's
    times."""
    take, rxsync, poll, count = ring.take, port.rxsync, port.poll, o.count
    wait = min(IDLE, o.report) if o.report else IDLE
    got = nbytes = events = 0
    first = last = 0.0
    due = 1
    quiet = 0.0                     # s of back-to-back waits that found nothing
    try:
        while not count or got < count:
            t = take(count - got if count else None)
            if t.slots:
                if not events:
                    first = time.monotonic()
                got += t.packets
                nbytes += t.nbytes
                events += 1
                quiet = 0.0
                due -= 1
                if not due:
                    due = meter.totals(got, nbytes, events)
                if count and got >= count:
                    last = time.monotonic()
                    break
                rxsync()
                continue
            if poll(POLLIN, wait) & POLLIN:
                continue
            quiet += wait               # (a POLLERR counts as a wait: -W still ends the run)
            if o.idle_exit and events and quiet >= IDLE:
                last = time.monotonic() - quiet
                break
            due = meter.totals(got, nbytes, events, now=time.monotonic())
        port.rxsync()   # hand the last slots back
    except KeyboardInterrupt:
        pass
    finally:
        meter.packets, meter.bytes, meter.events = got, nbytes, events
    if not events:
        return 0.0, 0.0
    return first, last or time.monotonic()   # last unset: stopped by Ctrl-C


# --- ping / pong ---------------------------------------------------------------------------------
def run_ping(port: netmap_core.Port, o: Options, meter: Meter, frame: bytes) -> Summary:
    """Send ``burst`` frames carrying a sequence number and the send time, wait (up to IDLE s)
    for them to come back, and record each round trip."""
    if not port.tx_rings or not port.rx_rings:
        raise InvalidRequestError(22, f"pkt-gen: ping needs a TX and an RX ring on {o.port}")
    tx, rx = port.tx_rings[0], port.rx_rings[0]
    filler = _Filler(tx, o, frame)
    f_seq, f_ts = rx.field(fr.SEQ_OFF, ">u4"), rx.field(fr.TS_OFF, ">u8")
    rtts: list[np.ndarray] = []
    sent = 0
    t0 = time.monotonic()
    try:
        while not o.count or sent < o.count:
            want = min(_pace(o, t0, sent), (o.count - sent) if o.count else o.burst)
            while tx.space() == 0:
                port.poll(POLLOUT, IDLE)
            # refill every slot of the round: the echo swapped buffers around
            b = tx.ready(want)
            tx.buffers[b.buf_idx, :len(frame)] = filler.frame
            k, _, _ = filler.fill(want, sent)
            port.txsync()
            sent += k
            end = time.monotonic() + IDLE
            back = 0
            while back < k and time.monotonic() < end:
                if rx.empty:
                    port.poll(POLLIN, max(0.0, end - time.monotonic()))
                    continue
                rb = rx.ready()
                now = time.monotonic_ns()
                mine = f_seq[rb.buf_idx].astype(np.int64) >= ((sent - k) & 0xFFFFFFFF)
                rtts.append((now - f_ts[rb.buf_idx][mine].astype(np.int64)) / 1e3)
                back += int(np.count_nonzero(mine))
                meter.add(len(rb), int(rb.len.sum()))
                rx.advance(len(rb))
            meter.tick(time.monotonic())
    except KeyboardInterrupt:
        pass
    seconds = time.monotonic() - t0
    us = np.concatenate(rtts) if rtts else np.zeros(0)
    extra: dict = {"sent": sent, "received": int(us.size)}
    if us.size:
        p = np.percentile(us, [50, 90, 99])
        extra["rtt_us"] = {"min": round(float(us.min()), 1), "p50": round(float(p[0]), 1),
                           "p90": round(float(p[1]), 1), "p99": round(float(p[2]), 1),
                           "max": round(float(us.max()), 1), "avg": round(float(us.mean()), 1)}
    return Summary("Received", meter.packets, meter.bytes, meter.events, o.length, seconds, extra)


def run_pong(port: netmap_core.Port, o: Options, meter: Meter) -> Summary:
    """Echo every received frame back out of the same port (a buffer swap when RX and TX
    share the pool, a copy otherwise)."""
    if not port.tx_rings or not port.rx_rings:
        raise InvalidRequestError(22, f"pkt-gen: pong needs a TX and an RX ring on {o.port}")
    tx, rx = port.tx_rings[0], port.rx_rings[0]
    first = last = 0.0
    try:
        while not o.count or meter.packets < o.count:
            if rx.empty:
                port.poll(POLLIN, min(IDLE, o.report) if o.report else IDLE)
                if o.idle_exit and meter.packets and time.monotonic() - last >= IDLE:
                    break
                meter.tick(time.monotonic())
                continue
            lens = rx.ready().len
            k = rx.forward(tx)
            if not k:
                port.poll(POLLOUT, IDLE)
                continue
            port.txsync()
            port.rxsync()
            last = time.monotonic()
            if not first:
                first = last
            meter.add(k, int(lens[:k].sum()))
            meter.tick(last)
    except KeyboardInterrupt:
        pass
    return Summary("Sent", meter.packets, meter.bytes, meter.events, o.length, last - first)


# --- the command ---------------------------------------------------------------------------------
@contextmanager
def _interrupt_on_term() -> Iterator[None]:
    """SIGTERM stops a run as Ctrl-C does (with the summary)."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:          # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(o: Options) -> Summary:
    """Open the port, run the mode, print rate lines and the summary; returns the summary."""
    if o.cpu is not None:
        os.sched_setaffinity(0, {o.cpu})
    frame = _template(o) if o.mode in ("tx", "txseq", "ping") else b""
    with _interrupt_on_term(), netmap_core.open(o.port, backend=o.backend) as port:
        spec = port.spec
        wait = o.wait if o.wait is not None else (0.0 if spec.is_vale or spec.pipe else 2.0)
        verb = "sending on" if o.mode in ("tx", "txseq", "ping") else "reading from"
        print(f"pkt-gen: {o.mode}: {verb} {o.port} ({len(port.tx_rings)} tx / {len(port.rx_rings)} "
              f"rx rings, {port.info.tx_slots} slots)", file=sys.stderr, flush=True)
        if wait:
            time.sleep(wait)
        meter = Meter(o.report, o.fmt, o.scaled)
        if o.mode in ("tx", "txseq"):
            summary = run_tx(port, o, meter, frame)
        elif o.mode in ("rx", "rxseq"):
            summary = run_rx(port, o, meter)
        elif o.mode == "ping":
            summary = run_ping(port, o, meter, frame)
        else:
            summary = run_pong(port, o, meter)
    meter.report(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``pynetmap pkt-gen ...``: 0 on success, 1 with a one-line reason on error."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        o = parse_args(argv)
        summary = run(o)
    except (NetmapError, OSError) as exc:
        print(f"pkt-gen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:   # before the run started
        return 130
    if o.mode == "rxseq" and (summary.extra.get("lost") or summary.extra.get("out_of_order")):
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
