"""Firewall: an L3/L4 access list over 5-tuples, evaluated for a whole batch at once; passing
slots are moved (zero copy) to the output ring, the rest are released unread.

Rules are checked in order, the first match decides; IPv4 frames that match no rule get the
default action; IPv6 frames and frames with malformed headers are dropped, and non-IP frames
(ARP) pass:

    python examples/firewall.py -i netmap:fw}0 -o netmap:fw{1 \\
        --rule "deny proto=udp dport=53" --rule "allow src=10.0.0.0/8" --default deny

Cost per batch: one header parse plus one (frames x rules) comparison per rule field, a few ns
per frame and rule: ~1.5 µs of CPU per frame in batches of 1024 with 8 rules (bench/README.md).
"""
from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import netmap_core as nm
from netmap_core.batch import dispatch
from netmap_core.headers import Headers, parse_batch

ACTIONS = ("allow", "deny")
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass(frozen=True)
class Rule:
    """One ACL line: ``action`` for IPv4 frames whose fields all match (None: any)."""

    action: str
    proto: int | None = None
    src: ipaddress.IPv4Network | None = None
    dst: ipaddress.IPv4Network | None = None
    sport: tuple[int, int] | None = None   # inclusive range
    dport: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``"deny proto=udp src=10.0.0.0/8 dst=192.0.2.1 sport=1024-65535 dport=53"``."""
        words = text.split()
        if not words or words[0] not in ACTIONS:
            raise ValueError(f"rule {text!r}: must start with one of {ACTIONS}")
        kw: dict = {}
        for w in words[1:]:
            key, sep, val = w.partition("=")
            if not sep or key not in ("proto", "src", "dst", "sport", "dport"):
                raise ValueError(f"rule {text!r}: {w!r} is not proto=|src=|dst=|sport=|dport=")
            if key == "proto":
                kw[key] = PROTOS[val] if val in PROTOS else int(val)
            elif key in ("src", "dst"):
                kw[key] = ipaddress.IPv4Network(val, strict=False)
            else:
                lo, _, hi = val.partition("-")
                kw[key] = (int(lo), int(hi or lo))
        return cls(words[0], **kw)


class Acl:
    """Rules compiled into columns, so a batch is matched against all of them at once."""

    def __init__(self, rules: Sequence[Rule], default: str = "allow") -> None:
        if default not in ACTIONS:
            raise ValueError(f"default action {default!r}: must be one of {ACTIONS}")
        self.rules = tuple(rules)
        self.default = default
        r = self.rules
        self.allow = np.array([x.action == "allow" for x in r] + [default == "allow"])
        self.proto = np.array([-1 if x.proto is None else x.proto for x in r], np.int64)

        def net(n: ipaddress.IPv4Network | None) -> tuple[int, int]:
            return (0, 0) if n is None else (int(n.network_address), int(n.netmask))

        self.src = np.array([net(x.src) for x in r], np.uint32).reshape(-1, 2)
        self.dst = np.array([net(x.dst) for x in r], np.uint32).reshape(-1, 2)
        self.sport = np.array([x.sport or (0, 0xFFFF) for x in r], np.int64).reshape(-1, 2)
        self.dport = np.array([x.dport or (0, 0xFFFF) for x in r], np.int64).reshape(-1, 2)

    def verdicts(self, h: Headers) -> np.ndarray:
        """True (pass) / False (drop) per frame. Pure: the parsed headers in, a mask out."""
        sp = h.sport.astype(np.int64)[:, None]
        dp = h.dport.astype(np.int64)[:, None]
        match = ((self.proto < 0) | (h.proto[:, None] == self.proto))
        match &= (h.src4[:, None] & self.src[:, 1]) == self.src[:, 0]
        match &= (h.dst4[:, None] & self.dst[:, 1]) == self.dst[:, 0]
        match &= (sp >= self.sport[:, 0]) & (sp <= self.sport[:, 1])
        match &= (dp >= self.dport[:, 0]) & (dp <= self.dport[:, 1])
        # first matching rule; the extra last column is the default
        match = np.concatenate([match, np.ones((len(h), 1), bool)], axis=1)
        verdict = self.allow[np.argmax(match, axis=1)]
        return np.where(h.ipv4, verdict, h.valid & (h.ip_version == 0))


def process_batch(rx: nm.Ring, tx: nm.Ring, acl: Acl) -> tuple[int, int]:
    """Filter the frames ready on ``rx`` (as many as ``tx`` has room for) into ``tx``.

    Moves both rings' ``head``; no sync. Returns (passed, dropped)."""
    batch = rx.ready(limit=tx.space())
    if not len(batch):
        return 0, 0
    ok = acl.verdicts(parse_batch(batch))
    done = dispatch(rx, [tx], np.where(ok, 0, -1))
    return done.forwarded[0], done.dropped


def filter_once(inp: nm.Port, out: nm.Port, acl: Acl, timeout: float | None = 1.0) -> tuple[int, int]:
    """Wait for traffic (and for room on ``out``), filter one batch and send it."""
    rx, tx = inp.rx_rings[0], out.tx_rings[0]
    if tx.space() == 0:  # back-pressure: wait for room rather than drop
        out.poll(nm.POLLOUT, timeout)
    if rx.empty:
        inp.poll(nm.POLLIN, timeout)
    done = process_batch(rx, tx, acl)
    if done[0]:
        out.txsync()
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", required=True, help="input port")
    ap.add_argument("-o", required=True, help="output port")
    ap.add_argument("--rule", action="append", default=[], help="ACL line (repeat; first match wins)")
    ap.add_argument("--default", default="allow", choices=ACTIONS)
    ap.add_argument("-n", type=int, default=0, help="stop after this many packets (0: never)")
    args = ap.parse_args(argv)
    acl = Acl([Rule.parse(r) for r in args.rule], args.default)
    passed = dropped = 0
    with nm.open(args.i) as inp, nm.open(args.o) as out:
        while not args.n or passed + dropped < args.n:
            p, d = filter_once(inp, out, acl)
            passed, dropped = passed + p, dropped + d
    print(f"passed {passed}, dropped {dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
