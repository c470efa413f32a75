"""``pynetmap lb``: netmap's load balancer. Reads one port, hashes each frame's flow (symmetric
5-tuple: both directions of a flow land alike) and hands it to one pipe of each group.

A group ``NAME:N`` is the pipes ``NAME{0..N-1`` (master ends, opened here TX only on the input
port's allocator, ``NAME{k/xT@MEMID``); consumers open ``NAME}k``. Without ``-p``: one group of
two pipes named after the input port. The first group gets the frames zero copy
(``netmap_core.batch.dispatch`` swaps buffers); further groups get copies (netmap's lb instead
passes a buffer on to the next group once the first releases it). A pipe without room drops
the frame. At exit (Ctrl-C, SIGTERM, ``-n``) lb waits until the consumers took what is in the
pipes. Fragments (NS_MOREFRAG) are hashed slot by slot: keep frames to one slot.
Cost: a few µs per batch plus tens of ns per frame (the hash).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

import netmap_core
from netmap_core import POLLOUT
from netmap_core.batch import dispatch, flow_hash
from netmap_core.errors import InvalidRequestError, NetmapError

from .nfloop import Rates, stopping, wait_any

__all__ = ["HELP", "Group", "parse_group", "main"]

HELP = "hash flows from one port into groups of pipes (netmap's lb)"
DEFAULT_PIPES = 2
DRAIN = 30.0        # s: at exit, how long the consumers may take to empty the pipes


@dataclass(frozen=True)
class Group:
    """``-p [NAME:]N``: N output pipes; ``name`` None means the input port's name."""

    name: str | None
    pipes: int


def parse_group(text: str) -> Group:
    name, sep, n = text.rpartition(":")
    if sep and not name:
        raise InvalidRequestError(22, f"lb: -p {text!r}: missing name before ':'; allowed: [NAME:]N")
    try:
        pipes = int(n) if n else DEFAULT_PIPES
    except ValueError:
        raise InvalidRequestError(22, f"lb: -p {text!r}: {n!r} is not a number of pipes") from None
    if not 1 <= pipes <= 64:
        raise InvalidRequestError(22, f"lb: -p {text!r}: {pipes} pipes; allowed: 1..64 (NM_MAXPIPES)")
    return Group(name or None, pipes)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynetmap lb", description=HELP + ".",
                                epilog="Ctrl-C stops with a summary.")
    p.add_argument("-i", dest="port", required=True, help="input port; a bare name gets netmap: prepended")
    p.add_argument("-p", dest="groups", action="append", default=[], metavar="[NAME:]N",
                   help=f"a group of N output pipes (repeatable; default one group of {DEFAULT_PIPES})")
    p.add_argument("-b", dest="batch", type=int, default=2048, help="frames per batch (default 2048)")
    p.add_argument("-w", dest="wait", type=float, default=0.0, help="seconds to wait before starting")
    p.add_argument("-o", dest="report", type=float, default=1.0,
                   help="seconds between rate lines on stderr (0: none; default 1)")
    p.add_argument("-n", dest="count", type=int, default=0, help="stop after this many frames (0: never)")
    p.add_argument("--backend", default=None, help="emu or netmap (default: as netmap_core.open)")
    return p


def pipe_names(base: str, groups: list[Group], mem_id: int) -> list[list[str]]:
    """The master-end names per group; groups of one name number their pipes on from the last."""
    out: list[list[str]] = []
    next_id: dict[str, int] = {}
    for g in groups:
        name = g.name or base
        first = next_id.get(name, 0)
        next_id[name] = first + g.pipes
        prefix = "" if name.startswith("vale") else "netmap:"
        out.append([f"{prefix}{name}{{{first + k}/xT@{mem_id}" for k in range(g.pipes)])
    return out


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        groups = [parse_group(t) for t in a.groups] or [Group(None, DEFAULT_PIPES)]
        if not 1 <= a.batch <= 1 << 16:
            raise InvalidRequestError(22, f"lb: -b={a.batch} is out of range; allowed: 1..65536")
        return _run(a, groups)
    except NetmapError as exc:
        print(f"lb: {exc}", file=sys.stderr)
        return 1


