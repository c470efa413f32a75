"""Interface ports on the emulator (``netmap:IFNAME`` over AF_PACKET) against a plain Python
AF_PACKET socket loop, on a veth pair made for the run (root and ``ip`` needed).

    python -m bench.ifport [--packets N] [--runs R] [--size B]

Rows (medians of R runs, Mpps; "(CPU)": frames per CPU second the sender and the receiver
used together, user + system, which a loaded machine distorts far less than the wall clock):
  plain  send->recv   one process send()s frames on A, another recv_into()s them on B
  emu    send->recv   netmap:A/T txsync batches -> netmap:B/R rxsync batches (emu backend)
  emu    drain        B's TPACKET_V3 ring is filled first (nothing reading), then rxsyncs of
                      netmap:B/R move it all into the netmap ring: the receive path alone,
                      by the wall clock and by the CPU time of the draining thread (which
                      does not count time a loaded machine gives to other processes); once
                      with the default 1 ms block timeout, once with 100 ms
                      ($PYNETMAP_EMU_IF_RETIRE_MS), so blocks fill up even from a slow sender
veth drops frames when the receiver falls behind: the rates count frames received, between the
first and the last one, and the loss is printed.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import time

ETHERTYPE = 0x88B5
QUIET = 0.5   # seconds without a frame that end a receiver


def _cpu() -> float:
    """User + system CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _frame(size: int) -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ETHERTYPE.to_bytes(2, "big") + bytes(size - 14)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Veth:
    def __init__(self) -> None:
        self.a, self.b = f"pnmifa{os.getpid():x}"[:15], f"pnmifb{os.getpid():x}"[:15]

    def __enter__(self) -> Veth:
        _ip("link", "add", self.a, "type", "veth", "peer", "name", self.b)
        for n in (self.a, self.b):
            subprocess.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{n}.disable_ipv6=1"], capture_output=True)
            _ip("link", "set", n, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self.a], capture_output=True)


# --- plain AF_PACKET ---------------------------------------------------------------------------

def _plain_rx(ifname: str, out, ready) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.bind((ifname, ETHERTYPE))
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 25)   # SO_RCVBUFFORCE
    buf = bytearray(2048)
    recv_into = s.recv_into
    c0 = _cpu()
    ready.set()
    s.settimeout(10.0)
    recv_into(buf)
    t0 = time.perf_counter()
    n = 1
    s.settimeout(QUIET)
    t1 = t0
    try:
        while True:
            recv_into(buf)
            n += 1
            if n & 255 == 0:
                t1 = time.perf_counter()
    except TimeoutError:
        pass
    out.put((n, max(t1 - t0, 1e-9), _cpu() - c0))


def _plain_tx(ifname: str, packets: int, size: int, out=None) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    data = _frame(size)
    send = s.send
    c0 = _cpu()
    for _ in range(packets):
        send(data)
    if out is not None:
        out.put(_cpu() - c0)


# --- emu interface ports ------------------------------------------------------------------------

def _emu_rx(ifname: str, out, ready) -> None:
    import netmap_core

    port = netmap_core.open(f"netmap:{ifname}/R", backend="emu")
    rx = port.rx_rings[0]
    c0 = _cpu()
    ready.set()
    n = 0
    t0 = t1 = 0.0
    idle_since = None
    while True:
        port.poll(netmap_core.POLLIN, 10.0 if n == 0 else QUIET)
        k = rx.space()
        if k:
            if n == 0:
                t0 = time.perf_counter()
            n += k
            t1 = time.perf_counter()
            rx.advance(k)
            idle_since = None
        else:
            idle_since = idle_since or time.perf_counter()
            if time.perf_counter() - idle_since > QUIET:
                break
    port.close()
    out.put((n, max(t1 - t0, 1e-9), _cpu() - c0))


def _emu_tx(ifname: str, packets: int, size: int, out=None) -> None:
    import netmap_core

    port = netmap_core.open(f"netmap:{ifname}/T", backend="emu")
    tx = port.tx_rings[0]
    data = _frame(size)
    left = packets
    c0 = _cpu()
    while left:
        left -= tx.fill(min(left, 512), template=data)
        port.txsync()
    c1 = _cpu()
    port.close()
    if out is not None:
        out.put(c1 - c0)


