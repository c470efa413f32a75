"""``python -m bench.open_scaling``: how long opening and closing one port takes as the
emulator's namespace fills up.

One process, a fresh emulator namespace per run (``netmap_emu.testing.isolated_namespace``):
open N ports one by one (``netmap_core.open(name, backend="emu")``), timing each open, then close
them in reverse order, timing each close. Kinds of port:

* ``pipe``: one end of N different pipes, ``netmap:sc<i>{0``;
* ``vale``: ``vale<k>:p<i>`` with k = i // 250 (a switch holds at most 252 ports, and there are
  at most 8 switches, so N <= 2000).

For the first and the last 10 % of the ports (ports 1-100 and 901-1000 for N = 1000) it reports
the mean and median time of their open and of their close, and last / first. Port i is opened
with i - 1 ports already open and closed with i - 1 still open, so both ratios compare a nearly
empty namespace with a nearly full one. Each statistic is the median over ``--runs`` runs.

    python -m bench.open_scaling [--ports N] [--kind pipe|vale|both] [--runs R] [--json [PATH]]

``--json`` alone prints the JSON instead of the markdown table; ``--json PATH`` writes it there.
Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

from . import noise
from .cli import machine_meta

KINDS = ("pipe", "vale")
SWITCH_PORTS = 250    # ports per VALE switch (netmap's limit is 252 active ports per switch)
MAX_SWITCHES = 8      # the emulator's (and netmap's default) number of VALE switches
OPS = ("open", "close")
STATS = ("first_mean", "first_median", "last_mean", "last_median")


def port_name(kind: str, i: int) -> str:
    """The i-th port (0-based) of a run."""
    if kind == "pipe":
        return f"netmap:sc{i}{{0"
    if kind == "vale":
        return f"vale{i // SWITCH_PORTS}:p{i}"
    raise ValueError(f"unknown kind {kind!r}")


def windows(n: int) -> tuple[range, range]:
    """0-based indexes of the first and of the last 10 % of n ports (at least one port each)."""
    w = max(1, n // 10)
    return range(0, w), range(n - w, n)


def window_label(r: range) -> str:
    return f"ports {r.start + 1}-{r.stop}"


def run_once(kind: str, n: int, log=lambda s: None) -> dict:
    """Open n ports of ``kind`` one by one in a fresh namespace, then close them last first.
    Returns the seconds of each open and each close, indexed by port (0-based)."""
    import netmap_core
    from netmap_emu.testing import isolated_namespace

    opens, closes = [0.0] * n, [0.0] * n
    clock = time.perf_counter
    with isolated_namespace("openscale"):
        ports = []
        gc.collect()
        gc.disable()
        try:
            t_all = clock()
            for i in range(n):
                name = port_name(kind, i)
                t0 = clock()
                ports.append(netmap_core.open(name, backend="emu"))
                opens[i] = clock() - t0
                if (i + 1) % 100 == 0 or i + 1 == n:
                    log(f"\r{kind}: opened {i + 1}/{n} ({clock() - t_all:.1f} s)")
            log("\n")
            gc.enable()
            gc.collect()
            gc.disable()
            t_all = clock()
            for i in range(n - 1, -1, -1):
                t0 = clock()
                ports[i].close()
                closes[i] = clock() - t0
                if i % 100 == 0:
                    log(f"\r{kind}: closed {n - i}/{n} ({clock() - t_all:.1f} s)")
            log("\n")
        finally:
            gc.enable()
            for p in ports:       # after an error: close whatever is still open
                if not p.closed:
                    p.close()
    return {"open_s": opens, "close_s": closes}


def summarize(times: list[float]) -> dict:
    """Mean and median (ms) of the first and of the last window of per-port times."""
    first, last = windows(len(times))
    a = [times[i] * 1e3 for i in first]
    b = [times[i] * 1e3 for i in last]
    return {"first_mean": statistics.fmean(a), "first_median": statistics.median(a),
            "last_mean": statistics.fmean(b), "last_median": statistics.median(b)}


def tenths(times: list[float]) -> list[float]:
    """Median time (ms) of each tenth of the ports, in port order (fewer parts if n < 10)."""
    n = len(times)
    parts = min(10, n)
    return [statistics.median(times[j * n // parts:(j + 1) * n // parts]) * 1e3 for j in range(parts)]


def combine(per_run: list[dict]) -> dict:
    """The median over runs of each statistic, and last / first of those medians."""
    out = {k: statistics.median(r[k] for r in per_run) for k in STATS}
    out["ratio_mean"] = out["last_mean"] / out["first_mean"] if out["first_mean"] else None
    out["ratio_median"] = out["last_median"] / out["first_median"] if out["first_median"] else None
    return out


def _ms(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def markdown(result: dict) -> str:
    """The table: one line per kind and operation."""
    n = result["ports"]
    first, last = (window_label(w) for w in windows(n))
    head = ["kind", "op", f"{first}: mean ms", "median ms", f"{last}: mean ms", "median ms",
            "last / first (mean)", "(median)", "whole run s (runs)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, k in result["kinds"].items():
        for op in OPS:
            c = k[op]
            totals = " ".join(f"{t:.1f}" for t in k[f"{op}_total_s"])
            out.append(f"| {kind} | {op} | {_ms(c['first_mean'])} | {_ms(c['first_median'])} | "
                       f"{_ms(c['last_mean'])} | {_ms(c['last_median'])} | {_ratio(c['ratio_mean'])} "
                       f"| {_ratio(c['ratio_median'])} | {totals} |")
    parts = min(10, n)
    bounds = [(j * n // parts + 1, (j + 1) * n // parts) for j in range(parts)]
    head = ["kind", "op"] + [f"{lo}-{hi}" for lo, hi in bounds]
    out += ["", "Median ms per tenth of the ports (port i opened with i - 1 open, closed with i - 1 "
                "still open):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, k in result["kinds"].items():
        for op in OPS:
            out.append(f"| {kind} | {op} | " + " | ".join(_ms(x) for x in k[f"{op}_tenths_ms"]) + " |")
    return "\n".join(out)


def caveat(result: dict) -> str:
    m = result["meta"]
    return (f"{result['runs']} run(s) per kind of {result['ports']} ports each, medians over the runs; "
            f"commit {m['git']}, {m['cpu']}, {m['cpus_usable']} CPUs; share of each CPU a pinned "
            f"busy loop got before / after: {noise.describe(result['cpu_share_before'])} / "
            f"{noise.describe(result['cpu_share_after'])}; load average "
            f"{result['loadavg_before'][0]:.2f} / {m['loadavg'][0]:.2f}. The machine is shared and "
            f"noisy: single opens swing by 2x or more when a neighbour runs, so trust the ratios "
            f"(same run, same conditions) more than the absolute times, and rerun before quoting.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.open_scaling",
        description="Time each open and each close of N emulator ports in one process, as the "
                    "namespace fills up (first vs last tenth of the ports).")
    p.add_argument("--ports", type=int, default=1000, metavar="N", help="ports per run (default 1000)")
    p.add_argument("--kind", choices=("pipe", "vale", "both"), default="both",
                   help="pipe ends, VALE ports, or both (default)")
    p.add_argument("--runs", type=int, default=3, metavar="R", help="runs per kind (default 3)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="print the results as JSON instead of the table; with PATH, write them there")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser().parse_args(argv)
    kinds = KINDS if a.kind == "both" else (a.kind,)
    if a.ports < 1 or a.runs < 1:
        raise SystemExit("open_scaling: --ports and --runs must be >= 1")
    if "vale" in kinds and a.ports > SWITCH_PORTS * MAX_SWITCHES:
        raise SystemExit(f"open_scaling: VALE: at most {SWITCH_PORTS * MAX_SWITCHES} ports "
                         f"({MAX_SWITCHES} switches of {SWITCH_PORTS})")

    def log(s: str) -> None:
        print(s, end="", file=sys.stderr, flush=True)

    t_all = time.monotonic()
    share_before, load_before = noise.cpu_share(0.2), os.getloadavg()
    log(f"CPU a pinned busy loop gets: {noise.describe(share_before)}; load average {load_before[0]:.2f}\n")
    result = {"command": "python -m bench.open_scaling " + " ".join(argv), "ports": a.ports,
              "runs": a.runs, "kinds": {}, "cpu_share_before": share_before,
              "loadavg_before": load_before}
    raw: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(a.runs):           # interleaved: run r of every kind, then run r + 1
        for kind in kinds:
            log(f"run {r + 1}/{a.runs}, ")
            raw[kind].append(run_once(kind, a.ports, log))
    for kind in kinds:
        runs = raw[kind]
        result["kinds"][kind] = {
            **{op: combine([summarize(x[f"{op}_s"]) for x in runs]) for op in OPS},
            **{f"{op}_runs": [summarize(x[f"{op}_s"]) for x in runs] for op in OPS},
            **{f"{op}_total_s": [sum(x[f"{op}_s"]) for x in runs] for op in OPS},
            **{f"{op}_tenths_ms": [statistics.median(col) for col in
                                   zip(*(tenths(x[f"{op}_s"]) for x in runs))] for op in OPS},
            "per_port_ms": {op: [[round(t * 1e3, 4) for t in x[f"{op}_s"]] for x in runs] for op in OPS},
        }
    result["cpu_share_after"] = noise.cpu_share(0.2)
    result["meta"] = {**machine_meta(), "elapsed_s": round(time.monotonic() - t_all, 1)}

    if a.json == "-":
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    print(f"Opening and closing {a.ports} emulator ports in one process "
          f"(`{result['command']}`, {result['meta']['elapsed_s']} s)\n")
    print(markdown(result))
    print()
    print(caveat(result))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\nraw results: {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
