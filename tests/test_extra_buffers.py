"""Extra buffers through a whole life on the chosen backend (spec A7, A13, A17, F5, L6): taken
from the list, swapped into TX slots and sent, swapped into RX slots in place of what was
received, the list kept whole, freed at close exactly as the list then names them (first-fit
reuse proves it), and a full list again after reopening. On the device the kernel-log check
(tests/kernel_log.py) fails them if netmap logs a buffer freed twice ("ouch, double free") or a
list cut short ("breaking with head")."""
from __future__ import annotations

import numpy as np

from netmap_core import abi
from netmap_core.testing import BCAST, frame, mac, recv, unique_switch

CHANGED = abi.NS_BUF_CHANGED
N = 8       # slots per ring: small enough to account for every buffer
EXTRA = 4   # extra buffers per descriptor


def word(ring, idx: int) -> int:
    """The list link: the first u32 of buffer ``idx``."""
    return int(ring.buffers[idx, :4].view("<u4")[0])


def pop_extra(port, ring) -> int:
    """Take the first extra buffer off ``port``'s list."""
    idx = port.bufs_head
    assert idx >= 2, f"{port.name}: the extra-buffer list is empty"
    port.bufs_head = word(ring, idx)
    return idx


def push_extra(port, ring, idx: int) -> None:
    """Put buffer ``idx`` at the head of ``port``'s list (its first u32 becomes the link)."""
    ring.buffers[idx, :4].view("<u4")[0] = port.bufs_head
    port.bufs_head = idx


def swap_in(port, ring, slot: int) -> tuple[int, int]:
    """Swap the first extra buffer into ``slot`` (NS_BUF_CHANGED); the slot's buffer takes its
    place in the list. Returns (new, old) buffer indexes."""
    new = pop_extra(port, ring)
    old = int(ring.slots["buf_idx"][slot])
    ring.slots["buf_idx"][slot] = new
    ring.slots["flags"][slot] |= CHANGED
    push_extra(port, ring, old)
    return new, old


def put(ring, slot: int, data: bytes) -> None:
    ring.buffers[int(ring.slots["buf_idx"][slot]), :len(data)] = np.frombuffer(data, np.uint8)
    ring.slots["len"][slot] = len(data)


def payload(ring, slot: int) -> bytes:
    i = int(ring.slots["buf_idx"][slot])
    return bytes(ring.buffers[i, :int(ring.slots["len"][slot])])


def slot_bufs(ring) -> list[int]:
    return [int(x) for x in ring.slots["buf_idx"]]


def owned_once(*groups: list[int]) -> list[int]:
    """All buffer indexes of ``groups``, asserting that none appears twice."""
    every = [i for g in groups for i in g]
    assert len(every) == len(set(every)), f"a buffer is owned twice: {sorted(every)}"
    return every


def test_pipe_extra_buffers_travel_both_ways_and_come_back(opener):
    pipe = f"netmap:{unique_switch('xp')}"
    m = opener(f"{pipe}{{1@conf:slots={N}", extra_bufs=EXTRA)
    s = opener(f"{pipe}}}1", extra_bufs=EXTRA)
    assert m.info.extra_bufs == s.info.extra_bufs == EXTRA, "A13: the pipe parent's allocator has room"
    mtx, mrx, stx, srx = m.tx_rings[0], m.rx_rings[0], s.tx_rings[0], s.rx_rings[0]
    first_m, first_s = m.extra_buffers(), s.extra_buffers()
    assert len(first_m) == len(first_s) == EXTRA
    owned_once(slot_bufs(mtx), slot_bufs(mrx), first_m, first_s)   # F6: the slave's rings are copies

    # master -> slave: an extra buffer carries frame 0; the slave keeps it and gives one of its own
    out = [frame(BCAST, mac(1), size=100, fill=k) for k in range(3)]
    for k, f in enumerate(out):
        put(mtx, k, f)
    x, o = swap_in(m, mtx, 0)
    put(mtx, 0, out[0])
    mtx.advance(3)
    m.txsync()
    assert int(mtx.slots["buf_idx"][0]) == x and not mtx.slots["flags"][0] & CHANGED, "F5/B11"
    s.rxsync()
    assert srx.space() == 3 and int(srx.slots["buf_idx"][0]) == x, "F5: the buffer itself travelled"
    assert [payload(srx, k) for k in range(3)] == out
    y, got = swap_in(s, srx, 0)
    assert got == x
    srx.advance(3)
    s.rxsync()
    m.txsync()
    assert int(mtx.slots["buf_idx"][0]) == y, "F5: the released slot brings the slave's buffer back"
    assert mtx.tail == 2

    # slave -> master, the same the other way round
    back = [frame(BCAST, mac(2), size=80, fill=50 + k) for k in range(2)]
    for k, f in enumerate(back):
        put(stx, k, f)
    z, p = swap_in(s, stx, 1)
    put(stx, 1, back[1])
    stx.advance(2)
    s.txsync()
    m.rxsync()
    assert mrx.space() == 2 and int(mrx.slots["buf_idx"][1]) == z
    assert [payload(mrx, k) for k in range(2)] == back
    w, got = swap_in(m, mrx, 1)
    assert got == z
    mrx.advance(2)
    m.rxsync()
    s.txsync()
    assert int(stx.slots["buf_idx"][1]) == w

    # x went master list -> master TX -> slave RX -> slave list -> slave TX -> master RX -> master
    # list; o master TX -> master list -> master RX -> slave TX; y slave list -> slave RX -> master
    # TX; p slave TX -> slave list. Every buffer still owned exactly once, both lists whole.
    assert (z, w) == (x, o)
    lm, ls = m.extra_buffers(), s.extra_buffers()
    assert (lm, ls) == ([x] + first_m[1:], [p] + first_s[1:]), "A13: swaps keep the lists whole"
    assert slot_bufs(mtx) == slot_bufs(srx) and slot_bufs(mrx) == slot_bufs(stx), "F5: all synced"
    every = owned_once(slot_bufs(mtx), slot_bufs(mrx), lm, ls)
    assert sorted(every) == sorted(owned_once(list(range(2, 2 + 2 * N)), first_m, first_s)), \
        "nothing lost, nothing made up"

    # closing one end frees exactly what its list names: first-fit hands the same ones out again
    m.close()
    m2 = opener(f"{pipe}{{1", extra_bufs=EXTRA)
    assert sorted(m2.extra_buffers()) == sorted(lm), "A7/A13/L6: the list named at close was freed"
    assert slot_bufs(m2.tx_rings[0]) == slot_bufs(srx), "F7: the rings outlive one end"
    recv(s)
    m2.close()
    s.close()

    # the pipe and its auto-created parent are gone (A17): a new pair starts from scratch
    m3 = opener(f"{pipe}{{1@conf:slots={N}", extra_bufs=EXTRA)
    s3 = opener(f"{pipe}}}1", extra_bufs=EXTRA)
    assert (m3.extra_buffers(), s3.extra_buffers()) == (first_m, first_s), "A17: full lists again"
    m3.close()
    s3.close()


