"""NAT: source address and port translation (NAPT) of TCP/UDP over IPv4, batch-first.

Outbound frames get the public address and a public port allocated per flow (protocol,
inside address, inside port); inbound frames to a known public port get the inside address
and port back. Headers are rewritten in the RX buffers with incremental checksum updates, then
the slots are moved (zero copy) to the other side. Frames the NAT cannot translate (not
TCP/UDP over IPv4, malformed, unknown inbound port, no public port left) are dropped.

    python examples/nat.py --inside netmap:nat}in --outside netmap:nat}out --public 203.0.113.7

Cost per batch: one header parse and one rewrite (numpy), plus one dictionary lookup per
distinct flow in the batch (not per frame); a new flow costs ~1 µs. ~2 µs of CPU per frame in
batches of 1024 over 256 flows (bench/README.md).
"""
from __future__ import annotations

import argparse
import ipaddress

import numpy as np

import netmap_core as nm
from netmap_core.batch import dispatch
from netmap_core.headers import Headers, parse_batch
from netmap_core.rewrite import rewrite_ipv4


class Nat:
    """The translation table: flows (proto, inside address, inside port) <-> public ports."""

    def __init__(self, public: str, ports: tuple[int, int] = (20000, 60000)) -> None:
        self.public = int(ipaddress.IPv4Address(public))
        self.ports = ports
        self._next = ports[0]
        self.out: dict[int, int] = {}     # flow key -> public port
        self.back: dict[int, int] = {}    # proto << 16 | public port -> flow key
        self.exhausted = 0                # new flows refused: no public port left

    @staticmethod
    def _key(proto: np.ndarray, addr: np.ndarray, port: np.ndarray) -> np.ndarray:
        return (proto.astype(np.uint64) << np.uint64(48) | addr.astype(np.uint64) << np.uint64(16)
                | port.astype(np.uint64))

    def _alloc(self, key: int) -> int:
        if self._next > self.ports[1]:
            self.exhausted += 1
            return -1
        port, self._next = self._next, self._next + 1
        self.out[key] = port
        self.back[(key >> 48) << 16 | port] = key
        return port

    def outbound(self, h: Headers) -> tuple[np.ndarray, np.ndarray]:
        """(translate mask, public source port) per frame; allocates ports for new flows."""
        ok = h.ipv4 & h.has_ports
        keys = self._key(h.proto, h.src4, h.sport)
        uniq, inv = np.unique(keys[ok], return_inverse=True)
        ports = np.array([self.out.get(k) or self._alloc(k) for k in uniq.tolist()], np.int64)
        sport = np.zeros(len(h), np.int64)
        sport[ok] = ports[inv] if ports.size else 0
        ok &= sport > 0
        return ok, sport.clip(0)

    def inbound(self, h: Headers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(translate mask, inside address, inside port) per frame, for known public ports."""
        ok = h.ipv4 & h.has_ports & (h.dst4 == self.public)
        look = h.proto.astype(np.int64) << 16 | h.dport
        uniq, inv = np.unique(look[ok], return_inverse=True)
        keys = np.array([self.back.get(k, -1) for k in uniq.tolist()], np.int64)
        key = np.full(len(h), -1, np.int64)
        key[ok] = keys[inv] if keys.size else -1
        ok &= key >= 0
        key = key.clip(0)
        return ok, (key >> 16) & 0xFFFFFFFF, key & 0xFFFF


def process_batch(rx: nm.Ring, tx: nm.Ring, nat: Nat, *, outbound: bool) -> tuple[int, int]:
    """Translate the frames ready on ``rx`` (as many as ``tx`` has room for) into ``tx``.

    Rewrites the RX buffers in place, then moves the slots. Moves both rings' ``head``; no
    sync. Returns (forwarded, dropped)."""
    batch = rx.ready(limit=tx.space())
    if not len(batch):
        return 0, 0
    h = parse_batch(batch)
    if outbound:
        ok, sport = nat.outbound(h)
        rewrite_ipv4(rx.buffers, batch.buf_idx, h, src=nat.public, sport=sport, where=ok)
    else:
        ok, addr, dport = nat.inbound(h)
        rewrite_ipv4(rx.buffers, batch.buf_idx, h, dst=addr, dport=dport, where=ok)
    done = dispatch(rx, [tx], np.where(ok, 0, -1))
    return done.forwarded[0], done.dropped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inside", required=True, help="port facing the inside hosts")
    ap.add_argument("--outside", required=True, help="port facing the outside")
    ap.add_argument("--public", required=True, help="public IPv4 address")
    ap.add_argument("-n", type=int, default=0, help="stop after this many packets (0: never)")
    args = ap.parse_args(argv)
    nat = Nat(args.public)
    fwd = dropped = 0
    with nm.open(args.inside) as ins, nm.open(args.outside) as outs:
        while not args.n or fwd + dropped < args.n:
            if ins.rx_rings[0].empty and outs.rx_rings[0].empty:
                ins.poll(nm.POLLIN, 0.01)
                outs.poll(nm.POLLIN, 0.01)
            for src, dst, way in ((ins, outs, True), (outs, ins, False)):
                f, d = process_batch(src.rx_rings[0], dst.tx_rings[0], nat, outbound=way)
                if f:
                    dst.txsync()
                fwd, dropped = fwd + f, dropped + d
    print(f"forwarded {fwd}, dropped {dropped}, flows {len(nat.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