def _pair(rx, tx, v: Veth, packets: int, size: int) -> tuple[float, float, float]:
    """(Mpps by the wall clock, Mpps per CPU second of sender + receiver, loss)."""
    ctx = mp.get_context("fork")
    out, txout, ready = ctx.Queue(), ctx.Queue(), ctx.Event()
    r = ctx.Process(target=rx, args=(v.b, out, ready))
    r.start()
    ready.wait(30)
    time.sleep(0.2)
    t = ctx.Process(target=tx, args=(v.a, packets, size, txout))
    t.start()
    tx_cpu = txout.get(timeout=300)
    t.join()
    n, dt, rx_cpu = out.get(timeout=120)
    r.join()
    return n / dt / 1e6, n / (tx_cpu + rx_cpu) / 1e6, 1 - n / packets


def _blast(ifname: str, packets: int, size: int) -> None:
    """Send ``packets`` frames in batches small enough for veth's backlog (1000 frames)."""
    import netmap_core

    port = netmap_core.open(f"netmap:{ifname}/T", backend="emu")
    tx = port.tx_rings[0]
    data = _frame(size)
    left = packets
    while left:
        left -= tx.fill(min(left, 128), template=data)
        port.txsync()
        os.sched_yield()
    port.close()


def _drain(v: Veth, packets: int, size: int) -> tuple[float, float, int]:
    """Fill B's AF_PACKET ring with nobody reading, then time rxsyncs emptying it into a
    2048-slot RX ring (whose buffers a first, untimed round has touched)."""
    import netmap_core

    port = netmap_core.open(f"netmap:{v.b}/R@conf:rx-slots=2048", backend="emu")
    rx = port.rx_rings[0]
    ctx = mp.get_context("fork")
    best = (0.0, 0.0, 0)
    for timed in (False, True):
        t = ctx.Process(target=_blast, args=(v.a, packets, size))
        t.start()
        t.join()
        time.sleep(0.05)   # the last block retires after 1 ms
        n = 0
        t0, c0 = time.perf_counter(), time.thread_time()
        while True:
            port.rxsync()
            k = rx.space()
            if not k:
                break
            n += k
            rx.advance(k)
        dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if timed:
            best = (n / dt / 1e6, n / max(cpu, 1e-9) / 1e6, n)
    port.close()
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ifport", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=60)
    a = ap.parse_args(argv)
    rows: dict[str, list[tuple[float, float]]] = {}
    with Veth() as v:
        for _ in range(a.runs):
            for name, rx, tx in (("plain", _plain_rx, _plain_tx), ("emu", _emu_rx, _emu_tx)):
                rate, cpu_rate, loss = _pair(rx, tx, v, a.packets, a.size)
                rows.setdefault(f"{name} send->recv", []).append((rate, loss))
                rows.setdefault(f"{name} send->recv (CPU)", []).append((cpu_rate, loss))
            for ms in (None, "100"):   # the default 1 ms block timeout, and blocks left to fill
                if ms:
                    os.environ["PYNETMAP_EMU_IF_RETIRE_MS"] = ms
                rate, cpu_rate, n = _drain(v, min(a.packets, 40_000), a.size)
                os.environ.pop("PYNETMAP_EMU_IF_RETIRE_MS", None)
                tag = f" {ms}ms" if ms else ""
                rows.setdefault(f"emu drain{tag}", []).append((rate, float(n)))
                rows.setdefault(f"emu drain{tag} (CPU)", []).append((cpu_rate, float(n)))
    print(f"{a.size}-byte frames, {a.packets} sent per run, {a.runs} runs (median; min..max)")
    for name, vals in sorted(rows.items()):
        rates = [r for r, _ in vals]
        extra = (f"frames in the full ring: {statistics.median(x for _, x in vals):.0f}"
                 if name.startswith("emu drain") else f"loss {statistics.median(x for _, x in vals):.1%}")
        print(f"  {name:24s} {statistics.median(rates):6.2f} Mpps  "
              f"({min(rates):.2f}..{max(rates):.2f})  {extra}")


if __name__ == "__main__":
    main()
