"""The VALE forwarding engine and the learning bridge on synthetic numpy rings (no shm)."""
from __future__ import annotations

import numpy as np
import pytest

from netmap_core import abi
from netmap_emu.datapath.forward import Destinations, SourceSlots, forward, packetize
from netmap_emu.datapath.lookup import (
    NM_BDG_BROADCAST,
    NM_BDG_NOPORT,
    LearningBridge,
    drop_all,
    flood_all,
    int_to_mac,
    mac_hash,
    mac_to_int,
)

BCAST = b"\xff" * 6
MAC = {i: bytes([0x02, 0, 0, 0, 0, i]) for i in range(256)}


def frame(dst: bytes, src: bytes, size: int = 60, fill: int = 0) -> bytes:
    body = bytes((fill + j) & 0xFF for j in range(max(0, size - 14)))
    return (dst + src + b"\x88\xb5" + body)[:size]


class MemRx:
    """An RX ring in plain numpy: hwcur/hwtail kept here, as a backend keeps them in its kring."""

    def __init__(self, n: int = 64, bsize: int = 2048, first_buf: int = 2) -> None:
        self.slots = np.zeros(n, dtype=abi.netmap_slot)
        self.slots["buf_idx"] = np.arange(first_buf, first_buf + n)
        self.slots["len"] = bsize
        self.buffers = np.zeros((first_buf + n, bsize), dtype=np.uint8)
        self.hwcur = self.hwtail = 0
        self.n = n
        self.leases = 0

    def lease(self):
        self.leases += 1
        used = (self.hwtail - self.hwcur) % self.n
        return self.hwtail, self.n - 1 - used

    def account(self, filled: int, nbytes: int, dropped: int) -> None:
        self.counted = getattr(self, "counted", 0) + filled

    def commit(self, filled: int) -> None:
        self.hwtail = (self.hwtail + filled) % self.n

    def take(self):
        """Received (payload, flags) per slot since the last take; releases them."""
        out = []
        i = self.hwcur
        while i != self.hwtail:
            s = self.slots[i]
            out.append((bytes(self.buffers[s["buf_idx"], : s["len"]]), int(s["flags"])))
            i = (i + 1) % self.n
        self.hwcur = self.hwtail
        return out

    def frames(self):
        """Received frames with fragments joined."""
        out, cur = [], b""
        for data, flags in self.take():
            cur += data
            if not flags & abi.NS_MOREFRAG:
                out.append(cur)
                cur = b""
        return out


class Switch:
    def __init__(self, nports: int = 3, rings=1, slots: int = 64, bsize: int = 2048) -> None:
        rings = rings if isinstance(rings, (list, tuple)) else [rings] * nports
        self.rx = {p: [MemRx(slots, bsize) for _ in range(rings[p])] for p in range(nports)}
        self.nrx = np.zeros(256, dtype=np.int64)
        for p, rs in self.rx.items():
            self.nrx[p] = len(rs)
        self.bridge = LearningBridge()
        self.unbound: set = set()

    def dests(self, hdr=None) -> Destinations:
        return Destinations(active=np.array(sorted(self.rx)), num_rx_rings=self.nrx,
                            ring=lambda p, r: None if (p, r) in self.unbound else self.rx[p][r],
                            hdr_len=hdr)

    def send(self, port: int, frames, ring: int = 0, lookup=None, frag: int | None = None,
             flags=None, **kw):
        src = source(frames, port, ring, frag=frag, flags=flags)
        return forward(src, lookup or self.bridge, self.dests(kw.pop("hdr", None)), **kw)

    def got(self, port: int, ring: int = 0):
        return self.rx[port][ring].frames()


def source(frames, port, ring=0, frag=None, flags=None, bsize=2048, hdr_len=0):
    """TX slots holding ``frames`` split into ``frag``-byte fragments, buffers from 2 on."""
    lens, fl = [], []
    for f in frames:
        size = frag or bsize
        parts = [f[i:i + size] for i in range(0, len(f), size)] or [b""]
        for j, p in enumerate(parts):
            lens.append(len(p))
            fl.append(abi.NS_MOREFRAG if j < len(parts) - 1 else 0)
    n = len(lens)
    bufs = np.zeros((n + 2, bsize), dtype=np.uint8)
    pos = 0
    for f in frames:
        size = frag or bsize
        parts = [f[i:i + size] for i in range(0, len(f), size)] or [b""]
        for p in parts:
            bufs[pos + 2, :len(p)] = np.frombuffer(p, dtype=np.uint8)
            pos += 1
    fl = np.array(fl, dtype=np.uint16) if flags is None else np.asarray(flags, dtype=np.uint16)
    return SourceSlots(buf_idx=np.arange(2, n + 2, dtype=np.uint32), len=np.array(lens, dtype=np.uint16),
                       flags=fl, buffers=bufs, port=port, ring=ring, hdr_len=hdr_len)


