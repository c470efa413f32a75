"""SIGSTOP of a process holding the emulator's locks (issue #10, "a stopped process freezes
others"): a process stopped (Ctrl-Z, a debugger) inside a sync, a forwarding pass or an
open/close keeps its fcntl locks, and nobody else may wait for it beyond the call's own
timeout. A sync gives up after ``$PYNETMAP_EMU_SYNC_TIMEOUT`` with a ``LockTimeoutError``
naming the stopped pid and its state, ``poll(timeout)`` returns within its timeout (the ring is
not ready), a switch drops (and counts) what it cannot deliver to a stopped receiver, an open
waits ``$PYNETMAP_EMU_LOCK_TIMEOUT`` and ``emu ls`` answers at once. After SIGCONT everything
works again and no frame is lost or duplicated.

The first tests stop a child exactly while it holds one lock; the campaigns stop flooding,
receiving and opening children at random moments (longer campaigns: ``--run-slow``). Every
child is continued and killed in a ``finally``: a failing test never leaves a stopped process.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import random
import signal
import time

import pytest

import netmap_core
from netmap_core import POLLIN
from netmap_core.errors import LockTimeoutError, NetmapError
from netmap_core.testing import BCAST, frame, mac, recv, send, unique_switch
from netmap_emu import cli, vale
from procs import Child

#: what the tests set (seconds): a sync's and the kernel's lock waits
SYNC_T, LOCK_T = 0.3, 0.6
#: slack for a loaded 2-core machine on top of a stated bound
SLACK = 0.35

HOLDER = """
    import os, sys, time
    import netmap_core
    from netmap_emu.shm.namespace import namespace
    from netmap_core.testing import BCAST, frame, mac, send, recv

    names = sys.argv[1].split(",")
    ports = [netmap_core.open(n, backend="emu") for n in names]
    p = ports[0]
    print("open", os.getpid(), flush=True)
    held = None
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "send":            # send K frames numbered from N
            k, n = int(args[0]), int(args[1])
            send(p, [frame(BCAST, mac(1), size=64, fill=0)[:14] + (n + i).to_bytes(4, "big") + bytes(46)
                     for i in range(k)])
            print("sent", flush=True)
        elif cmd == "recv":
            got = []
            for _ in range(int(args[0])):
                got += [int.from_bytes(f[14:18], "big") for f in recv(p)]
                time.sleep(0.01)
            print("got", *got, flush=True)
        elif cmd == "lock":          # hold one lock until "unlock"
            what = args[0]
            if what == "tx":
                held = p._binding._tx[0]; held.lock()
            elif what == "rx":
                held = p._binding._rx[0]; held.lock()
            elif what == "switch":
                held = p._binding.runtime.seg.shared(); held.__enter__()
            elif what == "ns":
                held = namespace().locked(); held.__enter__()
            print("locked", flush=True)
        elif cmd == "unlock":
            if hasattr(held, "unlock"):
                held.unlock()
            else:
                held.__exit__(None, None, None)
            held = None
            print("unlocked", flush=True)
        elif cmd == "quit":
            break
    for q in ports:
        q.close()
    print("closed", flush=True)
