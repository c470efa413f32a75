"""The example network functions (examples/firewall.py, lb.py, nat.py) under load, and the cost
of the batch header parser (netmap_core.headers) per frame.

Rows ``nf-emu-*``: three processes on the emulator: a generator writes 60-byte UDP frames of
256 flows into pipe A, the NF moves them from A to pipe B (two B pipes for the load balancer)
batch by batch, a sink takes them. Every frame reaches the sink (the ACL allows the traffic),
so the rate is frames delivered per second, end to end. ``nf-emu-forward`` is the same chain
with ``Ring.forward`` and no per-frame work: the price of the plumbing alone.

    python -m bench --only nf-emu --sizes 60 --work none
    python -m bench.nf --parse          # parser cost per frame at batch sizes 32/256/1024
    python -m bench.nf --cost           # each NF's CPU cost per frame, in one process
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .harness import Role, Scenario, now
from .peer_pynetmap import WAIT, available, open_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FLOWS = 256
SIZE = 60


def load_example(name: str):
    """examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"pynetmap_example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def templates(size: int = SIZE, flows: int = FLOWS) -> np.ndarray:
    """``flows`` UDP/IPv4 frames (10.0.0.x:port -> 192.0.2.y:443), checksums correct."""
    from netmap_core.headers import ETH_IPV4
    from netmap_core.testing.frames import ethernet, ipv4, udp

    rows = []
    for i in range(flows):
        s, d = bytes([10, 0, i >> 8, i & 255]), bytes([192, 0, 2, i % 7])
        seg = udp(10000 + i, 443, bytes(max(0, size - 42)), src=s, dst=d)
        rows.append(np.frombuffer(ethernet(ETH_IPV4, ipv4(s, d, 17, seg))[:size], np.uint8))
    return np.stack(rows)


def _port(p, pipe: str, end: str):
    return open_spec(p, f"netmap:{p.run}{pipe}{end}@conf:slots={p.extra['slots']}")


def generator(p, ctx, ready):
    """Writes the next frames of the flow mix into every free slot, one txsync per batch."""
    from netmap_core import POLLOUT

    tpl = templates(p.size)
    with _port(p, "a", "{0") as port:
        ring = port.tx_rings[0]
        n, sent = p.packets, 0
        ready()
        t0 = now()
        while sent < n:
            if ring.space() == 0:
                port.poll(POLLOUT, WAIT)
                continue
            b = ring.ready(n - sent)
            k = len(b)
            ring.buffers[b.buf_idx, :p.size] = tpl[(sent + np.arange(k)) % len(tpl)]
            ring.slots["len"][b.slot_idx] = p.size
            ring.advance(k)
            port.txsync()
            sent += k
        _drain(port, ring)
    return {"t_start": t0}


def _drain(port, ring) -> None:
    from netmap_core import POLLOUT

    end = now() + 5.0
    while ring.tx_pending() and now() < end:
        port.poll(POLLOUT, 0.05)


def nf_role(kind: str):
    """The NF process: A}0 -> B{j, one batch per loop, until every frame is handled."""
    def run(p, ctx, ready):
        from netmap_core import POLLIN, POLLOUT

        outs_n = 2 if kind == "lb" else 1
        with _port(p, "a", "}0") as inp:
            outs = [_port(p, f"b{j}", "{0") for j in range(outs_n)]
            try:
                rx, txs = inp.rx_rings[0], [o.tx_rings[0] for o in outs]
                step = _stepper(kind, rx, txs)
                handled, n = 0, p.packets
                ready()
                while handled < n:
                    if rx.empty:
                        inp.poll(POLLIN, WAIT)
                        continue
                    full = [o for o, t in zip(outs, txs) if t.space() == 0]
                    if full:   # back-pressure: wait for room, never drop
                        full[0].poll(POLLOUT, WAIT)
                        continue
                    done = step()
                    handled += done
                    for o in outs:
                        o.txsync()
                for o, tx in zip(outs, txs):
                    _drain(o, tx)
            finally:
                for o in outs:
                    o.close()
        return {"nf_handled": handled}
    return run