# --- learning bridge ------------------------------------------------------------------------

def test_broadcast_floods_to_all_but_sender_and_teaches_source():
    sw = Switch(3)
    f = frame(BCAST, MAC[0])
    st = sw.send(0, [f])
    assert sw.got(1) == [f] and sw.got(2) == [f] and sw.got(0) == []
    assert st.delivered[1] == st.delivered[2] == 1 and st.delivered[0] == 0
    assert sw.bridge.entries() == {int.from_bytes(MAC[0], "big"): 0}


def test_unicast_goes_to_learned_port_only():
    sw = Switch(3)
    sw.send(2, [frame(BCAST, MAC[2])])
    for p in range(3):
        sw.got(p)
    f = frame(MAC[2], MAC[0])
    sw.send(0, [f])
    assert sw.got(2) == [f]
    assert sw.got(1) == [] and sw.got(0) == []


def test_unknown_unicast_and_multicast_flood():
    sw = Switch(3)
    unknown = frame(MAC[77], MAC[1])
    mcast = frame(b"\x01\x00\x5e\x00\x00\x01", MAC[1])
    sw.send(1, [unknown, mcast])
    assert sw.got(0) == [unknown, mcast] and sw.got(2) == [unknown, mcast] and sw.got(1) == []


def test_unicast_to_own_mac_is_dropped_even_within_one_batch():
    sw = Switch(3)
    a = frame(BCAST, MAC[0], fill=1)
    echo = frame(MAC[0], MAC[9], fill=2)   # learned in this very batch: A -> port 0
    st = sw.send(0, [a, echo])
    assert sw.got(1) == [a] and sw.got(2) == [a]
    assert st.no_dest == 1


def test_destination_looked_up_before_a_later_source_in_the_batch():
    sw = Switch(3)
    sw.send(1, [frame(BCAST, MAC[5])])      # MAC 5 at port 1
    sw.got(0), sw.got(2)
    first = frame(MAC[5], MAC[7], fill=3)   # port 0: to MAC 5 (still at port 1)
    moved = frame(BCAST, MAC[5], fill=4)    # then port 0 claims MAC 5
    sw.send(0, [first, moved])
    assert sw.got(1) == [first, moved]
    assert sw.bridge.entries()[int.from_bytes(MAC[5], "big")] == 0


def test_short_frames_dropped_and_teach_nothing():
    sw = Switch(2)
    frames = [frame(BCAST, MAC[0])[:n] for n in (0, 12, 13, 14)]
    st = sw.send(0, frames)
    assert sw.got(1) == [frames[3]]
    assert st.no_dest == 3


def test_short_frame_does_not_learn():
    sw = Switch(2)
    sw.send(0, [frame(MAC[8], MAC[3])[:13]])
    assert sw.bridge.entries() == {}


def test_multicast_source_not_learned_and_no_learn_flag_ignored():
    sw = Switch(2)
    sw.send(0, [frame(BCAST, b"\x03" + MAC[4][1:])])
    assert sw.bridge.entries() == {}
    sw.send(0, [frame(BCAST, MAC[4])], flags=[abi.NS_NO_LEARN])
    assert sw.bridge.entries() == {int.from_bytes(MAC[4], "big"): 0}


def test_repeated_source_not_relearned_after_move_quirk():
    """netmap re-learns only when a port's source MAC changes: a MAC that moved to another
    port and back stays at the other port until the first port sends from another MAC."""
    sw = Switch(3)
    a = int.from_bytes(MAC[6], "big")
    sw.send(0, [frame(BCAST, MAC[6])])
    sw.send(1, [frame(BCAST, MAC[6])])
    assert sw.bridge.entries()[a] == 1
    sw.send(0, [frame(BCAST, MAC[6])])
    assert sw.bridge.entries()[a] == 1
    sw.send(0, [frame(BCAST, MAC[9]), frame(BCAST, MAC[6])])
    assert sw.bridge.entries()[a] == 0


def test_hash_collisions_overwrite():
    macs = np.arange(1, 200000, dtype=np.uint64) | np.uint64(0x020000000000)
    h = mac_hash(macs)
    assert h.min() >= 0 and h.max() < 1024
    i, j = np.flatnonzero(h == h[0])[:2]
    m1, m2 = int_to_mac(int(macs[i])), int_to_mac(int(macs[j]))
    sw = Switch(3)
    sw.send(0, [frame(BCAST, m1)])
    sw.send(1, [frame(BCAST, m2)])
    assert sw.bridge.entries() == {int(macs[j]): 1}
    for p in range(3):
        sw.got(p)
    to_m1 = frame(m1, MAC[50])
    sw.send(2, [to_m1])               # m1 forgotten: flooded
    assert sw.got(0) == [to_m1] and sw.got(1) == [to_m1]