def test_vale_extra_buffers_travel_and_come_back(opener):
    sw = unique_switch("valexb")
    conf = f"@conf:slots={N}"
    a = opener(f"{sw}:a{conf}", extra_bufs=EXTRA)
    keep = opener(f"{sw}:a")            # a second descriptor: a's allocator outlives a's close
    b = opener(f"{sw}:b{conf}", extra_bufs=EXTRA)
    atx, arx, btx, brx = a.tx_rings[0], a.rx_rings[0], b.tx_rings[0], b.rx_rings[0]
    first_a, first_b = a.extra_buffers(), b.extra_buffers()
    assert len(first_a) == len(first_b) == EXTRA
    assert keep.extra_buffers() == [] and keep.info.mem_id == a.info.mem_id != b.info.mem_id

    # a sends from one of its extra buffers: VALE copies the payload, the TX slot keeps the buffer
    out = [frame(BCAST, mac(1), size=200, fill=k) for k in range(2)]
    x, o = swap_in(a, atx, 0)
    for k, f in enumerate(out):
        put(atx, k, f)
    atx.advance(2)
    a.txsync()
    assert int(atx.slots["buf_idx"][0]) == x and not atx.slots["flags"][0] & CHANGED, "B11"
    b.rxsync()
    assert brx.space() == 2 and [payload(brx, k) for k in range(2)] == out, \
        "Live check 4: broadcast delivered"
    received = int(brx.slots["buf_idx"][0])
    y, got = swap_in(b, brx, 0)          # b keeps the received buffer, gives an extra one
    assert got == received and y == first_b[0]
    brx.advance(2)
    b.rxsync()

    # the next frames land in b's former extra buffer, and b answers from one of its own
    more = [frame(BCAST, mac(1), size=90, fill=40 + k) for k in range(N - 1)]
    for k, f in enumerate(more):
        put(atx, (2 + k) % N, f)
    atx.advance(N - 1)
    a.txsync()
    b.rxsync()
    assert brx.space() == N - 1 and int(brx.slots["buf_idx"][0]) == y, "the extra buffer is an RX buffer now"
    assert [payload(brx, k % N) for k in range(2, N + 1)] == more
    brx.advance(N - 1)
    b.rxsync()
    z, p = swap_in(b, btx, 0)            # the buffer b received first goes out again
    assert z == received
    answer = frame(mac(1), mac(2), size=70, fill=9)
    put(btx, 0, answer)
    btx.advance(1)
    b.txsync()
    a.rxsync()
    assert arx.space() == 1 and payload(arx, 0) == answer, "Live check 4: learned unicast"
    w, got = swap_in(a, arx, 0)          # a's list gives back the buffer it sent from first
    assert w == o
    arx.advance(1)
    a.rxsync()

    la, lb = a.extra_buffers(), b.extra_buffers()
    assert (la, lb) == ([got] + first_a[1:], [p] + first_b[1:]), "A13: swaps keep the lists whole"
    for port, tx, rx, lst, first in ((a, atx, arx, la, first_a), (b, btx, brx, lb, first_b)):
        every = owned_once(slot_bufs(tx), slot_bufs(rx), lst)
        assert sorted(every) == sorted(list(range(2, 2 + 2 * N)) + first), \
            f"{port.name}: A7 numbering, nothing lost, nothing made up"

    # a's descriptor closes while `keep` holds the port: exactly its list is freed
    a.close()
    a2 = opener(f"{sw}:a", extra_bufs=EXTRA)
    assert sorted(a2.extra_buffers()) == sorted(la), "A7/A13/L6: the list named at close was freed"
    a2.close()
    keep.close()
    b.close()

    # the ports are gone: new ones get new allocators and full lists, numbered as the first time
    a3 = opener(f"{sw}:a{conf}", extra_bufs=EXTRA)
    b3 = opener(f"{sw}:b{conf}", extra_bufs=EXTRA)
    assert (a3.extra_buffers(), b3.extra_buffers()) == (first_a, first_b), "A17: full lists again"
    a3.close()
    b3.close()
