"""Two processes pass sequence-numbered packets through an emulated pipe, blocking in poll."""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from netmap_core import POLLIN, POLLOUT
from netmap_emu.testing import isolated_namespace, open_emu, segments

CTX = mp.get_context("fork")


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


def _receive(q, total, slots):
    with open_emu("netmap:seq}1") as s:
        rx = s.rx_rings[0]
        q.put("ready")
        expect, bad = 0, 0
        while expect < total:
            if not s.poll(POLLIN, 5.0):
                break
            batch = rx.ready()
            seqs = batch.gather(0, 8).view("<u8").ravel()
            if not np.array_equal(seqs, np.arange(expect, expect + len(batch), dtype=np.uint64)):
                bad += 1
            if np.any(batch.len != 60):
                bad += 1
            expect += len(batch)
            rx.advance(len(batch))
        s.rxsync()
        q.put((expect, bad))


def run(total, slots=1024):
    with open_emu(f"netmap:seq{{1@conf:slots={slots}") as m:
        tx = m.tx_rings[0]
        q = CTX.Queue()
        p = CTX.Process(target=_receive, args=(q, total, slots))
        p.start()
        assert q.get(timeout=10) == "ready"
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            if not m.poll(POLLOUT, 5.0):
                raise AssertionError(f"sender stalled at {sent}")
            k = min(tx.space(), total - sent)
            seq = np.arange(sent, sent + k, dtype=np.uint64).view(np.uint8).reshape(k, 8)
            tx.fill(k, data=seq, lengths=60)
            sent += k
        m.txsync()
        got, bad = q.get(timeout=60)
        dt = time.perf_counter() - t0
        p.join(10)
    assert (got, bad) == (total, 0)
    assert segments() == []
    return total / dt


def test_200k_packets_in_order():
    # order and completeness only: a stalled path fails through the 5 s poll timeouts (lost
    # wakeups are test_emu_poll's subject); a rate floor would fail on a slow (emulated) CPU
    assert run(200_000) > 0


def test_small_ring_many_wakeups():
    run(20_000, slots=8)


@pytest.mark.slow
def test_10_million_packets_in_order():
    run(10_000_000)