def _stepper(kind: str, rx, txs):
    """One batch of the NF: returns frames handled (forwarded + dropped)."""
    if kind == "forward":
        return lambda: rx.forward(txs[0])
    if kind == "firewall":
        fw = load_example("firewall")
        acl = fw.Acl([fw.Rule.parse(r) for r in (
            "deny proto=udp dport=53", "deny proto=tcp dport=23", "deny src=192.168.0.0/16",
            "deny dst=10.0.0.0/8", "deny proto=udp sport=0-1023", "deny proto=icmp",
            "deny src=172.16.0.0/12 dport=443", "allow src=10.0.0.0/8")], default="deny")
        return lambda: sum(fw.process_batch(rx, txs[0], acl))
    if kind == "lb":
        lb = load_example("lb")
        table = lb.maglev_table(["backend0", "backend1"])

        def step() -> int:
            d = lb.process_batch(rx, txs, table, limit=min(t.space() for t in txs))
            return sum(d.forwarded) + d.dropped
        return step
    if kind == "nat":
        nat = load_example("nat")
        table = nat.Nat("203.0.113.7")
        return lambda: sum(nat.process_batch(rx, txs[0], table, outbound=True))
    raise ValueError(kind)


def sink(outputs: int):
    """Takes every frame from the B pipes until all have arrived."""
    def run(p, ctx, ready):
        from netmap_core import POLLIN

        ports = [_port(p, f"b{j}", "}0") for j in range(outputs)]
        try:
            rings = [q.rx_rings[0] for q in ports]
            n, got, batches = p.packets, 0, 0
            ready()
            while got < n:
                took = 0
                for q, r in zip(ports, rings):
                    q.rxsync()
                    k = r.space()
                    if k:
                        r.advance(k)
                        took += k
                        batches += 1
                if not took:
                    ports[0].poll(POLLIN, 0.001 if outputs > 1 else WAIT)
                got += took
            t_end = now()
            for q in ports:
                q.rxsync()
        finally:
            for q in ports:
                q.close()
        return {"t_end": t_end, "packets": got, "bad": 0, "batches": batches}
    return run


WORK = {
    "forward": "none: Ring.forward A -> B (the plumbing alone)",
    "firewall": "parse headers + 8-rule 5-tuple ACL (all rules checked, the last allows) + dispatch",
    "lb": "parse headers + symmetric 5-tuple hash + Maglev table lookup + dispatch to 2 pipes",
    "nat": "parse headers + per-flow table lookup (256 flows) + rewrite src/sport with checksum fix",
}


def scenarios(cfg) -> list[Scenario]:
    batch = f"<={cfg.slots - 1}"
    out = []
    for kind, work in WORK.items():
        outputs = 2 if kind == "lb" else 1
        out.append(Scenario(
            id=f"nf-emu-{kind}", title=f"example NF on the emulator: {work}", family="pynetmap",
            kind="batched", batch=batch,
            roles=(Role("generator", generator), Role("nf", nf_role(kind)), Role("sink", sink(outputs))),
            extra={"backend": "emu", "work": work}, available=available("emu"),
            works=("none",), sizes=(SIZE,)))
    return out


