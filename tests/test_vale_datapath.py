"""The VALE syncs around the forwarding engine on real rings: NS_BUF_CHANGED cleared on the
slots a txsync consumed and an rxsync released, across the end of the ring (spec E6, E12), and
the emulator's counters exact for txsyncs that wrap and span several forwarding batches."""
from __future__ import annotations

import numpy as np
import pytest

from netmap_core import abi
from netmap_core.testing.vale import BCAST, frame, mac, recv_slots, send, unique_switch
from netmap_emu.testing.vale import ValeEnv

CHANGED = abi.NS_BUF_CHANGED


def _flags(ring, idx) -> list[int]:
    return [int(ring.slots["flags"][i]) for i in idx]


def test_syncs_clear_buf_changed_across_the_wrap(backend_name):
    with ValeEnv(backend_name) as env:
        a, b = env.switch(unique_switch(), 2, slots=64)
        tx, rx = a.tx_rings[0], b.rx_rings[0]
        n = tx.num_slots
        assert rx.num_slots == n, "the test wraps both rings at once"
        first = n - 5
        send(a, [frame(BCAST, mac(0))] * first)      # both rings' next slots: n - 5 onwards
        assert len(recv_slots(b)) == first
        b.rxsync()
        t0, r0 = tx.head, rx.head
        k = 10                                        # slots n - 5 .. 4: across the wrap
        send(a, [frame(BCAST, mac(0), fill=i) for i in range(k)], flags=CHANGED)
        sent = [(t0 + i) % tx.num_slots for i in range(k)]
        assert all(f & CHANGED == 0 for f in _flags(tx, sent)), "E6: cleared on consumed TX slots"
        got = recv_slots(b, release=False)
        assert len(got) == k and all(f & CHANGED == 0 for _, f in got)
        held = [(r0 + i) % rx.num_slots for i in range(k)]
        for i in held:                                # as after swapping a buffer in
            rx.slots["flags"][i] |= CHANGED
        rx.advance(k)
        b.rxsync()
        assert all(f & CHANGED == 0 for f in _flags(rx, held)), "E12: cleared on released RX slots"


def test_rxsync_leaves_flags_alone_when_nothing_is_flagged(backend_name):
    with ValeEnv(backend_name) as env:
        a, b = env.switch(unique_switch(), 2, slots=64)
        rx = b.rx_rings[0]
        send(a, [frame(BCAST, mac(0), size=3000)])    # two fragments: MOREFRAG, then not
        h = rx.head
        got = recv_slots(b)
        b.rxsync()
        assert [f for _, f in got] == [0x200 | abi.NS_MOREFRAG, 0x200]
        assert _flags(rx, [h, (h + 1) % rx.num_slots]) == [f for _, f in got]


def test_counters_exact_for_txsyncs_spanning_batches_and_the_wrap(backend_name):
    if backend_name != "emu":
        pytest.skip("per-ring counters are an emulator feature (spec/deviations.md)")
    from netmap_emu import stats

    sizes = np.array([60 + (i * 37) % 1400 for i in range(3000)])
    with ValeEnv() as env:
        sw = unique_switch()
        a, b = env.switch(sw, 2, slots=4096)
        tx = a.tx_rings[0]
        send(a, [frame(BCAST, mac(0))] * 2000)       # the next txsync wraps the TX ring
        recv_slots(b)
        b.rxsync()
        ready = tx.ready(3000)
        tx.buffers[ready.buf_idx.astype(np.int64), :14] = np.frombuffer(frame(BCAST, mac(0))[:14], np.uint8)
        tx.slots["len"][ready.slot_idx] = sizes
        tx.advance(3000)
        a.txsync()                                    # 3 forwarding batches in one txsync
        got = recv_slots(b)
        c = {(r.port, r.dir): r for r in stats.snapshot().rings}
    assert [len(p) for p, _ in got] == sizes.tolist()
    t, r = c[f"{sw}:p0", "tx"], c[f"{sw}:p1", "rx"]
    assert (t.slots, t.bytes) == (5000, 2000 * 60 + int(sizes.sum()))
    assert (r.slots, r.bytes, r.drops) == (5000, 2000 * 60 + int(sizes.sum()), 0)
