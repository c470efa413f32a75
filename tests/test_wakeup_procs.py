"""Wake-ups across processes on the chosen backend (spec B13, F5, E6, Live check 6): a process
blocked in ``poll`` or awaiting ``Port.wait()`` (asyncio) is woken by another process's sync -
a receiver by the sender's txsync (pipe and VALE), a sender on a full pipe by the receiver's
rxsync releasing slots. The tests assert what happened (which event, after which action, with
what in the ring), never how fast: timeouts only bound a hang."""
from __future__ import annotations

import time

import pytest

import netmap_core
from netmap_core import POLLIN, POLLOUT
from netmap_core.testing import BCAST, frame, mac, recv, send, unique_switch
from procs import BOUND, Child, port_pair

WAITER = """
    import asyncio, sys, time
    import netmap_core
    from netmap_core import POLLIN, POLLOUT
    from netmap_core.testing import BCAST, frame, mac, recv

    name, backend, how, what = sys.argv[1:5]
    events = POLLIN if what == "in" else POLLOUT
    p = netmap_core.open(name, backend=backend)
    if what == "out":                         # fill the pipe: the peer has not read anything
        tx = p.tx_rings[0]
        tx.fill(template=frame(BCAST, mac(5), size=64))
        p.txsync()
        assert tx.space() == 0, tx
    assert p.poll(events, 0) == 0, "ready before anything happened"
    print("ready", flush=True)
    if how == "poll":
        revents = p.poll(events, {bound})
    else:
        revents = asyncio.run(asyncio.wait_for(p.wait(events), {bound}))
    t = time.monotonic()
    if what == "in":
        got = recv(p)
        print("woke", revents, t, len(got), got[0].hex() if got else "-", flush=True)
    else:
        print("woke", revents, t, p.tx_rings[0].space(), "-", flush=True)
    p.close()
""".format(bound=BOUND / 2)


def names(kind: str) -> tuple[str, str]:
    return port_pair(kind, "wk", "@conf:slots=8")


@pytest.mark.parametrize("how", ["poll", "wait"])
@pytest.mark.parametrize("kind", ["pipe", "vale"])
def test_receiver_woken_by_senders_txsync(backend_name, kind, how):
    mine, theirs = names(kind)
    with netmap_core.open(mine, backend=backend_name) as p, \
            Child(WAITER, theirs, backend_name, how, "in") as child:
        child.expect("ready")
        time.sleep(0.5)                       # lets the child block first (not needed to pass)
        f = frame(BCAST, mac(1), size=90, fill=7)
        t_sent = time.monotonic()
        send(p, [f])                          # txsync only: no poll on this side
        revents, t_woke, count, data = child.expect("woke")
        assert int(revents) & POLLIN, f"B13: {how} reports POLLIN (revents {revents})"
        assert float(t_woke) >= t_sent, "woken by the txsync, not before it"
        assert (int(count), data) == (1, f.hex()), "the frame sent is the frame received"
        assert child.wait() == 0


@pytest.mark.parametrize("how", ["poll", "wait"])
def test_sender_on_a_full_pipe_woken_by_receivers_release(backend_name, how):
    pipe = f"netmap:{unique_switch('wk')}"
    with netmap_core.open(f"{pipe}}}1@conf:slots=8", backend=backend_name) as s, \
            Child(WAITER, f"{pipe}{{1", backend_name, how, "out") as child:
        child.expect("ready")                 # the child's 7 slots are in flight (F5: n - 1)
        time.sleep(0.5)
        got = recv(s)                         # rxsync, then the 7 slots are released ...
        assert len(got) == 7
        t_released = time.monotonic()
        s.rxsync()                            # ... here, which hands them back to the sender
        revents, t_woke, space, _ = child.expect("woke")
        assert int(revents) & POLLOUT, f"B13/F5: {how} reports POLLOUT (revents {revents})"
        assert float(t_woke) >= t_released, "woken by the release, not before it"
        assert int(space) == 7, "F5: every released slot is free again"
        assert child.wait() == 0