"""


def seq_frame(n: int, src: int = 2) -> bytes:
    return frame(BCAST, mac(src), size=64)[:14] + n.to_bytes(4, "big") + bytes(46)


def seqs(frames) -> list[int]:
    return [int.from_bytes(f[14:18], "big") for f in frames]


@pytest.fixture
def emu_only(backend_name):
    if backend_name != "emu":
        pytest.skip("the emulator's locks: the netmap kernel is never stopped holding a ring")


@pytest.fixture
def timeouts(monkeypatch, emu_only):
    """Short lock timeouts for this process and its children."""
    monkeypatch.setenv("PYNETMAP_EMU_SYNC_TIMEOUT", str(SYNC_T))
    monkeypatch.setenv("PYNETMAP_EMU_LOCK_TIMEOUT", str(LOCK_T))


@contextlib.contextmanager
def stopped(child: Child):
    """``child`` stopped with SIGSTOP for the block; continued whatever happens."""
    os.kill(child.proc.pid, signal.SIGSTOP)
    _wait_state(child.proc.pid, "T")
    try:
        yield child.proc.pid
    finally:
        os.kill(child.proc.pid, signal.SIGCONT)


def state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rpartition(b")")[2].split()[0].decode()


def _wait_state(pid: int, want: str) -> None:
    end = time.monotonic() + 10
    while state(pid) != want:
        assert time.monotonic() < end, f"process {pid} never reached state {want!r}"
        time.sleep(0.001)


@contextlib.contextmanager
def children(*specs):
    """Children running HOLDER on the given port lists; SIGCONT then SIGKILL at the end."""
    kids = []
    try:
        for names in specs:
            kids.append(Child(HOLDER, ",".join(names)))
        for c in kids:
            c.expect("open")
        yield kids
    finally:
        for c in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.proc.pid, signal.SIGCONT)
            c.__exit__(None, None, None)


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    try:
        return fn(*args, **kw), time.monotonic() - t0
    except NetmapError as exc:
        return exc, time.monotonic() - t0


def assert_names(exc, pid: int) -> None:
    assert isinstance(exc, LockTimeoutError), exc
    assert isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT
    assert exc.holder_pid == pid and exc.holder_state == "T", (exc.holder_pid, exc.holder_state, str(exc))
    assert f"process {pid} (stopped" in str(exc) and f"kill -CONT {pid}" in str(exc), str(exc)


# --- one lock, stopped exactly while held ---------------------------------------------------------

def test_pipe_sender_stopped_in_its_sync(timeouts, opener):
    pipe = f"netmap:{unique_switch('stp')}"
    rx_port = opener(f"{pipe}}}1")
    with children([f"{pipe}{{1"]) as (tx,):
        tx.tell("send 5 0")
        tx.expect("sent")
        assert seqs(recv(rx_port)) == [0, 1, 2, 3, 4]   # released: the next rxsync needs the lock
        tx.tell("lock tx")
        tx.expect("locked")
        with stopped(tx) as pid:
            rv, took = timed(rx_port.poll, POLLIN, 0.05)
            assert rv == 0 and took < 0.05 + SLACK, f"poll(0.05) took {took:.3f} s"
            exc, took = timed(rx_port.rxsync)
            assert_names(exc, pid)
            assert SYNC_T * 0.9 <= took < SYNC_T + SLACK, f"rxsync gave up after {took:.3f} s"
            assert "the lock of ring" in str(exc)
            rv, took = timed(rx_port.poll, POLLIN, 0)
            assert rv == 0 and took < 0.01 + SLACK
        tx.tell("unlock")
        tx.expect("unlocked")
        tx.tell("send 3 5")
        tx.expect("sent")
        assert rx_port.poll(POLLIN, 5) & POLLIN
        assert seqs(recv(rx_port)) == [5, 6, 7], "nothing lost or repeated across the stop"


def test_vale_receiver_stopped_in_its_sync(timeouts, opener):
    sw = unique_switch("valestp")
    a = opener(f"{sw}:a")
    c = opener(f"{sw}:c")
    with children([f"{sw}:b"]) as (b,):
        b.tell("lock rx")
        b.expect("locked")
        s = vale.switch(sw)
        port_b = {v: k for k, v in s.ports().items()}[f"{sw}:b"]
        with stopped(b):
            before = int(s.stats.dropped[port_b])
            n, took = timed(send, a, [seq_frame(i) for i in range(4)])
            assert n == 4 and took < SYNC_T, f"txsync waited {took:.3f} s for a stopped receiver"
            assert int(s.stats.dropped[port_b]) - before == 4, "dropped for b and counted"
            assert seqs(recv(c)) == [0, 1, 2, 3], "the other ports still receive"
        b.tell("unlock")
        b.expect("unlocked")
        send(a, [seq_frame(i) for i in range(4, 7)])
        b.tell("recv 3")
        assert [int(w) for w in b.expect("got")] == [4, 5, 6]
        assert seqs(recv(c)) == [4, 5, 6]


def test_open_on_a_switch_a_stopped_sender_forwards_through(timeouts, opener):
    sw = unique_switch("valestp")
    a = opener(f"{sw}:a")
    gone = netmap_core.open(f"{sw}:gone", backend="emu")
    with children([f"{sw}:b"]) as (b,):
        b.tell("lock switch")
        b.expect("locked")
        with stopped(b) as pid:
            exc, took = timed(netmap_core.open, f"{sw}:late", backend="emu")
            assert_names(exc, pid)
            assert LOCK_T * 0.9 <= took < LOCK_T + SLACK, f"open gave up after {took:.3f} s"
            assert "VALE switch" in str(exc)
            n, took = timed(send, a, [seq_frame(0)])   # forwarding passes share the switch
            assert n == 1 and took < SLACK
            exc, took = timed(gone.close)   # removing a port waits for forwarding passes too
            assert_names(exc, pid)
            assert gone.closed and took < LOCK_T + SLACK
            assert f"{sw}:gone" in vale.switch(sw).ports().values(), "still there, for now"
        b.tell("unlock")
        b.expect("unlocked")
        assert f"{sw}:gone" not in vale.switch(sw).ports().values(), "the next operation removed it"
        with netmap_core.open(f"{sw}:late", backend="emu") as late:
            send(a, [seq_frame(1)])
            assert seqs(recv(late)) == [1]
        b.tell("recv 1")
        assert [int(w) for w in b.expect("got")] == [0, 1]


def test_stopped_namespace_holder_ls_answers_open_names_it(timeouts, opener):
    pipe = f"netmap:{unique_switch('stpns')}"
    with children([f"{pipe}{{1"]) as (k,):
        k.tell("lock ns")
        k.expect("locked")
        with stopped(k) as pid:
            snap, took = timed(cli.ls)
            assert took < SLACK, f"ls took {took:.3f} s"
            assert snap["locked_by"]["pid"] == pid and snap["locked_by"]["state"] == "T"
            assert any(b["name"].endswith("{1") and b["pid"] == pid for b in snap["bindings"])
            out = io.StringIO()
            assert cli.main(["ls"], out=out) == 0
            assert f"process {pid} (stopped" in out.getvalue()
            exc, took = timed(netmap_core.open, f"{pipe}}}1", backend="emu")
            assert_names(exc, pid)
            assert LOCK_T * 0.9 <= took < LOCK_T + SLACK
            assert "namespace" in str(exc)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc, took = timed(cli.main, ["gc"], io.StringIO())
            assert rc == 1 and f"kill -CONT {pid}" in err.getvalue() and took < LOCK_T + SLACK
        k.tell("unlock")
        k.expect("unlocked")
        assert cli.ls()["locked_by"] is None
        peer = opener(f"{pipe}}}1")
        k.tell("send 2 0")
        k.expect("sent")
        assert seqs(recv(peer)) == [0, 1]


def test_poll_timeout_is_validated_and_kept(emu_only, opener):
    p = opener(f"netmap:{unique_switch('stpp')}{{1")
    with pytest.raises(NetmapError, match="timeout=nan"):
        p._binding.poll(POLLIN, float("nan"))
    for t in (0, 0.02):
        rv, took = timed(p.poll, POLLIN, t)
        assert rv == 0 and took < t + SLACK


# --- campaigns: stops at random moments -----------------------------------------------------------

SENDER = """
    import os, select, sys
    import netmap_core
    from netmap_core.errors import LockTimeoutError
    from netmap_emu import vale
    from netmap_core.testing import BCAST, mac, send

    name, sw, dest = sys.argv[1:4]
    p = netmap_core.open(name, backend="emu")
    print("open", os.getpid(), flush=True)
    tx = p.tx_rings[0]
    hdr = BCAST + mac(1) + b"\\x88\\xb5"
    seq = rounds = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        k = min(tx.space(), 16)
        if k:
            send(p, [hdr + (seq + i).to_bytes(4, "big") + bytes(46) for i in range(k)], sync=False)
            seq += k
        try:
            p.poll(netmap_core.POLLOUT, 0.02) if not k else p.txsync()
        except LockTimeoutError:
            pass   # what is in the ring goes with the next sync
        rounds += 1
        if rounds == 10:
            print("busy", flush=True)
    sys.stdin.readline()
    while True:
        try:
            p.txsync()
            break
        except LockTimeoutError:
            pass
    if sw != "-":
        s = vale.switch(sw)
        delivered = int(s.stats.delivered[{v: k for k, v in s.ports().items()}[dest]])
    else:
        delivered = seq
    print("sent", seq, delivered, flush=True)
    sys.stdin.readline()
    p.close()
