"""pyzmq PUSH/PULL over ``ipc://`` (the bench extra): one frame per message, or 256 frames per
message. The receiver binds, the sender connects; default high-water marks. The sender keeps
its socket open until the receiver has everything (untimed): closing it straight after the last
send lost the last queued messages now and then.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile

from .harness import Role, Scenario
from .msgloop import recv_loop, send_loop

PER = 256


def _available() -> str | None:
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "pyzmq not installed (pip install -e '.[bench]')"
    return None


def _endpoint(p) -> str:
    return f"ipc://{tempfile.gettempdir()}/pnmbench-{p.run}.ipc"


def _finish_path(p) -> None:
    path = _endpoint(p)[len("ipc://"):]
    if os.path.exists(path):
        os.unlink(path)


def _scenario(per: int) -> Scenario:
    def sender(p, ctx, ready):
        import zmq

        zc = zmq.Context()
        s = zc.socket(zmq.PUSH)
        s.setsockopt(zmq.RECONNECT_IVL, 2)  # ms: the receiver may bind just after we connect
        s.connect(_endpoint(p))
        def connected_then_ready():  # the first message proves the connection (untimed)
            s.send(b"hello")
            ready()

        try:
            res = send_loop(s.send, p, per, connected_then_ready)
            # closing right away can lose the last queued messages: stay until they are in
            ctx.wait(30.0)
            return res
        finally:
            s.close(linger=-1)
            zc.term()

    def receiver(p, ctx, ready):
        import zmq

        zc = zmq.Context()
        s = zc.socket(zmq.PULL)
        s.bind(_endpoint(p))
        try:
            if hasattr(s, "recv_into"):
                recv = s.recv_into
            else:  # pyzmq < 26.4: one copy more
                def recv(buf, _r=s.recv):
                    data = _r()
                    memoryview(buf).cast("B")[:len(data)] = data
                    return len(data)
            def connected_then_ready():
                s.recv()
                ready()

            return recv_loop(recv, p, per, connected_then_ready)
        finally:
            ctx.set()
            s.close(linger=0)
            zc.term()
            _finish_path(p)

    suffix = "" if per == 1 else f"-x{per}"
    return Scenario(
        id=f"zmq-ipc{suffix}", title=f"pyzmq PUSH/PULL ipc://{f' x{per}' if per > 1 else ''}",
        family="peer", kind="per-message" if per == 1 else "batched", batch=str(per),
        roles=(Role("sender", sender), Role("receiver", receiver)), quantum=per,
        available=_available, prepare=lambda p, state: mp.get_context("fork").Event())


def scenarios(cfg) -> list[Scenario]:
    return [_scenario(1), _scenario(PER)]
