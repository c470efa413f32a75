"""``pynetmap top``: live per-port and per-ring packet, byte and drop rates, as a plain-text
table every interval, JSON lines (``--json``) or a PNG of the rates over time (``--plot``).

Counters come from the backend through the ``pynetmap.stats`` entry-point group: its entry
named after the backend is ``snapshot(namespace: str | None)``, returning an object with
``backend``, ``namespace``, ``time`` (monotonic seconds), ``note`` and ``rings``, each a
:class:`netmap_core.counters.RingCounters` (running totals; the emulator's snapshot is
:func:`netmap_emu.stats.snapshot`). Rates are the
difference of two snapshots over the time between them. A backend without such an entry
(``netmap``: the kernel keeps no per-ring counters it exposes) gets what its Control offers,
the VALE ports VALE_LIST names, and a line saying per-ring counters are an emulator feature.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from netmap_core.backend import BACKENDS, default_backend_name
from netmap_core.counters import RingCounters
from netmap_core.errors import NetmapError

__all__ = ["GROUP", "Rate", "rates", "ports", "stats_source", "vale_ports", "main"]

#: the entry-point group backends register their counter snapshots in
GROUP = "pynetmap.stats"

NO_COUNTERS = ("per-ring counters are an emulator feature: netmap's kernel keeps none it "
               "exposes, so only the VALE ports are listed (spec/deviations.md)")
PLOT_EXTRA = "pynetmap top: --plot needs matplotlib, which is not installed: pip install 'pynetmap[plot]'"


@dataclass(frozen=True)
class Rate(RingCounters):
    """One ring's (or, with ``ring == -1``, one port direction's) totals and rates per second
    between two snapshots; rates are None for a ring the first snapshot did not have."""

    pps: float | None
    bps: float | None     # bytes per second
    dps: float | None     # drops per second


def _key(r: Any) -> tuple[str, str, int]:
    return (r.port, r.dir, r.ring)


def rates(old: Any, new: Any) -> list[Rate]:
    """Per-ring rates between snapshots ``old`` and ``new`` (same backend and namespace), in
    ``new``'s order. A ring whose counters went down was re-created between them: its rate is
    taken from zero."""
    dt = new.time - old.time
    before = {_key(r): r for r in old.rings}
    out = []
    for r in new.rings:
        o = before.get(_key(r))
        if o is None or dt <= 0:
            pps = bps = dps = None
        else:
            base = (0, 0, 0) if r.slots < o.slots or r.bytes < o.bytes else (o.slots, o.bytes, o.drops)
            pps = (r.slots - base[0]) / dt
            bps = (r.bytes - base[1]) / dt
            dps = max(0, r.drops - base[2]) / dt
        out.append(Rate(r.port, r.kind, r.switch, r.dir, r.ring, r.slots, r.bytes, r.drops, pps, bps, dps))
    return out


def _sum(xs: Iterable[float | None]) -> float | None:
    vals = list(xs)
    return None if any(x is None for x in vals) else sum(x for x in vals if x is not None)


def ports(per_ring: list[Rate]) -> list[Rate]:
    """Per-ring rates summed per (port, direction): ``ring`` is -1."""
    groups: dict[tuple[str, str], list[Rate]] = {}
    for r in per_ring:
        groups.setdefault((r.port, r.dir), []).append(r)
    return [Rate(rs[0].port, rs[0].kind, rs[0].switch, rs[0].dir, -1, sum(r.slots for r in rs),
                 sum(r.bytes for r in rs), sum(r.drops for r in rs), _sum(r.pps for r in rs),
                 _sum(r.bps for r in rs), _sum(r.dps for r in rs)) for rs in groups.values()]


def stats_source(backend: str) -> Callable[[str | None], Any] | None:
    """The ``snapshot`` registered for ``backend`` in :data:`GROUP`, or None if there is none."""
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.name == backend:
            return ep.load()
    return None


def vale_ports(backend: str) -> list[dict]:
    """The VALE ports the backend's VALE_LIST names (bridge and port index), walking every
    switch as ``vale-ctl`` without arguments does."""
    from netmap_core.control import control_for, vale_ports as walk

    control = control_for(backend)
    try:
        return [{"port": e.name, "bridge_idx": e.bridge_idx, "port_idx": e.port_idx} for e in walk(control)]
    finally:
        control.close()


# --- output ------------------------------------------------------------------------------------
def _si(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def table(snap: Any, per_ring: list[Rate], dt: float, *, rings: bool = True) -> str:
    """The text table: one line per port direction, then (``rings``) one per ring."""
    head = (f"{snap.backend} namespace {snap.namespace}: {len({r.port for r in per_ring})} ports, "
            f"{len(per_ring)} rings, rates over {dt:.2f} s ({snap.note})")
    cols = f"{'PORT':24s} {'DIR':3s} {'RING':>4s} {'PKT/S':>9s} {'BYTE/S':>9s} {'DROP/S':>9s} " \
           f"{'PKTS':>12s} {'BYTES':>14s} {'DROPS':>10s}"
    lines = [head, cols]
    by_port: dict[tuple[str, str], list[Rate]] = {}
    for r in per_ring:
        by_port.setdefault((r.port, r.dir), []).append(r)
    for agg in ports(per_ring):
        own = by_port[(agg.port, agg.dir)]
        rows = [agg] + (own if rings and len(own) > 1 else [])
        for r in rows:
            name = agg.port if r.ring < 0 else ""
            ring = "all" if r.ring < 0 else str(r.ring)
            rx = r.dir == "rx"
            drops, dps = (str(r.drops), _si(r.dps)) if rx else ("-", "-")
            lines.append(f"{name:24s} {r.dir:3s} {ring:>4s} {_si(r.pps):>9s} {_si(r.bps):>9s} "
                         f"{dps:>9s} {r.slots:12d} {r.bytes:14d} {drops:>10s}")
    if not per_ring:
        lines.append("(no ports)")
    return "\n".join(lines)


def _record(snap: Any, per_ring: list[Rate], dt: float) -> dict:
    return {"backend": snap.backend, "namespace": snap.namespace, "time": time.time(), "interval": dt,
            "note": snap.note, "ports": [asdict(r) for r in ports(per_ring)],
            "rings": [asdict(r) for r in per_ring]}


def write_plot(path: str, samples: list[tuple[float, list[Rate]]]) -> None:
    """A PNG of packets per second over time, one line per port direction (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[float], list[float]]] = {}
    t0 = samples[0][0] if samples else 0.0
    for t, per_ring in samples:
        for p in ports(per_ring):
            if p.pps is not None:
                xs, ys = series.setdefault(f"{p.port} {p.dir}", ([], []))
                xs.append(t - t0)
                ys.append(p.pps)
    fig, ax = plt.subplots(figsize=(9, 5))
    try:
        for label, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker=".", label=label)
        ax.set_xlabel("seconds")
        ax.set_ylabel("packets (slots) per second")
        ax.set_title("pynetmap top")
        if series:
            ax.legend(fontsize="small")
        fig.savefig(path)
    finally:
        plt.close(fig)