def _run(a: argparse.Namespace, groups: list[Group]) -> int:
    name = a.port if ":" in a.port else f"netmap:{a.port}"
    opened: list[netmap_core.Port] = []
    try:
        inp = netmap_core.open(name, backend=a.backend)
        opened.append(inp)
        names = pipe_names(inp.spec.name, groups, inp.info.mem_id)
        outs = []
        for group in names:
            ports = []
            for n in group:
                p = netmap_core.open(n, backend=a.backend)
                opened.append(p)
                ports.append(p)
            outs.append(ports)
        print(f"lb: {name} -> " + "; ".join(f"{len(g)} pipes {g[0]}..{g[-1]}" for g in names),
              file=sys.stderr, flush=True)
        if a.wait:
            time.sleep(a.wait)
        return _loop(a, inp, outs)
    finally:
        for p in reversed(opened):
            p.close()


def _loop(a: argparse.Namespace, inp: netmap_core.Port, outs: list[list[netmap_core.Port]]) -> int:
    rates = Rates(["in", "out"], a.report)
    per_pipe = [[0] * len(g) for g in outs]
    first_rings = [p.tx_rings[0] for p in outs[0]]
    with stopping() as stop:
        while not stop[0] and not (a.count and rates.counts["in"] >= a.count):
            got = 0
            for ring in inp.rx_rings:
                b = ring.ready(a.batch)
                k = len(b)
                if not k:
                    continue
                h = flow_hash(b.gather(0, 38))
                for j, group in enumerate(outs[1:], start=1):     # copies first: dispatch consumes
                    choice = h % np.uint32(len(group))
                    frames = b.gather(0, int(b.len.max()))
                    for q, port in enumerate(group):
                        sel = np.flatnonzero(choice == q)
                        if sel.size:
                            n = port.tx_rings[0].fill(data=frames[sel], lengths=b.len[sel])
                            per_pipe[j][q] += n
                            rates.dropped += int(sel.size) - n
                choice = (h % np.uint32(len(first_rings))).astype(np.int64)
                res = dispatch(ring, first_rings, choice)
                for q, n in enumerate(res.forwarded):
                    per_pipe[0][q] += n
                rates.dropped += res.dropped
                rates.counts["in"] += k
                rates.counts["out"] += k - res.dropped
                got += k
            if got:
                for group in outs:
                    for port in group:
                        port.txsync()
                inp.rxsync()
            else:
                pending = [p for g in outs for p in g if p.tx_rings[0].tx_pending()]
                for p in pending:       # reclaim what the consumers released
                    p.poll(POLLOUT, 0)
                wait_any([inp], 0.1)
            rates.tick()
    left = _drain([p for g in outs for p in g])
    c = rates.counts
    print(f"{c['out']} packets forwarded.  {rates.dropped} packets dropped. Total {c['in']}", flush=True)
    for j, group in enumerate(outs):
        print(f"group {j}: " + " ".join(f"{p.spec.text}={n}" for p, n in zip(group, per_pipe[j])), flush=True)
    if left:
        print(f"lb: {left} pipe(s) still held frames after {DRAIN:g} s: their consumers did not "
              "take them", file=sys.stderr, flush=True)
    return 0


def _drain(pipes: list[netmap_core.Port]) -> int:
    """Wait (up to DRAIN s) until the consumers took every frame handed to the pipes; returns
    how many pipes still hold some."""
    end = time.monotonic() + DRAIN
    while True:
        pending = [p for p in pipes if p.tx_rings[0].tx_pending()]
        if not pending or time.monotonic() > end:
            return len(pending)
        for p in pending:
            p.poll(POLLOUT, 0.05)
