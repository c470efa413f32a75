"""Command line of ``python -m bench``: pick rows, measure them, print the tables and targets,
save the raw results as JSON (and a PNG when matplotlib is installed).

Progress goes to stderr; the tables and targets go to stdout.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

from . import noise, pktgen, report
from .harness import WORKS, Config, RowResult, Skip, calibrate, sample
from .rows import all_scenarios, select

QUICK = dict(duration=0.1, repeat=3, rounds=200)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected comma-separated integers") from None
    bad = [s for s in sizes if not 22 <= s <= 1514]
    if not sizes or bad:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: each size must lie in 22..1514")
    return sizes


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not counts or any(not 1 <= c <= 253 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: each count must lie in 1..253")
    return counts


def _works(text: str) -> tuple[str, ...]:
    works = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [w for w in works if w not in WORKS]
    if not works or bad:
        raise argparse.ArgumentTypeError(f"--work {text!r}: allowed {', '.join(WORKS)}")
    return works


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="pynetmap against multiprocessing.Pipe, AF_UNIX sockets, os.pipe, pyzmq and "
                    "AF_PACKET: two processes per row, Mpps medians and ratios.")
    p.add_argument("--quick", action="store_true",
                   help=f"short runs (duration {QUICK['duration']} s, repeat {QUICK['repeat']}): "
                        "all rows but the two spinning ones (ping-pong, VALE 1to1), in under a minute")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="rows whose id matches (glob or prefix), e.g. pnm-emu unix-* pingpong")
    p.add_argument("--sizes", type=_sizes, default=None, help="frame sizes, default 60,1514")
    p.add_argument("--work", type=_works, default=None,
                   help="per-packet work: none, seq (default both)")
    p.add_argument("--repeat", type=int, default=None, help="runs per row (default 5; quick 3)")
    p.add_argument("--duration", type=float, default=None,
                   help="target seconds per run (default 1.0; quick 0.1)")
    p.add_argument("--slots", type=int, default=4096, help="pynetmap pipe ring slots (default 4096)")
    p.add_argument("--batch", type=int, default=0,
                   help="pynetmap batch senders: most slots per txsync (default 0: all free slots)")
    p.add_argument("--vale-receivers", type=_counts, default=(1, 3), metavar="N,N",
                   help="VALE rows: receiver ports per sender (1..253), default 1,3")
    p.add_argument("--rounds", type=int, default=None,
                   help="ping-pong round trips per run (default 2000; quick 200)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the processes to CPUs")
    p.add_argument("--json", metavar="PATH", help="raw results (default bench/results/<time>.json)")
    p.add_argument("--no-plot", action="store_true", help="do not write a PNG even if matplotlib is there")
    p.add_argument("--list", action="store_true", help="list the row ids and exit")
    return p


def _config(a: argparse.Namespace) -> Config:
    q = QUICK if a.quick else {}
    repeat = a.repeat if a.repeat is not None else q.get("repeat", 5)
    duration = a.duration if a.duration is not None else q.get("duration", 1.0)
    rounds = a.rounds if a.rounds is not None else q.get("rounds", 2000)
    if repeat < 1 or duration <= 0 or rounds < 1 or not 2 <= a.slots <= 4096 or a.batch < 0:
        raise SystemExit("bench: --repeat >= 1, --duration > 0, --rounds >= 1, --slots in 2..4096, "
                         "--batch >= 0")
    return Config(sizes=a.sizes or (60, 1514), works=a.work or tuple(WORKS), duration=duration,
                  repeat=repeat, slots=a.slots, batch=a.batch, rounds=rounds, pin=not a.no_pin,
                  vale_receivers=a.vale_receivers)


def machine_meta() -> dict:
    """Where and on what a measurement ran: date, Python, platform, CPU model, usable CPUs, load
    average, library versions and the git commit (shared by the bench's commands)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                  cwd=os.path.dirname(os.path.dirname(__file__))).stdout.strip()
        except OSError:
            return ""
    versions = {}
    for mod in ("numpy", "zmq", "posix_ipc"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = None
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
        "cpus_usable": len(os.sched_getaffinity(0)), "loadavg": os.getloadavg(),
        "versions": versions, "git": git("rev-parse", "--short", "HEAD"),
    }


def _meta(argv: list[str], cfg: Config) -> dict:
    return {"command": "python -m bench " + " ".join(argv), **machine_meta(), "works": WORKS,
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser().parse_args(argv)
    cfg = _config(a)
    scenarios = select(all_scenarios(cfg), a.only)
    if a.quick and not a.only:
        scenarios = [s for s in scenarios if s.quick]
    if a.list:
        for s in scenarios:
            print(f"{s.id:28s} {s.kind:12s} {s.title}")
        return 0
    if not scenarios:
        print(f"bench: no row matches --only {' '.join(a.only)} (see --list)", file=sys.stderr)
        return 2

    def log(s: str) -> None:
        print(s, end="", file=sys.stderr, flush=True)

    t_all = time.monotonic()
    share_before = noise.cpu_share(0.2)
    load_before = os.getloadavg()
    log(f"CPU a pinned busy loop gets: {noise.describe(share_before)}; load average {load_before[0]:.2f}\n")
    rows: list[RowResult] = []
    states: dict[str, object] = {}
    try:
        # 1. calibrate every row (and set up each scenario once: e.g. the veth pair)
        for scn in scenarios:
            sizes = [s for s in cfg.sizes if scn.sizes is None or s in scn.sizes] or list(scn.sizes or ())
            works = [w for w in cfg.works if w in scn.works] or list(scn.works)
            reason = scn.available() if scn.available else None
            if reason is None and scn.setup:
                try:
                    states[scn.id] = scn.setup()
                except Skip as exc:
                    reason = str(exc)
            hint: dict[int, float] = {}
            for size in sizes:
                for work in works:
                    r = RowResult(scn, size, work)
                    rows.append(r)
                    if reason is not None:
                        r.status, r.reason = "skipped", reason
                        log(f"{scn.id} {size} B {work}: skipped: {reason}\n")
                        continue
                    calibrate(r, cfg, states.get(scn.id), hint.get(size, 0.0))
                    if r.status == "ok" and r.packets_per_run:  # per sender, for the next work
                        hint[size] = 0.5 * r.packets_per_run / cfg.duration
                    if r.status == "skipped":
                        reason = r.reason  # the same cause skips the scenario's other rows
                    log(f"{scn.id} {size} B {work}: " + (
                        f"{r.packets_per_run} packets per run" if r.status == "ok" and scn.kind != "pingpong"
                        else r.status if r.status == "ok"
                        else f"{r.status}: {r.reason.splitlines()[0]}") + "\n")
        # 2. the repeats, interleaved: round k runs every row once
        live = [r for r in rows if r.status == "ok"]
        for k in range(cfg.repeat):
            log(f"round {k + 1}/{cfg.repeat} ")
            t0 = time.monotonic()
            for r in live:
                sample(r, cfg, states.get(r.scenario.id))
                log("." if r.status == "ok" else "x")
            log(f" {time.monotonic() - t0:.1f} s\n")
    finally:
        for scn in scenarios:
            if scn.id in states and scn.teardown:
                scn.teardown(states[scn.id])
    for r in rows:
        if r.status == "error":
            log(f"{r.id} {r.size} B {r.work}: {r.reason}\n")

    share_after = noise.cpu_share(0.2)
    ts = report.targets(rows)
    print("per-packet work: " + "; ".join(f"{k} = {v}" for k, v in WORKS.items()))
    print(f"machine: {len(share_after)} CPUs; share of each CPU a pinned busy loop got before / after: "
          f"{noise.describe(share_before)} / {noise.describe(share_after)}; load average "
          f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f} (below 100% = other processes compete)")
    print(f"Mpps = packets delivered / (receiver end - sender start), median of {cfg.repeat} runs "
          f"of ~{cfg.duration:g} s; ratios = this row's median / best peer median (same size, work)")
    if any(r.scenario.family == "pktgen" for r in rows):
        print("pktgen rows: Mpps = packets delivered / the receiver's own time from its first "
              "packet to its last (pkt-gen's definition; C has no common clock with the harness)")
    print()
    if any(r.scenario.kind != "pingpong" for r in rows):
        print(report.table(rows))
    cmp = pktgen.comparison([r.as_dict() for r in rows])
    if cmp:
        print("\nC pkt-gen and pynetmap on /dev/netmap (medians; TX / RX = each side's own rate):")
        print(pktgen.comparison_text(cmp))
    if any(r.scenario.kind == "pingpong" for r in rows):
        print(f"\nping-pong round trip, 60 B, {cfg.rounds} round trips per run, {cfg.repeat} runs")
        print(report.pingpong_table(rows))
    print("\ntargets:")
    print(report.targets_text(ts))

    path = a.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                  time.strftime("bench-%Y%m%d-%H%M%S.json"))
    meta = _meta(argv, cfg)
    meta["elapsed_s"] = round(time.monotonic() - t_all, 1)
    meta["cpu_share_before"], meta["cpu_share_after"] = share_before, share_after
    meta["loadavg_before"] = load_before
    report.save_json(path, meta, rows, ts)
    print(f"\nraw results: {path} ({meta['elapsed_s']} s)")
    if not a.no_plot:
        png = report.plot(os.path.splitext(path)[0] + ".png", rows)
        if png:
            print(f"plot: {png}")
    return 1 if any(r.status == "error" for r in rows) else 0