def test_table_in_shared_buffer_and_clear():
    buf = bytearray(LearningBridge.NBYTES)
    a, b = LearningBridge(buf), LearningBridge(buf)
    sw = Switch(2)
    sw.bridge = a
    sw.send(1, [frame(BCAST, MAC[1])])
    assert b.entries() == {int.from_bytes(MAC[1], "big"): 1}
    b.clear()
    assert a.entries() == {}
    with pytest.raises(ValueError, match="need"):
        LearningBridge(bytearray(10))


def test_mac_roundtrip():
    assert int(mac_to_int(MAC[3])[0]) == 0x020000000003
    assert int_to_mac(0x020000000003) == MAC[3]


# --- forwarding mechanics -------------------------------------------------------------------

def test_full_ring_keeps_first_that_fit_and_counts_drops():
    sw = Switch(2, slots=8)
    sw.send(1, [frame(BCAST, MAC[1])])
    sw.got(0)
    frames = [frame(MAC[1], MAC[0], fill=i) for i in range(20)]
    st = sw.send(0, frames)
    assert sw.got(1) == frames[:7]
    assert st.delivered[1] == 7 and st.dropped[1] == 13
    more = [frame(MAC[1], MAC[0], fill=99)]
    sw.send(0, more)
    assert sw.got(1) == more


def test_full_ring_stops_at_first_packet_that_does_not_fit():
    sw = Switch(2, slots=8)                              # 7 free slots
    big = frame(BCAST, MAC[0], size=3000, fill=1)        # 2 fragments: would need slots 7 and 8
    small = frame(BCAST, MAC[0], fill=2)
    st = sw.send(0, [small] * 6 + [big, small], frag=2048)
    assert sw.got(1) == [small] * 6                      # the last small one is not squeezed in
    assert st.delivered[1] == 6 and st.dropped[1] == 2


def test_fragments_flags_and_payload():
    sw = Switch(2)
    two = frame(BCAST, MAC[0], size=3000, fill=5)
    three = frame(BCAST, MAC[0], size=4106, fill=6)
    one = frame(BCAST, MAC[0], fill=7)
    sw.send(0, [two, three, one], frag=2048)
    slots = sw.rx[1][0].take()
    assert [f for _, f in slots] == [0x220, 0x200, 0x320, 0x320, 0x300, 0x100]
    assert [len(d) for d, _ in slots] == [2048, 952, 2048, 2048, 10, 60]
    assert b"".join(d for d, _ in slots[:2]) == two
    assert b"".join(d for d, _ in slots[2:5]) == three


def test_trailing_morefrag_sent_truncated():
    sw = Switch(2)
    f = frame(BCAST, MAC[0])
    sw.send(0, [f], flags=[abi.NS_MOREFRAG])
    assert sw.rx[1][0].take() == [(f, 0x100)]


def test_trailing_incomplete_multi_slot_packet_closed_at_head():
    starts, nfr = packetize(np.array([0, abi.NS_MOREFRAG, abi.NS_MOREFRAG], dtype=np.uint16))
    assert starts.tolist() == [0, 1] and nfr.tolist() == [1, 2]


def test_sixty_four_fragments_pass_sixty_five_dropped():
    sw = Switch(2, slots=256)
    ok = frame(BCAST, MAC[0], size=64 * 20, fill=1)
    bad = frame(BCAST, MAC[0], size=65 * 20, fill=2)
    st = sw.send(0, [ok, bad], frag=20)
    got = sw.rx[1][0].take()
    assert len(got) == 64 and all(f == (64 << 8) | abi.NS_MOREFRAG for _, f in got[:-1])
    assert got[-1][1] == 64 << 8
    assert st.no_dest == 1


def test_never_back_to_sender_and_flood_without_peers():
    sw = Switch(1)
    st = sw.send(0, [frame(BCAST, MAC[0])])
    assert sw.got(0) == [] and st.no_dest == 1


def test_ring_selection_unicast_mod_and_flood_ring0():
    sw = Switch(2, rings=[1, 3])
    sw.send(1, [frame(BCAST, MAC[1])])
    sw.got(0)
    u1 = frame(MAC[1], MAC[0], fill=1)
    u5 = frame(MAC[1], MAC[0], fill=5)
    sw.send(0, [u1], ring=1)
    sw.send(0, [u5], ring=5)
    assert sw.got(1, 1) == [u1] and sw.got(1, 2) == [u5] and sw.got(1, 0) == []
    b = frame(BCAST, MAC[0], fill=9)
    sw.send(0, [b, u1], ring=1)
    assert sw.got(1, 0) == [b] and sw.got(1, 1) == [u1]