# --- command -----------------------------------------------------------------------------------
def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; allowed: seconds > 0") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v} is not > 0; allowed: seconds > 0")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: 1 or more") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is below 1; allowed: 1 or more")
    return v


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pynetmap top", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                    help="emu or netmap (default: as netmap_core.open)")
    ap.add_argument("--ns", default=None, help="emulator namespace (default: $PYNETMAP_EMU_NS or 'default')")
    ap.add_argument("-i", "--interval", type=_positive, default=1.0,
                    help="seconds between refreshes (default 1)")
    ap.add_argument("-n", "--count", type=_count, default=None,
                    help="refreshes, then exit (default: until Ctrl-C)")
    ap.add_argument("--once", action="store_true", help="one refresh and exit (-n 1)")
    ap.add_argument("--json", action="store_true", help="one JSON object per refresh, one per line")
    ap.add_argument("--plot", metavar="FILE.png", help="at exit, write packet rates over time (matplotlib)")
    ap.add_argument("--ports-only", action="store_true", help="table: one line per port direction")
    return ap


def _device(backend: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        found = vale_ports(backend)
    except (NetmapError, OSError) as exc:
        err.write(f"pynetmap top: {backend}: cannot list VALE ports: {exc}\n")
        return 1
    if args.json:
        out.write(json.dumps({"backend": backend, "time": time.time(), "note": NO_COUNTERS,
                              "vale_ports": found, "ports": [], "rings": []}) + "\n")
    else:
        out.write(f"{backend}: {NO_COUNTERS}\n")
        for p in found:
            out.write(f"  {p['port']:32s} bridge_idx {p['bridge_idx']} port_idx {p['port_idx']}\n")
        if not found:
            out.write("  (no VALE ports)\n")
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    count = 1 if args.once else args.count
    backend = args.backend or default_backend_name()
    snapshot = stats_source(backend)
    if snapshot is None and args.plot:
        err.write(f"pynetmap top: --plot: {NO_COUNTERS}\n")
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401 - checked before sampling, used at exit
        except ImportError:
            err.write(PLOT_EXTRA + "\n")
            return 2
    if snapshot is None:
        return _device(backend, args, out, err)
    samples: list[tuple[float, list[Rate]]] = []
    done = 0
    try:
        prev = snapshot(args.ns)
        while count is None or done < count:
            time.sleep(args.interval)
            cur = snapshot(args.ns)
            per_ring = rates(prev, cur)
            dt = cur.time - prev.time
            samples.append((cur.time, per_ring))
            if args.json:
                out.write(json.dumps(_record(cur, per_ring, dt)) + "\n")
            else:
                if count != 1 and out.isatty():
                    out.write("\x1b[H\x1b[2J")   # clear the terminal between refreshes
                out.write(table(cur, per_ring, dt, rings=not args.ports_only) + "\n")
            out.flush()
            prev = cur
            done += 1
    except KeyboardInterrupt:
        pass
    if args.plot:
        write_plot(args.plot, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
