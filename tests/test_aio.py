"""netmap_core.aio on the chosen backend: ``async for`` over received batches and ``await send``
with back-pressure over pipes (one loop, and across processes) and VALE; cancellation and close
safety; typed errors for bad arguments. Timeouts only bound a hang; nothing here measures speed."""
from __future__ import annotations

import asyncio
import contextlib
import threading

import numpy as np
import pytest

from netmap_core import aio
from netmap_core.errors import ClosedPortError, InvalidRequestError
from netmap_core.testing.vale import mac
from procs import BOUND, Child, port_pair

WIDTH = 64


def frames(n: int, start: int = 0) -> list[bytes]:
    """``n`` distinct frames of 60..123 bytes: sequence number, then a pattern it selects."""
    out = []
    for i in range(start, start + n):
        head = b"\x02\x00\x00\x00\x00\x02" + mac(1) + b"\x88\xb5" + i.to_bytes(4, "little")
        size = 60 + i % 64
        out.append(head + bytes((i + j) & 0xFF for j in range(size - len(head))))
    return out


def as_array(fs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(f) for f in fs)
    data = np.zeros((len(fs), width), dtype=np.uint8)
    for k, f in enumerate(fs):
        data[k, :len(f)] = np.frombuffer(f, dtype=np.uint8)
    return data, np.array([len(f) for f in fs], dtype=np.uint16)


def count_waits(port) -> list[int]:
    """Record every ``port.wait(events)`` call (the instance attribute shadows the method)."""
    calls: list[int] = []
    real = port.wait

    async def wait(events):
        calls.append(events)
        return await real(events)

    port.wait = wait
    return calls


async def collect(port, n: int, limit: int | None = None, sizes: list[int] | None = None) -> list[bytes]:
    got: list[bytes] = []
    async with contextlib.aclosing(aio.receive(port, limit=limit)) as batches:
        async for batch in batches:
            if sizes is not None:
                sizes.append(len(batch))
            rows = batch.gather()
            got += [bytes(rows[k, :int(batch.len[k])]) for k in range(len(batch))]
            if len(got) >= n:
                break
    return got


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def pipe(opener, slots: int = 8):
    tx_name, rx_name = port_pair("pipe", "aio", f"@conf:slots={slots}")
    return opener(tx_name), opener(rx_name)


@pytest.mark.parametrize("form", ["bytes", "array", "fillfn"])
def test_pipe_producer_and_consumer_in_one_loop(opener, form):
    tx, rx = pipe(opener)
    want = frames(300)
    waits = count_waits(tx)
    if form == "bytes":
        payload, kw = want, {}
    elif form == "array":
        data, lens = as_array(want)
        payload, kw = data, {"lengths": lens}
    else:                                     # the batch fast path: Ring.fill per ring-full
        data, lens = as_array(want)
        done = [0]

        def payload(ring, room):
            k = ring.fill(data=data[done[0]:done[0] + room], lengths=lens[done[0]:done[0] + room])
            done[0] += k
            return k
        kw = {}

    sizes: list[int] = []

    async def main():
        got, sent = await asyncio.gather(collect(rx, len(want), limit=5, sizes=sizes),
                                         aio.send(tx, payload, **kw))
        return got, sent

    got, sent = run(main())
    assert sent == len(want)
    assert got == want, "every frame arrives once, in order, with its length and bytes"
    assert waits and all(w == aio.POLLOUT for w in waits), \
        "300 frames through an 8-slot ring: the sender waited for room"
    assert max(sizes) <= 5, "a batch never exceeds the limit"


def test_released_slots_go_back_only_when_the_next_batch_is_asked(opener):
    tx, rx = pipe(opener)
    want = frames(5)

    async def main():
        await aio.send(tx, want)
        ring = rx.rx_rings[0]
        gen = aio.receive(rx)
        batch = await anext(gen)
        head = ring.head
        assert len(batch) == 5 and ring.head == head == int(batch.slot_idx[0]), \
            "the consumer owns the batch: head is not moved while it holds it"
        await aio.send(tx, frames(1, 5))
        nxt = await anext(gen)
        assert ring.head == (head + 5) % ring.num_slots, "asking for the next batch released it"
        assert len(nxt) == 1
        await gen.aclose()
        assert ring.head == (head + 6) % ring.num_slots, "closing released the last batch"

    run(main())


CHILD_SENDER = """
    import asyncio, sys
    import netmap_core
    from netmap_core import aio
    from test_aio import as_array, frames

    name, backend, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = netmap_core.open(name, backend=backend)
    data, lens = as_array(frames(n))
    print("ready", flush=True)
    sent = asyncio.run(aio.send(p, data, lengths=lens))
    print("sent", sent, flush=True)
    input()                                   # keep the port until the parent has read
    p.close()
"""


def test_sender_process_and_async_receiver(opener, backend_name, monkeypatch):
    import os

    here = os.path.dirname(__file__)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    tx_name, rx_name = port_pair("pipe", "aiox", "@conf:slots=16")
    rx = opener(rx_name)
    n = 400
    with Child(CHILD_SENDER, tx_name, backend_name, str(n)) as child:
        child.expect("ready")
        got = run(collect(rx, n, limit=64))
        assert child.expect("sent") == [str(n)]
        child.tell("done")
        assert child.wait() == 0
    assert got == frames(n), "frames from the other process arrive in order, intact"