def test_broadcast_duplication_quirk_on_request():
    sw = Switch(2, rings=[1, 3])
    sw.send(1, [frame(BCAST, MAC[1])])
    b = frame(BCAST, MAC[0], fill=9)
    u = frame(MAC[1], MAC[0], fill=1)
    sw.send(0, [b, u], ring=2, dup_broadcast=True)
    assert sw.got(1, 0) == [b] and sw.got(1, 2) == [b, u]


def test_unbound_destination_ring_drops():
    sw = Switch(3)
    sw.unbound.add((2, 0))
    st = sw.send(0, [frame(BCAST, MAC[0])])
    assert sw.got(1) != [] and st.dropped[2] == 1 and st.delivered[2] == 0
    assert st.touched == {(1, 0)}


def test_unicast_and_broadcast_merged_in_order():
    sw = Switch(3)
    sw.send(1, [frame(BCAST, MAC[1])])
    sw.got(2), sw.got(0)
    seq = [frame(MAC[1], MAC[0], fill=1), frame(BCAST, MAC[0], fill=2), frame(MAC[1], MAC[0], fill=3)]
    sw.send(0, seq)
    assert sw.got(1) == seq and sw.got(2) == [seq[1]]


# --- programmable lookup --------------------------------------------------------------------

def test_lookup_called_once_per_batch_with_arrays():
    sw = Switch(3)
    seen = []

    def lk(b):
        seen.append(b)
        assert not b.head.flags.writeable
        return np.where(b.head[:, 14] == 1, 2, np.where(b.head[:, 14] == 2, NM_BDG_NOPORT, NM_BDG_BROADCAST))

    frames = [frame(MAC[9], MAC[0], fill=1), frame(MAC[9], MAC[0], fill=2), frame(MAC[9], MAC[0], fill=3)]
    st = sw.send(0, frames, lookup=lk)
    assert len(seen) == 1 and len(seen[0]) == 3 and seen[0].src_port == 0
    assert int(seen[0].dst[0]) == 0x020000000009 and seen[0].len.tolist() == [60, 60, 60]
    assert seen[0].ethertype.tolist() == [0x88B5] * 3
    assert sw.got(2) == [frames[0], frames[2]] and sw.got(1) == [frames[2]]
    assert st.no_dest == 1


def test_lookup_may_choose_rings_and_invalid_ports_drop():
    sw = Switch(3, rings=[1, 4, 1])
    f = frame(MAC[9], MAC[0])
    sw.send(0, [f, f, f, f], lookup=lambda b: (np.array([1, 0, 300, 2]), np.array([6, 0, 0, 0])))
    assert sw.got(1, 2) == [f] and sw.got(2) == [f] and sw.got(0) == []


def test_flood_and_drop_helpers():
    sw = Switch(3)
    f = frame(MAC[9], MAC[0])
    sw.send(0, [f], lookup=flood_all)
    assert sw.got(1) == [f] and sw.got(2) == [f]
    st = sw.send(0, [f], lookup=drop_all)
    assert st.no_dest == 1 and sw.got(1) == []


def test_batches_never_split_packets():
    sizes = []
    sw = Switch(2, slots=4096)

    def lk(b):
        sizes.append(len(b))
        return np.full(len(b), NM_BDG_BROADCAST)

    f = frame(BCAST, MAC[0], size=100)
    st = sw.send(0, [f] * 3000, lookup=lk)
    assert sizes == [1024, 1024, 952] and st.batches == 3
    sizes.clear()
    sw.got(1)
    f3 = frame(BCAST, MAC[0], size=60)
    sw.send(0, [f3] * 400, lookup=lk, frag=20)   # 3 fragments each
    assert sizes == [342, 58]                    # 342 * 3 = 1026 slots >= 1024
    assert sw.rx[1][0].hwtail == (3000 + 1200) % 4096


def test_batch_size_parameter():
    sizes = []
    sw = Switch(2)
    sw.send(0, [frame(BCAST, MAC[0])] * 10, batch_slots=4,
            lookup=lambda b: (sizes.append(len(b)), np.full(len(b), NM_BDG_BROADCAST))[1])
    assert sizes == [4, 4, 2]


# --- several batches in one send: one lookup call, one delivery ----------------------------

