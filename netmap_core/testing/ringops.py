"""Ring-operation programs on a pipe: a sequence of user operations (fill and publish slots,
txsync, rxsync, read and release slots, poll) run on both ends, checked against netmap's laws.

The laws (spec B2, B3, F5): the sender never sees more than ``n - 1`` minus what is in flight
free; after an rxsync the receiver sees exactly what is in flight; frames arrive whole and in
the order they were sent. :func:`run_ring_ops` raises AssertionError naming the step that
broke one. Hypothesis strategies that build programs are in ``netmap_core.testing.strategies``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netmap_core.errors import InvalidRequestError
from netmap_core.port import POLLIN, POLLOUT, Port

__all__ = ["RingOp", "OP_KINDS", "RingOpsResult", "run_ring_ops"]

#: what a step does: ``send`` fills and publishes up to ``count`` TX slots of the sender;
#: ``receive`` reads and releases up to ``count`` RX slots of the receiver; ``txsync`` and
#: ``rxsync`` are the syscalls; ``poll`` polls the sender (POLLOUT), then the receiver
#: (POLLIN), timeout 0
OP_KINDS = ("send", "receive", "txsync", "rxsync", "poll")
_SEQ = 8   # bytes of the sequence number that starts every frame


@dataclass(frozen=True)
class RingOp:
    """One step: ``kind`` (see :data:`OP_KINDS`) and, for send/receive, a slot ``count``."""

    kind: str
    count: int = 0

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise InvalidRequestError(22, f"RingOp.kind={self.kind!r}: allowed {', '.join(OP_KINDS)}")
        if self.count < 0:
            raise InvalidRequestError(22, f"RingOp.count={self.count!r}: allowed 0 or more")


@dataclass(frozen=True)
class RingOpsResult:
    """What a program did: frames handed to the ring, frames read back (in order)."""

    sent: int
    received: int


def run_ring_ops(sender: Port, receiver: Port, ops: Sequence[RingOp]) -> RingOpsResult:
    """Run ``ops`` with ``sender``'s TX ring 0 feeding ``receiver``'s RX ring 0 (the two ends of
    one pipe, both opened fresh), checking the laws after every step. Owns both rings while it
    runs. Cost: a few µs per step plus the payload copies (batch fill and gather)."""
    tx, rx = sender.tx_rings[0], receiver.rx_rings[0]
    n = tx.num_slots
    sent = published = inflight = got = 0   # published: handed to the kernel by a txsync
    for step, op in enumerate(ops):
        where = f"step {step} ({op.kind} {op.count})"
        if op.kind == "send":
            k = min(op.count, tx.space())
            rows = np.zeros((k, 2 * _SEQ), dtype=np.uint8)
            rows[:, :_SEQ] = np.arange(sent, sent + k, dtype="<u8").view(np.uint8).reshape(k, _SEQ)
            assert tx.fill(k, data=rows) == k, f"{where}: fill took fewer than the {k} free slots"
            sent += k
        elif op.kind == "receive":
            k = min(op.count, rx.space())
            seqs = rx.ready(k).gather(0, _SEQ).copy().view("<u8").ravel().tolist()
            assert seqs == list(range(got, got + k)), f"{where}: read {seqs}, expected from {got}"
            rx.advance(k)
            got += k
        elif op.kind == "txsync":
            sender.txsync()
            published = sent
        elif op.kind == "rxsync":
            receiver.rxsync()
        else:
            sender.poll(POLLOUT, 0)     # its txsync publishes what was sent
            published = sent
            receiver.poll(POLLIN, 0)    # its rxsync takes it in
        inflight = published - got
        if op.kind in ("rxsync", "poll"):
            assert rx.space() == inflight, f"{where}: receiver sees {rx.space()}, in flight {inflight}"
        assert 0 <= rx.space() <= inflight, f"{where}: receiver holds {rx.space()}, in flight {inflight}"
        assert tx.space() + (sent - got) <= n - 1, (
            f"{where}: sender offers {tx.space()} free slots with {sent - got} not yet released "
            f"(n={n}: at most n-1)")
    return RingOpsResult(sent, got)
