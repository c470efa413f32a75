"""Interface ports (``netmap:IFNAME``) on the emulator (over AF_PACKET) and, where /dev/netmap
works, on netmap.ko, against a plain Python AF_PACKET socket loop and C pkt-gen, on a veth pair
made for the run (root and ``ip`` needed).

    python -m bench.ifport [--packets N] [--runs R] [--size B]

Rows (medians of R runs, Mpps; "(CPU)": frames per CPU second the sender and the receiver
used together, user + system, which a loaded machine distorts far less than the wall clock):
  plain  send->recv   one process send()s frames on A, another recv_into()s them on B
  emu    send->recv   netmap:A/T txsync batches -> netmap:B/R rxsync batches (emu backend)
  netmap send->recv   the same on netmap.ko (its emulated adapter on veth), with /dev/netmap
  C      send->recv   pkt-gen -f tx on netmap:A -> pkt-gen -f rx on netmap:B (netmap.ko, pkt-gen
                      on PATH or $PKTGEN), each side's rate as pkt-gen prints it; no CPU column
  emu    drain        B's TPACKET_V3 ring is filled first (nothing reading), then rxsyncs of
                      netmap:B/R move it all into the netmap ring: the receive path alone,
                      by the wall clock and by the CPU time of the draining thread (which
                      does not count time a loaded machine gives to other processes); once
                      with the default 1 ms block timeout, once with 100 ms
                      ($PYNETMAP_EMU_IF_RETIRE_MS), so blocks fill up even from a slow sender.
                      The sender runs on CPU 0, where the kernel then writes the ring (veth
                      receives on the sending CPU), the drain on CPU 1; "same CPU": both on 0
veth drops frames when the receiver falls behind: the rates count frames received, between the
first and the last one, and the loss is printed.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import time

ETHERTYPE = 0x88B5
RETIRE = "PYNETMAP_EMU_IF_RETIRE_MS"
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

def _port_rx(backend: str, ifname: str, out, ready) -> None:
    import netmap_core

    port = netmap_core.open(f"netmap:{ifname}/R", backend=backend)
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


def _port_tx(backend: str, ifname: str, packets: int, size: int, out=None) -> None:
    import netmap_core

    port = netmap_core.open(f"netmap:{ifname}/T", backend=backend)
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


def _pktgen(v: Veth, packets: int, size: int) -> tuple[float, float]:
    """C pkt-gen tx on A -> C pkt-gen rx on B through netmap.ko: (TX Mpps, RX Mpps)."""
    from .pktgen import find_pktgen, parse_summary

    exe = find_pktgen()
    assert exe is not None
    rx = subprocess.Popen([exe, "-i", f"netmap:{v.b}", "-f", "rx", "-W"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    tx = subprocess.run([exe, "-i", f"netmap:{v.a}", "-f", "tx", "-n", str(packets), "-l", str(size),
                         "-b", "512"], capture_output=True, text=True, timeout=300)
    rx_out, _ = rx.communicate(timeout=120)
    return (parse_summary(tx.stdout + tx.stderr).pps / 1e6, parse_summary(rx_out).pps / 1e6)


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


def _blast(ifname: str, packets: int, size: int, cpu: int | None = None) -> None:
    """Send ``packets`` frames in batches small enough for veth's backlog (1000 frames), on
    CPU ``cpu`` if given."""
    import netmap_core

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    port = netmap_core.open(f"netmap:{ifname}/T", backend="emu")
    tx = port.tx_rings[0]
    data = _frame(size)
    left = packets
    while left:
        left -= tx.fill(min(left, 128), template=data)
        port.txsync()
        os.sched_yield()
    port.close()


def empty_rx(port, rx) -> int:
    """rxsync and release until the ring stays empty; returns the frames taken (the drain)."""
    n = 0
    while True:
        port.rxsync()
        k = rx.space()
        if not k:
            return n
        n += k
        rx.advance(k)


def _drain(v: Veth, packets: int, size: int,
           cpus: tuple[int, int] | None = None) -> tuple[float, float, int]:
    """Fill B's AF_PACKET ring with nobody reading, then time rxsyncs emptying it into a
    2048-slot RX ring (whose buffers a first, untimed round has touched). ``cpus``: the
    sender's CPU (where the kernel writes the ring: veth receives on the sending CPU) and
    the draining thread's."""
    import netmap_core

    port = netmap_core.open(f"netmap:{v.b}/R@conf:rx-slots=2048", backend="emu")
    rx = port.rx_rings[0]
    ctx = mp.get_context("fork")
    best = (0.0, 0.0, 0)
    mine = os.sched_getaffinity(0)
    try:
        if cpus:
            os.sched_setaffinity(0, {cpus[1]})   # the sender moves itself to cpus[0]
        for timed in (False, True):
            t = ctx.Process(target=_blast, args=(v.a, packets, size, cpus[0] if cpus else None))
            t.start()
            t.join()
            time.sleep(0.05)   # the last block retires after 1 ms
            t0, c0 = time.perf_counter(), time.thread_time()
            n = empty_rx(port, rx)
            dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
            if timed:
                best = (n / dt / 1e6, n / max(cpu, 1e-9) / 1e6, n)
    finally:
        os.sched_setaffinity(0, mine)
        port.close()
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ifport", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=60)
    a = ap.parse_args(argv)
    import netmap_core

    from .pktgen import find_pktgen

    rows: dict[str, list[tuple[float, float]]] = {}
    pairs = [("plain", _plain_rx, _plain_tx),
             ("emu", functools.partial(_port_rx, "emu"), functools.partial(_port_tx, "emu"))]
    device, why = netmap_core.probe("netmap")
    if device:
        pairs.append(("netmap", functools.partial(_port_rx, "netmap"), functools.partial(_port_tx, "netmap")))
    else:
        print(f"netmap rows skipped: {why.splitlines()[-1] if why else 'no /dev/netmap'}")
    with Veth() as v:
        for _ in range(a.runs):
            for name, rx, tx in pairs:
                rate, cpu_rate, loss = _pair(rx, tx, v, a.packets, a.size)
                rows.setdefault(f"{name} send->recv", []).append((rate, loss))
                rows.setdefault(f"{name} send->recv (CPU)", []).append((cpu_rate, loss))
            if device and find_pktgen():
                tx_rate, rx_rate = _pktgen(v, a.packets, a.size)
                rows.setdefault("C pkt-gen tx", []).append((tx_rate, 0.0))
                rows.setdefault("C pkt-gen rx", []).append((rx_rate, 0.0))
            two = len(os.sched_getaffinity(0)) > 1
            # the default 1 ms block timeout, and blocks left to fill; the sender on CPU 0 and
            # the drain on CPU 1, and (full blocks) both on CPU 0
            for ms, cpus, where in ((None, (0, 1), ""), ("100", (0, 1), ""), ("100", (0, 0), " same CPU")):
                if not two and where:
                    continue
                saved = os.environ.pop(RETIRE, None)
                if ms:
                    os.environ[RETIRE] = ms
                try:
                    rate, cpu_rate, n = _drain(v, min(a.packets, 40_000), a.size, cpus if two else None)
                finally:
                    os.environ.pop(RETIRE, None)
                    if saved is not None:
                        os.environ[RETIRE] = saved
                tag = f" {ms}ms" if ms else ""
                rows.setdefault(f"emu drain{tag}{where}", []).append((rate, float(n)))
                rows.setdefault(f"emu drain{tag}{where} (CPU)", []).append((cpu_rate, float(n)))
    print(f"{a.size}-byte frames, {a.packets} sent per run, {a.runs} runs (median; min..max)")
    for name, vals in sorted(rows.items()):
        rates = [r for r, _ in vals]
        extra = (f"frames in the full ring: {statistics.median(x for _, x in vals):.0f}"
                 if name.startswith("emu drain") else f"loss {statistics.median(x for _, x in vals):.1%}")
        print(f"  {name:24s} {statistics.median(rates):6.2f} Mpps  "
              f"({min(rates):.2f}..{max(rates):.2f})  {extra}")


if __name__ == "__main__":
    main()