class CountingBridge(LearningBridge):
    """The learning bridge, counting its calls and the packets of each."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def __call__(self, batch):
        self.calls.append(len(batch))
        return super().__call__(batch)


def test_batch_free_lookup_is_called_once_per_send():
    sw = Switch(3, slots=4096)
    sw.bridge = CountingBridge()
    frames = [frame(MAC[1], MAC[0], fill=i) for i in range(1500)]
    frames += [frame(BCAST, MAC[0], fill=i) for i in range(1500)]
    st = sw.send(0, frames, batch_slots=256)
    assert sw.bridge.calls == [3000] and st.batches == 12   # 12 batches, one call answers them
    assert sw.got(1) == frames and sw.got(2) == frames    # MAC[1] never learned: all flooded
    assert sw.rx[1][0].leases == sw.rx[2][0].leases == 1


def test_lookup_without_batch_free_is_called_per_batch_but_delivered_once():
    sizes = []
    sw = Switch(2, slots=4096)
    frames = [frame(BCAST, MAC[0], fill=i) for i in range(3000)]
    st = sw.send(0, frames, lookup=lambda b: (sizes.append(len(b)), flood_all(b))[1])
    assert sizes == [1024, 1024, 952] and st.batches == 3
    assert sw.got(1) == frames and sw.rx[1][0].leases == 1 and st.delivered[1] == 3000


def test_merged_delivery_keeps_the_prefix_that_fits():
    sw = Switch(2, slots=2048)
    rx = sw.rx[1][0]
    rx.hwcur = rx.hwtail = 1500                  # the run wraps the ring
    frames = [frame(BCAST, MAC[0], size=60 + i % 7, fill=i) for i in range(3000)]
    st = sw.send(0, frames)
    assert sw.got(1) == frames[:2047] and rx.leases == 1
    assert (st.delivered[1], st.dropped[1]) == (2047, 3000 - 2047)
    assert rx.counted == 2047


def test_ring_with_copy_monitors_is_delivered_batch_by_batch():
    sw = Switch(2, slots=4096)
    sw.rx[1][0].monitors = ["a copy monitor"]     # netmap notifies its monitors per batch
    frames = [frame(BCAST, MAC[0], fill=i) for i in range(3000)]
    sw.send(0, frames)
    assert sw.got(1) == frames and sw.rx[1][0].leases == 3


def test_monitored_ring_gets_mixed_traffic_batch_by_batch():
    sw = Switch(3, slots=256)
    sw.send(1, [frame(BCAST, MAC[1])])           # the bridge learns MAC[1] at port 1
    sw.got(0), sw.got(2)
    sw.rx[1][0].monitors = ["a copy monitor"]
    before = sw.rx[2][0].leases
    frames = [frame(MAC[1] if i % 2 else BCAST, MAC[0], fill=i) for i in range(40)]
    st = sw.send(0, frames, batch_slots=8)      # one bridge call; port 1's group cut per batch
    assert sw.got(1) == frames and sw.got(2) == frames[::2]
    assert sw.rx[1][0].leases == 5 and sw.rx[2][0].leases - before == 1 and st.batches == 5


def test_deliveries_stay_in_order_when_a_run_is_interrupted():
    sw = Switch(3, slots=4096)
    to1 = [frame(MAC[1], MAC[0], fill=i) for i in range(40)]
    bc = [frame(BCAST, MAC[0], fill=100 + i) for i in range(40)]
    frames = to1[:20] + bc[:20] + to1[20:] + bc[20:]   # batches of 10: 2 unicast, 2 flood, ...
    one = int(mac_to_int(MAC[1])[0])
    st = sw.send(0, frames, batch_slots=10,
                 lookup=lambda b: np.where(b.dst == one, 1, NM_BDG_BROADCAST))
    assert sw.got(1) == frames and sw.got(2) == bc
    assert (st.delivered[1], st.delivered[2]) == (80, 40)
    # port 2's run is broken by the unicast batches: held runs are then delivered, in order
    assert (sw.rx[1][0].leases, sw.rx[2][0].leases) == (2, 2)


def test_failing_batch_free_lookup_counts_every_batch():
    class Broken(LearningBridge):
        def __call__(self, batch):
            raise RuntimeError("no table")

    sw = Switch(2)
    st = sw.send(0, [frame(BCAST, MAC[0])] * 10, batch_slots=4, lookup=Broken())
    assert (st.lookup_errors, st.lookup_dropped, st.batches) == (3, 10, 3)
    assert sw.got(1) == [] and "no table" in st.lookup_error


# --- slot contents ------------------------------------------------------------------------

def test_bad_source_buffer_reads_buffer_zero_and_overlong_len_dropped():
    sw = Switch(2)
    f = frame(BCAST, MAC[0], fill=3)
    src = source([f, f, f], 0)
    src.buffers[0, :60] = np.frombuffer(frame(BCAST, MAC[0], fill=42), np.uint8)
    src.buf_idx[0] = 999999
    src.len[1] = 2049
    st = forward(src, sw.bridge, sw.dests())
    assert sw.got(1) == [frame(BCAST, MAC[0], fill=42), f]
    assert st.no_dest == 1


def test_destination_slot_keeps_buffer_and_len_flags_set():
    sw = Switch(2)
    rx = sw.rx[1][0]
    before = rx.slots["buf_idx"].copy()
    rx.slots["flags"][:] = 0xFFFF
    sw.send(0, [frame(BCAST, MAC[0], size=100)])
    assert (rx.slots["buf_idx"] == before).all()
    assert int(rx.slots["len"][0]) == 100 and int(rx.slots["flags"][0]) == 0x100


def test_smaller_destination_buffers_get_empty_fragment():
    sw = Switch(2, bsize=1024)
    big = frame(BCAST, MAC[0], size=1500)
    sw.send(0, [big])
    assert sw.rx[1][0].take() == [(b"", 0x100)]


def test_vnet_header_skipped_and_mismatch_dropped():
    sw = Switch(3)
    hdr = bytes(12)
    f = frame(BCAST, MAC[0])
    src = source([hdr + f], 0, hdr_len=12)
    st = forward(src, sw.bridge, sw.dests(hdr=np.array([12, 12, 0] + [0] * 253)))
    assert sw.got(1) == [hdr + f] and sw.got(2) == []
    assert st.dropped[2] == 1
    assert sw.bridge.entries() == {int.from_bytes(MAC[0], "big"): 0}


def test_vnet_header_alone_in_first_fragment():
    sw = Switch(2)
    f = frame(BCAST, MAC[0])
    src = source([bytes(10)], 0, hdr_len=10)
    src2 = source([f], 0)
    # two slots: header alone, then the frame
    bufs = np.concatenate([src.buffers[:3], src2.buffers[2:3]])
    s = SourceSlots(buf_idx=np.array([2, 3], np.uint32), len=np.array([10, 60], np.uint16),
                    flags=np.array([abi.NS_MOREFRAG, 0], np.uint16), buffers=bufs, port=0, hdr_len=10)
    seen = []
    forward(s, lambda b: (seen.append(b), np.full(len(b), NM_BDG_BROADCAST))[1],
            sw.dests(hdr=np.array([10] * 256)))
    assert int(seen[0].src[0]) == 0x020000000000 and int(seen[0].head_len[0]) == 60
    assert int(seen[0].len[0]) == 60


def test_indirect_payload_read_through_hook():
    sw = Switch(2)
    f = frame(BCAST, MAC[0], fill=8)
    src = source([bytes(60)], 0, flags=[abi.NS_INDIRECT])
    s = SourceSlots(buf_idx=src.buf_idx, len=src.len, flags=src.flags, buffers=src.buffers,
                    port=0, ptr=np.array([0x1234], np.uint64))
    forward(s, sw.bridge, sw.dests(), read_indirect=lambda ptr, n: f if ptr == 0x1234 else None)
    assert sw.got(1) == [f]
    forward(s, sw.bridge, sw.dests())          # no reader: empty fragment, dropped
    assert sw.got(1) == []


def test_stats_accumulate_and_touched():
    sw = Switch(3)
    st = sw.send(0, [frame(BCAST, MAC[0])] * 3)
    st = forward(source([frame(BCAST, MAC[0])], 0), sw.bridge, sw.dests(), stats=st)
    assert st.packets == 4 and st.delivered[1] == 4 and st.touched == {(1, 0), (2, 0)}


def test_empty_source_is_noop():
    sw = Switch(2)
    src = SourceSlots(buf_idx=np.zeros(0, np.uint32), len=np.zeros(0, np.uint16),
                      flags=np.zeros(0, np.uint16), buffers=np.zeros((2, 2048), np.uint8), port=0)
    st = forward(src, sw.bridge, sw.dests())
    assert st.packets == 0 and sw.rx[1][0].leases == 0


# --- the vectorised engine against a packet-by-packet reference -----------------------------

def _reference(frames_slots, port, ring, nrx, active, rx_free, lookup_ports, bridge_state,
               batch_slots=abi.NM_BDG_BATCH):
    """netmap's loop one packet at a time: ``frames_slots`` is a list of packets, each a list
    of fragment payloads as the switch reads them. Returns ({(port, ring): [(payload, flags)]},
    delivered, dropped, no_dest) and updates ``bridge_state`` (table, last_src) in place."""
    table, last_src = bridge_state
    out, delivered, dropped = {}, [0] * 256, [0] * 256
    no_dest = 0
    batch, used = [], 0
    batches = []
    for pkt in frames_slots:
        batch.append(pkt)
        used += len(pkt)
        if used >= batch_slots:
            batches.append(batch)
            batch, used = [], 0
    if batch:
        batches.append(batch)
    for batch in batches:
        dests = []
        for frags in batch:
            eth = frags[0]
            if lookup_ports is None:               # the learning bridge (spec E7)
                if len(eth) < 14:
                    p = NM_BDG_NOPORT
                else:
                    d, s = int.from_bytes(eth[0:6], "big"), int.from_bytes(eth[6:12], "big")
                    if not (s >> 40) & 1:
                        if last_src.get(port) != s:
                            table[int(mac_hash(np.array([s], np.uint64))[0])] = (s, port)
                        last_src[port] = s
                    e = table.get(int(mac_hash(np.array([d], np.uint64))[0]))
                    p = e[1] if (not (d >> 40) & 1) and e is not None and e[0] == d else NM_BDG_BROADCAST
                r = ring
            else:
                p, r = lookup_ports.pop(0)
            if len(frags) > 64:
                p = NM_BDG_NOPORT
            if p == NM_BDG_BROADCAST:
                targets = [(q, 0) for q in active if q != port]
            elif 0 <= p < 254 and p != port and nrx[p] > 0:
                targets = [(p, r % nrx[p])]
            else:
                targets = []
            if not targets:
                no_dest += 1
            dests.append(targets)
        full = set()
        for i, frags in enumerate(batch):
            for q, r in dests[i]:
                if (q, r) in full or rx_free.get((q, r)) is None:
                    dropped[q] += 1
                    continue
                if len(frags) > rx_free[(q, r)]:
                    full.add((q, r))
                    dropped[q] += 1
                    continue
                rx_free[(q, r)] -= len(frags)
                delivered[q] += 1
                n = len(frags)
                out.setdefault((q, r), []).extend(
                    (f, (n << 8) | (abi.NS_MOREFRAG if j < n - 1 else 0)) for j, f in enumerate(frags))
    return out, delivered, dropped, no_dest


def _expected_view(pkt_reads):
    """What a lookup must see of one packet: (dst, src, len, head_len, head)."""
    eth = pkt_reads[0][:64]
    head = eth + bytes(64 - len(eth))
    return (int.from_bytes(head[0:6], "big"), int.from_bytes(head[6:12], "big"),
            sum(len(f) for f in pkt_reads), len(eth), head)


@pytest.mark.parametrize("seed", range(60))
def test_engine_matches_packet_by_packet_reference(seed):
    """Random traffic (one-slot and multi-slot packets, short frames, unicast/multicast
    sources, bad buffer indexes, over-long lengths, full rings, unbound rings, one flow or
    many, custom lookups with rings) gives exactly what netmap's per-packet loop gives, and
    a lookup sees exactly the packets' bytes."""
    _against_reference(seed, abi.NM_BDG_BATCH)