"""

RECEIVER = """
    import os, select, sys, time
    import netmap_core
    from netmap_core.errors import LockTimeoutError
    from netmap_core.testing import recv

    p = netmap_core.open(sys.argv[1], backend="emu")
    print("open", os.getpid(), flush=True)
    got = []
    def step():
        try:
            p.poll(netmap_core.POLLIN, 0.02)
            got.extend(int.from_bytes(f[14:18], "big") for f in recv(p))
        except LockTimeoutError:
            pass
    while not select.select([sys.stdin], [], [], 0)[0]:
        step()
    sys.stdin.readline()
    quiet = time.monotonic() + 0.5
    while time.monotonic() < quiet:
        n = len(got)
        step()
        if len(got) != n:
            quiet = time.monotonic() + 0.5
    inc = all(a < b for a, b in zip(got, got[1:]))
    print("got", len(got), int(inc), int(got == list(range(len(got)))), flush=True)
    sys.stdin.readline()
    p.close()
"""

OPENER = """
    import os, select, sys
    import netmap_core
    from netmap_core.errors import LockTimeoutError

    sw, pipe = sys.argv[1:3]
    print("open", os.getpid(), flush=True)
    i = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        try:
            with netmap_core.open(f"{sw}:o{i % 3}", backend="emu"):
                with netmap_core.open(f"{pipe}{{{i % 2}", backend="emu"):
                    pass
        except LockTimeoutError:
            pass   # the test's own opens may hold a lock for a moment; never for long
        i += 1
        if i == 5:
            print("busy", flush=True)
    sys.stdin.readline()
    print("done", i, flush=True)
