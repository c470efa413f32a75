"""The pump of an emulated attachment: a VALE port and a peer port (``netmap:IFNAME``, with
``*`` its host rings too) forwarding both ways in batches, as a process of its own.

    python -m netmap_emu.attach.pump --ns NS VALE_PORT PEER_PORT

It prints ``ready PORT_IDX`` (or ``error MESSAGE``) on stdout once both ports are open, then
forwards until SIGTERM/SIGINT, until its parent (the supervisor) is gone, or until a port fails
(exit status 1, the reason on stderr). Cost per wake-up: one sync per port and direction and a
few µs per ring pair; payloads are copied when the two ports are different memories.
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from collections.abc import Sequence

from netmap_core import POLLIN, Port, Ring

__all__ = ["Pump", "main"]

#: the longest the pump sleeps without looking at its parent and its stop flag (seconds)
_IDLE_WAIT = 0.2


def _forward_all(srcs: Sequence[Ring], dsts: Sequence[Ring]) -> int:
    moved = 0
    for s in srcs:
        for d in dsts:
            moved += s.forward(d)
    return moved


class Pump:
    """Forwarding state between ``vale`` and ``peer`` (both open ports; the pump owns neither).

    Everything the peer receives (its NIC RX rings, and with ``*`` its host RX rings: what the
    OS stack sends on the interface) goes to the switch; what the switch delivers goes to the
    peer's NIC TX rings. The emulator's host TX ring cannot hand frames to the OS stack
    (spec/deviations.md), so nothing is sent there.
    """

    def __init__(self, vale: Port, peer: Port) -> None:
        self.vale, self.peer = vale, peer
        self.to_switch = 0
        self.from_switch = 0

    def step(self) -> int:
        """One round: pick up frames on both ports, forward them, hand them over. Returns the
        number of frames moved."""
        self.vale.rxsync()
        self.peer.rxsync()
        up = _forward_all(self.peer.rx_rings + self.peer.host_rx_rings, self.vale.tx_rings)
        down = _forward_all(self.vale.rx_rings, self.peer.tx_rings)
        if up:
            self.vale.txsync()
        if down:
            self.peer.txsync()
        self.to_switch += up
        self.from_switch += down
        return up + down


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netmap_emu.attach.pump", description=__doc__.splitlines()[0])
    ap.add_argument("--ns", required=True, help="emulator namespace")
    ap.add_argument("vale")
    ap.add_argument("peer")
    args = ap.parse_args(argv)
    os.environ["PYNETMAP_EMU_NS"] = args.ns
    parent = os.getppid()
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    import netmap_core

    from ..control import EmuControl

    try:
        vale = netmap_core.open(args.vale, backend="emu")
        try:
            peer = netmap_core.open(args.peer, backend="emu")
        except BaseException:
            vale.close()
            raise
        idx = EmuControl(args.ns).vale_list(vale.spec.name).port_idx
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return 1
    pump = Pump(vale, peer)
    print(f"ready {idx}", flush=True)
    fds = [vale.fileno(), peer.fileno()]
    try:
        while not stop and os.getppid() == parent:
            if pump.step():
                continue
            # a zero-timeout poll arms the descriptor (the emulator's VALE port signals only
            # after a poll found nothing) and catches what arrived since the step
            if vale.poll(POLLIN, 0) or peer.poll(POLLIN, 0):
                continue
            select.select(fds, [], [], _IDLE_WAIT)
    except Exception as exc:
        print(f"pump {args.vale} <-> {args.peer}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        peer.close()
        vale.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
