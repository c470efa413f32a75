"""Batch helpers: slot moves, dispatch to many rings, flow hashing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from layout import build
from netmap_core import abi
from netmap_core.batch import dispatch, flow_hash
from netmap_core.errors import InvalidRequestError
from netmap_core.ring import Ring


def rings(rx_n=16, tx=(8, 8, 8)):
    region, offs, _ = build(tx=tx, rx=(rx_n,))
    txs = [Ring(region, o, name=f"tx{i}") for i, o in enumerate(offs[:len(tx)])]
    return Ring(region, offs[-1], name="rx0"), txs


def receive(rx, lens):
    rx.header["tail"] = (rx.head + len(lens)) % rx.num_slots
    for j, ln in enumerate(lens):
        i = (rx.head + j) % rx.num_slots
        rx.slots["len"][i] = ln
        rx.buf(i)[0] = ln  # mark each frame with its length


def test_dispatch_zero_copy_keeps_order_per_destination_and_counts_drops():
    rx, txs = rings()
    txs[2].header["tail"] = 1  # only one free slot there
    receive(rx, [60 + i for i in range(9)])
    choice = np.array([0, 1, 2, 0, 2, -1, 1, 2, 0])
    out = dispatch(rx, txs, choice)
    assert out.forwarded == (3, 2, 1) and out.dropped == 3
    assert rx.head == 9 and [t.head for t in txs] == [3, 2, 1]
    assert list(txs[0].slots["len"][:3]) == [60, 63, 68]
    assert [int(txs[0].buf(i)[0]) for i in range(3)] == [60, 63, 68]
    assert list(txs[1].slots["len"][:2]) == [61, 66]
    assert txs[2].slots["len"][0] == 62  # the first that fit is kept
    assert all(txs[0].slots["flags"][:3] & abi.NS_BUF_CHANGED)


# no per-example deadline: the property is about buffers, not speed (an emulated CPU is slow)
@settings(deadline=None)
@given(st.lists(st.integers(-1, 2), max_size=15))
def test_dispatch_conserves_buffers(choice):
    rx, txs = rings()
    receive(rx, [60] * len(choice))
    before = sorted(np.concatenate([rx.slots["buf_idx"]] + [t.slots["buf_idx"] for t in txs]))
    out = dispatch(rx, txs, np.array(choice, dtype=np.int64))
    after = sorted(np.concatenate([rx.slots["buf_idx"]] + [t.slots["buf_idx"] for t in txs]))
    assert before == after
    assert sum(out.forwarded) + out.dropped == len(choice)


def test_dispatch_refuses_more_choices_than_ready_slots_and_bad_targets():
    rx, txs = rings()
    receive(rx, [60, 60])
    with pytest.raises(InvalidRequestError, match="only 2 ready"):
        dispatch(rx, txs, np.zeros(3, np.int64))
    with pytest.raises(InvalidRequestError, match="only 3 rings"):
        dispatch(rx, txs, np.array([0, 3]))
    assert rx.head == 0


def frame(src, dst, sport, dport, proto=17):
    f = np.zeros(60, np.uint8)
    f[12:14] = [8, 0]
    f[14] = 0x45
    f[23] = proto
    f[26:30] = src
    f[30:34] = dst
    f[34:36] = [sport >> 8, sport & 255]
    f[36:38] = [dport >> 8, dport & 255]
    return f


def test_flow_hash_is_symmetric_and_spreads_flows():
    fwd = np.stack([frame([10, 0, 0, i], [10, 1, 0, 1], 1000 + i, 80) for i in range(64)])
    rev = np.stack([frame([10, 1, 0, 1], [10, 0, 0, i], 80, 1000 + i) for i in range(64)])
    assert (flow_hash(fwd) == flow_hash(rev)).all()
    assert len(set((flow_hash(fwd) % 4).tolist())) == 4
    with pytest.raises(InvalidRequestError, match=r"\(k, >= 38\)"):
        flow_hash(np.zeros((2, 20), np.uint8))
