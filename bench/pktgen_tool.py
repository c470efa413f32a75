"""``python -m bench.pktgen_tool``: the ``pynetmap pkt-gen`` command against netmap's C pkt-gen on
the same port, and against the bench's own batch row, as one markdown table.

* ``emu``: ``pynetmap pkt-gen -f tx`` -> ``-f rx`` through an emulated pipe, next to the
  ``pnm-emu-batch-poll`` row of ``python -m bench`` measured in the same run (same frame size,
  ring size and batch, work ``none``); the ratio is pkt-gen's RX rate over the row's median
  Mpps (the row's end-to-end rate, sender's start to receiver's end).
* ``netmap`` (needs /dev/netmap and ``pkt-gen`` on PATH or ``$PKTGEN``; skipped otherwise): on a
  netmap pipe and on a VALE switch, the four pairings C -> C, Python -> C, C -> Python and
  Python -> Python; TX ratio = (Python -> C).tx / (C -> C).tx, RX ratio = (C -> Python).rx /
  (C -> C).rx, as in ``bench.pktgen.comparison``. A fifth pairing sends with
  ``bench.floor_tx`` (the ring protocol and one sync a batch, nothing else: no Python sender
  of that batch size is faster) into C pkt-gen, so the table shows how much of the gap to C
  is the library's and how much the interpreter's on this CPU.

Every cell is the median (min-max) of ``--runs`` runs. Each side's rate is its own, as pkt-gen
prints it: the sender from its start to everything sent and reclaimed, the receiver from its
first packet to its last (it stops one second after that, ``-W``). The receiver is pinned to
CPU 1 and the sender to CPU 0 (``-a``), like the bench's roles; every ring has ``--slots``
slots (4096), the sender hands over ``--burst`` (512, pkt-gen's default) slots per sync and the
receiver takes every ready slot, as in the bench's "Against C pkt-gen" rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from .pktgen import PktgenResult, find_pktgen, parse_summary

READY = "reading from"
BOUND = 600.0     # s one process may take by default (--bound)
LIMIT = {"bound": BOUND}


class Proc:
    """One pkt-gen (C or Python) process; its output kept in a file."""

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.out)

    def text(self) -> str:
        return os.pread(self.out.fileno(), 1 << 20, 0).decode(errors="replace")

    def wait_ready(self) -> None:
        end = time.monotonic() + LIMIT["bound"]
        while READY not in self.text():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{' '.join(self.cmd)} not ready:\n{self.text()[-2000:]}")
            time.sleep(0.01)

    def result(self) -> PktgenResult:
        try:
            self.proc.wait(LIMIT["bound"])
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"{' '.join(self.cmd)} still running after {LIMIT['bound']:.0f} s") from None
        return parse_summary(self.text())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def command(who: str, backend: str) -> list[str]:
    if who == "c":
        exe = find_pktgen()
        assert exe is not None
        return [exe]
    if who == "floor":
        return [sys.executable, "-m", "bench.floor_tx"]
    return [sys.executable, "-m", "netmap_tools", "pkt-gen", "--backend", backend]


def one_run(tx: str, rx: str, tx_port: str, rx_port: str, a: argparse.Namespace,
            backend: str) -> tuple[float, float, int]:
    """(TX Mpps, RX Mpps, packets received) of one tx -> rx run."""
    common = ["-l", str(a.size), "-w", "0", "-N"]
    conf = f"@conf:slots={a.slots}"
    r = Proc([*command(rx, backend), "-i", rx_port + conf, "-f", "rx", "-W", "-a", "1",
              "-b", str(a.slots - 1), *common])
    try:
        r.wait_ready()
        t = Proc([*command(tx, backend), "-i", tx_port + conf, "-f", "tx", "-n", str(a.packets),
                  "-a", "0", "-b", str(a.burst), *common])
        try:
            sent = t.result()
        finally:
            t.close()
        got = r.result()
    finally:
        r.close()
    return sent.pps / 1e6, got.pps / 1e6, got.packets


def _cell(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"{statistics.median(xs):.3g} ({xs[0]:.3g}-{xs[-1]:.3g})" if xs else "-"


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def bench_row(a: argparse.Namespace) -> dict | None:
    """The pnm-emu-batch-poll row of ``python -m bench`` at ``--size``, run now."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "row.json")
        subprocess.run([sys.executable, "-m", "bench", "--only", "pnm-emu-batch-poll", "--sizes",
                        str(a.size), "--work", "none", "--repeat", str(a.runs), "--batch",
                        str(a.burst), "--slots", str(a.slots), "--no-plot", "--json", path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(path) as f:
            rows = [r for r in json.load(f)["rows"] if r.get("status") == "ok"]
    return rows[0] if rows else None


def emu_table(a: argparse.Namespace) -> list[str]:
    tx, rx = [], []
    for _ in range(a.runs):
        pipe = f"pgt{os.getpid()}x{uuid.uuid4().hex[:6]}"
        t, r, n = one_run("py", "py", f"netmap:{pipe}{{0", f"netmap:{pipe}}}0", a, "emu")
        tx.append(t)
        rx.append(r)
    row = bench_row(a)
    out = ["| backend | setup | size | what | runs | TX Mpps (min-max) | RX Mpps (min-max) |",
           "|---|---|---|---|---|---|---|",
           f"| emu | pipe | {a.size} B | `pynetmap pkt-gen` tx -> rx | {a.runs} | {_cell(tx)} | "
           f"{_cell(rx)} |"]
    if row:
        out.append(f"| emu | pipe | {a.size} B | bench row `pnm-emu-batch-poll` | {a.runs} | "
                   f"{row['tx_mpps_median']:.3g} | {row['rx_mpps_median']:.3g} (end to end "
                   f"{row['mpps_median']:.3g}) |")
        m = _med(rx)
        if m:
            out.append(f"| emu | pipe | {a.size} B | **pkt-gen RX / bench row end to end** | | | "
                       f"**{m / row['mpps_median']:.2f}x** |")
    return out


PAIRS = (("c", "c"), ("py", "c"), ("c", "py"), ("py", "py"), ("floor", "c"))
NAMES = {"c": "C", "py": "Python", "floor": "Python floor (bench.floor_tx)"}


def netmap_table(a: argparse.Namespace) -> list[str]:
    if not os.path.exists("/dev/netmap"):
        return ["netmap: skipped (no /dev/netmap)"]
    if find_pktgen() is None:
        return ["netmap: skipped (no pkt-gen on PATH or in $PKTGEN)"]
    out = ["| backend | setup | size | tx -> rx | runs | TX Mpps (min-max) | RX Mpps (min-max) | lost |",
           "|---|---|---|---|---|---|---|---|"]
    failed: dict[str, int] = {}
    for setup in ("pipe", "vale"):
        res: dict[tuple[str, str], tuple[list[float], list[float], int]] = {p: ([], [], 0) for p in PAIRS}
        for _ in range(a.runs):       # interleaved: a change of load hits every pairing alike
            for pair in PAIRS:
                tag = f"{os.getpid()}x{uuid.uuid4().hex[:6]}"
                if setup == "pipe":
                    txp, rxp = f"netmap:pgt{tag}{{0", f"netmap:pgt{tag}}}0"
                else:
                    txp, rxp = f"vale{tag}:s", f"vale{tag}:r"
                try:
                    t, r, n = one_run(*pair, txp, rxp, a, "netmap")
                except RuntimeError as exc:   # one stuck or failed run is reported, not fatal
                    print(f"{setup} {pair}: {exc}", file=sys.stderr, flush=True)
                    failed[setup] = failed.get(setup, 0) + 1
                    continue
                print(f"{setup} {pair}: tx {t:.3g} rx {r:.3g} Mpps, {n} received", file=sys.stderr,
                      flush=True)
                txs, rxs, lost = res[pair]
                txs.append(t)
                rxs.append(r)
                res[pair] = (txs, rxs, lost + a.packets - n)
        for pair in PAIRS:
            txs, rxs, lost = res[pair]
            pct = f"{100 * lost / (a.packets * len(txs)):.1f}%" if lost and txs else ""
            out.append(f"| netmap | {setup} | {a.size} B | {NAMES[pair[0]]} -> {NAMES[pair[1]]} | "
                       f"{a.runs} | {_cell(txs)} | {_cell(rxs)} | {pct} |")
        if failed.get(setup):
            out.append(f"| netmap | {setup} | | {failed[setup]} run(s) failed (stderr) | | | | |")
        ctx, crx = _med(res[("c", "c")][0]), _med(res[("c", "c")][1])
        ptx, prx = _med(res[("py", "c")][0]), _med(res[("c", "py")][1])
        if ctx and crx and ptx and prx:
            out.append(f"| netmap | {setup} | {a.size} B | **Python / C** | | **{ptx / ctx:.2f}x** | "
                       f"**{prx / crx:.2f}x** | |")
        ftx = _med(res[("floor", "c")][0])
        if ctx and ftx and ptx:
            out.append(f"| netmap | {setup} | {a.size} B | Python floor / C; Python / floor | | "
                       f"{ftx / ctx:.2f}x; {ptx / ftx:.2f}x | | |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pktgen_tool", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs per cell (median shown; default 5)")
    p.add_argument("--packets", type=int, default=2_000_000, help="packets per run (default 2M)")
    p.add_argument("--size", type=int, default=60, help="frame length (default 60)")
    p.add_argument("--burst", type=int, default=512, help="-b of both sides (default 512)")
    p.add_argument("--slots", type=int, default=4096, help="slots of every ring (default 4096)")
    p.add_argument("--bound", type=float, default=BOUND,
                   help="seconds one run may take before it counts as failed (default 600)")
    p.add_argument("--only", choices=("emu", "netmap"), default=None, help="one backend only")
    a = p.parse_args(argv)
    LIMIT["bound"] = a.bound
    if a.only != "netmap":
        print("\n".join(emu_table(a)), flush=True)
        print()
    if a.only != "emu":
        print("\n".join(netmap_table(a)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