# --- parser cost ------------------------------------------------------------------------------
def parse_cost(sizes=(32, 256, 1024), repeat: int = 7, mix: bool = True) -> list[dict]:
    """CPU ns per frame of ``headers.parse`` (pre-gathered 128-byte rows) and of
    ``parse_batch`` (gather from a ring included) at each batch size; medians of ``repeat``
    timings. CPU time of this process (``process_time``), so other processes' load inflates
    it far less than wall-clock time."""
    import netmap_core as nm
    from netmap_core import headers as hd

    tpl = templates()
    rows = []
    name = f"netmap:pc{os.getpid()}"
    with nm.open(name + "{0", backend="emu") as tx, nm.open(name + "}0", backend="emu") as rx:
        for k in sizes:
            frames = np.zeros((k, hd.DEFAULT_WIDTH), np.uint8)
            frames[:, :SIZE] = tpl[np.arange(k) % len(tpl)]
            lens = np.full(k, SIZE)
            tx.tx_rings[0].fill(data=frames[:, :SIZE])
            tx.txsync()
            rx.rxsync()
            batch = rx.rx_rings[0].ready(k)
            res = {"batch": k}
            for name, fn in (("parse", lambda f=frames, n=lens: hd.parse(f, n)),
                             ("parse_batch", lambda b=batch: hd.parse_batch(b))):
                loops = max(1, 20000 // k)
                times = []
                for _ in range(repeat):
                    t0 = time.process_time()
                    for _ in range(loops):
                        fn()
                    times.append((time.process_time() - t0) / loops / k * 1e9)
                res[name] = statistics.median(times)
            rx.rx_rings[0].advance(len(batch))
            rows.append(res)
    return rows


def nf_cost(sizes=(256, 1024), rounds: int = 20, repeat: int = 5) -> list[dict]:
    """CPU ns per frame of one NF step (``process_batch``: parse, decide, rewrite, dispatch;
    no sync), each NF in this one process over emulator pipes, at each batch size; median of
    ``repeat`` measurements of ``rounds`` batches each. Filling the input and draining the
    outputs are not timed."""
    import netmap_core as nm

    tpl = templates()
    out = []
    for kind in WORK:
        outputs = 2 if kind == "lb" else 1
        base = f"netmap:nc{os.getpid()}{kind[:2]}"
        conf = "@conf:slots=2048"
        with nm.open(f"{base}a{{0{conf}", backend="emu") as gen, \
                nm.open(f"{base}a}}0{conf}", backend="emu") as inp:
            outs = [nm.open(f"{base}b{j}{{0{conf}", backend="emu") for j in range(outputs)]
            sinks = [nm.open(f"{base}b{j}}}0{conf}", backend="emu") for j in range(outputs)]
            try:
                rx, txs = inp.rx_rings[0], [o.tx_rings[0] for o in outs]
                step = _stepper(kind, rx, txs)
                for k in sizes:
                    per = []
                    for _ in range(repeat):
                        spent = 0.0
                        for r in range(rounds):
                            gen.txsync()   # reclaim what the NF released
                            assert gen.tx_rings[0].fill(data=tpl[(r * k + np.arange(k)) % len(tpl)]) == k
                            gen.txsync()
                            inp.rxsync()
                            t0 = time.process_time()
                            done = step()
                            spent += time.process_time() - t0
                            assert done == k, (kind, done, k)
                            inp.rxsync()   # hand the consumed slots back
                            for o in outs:
                                o.txsync()
                            for q in sinks:
                                q.rxsync()
                                q.rx_rings[0].advance(q.rx_rings[0].space())
                                q.rxsync()
                            for o in outs:   # reclaim the slots the sinks released
                                o.txsync()
                        per.append(spent / (rounds * k) * 1e9)
                    out.append({"nf": kind, "batch": k, "ns_per_frame": statistics.median(per)})
            finally:
                for q in outs + sinks:
                    q.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="parser cost per frame (see python -m bench for NF rows)")
    ap.add_argument("--parse", action="store_true", help="measure netmap_core.headers")
    ap.add_argument("--cost", action="store_true",
                    help="CPU ns per frame of each NF's process_batch, in one process")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    if not (args.parse or args.cost):
        ap.error("nothing to do: pass --parse or --cost (the NF rows: python -m bench --only nf-emu)")
    if args.parse:
        print("batch  parse CPU ns/frame  parse_batch CPU ns/frame (gather included)")
        for r in parse_cost(repeat=args.repeat):
            print(f"{r['batch']:5d}  {r['parse']:18.0f}  {r['parse_batch']:24.0f}")
    if args.cost:
        print("nf        batch  CPU ns/frame (process_batch: parse + decide + rewrite + dispatch)")
        for r in nf_cost(repeat=args.repeat):
            print(f"{r['nf']:8s}  {r['batch']:5d}  {r['ns_per_frame']:12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
