"""Strict rules across registrations of one ring (spec F5, B6): a pipe end closed while its peer
stays open keeps its kring and its ring, and the ring shows what its last user wrote, synced or
not. Strict mode on a descriptor opened on it again judges head and cur against where the
kernel's last txsync left the kring, as netmap's prologue does."""
from __future__ import annotations

import itertools
import os

import pytest

from netmap_core.errors import RingProtocolError

_n = itertools.count()


def _names() -> tuple[str, str]:
    name = f"sro{os.getpid() % 100000}x{next(_n)}"
    return f"netmap:{name}{{1@conf:slots=16", f"netmap:{name}}}1"


def test_a_reopened_end_is_judged_from_the_last_txsync(opener):
    m_name, s_name = _names()
    master = opener(m_name, rules="strict")
    slave = opener(s_name, rules="strict")
    tx = slave.tx_rings[0]
    tx.fill(3, lengths=60)
    slave.txsync()                       # the kernel's rhead is 3 from here
    tx.fill(2, lengths=60)               # head 5, never synced
    slave.close()
    again = opener(s_name, rules="strict")
    t2 = again.tx_rings[0]
    assert (t2.head, t2.cur) == (5, 5), "the kept ring shows what its last user wrote"
    t2.head = t2.cur = 4                 # inside [3, tail]: netmap accepts it, so must strict
    again.txsync()
    master.rxsync()
    assert master.rx_rings[0].space() == 4
    t2.head = t2.cur = 2                 # behind the last synced head: refused, named
    with pytest.raises(RingProtocolError) as e:
        again.txsync()
    assert (e.value.field, e.value.value) == ("head", 2)
