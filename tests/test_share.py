"""``@share=PORT`` on the chosen backend (spec D6, A18, L10): the new port is registered in
PORT's allocator, so both map one region and ``Ring.forward`` between them swaps buffer indexes
instead of copying bytes, as netmap's bridge does between ports of one mem_id."""
from __future__ import annotations

import numpy as np
import pytest

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, NoSuchPortError
from netmap_core.testing import BCAST, frame, mac, recv, send, unique_switch

CHANGED = abi.NS_BUF_CHANGED


def bufs(ring, k=None) -> list[int]:
    return [int(x) for x in ring.slots["buf_idx"][:k]]


def test_share_registers_in_the_other_ports_allocator(opener):
    s1, s2 = unique_switch("valesh"), unique_switch("valesh")
    a = opener(f"{s1}:a")
    b = opener(f"{s2}:b@share={s1}:a")
    assert b.info.mem_id == a.info.mem_id, "D6: @share takes PORT's mem_id"
    assert (b.info.offset, b.info.memsize) == (1024, a.info.memsize), \
        "A18: a port given another's mem_id gets the next netmap_if of that region"
    assert (bufs(b.rx_rings[0]) == list(range(2050, 3074))
            and bufs(b.tx_rings[0]) == list(range(3074, 4098))), \
        "A7: b's rings take buffers first-fit after a's 2..2049"
    assert a.rx_rings[0].same_pool(b.tx_rings[0]), "A15/L10: one mapping per mem_id"
    c = opener(f"{s2}:c")
    assert c.info.mem_id != a.info.mem_id and not a.rx_rings[0].same_pool(c.tx_rings[0])


def test_forward_between_shared_ports_swaps_buffers(opener):
    s1, s2 = unique_switch("valesh"), unique_switch("valesh")
    src, a = opener(f"{s1}:src"), opener(f"{s1}:a")
    b, dst = opener(f"{s2}:b@share={s1}:a"), opener(f"{s2}:dst")
    out = [frame(BCAST, mac(1), size=120, fill=k) for k in range(3)]
    send(src, out)
    a.rxsync()
    arx, btx = a.rx_rings[0], b.tx_rings[0]
    assert arx.space() == 3
    came, spare = bufs(arx, 3), bufs(btx, 3)
    btx.buffers[spare, :120] = 0xEE                 # what a copy would overwrite
    assert arx.forward(btx, copy=False) == 3, "same pool: zero copy is allowed"
    assert bufs(btx, 3) == came and bufs(arx, 3) == spare, "buffer indexes swapped"
    assert (btx.slots["flags"][:3] & CHANGED).all() and (arx.slots["flags"][:3] & CHANGED).all()
    assert list(btx.slots["len"][:3]) == [120] * 3
    assert (btx.buffers[spare, :120] == 0xEE).all(), "no payload byte was copied"
    b.txsync()
    a.rxsync()                                      # a's RX ring gets b's old buffers
    assert recv(dst) == out, "the frames left through b from the buffers a received them in"
    assert (arx.head, arx.tail) == (3, 3)
    send(src, out[:1])
    assert recv(a) == out[:1], "a keeps receiving, into the buffers it got from b"


def test_shared_allocator_outlives_its_first_port(opener):
    s1, s2 = unique_switch("valesh"), unique_switch("valesh")
    a = opener(f"{s1}:a")
    b, dst = opener(f"{s2}:b@share={s1}:a"), opener(f"{s2}:dst")
    mem = a.info.mem_id
    a.close()                                       # the ephemeral port a is destroyed ...
    send(b, [frame(BCAST, mac(2), fill=7)])         # ... its allocator is still b's
    assert recv(dst) == [frame(BCAST, mac(2), fill=7)]
    a2 = opener(f"{s1}:a")
    assert a2.info.mem_id != mem, "A17/A18: a new port a gets a new allocator"


def test_share_with_a_pipe(opener):
    sw = unique_switch("valesh")
    a = opener(f"{sw}:a")
    pipe = f"netmap:{unique_switch('shp')}"
    m = opener(f"{pipe}{{1@share={sw}:a")
    s = opener(f"{pipe}}}1")
    assert m.info.mem_id == s.info.mem_id == a.info.mem_id, \
        "F1/F4: the auto-created parent is made in the shared allocator, both ends use it"
    assert a.tx_rings[0].same_pool(m.rx_rings[0])
    send(m, [frame(BCAST, mac(3))])
    rx = s.rx_rings[0]
    s.rxsync()
    assert rx.forward(a.tx_rings[0], copy=False) == 1


def test_share_refusals(opener, backend_name):
    sw = unique_switch("valesh")
    a = opener(f"{sw}:a")
    other = a.info.mem_id + 1
    with pytest.raises(InvalidRequestError, match="@share"):
        opener(f"{sw}:b@{other}@share={sw}:a")      # D5/D6: two different mem ids
    b = opener(f"{sw}:b@{a.info.mem_id}@share={sw}:a")
    assert b.info.mem_id == a.info.mem_id, "the same id twice is fine"
    with pytest.raises(InvalidRequestError):
        # C5/A18: PORT_INFO_GET on a new VALE name reports a temporary port's allocator, which
        # is gone by the time of the REGISTER: EINVAL
        opener(f"{sw}:c@share={unique_switch('valesh')}:nosuch")
    with pytest.raises(NoSuchPortError):
        opener(f"{sw}:d@share=netmap:nosuch{np.random.randint(1 << 30)}")   # C5: ENXIO


def test_share_errors_name_the_port_and_say_what_to_do(opener, backend_name):
    if backend_name != "emu":
        pytest.skip("the emulator's wording")
    sw = unique_switch("valesh")
    missing = f"nosuch{np.random.randint(1 << 30)}"
    with pytest.raises(NoSuchPortError, match=f"@share=netmap:{missing}: no port '{missing}'") as ei:
        opener(f"{sw}:d@share=netmap:{missing}")
    assert ei.value.errno == 6 and "open that port first" in str(ei.value)
    ghost = f"{unique_switch('valesh')}:ghost"
    with pytest.raises(InvalidRequestError, match=f"VALE port '{ghost}' does not exist") as ei:
        opener(f"netmap:{unique_switch('shp')}{{1@share={ghost}")
    assert "nr_mem_id" not in str(ei.value), "not the allocator id of a port nobody opened"