@pytest.mark.parametrize("seed", range(30))
def test_engine_matches_reference_over_many_batches(seed):
    """The same with batches of 16 slots, so that most sends span several batches: the
    learning bridge's one call for all of them and deliveries merged across batches give
    what the per-packet loop gives batch by batch."""
    _against_reference(1000 + seed, 16)


def _against_reference(seed: int, batch_slots: int) -> None:
    rng = np.random.default_rng(seed)
    nports = int(rng.integers(2, 6))
    rings = [int(rng.integers(1, 4)) for _ in range(nports)]
    sw = Switch(nports, rings=rings, slots=int(rng.choice([8, 64, 2048])))
    if rng.random() < 0.3:
        sw.unbound.add((int(rng.integers(0, nports)), 0))
    macs = [bytes([2, 0, 0, 0, 0, i]) for i in range(6)] + [b"\x03\x00\x00\x00\x00\x01", BCAST]
    multi = rng.random() < 0.4
    custom = rng.random() < 0.3
    shape = ["mixed", "flow", "to_one"][seed % 3]
    state = ({}, {})
    for rnd in range(4):
        port, ring = int(rng.integers(0, nports)), int(rng.integers(0, 4))
        k = int(rng.integers(1, 300))
        d0, s0 = macs[rng.integers(0, 6)], macs[rng.integers(0, 6)]
        sizes = [60, 60, 60, 13, 11, 14, 200, 1514] + ([2100, 5000] if multi else [])
        if shape != "mixed" and rng.random() < 0.5:
            sizes = [60]
        frames = []
        for i in range(k):
            d = macs[rng.integers(0, len(macs))] if shape == "mixed" else d0
            s_ = s0 if shape == "flow" else macs[rng.integers(0, len(macs))]
            frames.append(frame(d, s_, size=int(rng.choice(sizes)), fill=i))
        src = source(frames, port, ring, frag=int(rng.choice([700, 2048])) if multi else None)
        src.buffers[0, :60] = np.frombuffer(frame(BCAST, macs[3], fill=200), np.uint8)
        nb = src.buffers.shape[0]
        if rng.random() < 0.5:
            src.buf_idx[rng.random(len(src.len)) < 0.05] = nb + 5
            src.len[rng.random(len(src.len)) < 0.03] = 2049
        # what the switch reads per slot (spec A6, E10), packets by NS_MOREFRAG
        reads = [b"" if src.len[j] > 2048 else
                 bytes(src.buffers[0 if src.buf_idx[j] >= nb else src.buf_idx[j], :src.len[j]])
                 for j in range(len(src.len))]
        starts, nfr = packetize(src.flags)
        pkts = [reads[a:a + n] for a, n in zip(starts.tolist(), nfr.tolist())]
        free = {(q, r): (rx.n - 1 - (rx.hwtail - rx.hwcur) % rx.n)
                for q in sw.rx for r, rx in enumerate(sw.rx[q]) if (q, r) not in sw.unbound}
        answers = lookup = None
        if custom:
            one = rng.random() < 0.5      # one port for the whole batch, rings may differ
            pp = (np.full(len(pkts), rng.choice([1, 254, 255])) if one else
                  rng.choice([0, 1, 2, 3, 4, 254, 254, 255, 300], size=len(pkts)))
            rr = rng.integers(0, 5, size=len(pkts)) if rng.random() < 0.5 else np.full(len(pkts), 2)
            answers = list(zip(pp.tolist(), rr.tolist()))
            queue = list(answers)
            views = [_expected_view(p) for p in pkts]

            def lookup(b, queue=queue, views=views):
                got = [queue.pop(0) for _ in range(len(b))]
                want = [views.pop(0) for _ in range(len(b))]
                assert b.dst.tolist() == [w[0] for w in want]
                assert b.src.tolist() == [w[1] for w in want]
                assert b.len.tolist() == [w[2] for w in want]
                assert b.head_len.tolist() == [w[3] for w in want]
                assert [bytes(h) for h in b.head] == [w[4] for w in want]
                return np.array([p for p, _ in got]), np.array([r for _, r in got])
        want, dlv, drp, nod = _reference(pkts, port, ring, sw.nrx, sorted(sw.rx), free,
                                         answers, state, batch_slots)
        st = forward(src, lookup or sw.bridge, sw.dests(), batch_slots=batch_slots)
        for q in sw.rx:
            for r, rx in enumerate(sw.rx[q]):
                assert rx.take() == want.get((q, r), []), (seed, rnd, q, r)
        assert st.delivered[:256].tolist() == dlv and st.dropped[:256].tolist() == drp
        assert st.no_dest == nod
        if not custom:
            table, _ = state
            assert sw.bridge.entries() == {m: p for m, p in table.values()}