"""


def check_timeout_error(exc: LockTimeoutError, pid: int) -> None:
    """An error met during a random stop names the child; stopped: with the remedy."""
    assert exc.holder_pid == pid, str(exc)
    assert exc.holder_state, str(exc)
    if exc.holder_state == "T":
        assert f"kill -CONT {pid}" in str(exc), str(exc)


class Campaign:
    """Stops ``pid`` at random moments for random spans while ``step`` runs (timed)."""

    def __init__(self, pid: int, rng: random.Random) -> None:
        self.pid, self.rng = pid, rng
        self.stops = self.errors = self.calls = 0
        self.worst = 0.0

    def run(self, seconds: float, step) -> None:
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                run_for = time.monotonic() + self.rng.uniform(0.0, 0.15)
                while time.monotonic() < run_for:
                    step(False)
                os.kill(self.pid, signal.SIGSTOP)
                self.stops += 1
                stop_for = time.monotonic() + self.rng.uniform(0.02, 0.4)
                while time.monotonic() < stop_for:
                    step(True)
                os.kill(self.pid, signal.SIGCONT)
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def report(self, name: str) -> None:
        """The campaign's figures (shown with ``pytest -s``)."""
        print(f"\n{name}: {self.stops} stops, {self.calls} timed calls, worst {self.worst:.3f} s, "
              f"{self.errors} LockTimeoutError naming pid {self.pid}, hangs 0, signals 0")

    def timed(self, bound: float, fn, *args):
        t0 = time.monotonic()
        try:
            return fn(*args)
        except LockTimeoutError as exc:
            self.errors += 1
            check_timeout_error(exc, self.pid)
            return None
        finally:
            took = time.monotonic() - t0
            self.calls += 1
            self.worst = max(self.worst, took)
            assert took < bound, f"{fn.__name__} took {took:.3f} s (bound {bound} s)"


def assert_no_leftovers(pid: int) -> None:
    """Nothing of the (ended) child ``pid`` is left once the namespace is reclaimed."""
    cli.gc(remove_empty=False)
    left = [b["name"] for b in cli.ls()["bindings"] if b["pid"] == pid]
    assert not left, f"bindings of pid {pid} left behind: {left}"


def _ends(kind: str, tag: str) -> tuple[str, str, str]:
    """(sender's port, receiver's port, switch or '-')."""
    if kind == "pipe":
        pipe = f"netmap:{unique_switch(tag)}"
        return f"{pipe}{{1", f"{pipe}}}1", "-"
    sw = unique_switch(f"vale{tag}")
    return f"{sw}:s", f"{sw}:r", sw


#: seconds of stops per campaign: a short one always, a long one with --run-slow
SECONDS = pytest.mark.parametrize("seconds", [1.5, pytest.param(30.0, marks=pytest.mark.slow, id="long")])


@SECONDS
@pytest.mark.parametrize("kind", ["pipe", "vale"])
def test_sender_stopped_at_random(kind, seconds, timeouts, opener):
    s_name, r_name, sw = _ends(kind, "sts")
    rx = opener(r_name)
    got: list[int] = []
    with contextlib.ExitStack() as st:
        child = st.enter_context(Child(SENDER, s_name, sw, r_name))
        st.callback(lambda: os.kill(child.proc.pid, signal.SIGCONT))
        child.expect("open")
        child.expect("busy")
        c = Campaign(child.proc.pid, random.Random(os.getpid()))

        def step(stopped: bool) -> None:
            c.timed(0.05 + SLACK, rx.poll, POLLIN, 0.05)
            frames = c.timed(SYNC_T + SLACK, recv, rx)
            got.extend(seqs(frames or []))

        c.run(seconds, step)
        child.tell("stop")
        sent, delivered = map(int, child.expect("sent"))
        end = time.monotonic() + 10
        while len(got) < delivered and time.monotonic() < end:
            rx.poll(POLLIN, 0.1)
            got.extend(seqs(recv(rx)))
        child.tell("quit")
    assert_no_leftovers(c.pid)
    c.report(f"sender stopped, {kind}: {sent} sent, {len(got)} received")
    assert c.stops >= 2 and sent > 0
    assert all(a < b for a, b in zip(got, got[1:])), "a frame was duplicated or reordered"
    if kind == "pipe":
        assert got == list(range(sent)), f"pipe: {sent} sent, {len(got)} received"
    else:
        assert len(got) == delivered, f"switch delivered {delivered}, {len(got)} received"
    seqs_after = got[-1] + 1 if got else 0
    assert seqs_after <= sent


