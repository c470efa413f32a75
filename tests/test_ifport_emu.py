"""``netmap:IFNAME`` on a veth pair: frames sent on the peer with a plain AF_PACKET socket reach
the port's RX ring, frames the port sends reach the peer; suffixes, host rings, errors.

The tests that use ``backend_name`` run on both backends (``--backend netmap`` in the lab);
the rest exercise what only the emulator does (its AF_PACKET rings, spec/emulator.md §9).
"""
from __future__ import annotations

import errno
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import netns
from netmap_core import POLLERR, POLLIN, abi
from netmap_core.errors import InvalidRequestError, NetmapOSError, NoSuchPortError
from netmap_emu.testing import isolated_namespace

ETHERTYPE = 0x88B5   # IEEE local experimental: nothing else on the link uses it
BOUND = 20.0         # seconds before a missing frame counts as lost (a bound against hangs)
SO_RCVBUFFORCE = 33  # socket(7); not in Python's socket module


def frame(i: int, size: int = 60) -> bytes:
    """A broadcast frame of ``size`` bytes carrying ``i`` in its payload."""
    body = i.to_bytes(4, "big") * ((size - 14) // 4 + 1)
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ETHERTYPE.to_bytes(2, "big") + body[: size - 14]


def ours(data: bytes) -> bool:
    return data[12:14] == ETHERTYPE.to_bytes(2, "big")


def raw_socket(ifname: str) -> socket.socket:
    """A plain packet socket for our ethertype; sends and receives give up after BOUND."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.bind((ifname, ETHERTYPE))
    # netmap's generic adapter sends skbs sized for a whole netmap buffer (~4 KiB truesize):
    # the default receive buffer (~208 KiB) would drop a 100-frame batch after ~50
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    s.settimeout(BOUND)
    return s


def receive(port, ring, want: int) -> list[bytes]:
    """Frames of ours from ``ring`` (releasing every slot) until ``want`` arrived."""
    got: list[bytes] = []
    end = time.monotonic() + BOUND
    while len(got) < want and time.monotonic() < end:
        port.poll(POLLIN, 0.2)
        while not ring.empty:
            data = bytes(ring.payload(ring.head))
            if ours(data):
                got.append(data)
            ring.advance(1)
        port.rxsync()
    return got


def peer_receive(s: socket.socket, want: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < want:
        data = s.recv(4096)
        if ours(data):
            got.append(data)
    return got


ADMODE = "/sys/module/netmap/parameters/admode"


@pytest.fixture
def veth(veth_pair, backend_name):
    """A veth pair; on netmap.ko with the generic (emulated) adapter forced (admode 2), the
    adapter the emulator copies, instead of netmap's native veth driver."""
    admode = pathlib.Path(ADMODE)
    old = None
    if backend_name == "netmap" and admode.exists():
        old = admode.read_text().strip()
        admode.write_text("2")
    yield veth_pair()
    if old is not None:
        admode.write_text(old)


@pytest.mark.parametrize("count", [1, 7, 300, 2000])
def test_receive_batches_in_order(veth, opener, backend_name, count):
    port = opener(f"netmap:{veth.a}")
    rx = port.rx_rings[0]
    with raw_socket(veth.b) as s:
        want = [frame(i, 60 + i % 50) for i in range(count)]
        got: list[bytes] = []
        # bites of 100: netmap's generic adapter holds each frame's skb (charged to the
        # sender's socket buffer) until an rxsync takes it, so a bigger bite blocks send()
        for k in range(0, count, 100):
            for f in want[k: k + 100]:
                s.send(f)
            got += receive(port, rx, min(100, count - k))
    assert got == want


def transmit(port, tx, frames: list[bytes], peer: socket.socket) -> list[bytes]:
    """Put ``frames`` on ``tx`` and sync until ``peer`` got as many frames of ours (netmap's
    generic adapter may send a batch over several txsyncs)."""
    for f in frames:
        i = tx.head
        tx.buf(i)[: len(f)] = np.frombuffer(f, np.uint8)
        tx.set_len(i, len(f))
        tx.advance(1)
    got: list[bytes] = []
    peer.settimeout(0.05)
    end = time.monotonic() + BOUND
    while len(got) < len(frames) and time.monotonic() < end:
        port.txsync()
        try:
            while len(got) < len(frames):
                data = peer.recv(4096)
                if ours(data):
                    got.append(data)
        except TimeoutError:
            pass
    return got


@pytest.mark.parametrize("count", [1, 5, 600])
def test_send_batches_in_order(veth, opener, backend_name, count):
    port = opener(f"netmap:{veth.a}")
    tx = port.tx_rings[0]
    want = [frame(i, 60 + i % 70) for i in range(count)]
    with raw_socket(veth.b) as s:
        got: list[bytes] = []
        for k in range(0, count, 100):   # the peer socket's buffer is finite
            part = transmit(port, tx, want[k: k + 100], s)
            assert len(part) == min(100, count - k), f"bite at {k}: {len(part)} frames arrived"
            got += part
    assert got == want
    end = time.monotonic() + BOUND
    while tx.tail != (tx.head - 1) % tx.num_slots and time.monotonic() < end:
        port.txsync()
    assert tx.tail == (tx.head - 1) % tx.num_slots   # everything handed over is free again


def test_every_slot_leaves_as_a_frame_even_with_morefrag(veth, opener, backend_name):
    """netmap's generic adapter sends one frame per TX slot and does not look at NS_MOREFRAG
    (seen on netmap.ko: the first fragment arrives alone); the emulator does the same."""
    port = opener(f"netmap:{veth.a}")
    tx = port.tx_rings[0]
    f = frame(7, 300)
    i = tx.head
    tx.buf(i)[:100] = np.frombuffer(f[:100], np.uint8)
    tx.set_len(i, 100)
    tx.slots["flags"][i] = abi.NS_MOREFRAG
    j = tx.next(i)
    tail = frame(8, 200)
    tx.buf(j)[:200] = np.frombuffer(tail, np.uint8)
    tx.set_len(j, 200)
    tx.advance(2)
    with raw_socket(veth.b) as s:
        port.txsync()
        got = peer_receive(s, 2)
    assert [len(g) for g in got] == [100, 200]
    assert got == [f[:100], tail]


def test_promiscuous_while_open(veth_pair, backend_name):
    import netmap_core

    v = veth_pair()

    def promisc() -> bool:
        return bool(int(pathlib.Path(f"/sys/class/net/{v.a}/flags").read_text(), 16) & 0x100)

    assert not promisc()
    with netmap_core.open(f"netmap:{v.a}", backend=backend_name):
        assert promisc() or backend_name != "emu"
    assert not promisc()


def test_unknown_interface(opener, backend_name):
    with pytest.raises(NoSuchPortError) as e:
        opener(f"netmap:{netns.unique_name('nope')}")
    assert e.value.errno == errno.ENXIO


# --- suffixes (spec D3, H1) ------------------------------------------------------------------

@pytest.mark.parametrize("suffix,tx,rx,htx,hrx", [
    ("", 1, 1, 0, 0), ("-0", 1, 1, 0, 0), ("^", 0, 0, 1, 1), ("^0", 0, 0, 1, 1),
    ("*", 1, 1, 1, 1), ("/T", 1, 0, 0, 0), ("/R", 0, 1, 0, 0), ("*/R", 0, 1, 0, 1),
])
def test_suffix_binds_rings(veth, opener, backend_name, suffix, tx, rx, htx, hrx):
    p = opener(f"netmap:{veth.a}{suffix}")
    got = (len(p.tx_rings), len(p.rx_rings), len(p.host_tx_rings), len(p.host_rx_rings))
    assert got == (tx, rx, htx, hrx)
    assert (p.info.host_tx_rings, p.info.host_rx_rings) == (1, 1)


@pytest.mark.kernel_warnings("invalid ring id")
def test_ring_beyond_count_is_einval(veth, opener, backend_name):
    with pytest.raises(InvalidRequestError):
        opener(f"netmap:{veth.a}-1")


def test_geometry_is_the_generic_adapter(veth, opener, backend_name):
    """spec L2: an emulated adapter on a one-queue interface has 1024 slots, one ring pair and
    one host ring pair (netmap.ko may attach veth natively instead: then only the host rings)."""
    i = opener(f"netmap:{veth.a}").info
    assert (i.host_tx_rings, i.host_rx_rings) == (1, 1)
    if backend_name == "emu":
        assert (i.tx_rings, i.rx_rings, i.tx_slots, i.rx_slots, i.mem_id) == (1, 1, 1024, 1024, 1)


# --- emulator specifics --------------------------------------------------------------------------

@pytest.fixture
def emu(request):
    """Opens on the emulator, in a namespace of this test, whatever --backend says."""
    import netmap_core
    from netmap_emu.testing import isolated_namespace

    ports = []
    with isolated_namespace():
        def open_(name, **kw):
            p = netmap_core.open(name, backend="emu", **kw)
            ports.append(p)
            return p
        yield open_
        for p in reversed(ports):
            p.close()


def test_host_rx_ring_carries_what_the_stack_sends(veth, emu):
    """Frames transmitted on the interface by others (the stack, other packet sockets) reach
    the host RX ring; the NIC RX ring gets only what arrives from the wire."""
    port = emu(f"netmap:{veth.a}*")
    nic, host = port.rx_rings[0], port.host_rx_rings[0]
    with raw_socket(veth.a) as out, raw_socket(veth.b) as peer:
        out.send(frame(1))
        peer.send(frame(2))
        got_host = receive(port, host, 1)
        got_nic = receive(port, nic, 1)
    assert got_host == [frame(1)]
    assert got_nic == [frame(2)]


def test_host_tx_ring_is_drained_not_sent(veth, emu):
    """The host TX ring frees every slot at its sync; the frames go nowhere (AF_PACKET cannot
    inject towards the stack), in particular not onto the wire."""
    port = emu(f"netmap:{veth.a}^")
    tx = port.host_tx_rings[0]
    with raw_socket(veth.b) as peer:
        assert tx.fill(3, template=frame(5)) == 3
        port.txsync()
        assert tx.tail == (tx.head - 1) % tx.num_slots
        peer.settimeout(0.3)
        with pytest.raises(TimeoutError):
            peer_receive(peer, 1)


def test_mtu_larger_than_buffer_refused_unless_tx_only(veth_pair, emu):
    v = veth_pair(mtu=9000)
    with pytest.raises(InvalidRequestError) as e:
        emu(f"netmap:{v.a}")
    assert "MTU 9000" in str(e.value) and "2048" in str(e.value)
    assert len(emu(f"netmap:{v.a}/T").tx_rings) == 1


def test_interface_deleted_while_open(veth_pair, emu):
    v = veth_pair()
    port = emu(f"netmap:{v.a}")
    v.close()
    with pytest.raises(NetmapOSError) as e:
        port.rxsync()
    assert e.value.errno == errno.EIO and v.a in str(e.value)      # as netmap.ko's syncs
    assert port.poll(POLLIN, 1.0) & POLLERR                       # and its poll
    with pytest.raises(NetmapOSError):
        port.txsync()


def test_zero_copy_swap_with_a_pipe_of_the_same_allocator(veth, emu):
    """The interface's rings live in mem_id 1, so a pipe there swaps buffers with them."""
    port = emu(f"netmap:{veth.a}")
    m = emu("netmap:ifz{1@1")
    s = emu("netmap:ifz}1@1")
    rx = port.rx_rings[0]
    assert rx.same_pool(m.tx_rings[0])
    with raw_socket(veth.b) as peer:
        peer.send(frame(9))
        end = time.monotonic() + BOUND
        while time.monotonic() < end:
            port.poll(POLLIN, 0.2)
            while not rx.empty and not ours(bytes(rx.payload(rx.head))):
                rx.advance(1)
            if not rx.empty:
                break
            port.rxsync()
    before = int(rx.slots["buf_idx"][rx.head])
    assert rx.forward(m.tx_rings[0], 1) == 1
    m.txsync()
    s.rxsync()
    r2 = s.rx_rings[0]
    assert int(r2.slots["buf_idx"][r2.head]) == before
    assert bytes(r2.payload(r2.head)) == frame(9)


def test_asyncio_wait_wakes_on_a_frame(veth, emu):
    import asyncio

    port = emu(f"netmap:{veth.a}")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        with raw_socket(veth.b) as peer:
            loop.call_later(0.05, peer.send, frame(3))
            return await asyncio.wait_for(port.wait(POLLIN), BOUND)

    assert asyncio.run(main()) & POLLIN
    assert receive(port, port.rx_rings[0], 1) == [frame(3)]


def test_without_cap_net_raw_the_error_names_it(veth):
    if subprocess.run(["setpriv", "--help"], capture_output=True).returncode != 0:
        pytest.skip("setpriv (util-linux) not available to drop capabilities")
    code = (f"import netmap_core\n"
            f"try:\n netmap_core.open('netmap:{veth.a}', backend='emu')\n"
            f"except netmap_core.errors.NetmapOSError as e:\n print(e.errno, e)\n")
    with isolated_namespace("capt"):    # the child's namespace, removed afterwards
        p = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw,-net_admin", "--",
                            sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{errno.EPERM} ") and "CAP_NET_RAW" in p.stdout and veth.a in p.stdout


# --- the block walk -------------------------------------------------------------------------------

BS = 1 << 16   # block size of the fake rings
MAC = 82       # tp_mac of an Ethernet frame in a TPACKET_V3 ring


def _fake_ring(blocks: list[list[int]], first: int = 48, bs: int = BS) -> tuple[np.ndarray, list[list[int]]]:
    """A fake TPACKET_V3 ring, block ``j`` holding frames of ``blocks[j]`` captured bytes
    (payload: the frame's number, one byte) chained by tp_next_offset, each block marked ready
    (TP_STATUS_USER). Returns the ring and each block's frame offsets."""
    ring = np.zeros(bs * len(blocks), dtype=np.uint8)
    offs: list[list[int]] = []
    k = 0
    for j, sizes in enumerate(blocks):
        base = j * bs
        o = base + first
        mine = []
        for i, size in enumerate(sizes):
            mine.append(o)
            step = (MAC + size + 7) & ~7   # TOTAL_PKT_LEN_INCL_ALIGN: 8-byte aligned
            w = ring[o: o + 28].view("<u4")
            w[0] = 0 if i == len(sizes) - 1 else step
            w[3] = w[4] = size
            ring[o + 24: o + 26].view("<u2")[0] = MAC
            ring[o + MAC: o + MAC + size] = k & 0xFF
            ring[o + 58] = 4 if size == 61 else 0    # sll_pkttype: PACKET_OUTGOING for 61 bytes
            o += step
            k += 1
        assert o <= base + bs
        ring[base + 8: base + 20].view("<u4")[:] = (1, len(sizes), first)
        offs.append(mine)
    return ring, offs


@pytest.mark.parametrize("blocks", [[[60]], [[60] * 100], [[60] * 100, [60] * 7, [60]],
                                    [[60, 60, 1500, 1500, 60, 64, 64, 64]],
                                    [[60] * 50, [100 + (i * 37) % 900 for i in range(40)], []],
                                    [[1500] * 30, [60] * 200]])
def test_chain_follows_next_offsets(blocks):
    from netmap_emu.datapath import afpacket

    ring, offs = _fake_ring(blocks)
    firsts = [j * BS + 48 for j in range(len(blocks))]
    got, room = afpacket.frame_offsets(ring.view("<u4"), firsts, [len(b) for b in blocks], BS)
    flat = [o for b in offs for o in b]
    assert got.tolist() == flat
    ends = [o for j, b in enumerate(offs) if b for o in (b[1:] + [(j + 1) * BS])]
    assert (room == np.array(ends) - got).all()


@pytest.mark.parametrize("bad_next", [BS, 144 + 4, 16])   # out of the block, misaligned, too short
def test_chain_leaving_its_block_or_misaligned_is_refused(bad_next):
    from netmap_core.errors import CorruptRingError
    from netmap_emu.datapath import afpacket

    ring, offs = _fake_ring([[60] * 10, [60] * 10])
    ring[offs[0][3]: offs[0][3] + 4].view("<u4")[0] = bad_next   # frame 3 of block 0
    with pytest.raises(CorruptRingError, match="tp_next_offset"):
        afpacket.frame_offsets(ring.view("<u4"), [48, BS + 48], [10, 10], BS)


def test_blocks_walk_several_at_once_and_go_back_in_order():
    from netmap_emu.datapath.afpacket import TP_STATUS_KERNEL, RxBlocks

    sizes = [[60] * 5, [60] * 3, [90, 60, 61], [60] * 4]
    ring, offs = _fake_ring(sizes + [[]])
    ring[4 * BS + 8] = 0                      # the last block is still the kernel's
    walk = RxBlocks(bytearray(ring.tobytes()), BS, len(sizes) + 1, "fake")
    status = walk.r32[8 // 4:: BS // 4]
    f = walk.ready(6)                          # 6 frames: blocks 0 and 1 (8 frames)
    assert f is not None and f.ends == (5, 8)
    assert f.start.tolist() == [o + MAC for b in offs[:2] for o in b] and (f.length == 60).all()
    walk.consume(4)                            # block 0 not done yet
    assert walk.block == 0 and status[0] == 1 and walk.pending is not None
    assert walk.pending.ends == (1, 4)
    walk.consume(1)                            # block 0 done, block 1 not
    assert walk.block == 1 and status[0] == TP_STATUS_KERNEL and status[1] == 1
    f = walk.ready(100)                        # the rest of block 1 alone, as parsed
    assert len(f.start) == 3 and f.ends == (3,)
    walk.consume(3)
    f = walk.ready(100)                        # blocks 2 and 3; block 4 is the kernel's
    assert f.ends == (3, 7) and f.length.tolist() == [90, 60, 61, 60, 60, 60, 60]
    assert f.pkttype.tolist() == [0, 0, 4, 0, 0, 0, 0]
    assert [walk.ring[s] for s in f.start.tolist()] == [8, 9, 10, 11, 12, 13, 14]
    walk.consume(7)
    assert walk.pending is None and walk.block == 4 and walk.ready(100) is None
    assert status[:4].tolist() == [TP_STATUS_KERNEL] * 4


def test_frame_longer_than_its_room_is_refused():
    from netmap_core.errors import CorruptRingError
    from netmap_emu.datapath.afpacket import RxBlocks

    ring, offs = _fake_ring([[60] * 4, [60] * 4])
    ring[offs[1][2] + 12: offs[1][2] + 16].view("<u4")[0] = 200    # tp_snaplen past the next frame
    walk = RxBlocks(bytearray(ring.tobytes()), BS, 2, "fake")
    with pytest.raises(CorruptRingError, match=r"block\[1\].*tp_snaplen=200"):
        walk.ready(100)


BIG = [[60] * 600, [60] * 700, [64] * 520]   # blocks full enough for the strided parse
BBS = 1 << 18                                 # ... in blocks of the size the ports use


def test_full_blocks_parse_as_the_chain_says(monkeypatch):
    from netmap_emu.datapath import afpacket
    from netmap_emu.datapath.afpacket import RxBlocks

    def chain_walk(*args: object) -> None:
        raise AssertionError("full uniform blocks take the strided parse, not the chain walk")

    monkeypatch.setattr(afpacket, "frame_offsets", chain_walk)
    ring, offs = _fake_ring(BIG, bs=BBS)
    walk = RxBlocks(bytearray(ring.tobytes()), BBS, len(BIG), "fake")
    f = walk.ready(10_000)
    assert f is not None and f.ends == (600, 1300, 1820)
    assert f.start.tolist() == [o + MAC for b in offs for o in b]
    assert f.length.tolist() == [n for b in BIG for n in b] and not f.pkttype.any()


@pytest.mark.parametrize("block, frame, word, value, match", [
    (1, 5, 3, 200, r"block\[1\].*tp_snaplen=200"),          # snaplen past the next frame
    (0, 599, 3, BBS, r"block\[0\].*tp_snaplen=262144"),     # the last frame past its block
    (2, 9, 6, 16, r"block\[2\].*tp_mac=16"),                # data inside the header
    (1, 3, 0, 96, r"tp_next_offset"),                        # the chain steps short
])
def test_full_blocks_refuse_what_does_not_fit(block, frame, word, value, match):
    from netmap_core.errors import CorruptRingError
    from netmap_emu.datapath.afpacket import RxBlocks

    ring, offs = _fake_ring(BIG, bs=BBS)
    o = offs[block][frame]
    if word == 6:
        ring[o + 24: o + 26].view("<u2")[0] = value
    else:
        ring[o + 4 * word: o + 4 * word + 4].view("<u4")[0] = value
    walk = RxBlocks(bytearray(ring.tobytes()), BBS, len(BIG), "fake")
    with pytest.raises(CorruptRingError, match=match):
        walk.ready(10_000)


def test_a_full_block_of_mixed_sizes_follows_its_chain():
    from netmap_emu.datapath.afpacket import RxBlocks

    sizes = [[60 if i % 3 else 200 for i in range(560)], [60] * 600]
    ring, offs = _fake_ring(sizes, bs=BBS)
    f = RxBlocks(bytearray(ring.tobytes()), BBS, 2, "fake").ready(10_000)
    assert f is not None and f.start.tolist() == [o + MAC for b in offs for o in b]


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_copy_frames_in_runs_of_one_stride(data):
    """Frames laid out at a few strides (blocks of equal frames) copy like any others."""
    from netmap_emu.datapath.afpacket import copy_frames

    src = np.arange(1 << 15, dtype=np.uint32).astype(np.uint8) ^ 0x5A
    start: list[int] = []
    for _ in range(data.draw(st.integers(1, 6))):
        o = data.draw(st.integers(0, (1 << 15) - 4096))
        step = data.draw(st.sampled_from([8, 72, 144, 2048, 1]))
        start += [o + step * j for j in range(data.draw(st.integers(1, 12)))]
    length = data.draw(st.lists(st.integers(1, 1500), min_size=len(start), max_size=len(start)))
    start_a = np.minimum(np.array(start), (1 << 15) - np.array(length))
    rows = np.random.default_rng(len(start)).permutation(len(start))
    buffers = np.zeros((len(start), 2048), dtype=np.uint8)
    copy_frames(src, start_a, np.array(length), buffers, rows)
    for s_, n, r in zip(start_a.tolist(), length, rows.tolist()):
        assert bytes(buffers[r, :n]) == bytes(src[s_: s_ + n])


def test_copy_frames_anywhere():
    from netmap_emu.datapath.afpacket import copy_frames

    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, 8192, dtype=np.uint8)
    for start, length in (([0, 128, 256, 384], [60, 100, 128, 30]), ([5, 700, 900], [64, 200, 8]),
                          ([8100, 3, 8180], [80, 120, 12]),    # the last two near the end
                          ([0, 2000, 4001, 6000], [60, 1500, 100, 300]),   # short and long ones
                          ([7000, 100, 8000], [1100, 64, 150])):
        buffers = np.zeros((8, 2048), dtype=np.uint8)
        rows = np.array([3, 1, 6, 0][: len(start)])
        copy_frames(src, np.array(start), np.array(length), buffers, rows)
        for s, n, r in zip(start, length, rows):
            assert bytes(buffers[r, :n]) == bytes(src[s: s + n])


# --- the namespace helpers themselves ------------------------------------------------------------

def test_netns_pair_links_this_namespace_to_a_new_one(netns_pair, ping):
    ns, v = netns_pair()
    assert v.netns_b == ns.name and len(v.a) <= netns.IFNAMSIZ and len(v.b) <= netns.IFNAMSIZ
    peer = v.addr_a.split("/")[0]
    p = ns.run(ping, "-c", "1", "-W", "5", peer, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert v.b not in os.listdir("/sys/class/net")      # moved out of this namespace


def test_veth_pair_is_gone_after_close(veth_pair):
    v = veth_pair()
    assert os.path.exists(f"/sys/class/net/{v.a}")
    v.close()
    assert not os.path.exists(f"/sys/class/net/{v.a}")
    assert not os.path.exists(f"/sys/class/net/{v.b}")


def test_emu_ls_lists_the_interface_binding(veth, emu):
    emu(f"netmap:{veth.a}*")
    p = subprocess.run([sys.executable, "-m", "netmap_tools", "emu", "ls"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if veth.a in x)
    assert "(interface)" in line and "tx [0, 1] rx [0, 1]" in line


def test_emu_ls_lists_an_attachment(veth, emu):
    """An interface attached to an emulated switch shows in ``emu ls`` with its pump's state
    and processes (the record as the supervisor writes it; this process stands in for both)."""
    import json

    from netmap_emu.attach import records
    from netmap_emu.shm.namespace import namespace

    emu(f"netmap:{veth.b}")   # the namespace exists
    me, start = os.getpid(), records.proc_start(os.getpid())
    name = f"vale{os.getpid():x}:{veth.a}"
    records.write(namespace(), records.Attachment(name=name, host=True, peer=f"netmap:{veth.a}*",
                                                  state="running", supervisor_pid=me,
                                                  supervisor_start=start, pump_pid=me,
                                                  pump_start=start, port_idx=0))
    try:
        p = subprocess.run([sys.executable, "-m", "netmap_tools", "emu", "ls"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        line = next(x for x in p.stdout.splitlines() if x.strip().startswith("attachment"))
        assert f"{name} (with host stack): running, supervisor pid {me}, pump pid {me}" in line
        p = subprocess.run([sys.executable, "-m", "netmap_tools", "emu", "ls", "--json"],
                           capture_output=True, text=True, timeout=120)
        (att,) = json.loads(p.stdout)[0]["attachments"]
        assert att["name"] == name and att["pump_alive"] and att["supervisor_alive"]
    finally:
        records.remove(namespace(), name)
