"""SIGKILL of a process in the middle of its traffic, on the chosen backend (spec L6, F7, E1,
E3): a child holds two VALE ports (one with extra buffers swapped into its TX ring), both ends
of one pipe and one end of a pipe whose other end the test holds, and floods all of them until
it is killed. Afterwards the kernel (or the emulator's reclaim) has removed what it held, the
same names open again with fresh state, the switch and the surviving pipe end keep working, and
on the device the kernel-log check (tests/kernel_log.py) sees no netmap error (no double free,
no list it had to cut short)."""
from __future__ import annotations

import contextlib
import signal
import time

import netmap_core
from netmap_core.control import control_for
from netmap_core.testing import BCAST, frame, mac, recv, send, unique_switch
from procs import BOUND, Child

FLOODER = """
    import sys
    import netmap_core
    from netmap_core import abi
    from netmap_core.testing import BCAST, frame, mac, recv

    sw, own, shared, backend = sys.argv[1:5]

    def op(name, **kw):
        return netmap_core.open(name, backend=backend, **kw)

    k1, k2 = op(f"{sw}:k1", extra_bufs=8), op(f"{sw}:k2")
    m, s = op(f"{own}{{1"), op(f"{own}}}1")            # both ends of one pipe
    q = op(f"{shared}{{1")                              # the test holds the other end
    t = k1.tx_rings[0]
    for i in range(2):      # two extra buffers into TX slots, the slots' buffers onto the list
        new = k1.bufs_head
        k1.bufs_head = int(t.buffers[new, :4].view("<u4")[0])
        old = int(t.slots["buf_idx"][i])
        t.slots["buf_idx"][i], t.slots["flags"][i] = new, abi.NS_BUF_CHANGED
        t.buffers[old, :4].view("<u4")[0] = k1.bufs_head
        k1.bufs_head = old
    print("open", len(k1.extra_buffers()), flush=True)
    rounds = 0
    while True:
        for port, src in ((k1, 1), (k2, 2), (m, 3), (q, 4)):
            tx = port.tx_rings[0]
            k = min(tx.space(), 8)
            if k:
                tx.fill(k, template=frame(BCAST, mac(src), size=60 + src))
            port.txsync()
        for port in (k1, k2, s):
            recv(port)
        rounds += 1
        if rounds == 20:
            print("busy", flush=True)
"""


def sources(frames) -> set[int]:
    return {f[11] for f in frames}


def test_sigkill_mid_traffic_leaves_nothing_behind(backend_name):
    sw = unique_switch("valekl")
    own, shared = f"netmap:{unique_switch('klo')}", f"netmap:{unique_switch('kls')}"
    with contextlib.ExitStack() as st:
        def op(name, **kw):
            return st.enter_context(netmap_core.open(name, backend=backend_name, **kw))

        a = op(f"{sw}:a@conf:slots=256")
        qs = op(f"{shared}}}1")
        ctl = control_for(backend_name)
        st.callback(ctl.close)
        with Child(FLOODER, sw, own, shared, backend_name) as child:
            assert child.expect("open") == ["8"], "A13: the list stays whole after the swaps"
            child.expect("busy")
            seen: set[int] = set()
            end = time.monotonic() + BOUND
            while not {1, 2, 4} <= seen:          # its VALE ports and its pipe end are live
                assert time.monotonic() < end, f"only sources {seen} seen"
                seen |= sources(recv(a)) | sources(recv(qs))
            assert ctl.vale_list(f"{sw}:k1").port_idx != 255
            child.kill()                          # SIGKILL, mid-traffic: it never stopped
            assert child.proc.returncode == -signal.SIGKILL
        for _ in range(3):                        # what it sent before it died, then nothing
            recv(a), recv(qs)
        assert recv(a) == [] and recv(qs) == []

        # its VALE ports are gone, the switch still works and lists the survivor
        for name in (f"{sw}:k1", f"{sw}:k2"):
            assert ctl.vale_list(name).port_idx == 255, f"L6: {name} left with its process"
        assert ctl.vale_list(f"{sw}:a").port_idx in (0, 1, 2)
        k1 = op(f"{sw}:k1", extra_bufs=8)
        assert k1.info.extra_bufs == 8 and len(k1.extra_buffers()) == 8
        f = frame(BCAST, mac(7), fill=1)
        send(k1, [f])
        assert recv(a) == [f]
        send(a, [frame(BCAST, mac(8))])
        assert recv(k1) == [frame(BCAST, mac(8))]

        # the pipe it held both ends of was destroyed: it comes back fresh
        m, s = op(f"{own}{{1"), op(f"{own}}}1")
        tx, rx = m.tx_rings[0], s.rx_rings[0]
        assert (tx.head, tx.tail, rx.head, rx.tail) == (0, tx.num_slots - 1, 0, 0), "F7/F8: new rings"
        send(m, [f])
        assert recv(s) == [f]

        # the end it shared with us opens again; what it left in flight is delivered first
        q = op(f"{shared}{{1")
        g = frame(BCAST, mac(9), size=99)
        send(q, [g])
        got = recv(qs)
        assert got and got[-1] == g and sources(got[:-1]) <= {4}, "F7: our end kept its ring"