@SECONDS
@pytest.mark.parametrize("kind", ["pipe", "vale"])
def test_receiver_stopped_at_random(kind, seconds, timeouts, opener):
    s_name, r_name, sw = _ends(kind, "str")
    tx_port = opener(s_name)
    with contextlib.ExitStack() as st:
        child = st.enter_context(Child(RECEIVER, r_name))
        st.callback(lambda: os.kill(child.proc.pid, signal.SIGCONT))
        child.expect("open")
        c = Campaign(child.proc.pid, random.Random(os.getpid() + 1))
        tx = tx_port.tx_rings[0]
        seq = [0]

        def step(stopped: bool) -> None:
            k = min(tx.space(), 16)
            if k:
                send(tx_port, [seq_frame(seq[0] + i) for i in range(k)], sync=False)
                seq[0] += k
                c.timed(SYNC_T + SLACK, tx_port.txsync)
            else:
                c.timed(0.02 + SLACK, tx_port.poll, netmap_core.POLLOUT, 0.02)

        c.run(seconds, step)
        end = time.monotonic() + 10
        while True:   # what is still in our ring goes now
            try:
                tx_port.txsync()
                if kind == "vale" or tx.tail == (tx.head - 1) % tx.num_slots:
                    break
            except LockTimeoutError:
                pass
            assert time.monotonic() < end, "the ring never drained after SIGCONT"
            tx_port.poll(netmap_core.POLLOUT, 0.05)
        if kind == "vale":
            s = vale.switch(sw)
            delivered = int(s.stats.delivered[{v: k for k, v in s.ports().items()}[r_name]])
        else:
            delivered = seq[0]
        child.tell("stop")
        count, increasing, exact = map(int, child.expect("got"))
        child.tell("quit")
    assert_no_leftovers(c.pid)
    c.report(f"receiver stopped, {kind}: {seq[0]} sent, {count} received")
    assert c.stops >= 2
    assert increasing, "a frame was duplicated or reordered"
    assert count == delivered, f"{delivered} delivered, {count} received"
    if kind == "pipe":
        assert exact and count == seq[0], "a pipe loses nothing"


@SECONDS
def test_opener_stopped_at_random(seconds, timeouts, opener):
    sw = unique_switch("valesto")
    pipe = f"netmap:{unique_switch('sto')}"
    a = opener(f"{sw}:a")
    with contextlib.ExitStack() as st:
        child = st.enter_context(Child(OPENER, sw, pipe))
        st.callback(lambda: os.kill(child.proc.pid, signal.SIGCONT))
        child.expect("open")
        child.expect("busy")
        c = Campaign(child.proc.pid, random.Random(os.getpid() + 2))
        opened = [0]

        def ls() -> None:
            snap = cli.ls()
            if snap["locked_by"] is not None:
                assert snap["locked_by"]["pid"] == c.pid, snap["locked_by"]

        def open_close() -> None:
            with netmap_core.open(f"{sw}:x", backend="emu") as x:
                f = seq_frame(opened[0], src=9)
                send(a, [f])
                assert recv(x) == [f]
                opened[0] += 1

        def step(stopped: bool) -> None:
            c.timed(1.0 + SLACK, ls)
            c.timed(2 * LOCK_T + SLACK, open_close)   # the open, then its close
            time.sleep(0.02)

        c.run(seconds, step)
        child.tell("stop")
        rounds = int(child.expect("done")[0])
    assert_no_leftovers(c.pid)
    c.report(f"opener stopped: {rounds} open/close rounds in the child, {opened[0]} here")
    assert c.stops >= 2 and opened[0] > 0 and rounds > 5
    open_close()   # everything works once nobody is stopped
    assert cli.ls()["locked_by"] is None
