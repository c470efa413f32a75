"""The emulated kernel's private state of one ring (netmap's kring) as a 128-byte record, and the
header of an allocator's kernel-state segment: named fields, each tagged with who writes it.

netmap.h tags each netmap_ring field with its owner; this module does the same for the state
applications never map. Syncs read and write these words millions of times a second, so they
use plain u32 indexes into a memoryview (``KRING_WORDS`` * ring object + ``HWCUR`` ...), all
derived here from the dtype, never written as literals elsewhere::

    word  field       writer                 meaning (X = this ring, P = its pipe peer or X)
     0    hwcur       X's syncs              first slot the kernel has not consumed
     1    peer_tail   X's syncs              P's pipe_tail: X's txsync publishes it with hwcur
                                             in one aligned u64 store (crash-atomic)
     2    rhead       X's syncs (prologue)   head as last accepted from the application
     3    rcur        X's syncs (prologue)   cur as last accepted
     4    rtail       X's syncs              tail last shown to the application
     5    peer        control (ns lock)      P's ring object + 1 (X itself when unpaired)
     6    num_slots   control (ns lock)      ring size; the ring header's copy is the app's
     7    dir         control (ns lock)      NR_TX / NR_RX
     8    hwtail      X's syncs              netmap's hwtail: X's pipe_tail as X's last sync took it
     9    gone        control (ns lock)      a monitor ring whose port left netmap mode (G5)
    10    mon         control, under X's     topology generation of the monitors X delivers to;
                      ring lock              0 = nobody watches X
    11    (reserved)
    12-15 waiters     poll (sleepers arm),   binding ids sleeping in poll on X; 0 = free
                      syncs (wakers clear)
    16-17 slots       counting sync (u64)    slots X handed over (TX) or was given (RX)
    18-19 bytes       counting sync (u64)    the ``len`` of those slots, summed
    20-21 drops       counting sync (u64)    RX: packets a switch meant for X but dropped
    22-31 (reserved)

The counters (16-21) are statistics, never read by a sync: each is a u64 the sync that moved
the slots adds to once, under the lock of the ring it counts (TX: X's own txsync; RX: the
sender's sync that fills X -- a pipe peer's txsync under the pair's lock, a VALE delivery under
X's lock). ``netmap_emu.stats`` reads them without any lock.

A ring's ``pipe_tail`` is what its peer's syncs publish; its ``hwtail`` takes it only inside its
own sync, after the prologue (as netmap_pipe.c does), so the prologue and a reinit see the tail
the application was last shown. An unpaired ring (VALE, monitors) is its own peer: its
``peer_tail`` word is its hwtail as senders publish it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["KRING", "KRING_WRITERS", "KRING_WORDS", "HEADER", "HEADER_SIZE", "MAGIC", "VERSION",
           "HWCUR", "PEER_TAIL", "RHEAD", "RCUR", "RTAIL", "PEER", "NUM_SLOTS", "DIR", "HWTAIL",
           "GONE", "MON", "WAITERS", "N_WAITERS", "PAIR_WORDS", "SLOTS", "BYTES", "DROPS"]

N_WAITERS = 4

KRING = np.dtype([
    ("hwcur", "<u4"), ("peer_tail", "<u4"), ("rhead", "<u4"), ("rcur", "<u4"), ("rtail", "<u4"),
    ("peer", "<u4"), ("num_slots", "<u4"), ("dir", "<u4"), ("hwtail", "<u4"), ("gone", "<u4"),
    ("mon", "<u4"), ("reserved", "<u4"), ("waiters", "<u4", (N_WAITERS,)),
    ("slots", "<u8"), ("bytes", "<u8"), ("drops", "<u8"), ("reserved2", "<u4", (10,)),
])
assert KRING.itemsize == 128

#: who may write each field (see the table above)
KRING_WRITERS = {
    "hwcur": "sync", "peer_tail": "sync", "rhead": "sync", "rcur": "sync", "rtail": "sync",
    "peer": "control", "num_slots": "control", "dir": "control", "hwtail": "sync",
    "gone": "control", "mon": "control (ring lock)", "reserved": "nobody", "waiters": "poll",
    "slots": "counting sync", "bytes": "counting sync", "drops": "counting sync", "reserved2": "nobody",
}

KRING_WORDS = KRING.itemsize // 4


def _word(name: str) -> int:
    fields = KRING.fields
    assert fields is not None
    return int(fields[name][1]) // 4


HWCUR = _word("hwcur")
PEER_TAIL = _word("peer_tail")
RHEAD = _word("rhead")
RCUR = _word("rcur")
RTAIL = _word("rtail")
PEER = _word("peer")
NUM_SLOTS = _word("num_slots")
DIR = _word("dir")
HWTAIL = _word("hwtail")
GONE = _word("gone")
MON = _word("mon")
WAITERS = _word("waiters")
SLOTS = _word("slots")
BYTES = _word("bytes")
DROPS = _word("drops")
#: the words a sync owns and a fresh ring pair resets (everything before ``gone``)
PAIR_WORDS = GONE
assert HWCUR % 2 == 0 and PEER_TAIL == HWCUR + 1   # one aligned u64 publishes both
assert SLOTS % 2 == 0 and BYTES % 2 == 0 and DROPS % 2 == 0   # u64 counters, index = word // 2

#: header of the kernel-state segment, written once at creation (control path)
HEADER = np.dtype([("magic", "<u4"), ("version", "<u4"), ("nrings", "<u4"), ("nbufs", "<u4"),
                   ("reserved", "<u4", (12,))])
HEADER_SIZE = HEADER.itemsize
MAGIC = 0x4B4D4E50   # "PNMK"
VERSION = 2   # 2: the kring record grew to 128 bytes (counters)
