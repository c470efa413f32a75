"""Builds netmap-layout memory in a plain bytearray, so core tests need no backend.

Laid out as netmap does (spec A1, A8, A10): netmap_if at 0, rings next, buffer pool last.
"""
from __future__ import annotations

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo


def build(tx=(8,), rx=(8,), *, buf_size=2048, extra=16, bound_tx=None, bound_rx=None,
          host=(0, 0), name="test:0"):
    """Region with one netmap_if and rings of the given slot counts. ``bound_*`` lists the
    ring indexes whose ring_ofs is written (default: all); the others stay 0 (unbound)."""
    ntx, nrx = len(tx), len(rx)
    nhtx, nhrx = host
    nifp_size = abi.NETMAP_IF_RING_OFS_OFFSET + 8 * (ntx + nhtx + nrx + nhrx)
    ring_sizes = [abi.NETMAP_RING_SLOTS_OFFSET + 16 * n for n in list(tx) + list(rx)]
    ring_offsets, pos = [], -(-nifp_size // 256) * 256
    for size in ring_sizes:
        ring_offsets.append(pos)
        pos += -(-size // 256) * 256
    pool = pos
    nbufs = 2 + sum(tx) + sum(rx) + extra
    region = bytearray(pool + nbufs * buf_size)
    arr = np.frombuffer(region, dtype=np.uint8)
    nifp = np.ndarray((), abi.netmap_if, arr, 0)
    nifp["ni_name"] = name.encode()
    nifp["ni_tx_rings"], nifp["ni_rx_rings"] = ntx - nhtx, nrx - nhrx
    nifp["ni_host_tx_rings"], nifp["ni_host_rx_rings"] = nhtx, nhrx
    ofs = np.ndarray((ntx + nrx,), "<i8", arr, abi.NETMAP_IF_RING_OFS_OFFSET)
    nxt = 2
    for i, n in enumerate(list(tx) + list(rx)):
        is_tx = i < ntx
        idx = i if is_tx else i - ntx
        bound = (bound_tx if is_tx else bound_rx)
        if bound is None or idx in bound:
            ofs[i] = ring_offsets[i]
        hdr = np.ndarray((), abi.netmap_ring, arr, ring_offsets[i])
        hdr["buf_ofs"] = pool - ring_offsets[i]
        hdr["num_slots"], hdr["nr_buf_size"] = n, buf_size
        hdr["ringid"], hdr["dir"] = idx, abi.NR_TX if is_tx else abi.NR_RX
        hdr["tail"] = n - 1 if is_tx else 0
        slots = np.ndarray((n,), abi.netmap_slot, arr, ring_offsets[i] + 256)
        slots["buf_idx"] = np.arange(nxt, nxt + n)
        slots["len"] = buf_size
        nxt += n
    info = RegisterInfo(name=name, mode=abi.NR_REG_ALL_NIC, ringid=0, flags=0, mem_id=1,
                        memsize=len(region), offset=0, tx_rings=ntx, rx_rings=nrx,
                        tx_slots=tx[0] if tx else 0, rx_slots=rx[0] if rx else 0,
                        host_tx_rings=nhtx, host_rx_rings=nhrx, extra_bufs=0)
    return region, ring_offsets, info


class FakeBinding:
    """A Binding over a built region whose syncs only count calls (no kernel semantics)."""

    def __init__(self, region, info, rules="strict"):
        self.region, self.info, self.rules = region, info, rules
        self.calls: list[str] = []

    def txsync(self):
        self.calls.append("txsync")

    def rxsync(self):
        self.calls.append("rxsync")

    def poll(self, events, timeout):
        self.calls.append(f"poll {events} {timeout}")
        return events

    def fileno(self):
        return 0

    def close(self):
        self.calls.append("close")