def test_lookup_head_is_gathered_only_when_read(monkeypatch):
    import netmap_emu.datapath.forward as vf

    calls = []
    orig = vf._head
    monkeypatch.setattr(vf, "_head", lambda *a: (calls.append(1), orig(*a))[1])
    sw = Switch(2)
    f = frame(BCAST, MAC[0])
    sw.send(0, [f] * 5)                      # the learning bridge needs MACs and lengths only
    assert calls == [] and sw.got(1) == [f] * 5
    seen = []
    sw.send(0, [f], lookup=lambda b: (seen.append(b.ethertype.tolist()), flood_all(b))[1])
    assert len(calls) == 1 and seen == [[0x88B5]]


def test_batch_kept_by_a_lookup_keeps_the_head_it_had():
    sw = Switch(2)
    kept = []
    f = frame(BCAST, MAC[0], fill=1)
    src = source([f], 0)
    forward(src, lambda b: (kept.append(b), flood_all(b))[1], sw.dests())
    src.buffers[2, :] = 0xEE                 # the sender reuses its buffer after the txsync
    assert bytes(kept[0].head[0]) == f + bytes(4) and not kept[0].head.flags.writeable


def test_lookup_batch_is_a_frozen_value_with_a_deferred_head():
    import dataclasses

    from netmap_emu.datapath.lookup import LookupBatch

    calls = []

    def gather():
        calls.append(1)
        return np.arange(128, dtype=np.uint8).reshape(2, 64)

    z = np.zeros(2, np.uint64)
    b = LookupBatch(z, z, np.array([60, 60]), gather, np.array([60, 60]), 1, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.dst = z
    assert calls == [] and b.head[1, 0] == 64 and b.head is b.head and calls == [1]
    assert not b.head.flags.writeable and b.ethertype.tolist() == [(12 << 8) | 13, (76 << 8) | 77]
    c = dataclasses.replace(b, src_port=5)
    assert c.src_port == 5 and c.head[0, 1] == 1
    with pytest.raises(TypeError, match="head"):
        LookupBatch(z, z, z)