def test_a_list_that_fills_the_ring_exactly_ends_without_waiting(opener):
    tx, rx = pipe(opener)
    room = tx.tx_rings[0].space()
    waits = count_waits(tx)
    assert run(aio.send(tx, frames(room))) == room
    assert waits == [], "the last frame went out: nothing left to wait for"
    assert run(collect(rx, room)) == frames(room)


def test_cancelled_send_leaves_the_ring_consistent(opener):
    tx, rx = pipe(opener)
    ring = tx.tx_rings[0]
    want = frames(40)
    source = iter(want)

    async def main():
        task = asyncio.ensure_future(aio.send(tx, source))
        while ring.space():
            await asyncio.sleep(0.01)         # until the first ring-full is handed over
        await asyncio.sleep(0.05)             # ... and the sender waits for room
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert ring.head == ring.cur, "cancelled: head and cur agree"
    rest = list(source)                       # what the iterator still holds was never sent
    handed = len(want) - len(rest)
    assert 0 < handed < len(want)
    first = run(collect(rx, handed))
    assert first == want[:handed], "exactly the frames taken were handed over, in order"

    async def resume():
        got, sent = await asyncio.gather(collect(rx, len(rest)), aio.send(tx, rest))
        return got, sent

    got, sent = run(resume())
    assert sent == len(rest) and got == rest, "a later send continues the stream, nothing lost"


@pytest.mark.parametrize("by", ["task", "thread"])
@pytest.mark.parametrize("side", ["receive", "send"])
def test_close_from_another_task_ends_the_wait(opener, side, by):
    tx, rx = pipe(opener)
    port = rx if side == "receive" else tx

    async def waiter():
        if side == "receive":
            async for _ in aio.receive(rx):
                raise AssertionError("nothing was sent")
        else:
            await aio.send(tx, frames(40))    # 8 slots, nobody reads: waits for room

    async def main():
        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.2)              # let it block
        assert not task.done()
        if by == "task":
            port.close()
        else:
            closer = threading.Thread(target=port.close)
            closer.start()
            await asyncio.get_running_loop().run_in_executor(None, closer.join)
        with pytest.raises(ClosedPortError, match="is closed"):
            await asyncio.wait_for(task, BOUND)

    run(main())


def test_vale_one_to_one(opener):
    a_name, b_name = port_pair("vale", "aio")
    a, b = opener(a_name), opener(b_name)
    # VALE drops what does not fit the destination ring (spec E9): stay within one ring-full
    n = min(200, b.rx_rings[0].num_slots - 1)
    want = [b"\xff" * 6 + f[6:] for f in frames(n)]   # broadcast: the only other port gets it
    data, lens = as_array(want)

    async def main():
        got, sent = await asyncio.gather(collect(b, n, limit=32), aio.send(a, data, lengths=lens))
        return got, sent

    got, sent = run(main())
    assert sent == n and got == want


def test_bad_arguments_are_typed(opener):
    tx, rx = pipe(opener)

    async def first(gen):
        return await anext(gen)

    with pytest.raises(InvalidRequestError, match=r"receive: limit=0 is too small; allowed"):
        run(first(aio.receive(rx, limit=0)))
    with pytest.raises(InvalidRequestError, match=r"receive: limit='3' is not an integer"):
        run(first(aio.receive(rx, limit="3")))
    with pytest.raises(InvalidRequestError, match=r"rings=\(\) has no RX ring"):
        run(first(aio.receive(rx, rings=())))
    with pytest.raises(InvalidRequestError, match=r"shape \(2, 2, 2\); allowed: 2-D"):
        run(aio.send(tx, np.zeros((2, 2, 2), dtype=np.uint8)))
    with pytest.raises(InvalidRequestError, match=r"send: count=-1 is too small"):
        run(aio.send(tx, [b"x" * 60], count=-1))
    with pytest.raises(InvalidRequestError, match=r"fill function returned 99 .* allowed: an int 0\.\.7"):
        run(aio.send(tx, lambda ring, room: 99))
    with pytest.raises(InvalidRequestError, match=r"frames is one bytes object; allowed: a list"):
        run(aio.send(tx, bytes(60)))
    big = b"x" * (tx.tx_rings[0].buf_size + 1)
    with pytest.raises(InvalidRequestError, match=r"exceeds buffer size"):
        run(aio.send(tx, [big]))
    assert tx.tx_rings[0].head == tx.tx_rings[0].cur, "a refused frame advanced nothing"


def test_readme_asyncio_example_runs(backend_name, monkeypatch, capsys):
    import os
    import re
    from pathlib import Path

    monkeypatch.setenv("PYNETMAP_BACKEND", backend_name)
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"## asyncio\s+```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("apipe", f"apipe{os.getpid()}x")
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["[10000,", "10000]"]
