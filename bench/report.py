"""Turns measured rows into the printed table, the ratios, the target checks, the JSON file and
(when matplotlib is installed) a PNG bar chart.

Ratios compare a row's median with the best median of the other transports ("peers") in the same
frame size and per-packet work: the best one-message-per-packet peer and the best batched peer.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .harness import RowResult
from .pktgen import comparison, tx_targets

COLUMNS = ("scenario", "size", "work", "batch", "Mpps", "min", "max", "vs best 1/msg",
           "vs best batched", "note")
PP_COLUMNS = ("scenario", "median us", "p10 us", "p90 us", "run medians us", "note")


def _best(rows: list[RowResult], size: int, work: str, kind: str) -> RowResult | None:
    cands = [r for r in rows if r.status == "ok" and r.scenario.family == "peer"
             and r.scenario.kind == kind and r.size == size and r.work == work]
    return max(cands, key=lambda r: r.median, default=None)


def ratios(rows: list[RowResult], row: RowResult) -> tuple[float | None, float | None]:
    """(row / best per-message peer, row / best batched peer), None where there is no peer."""
    out = []
    for kind in ("per-message", "batched"):
        best = _best(rows, row.size, row.work, kind)
        out.append(row.median / best.median if best and best.median > 0 and row.status == "ok" else None)
    return out[0], out[1]


def _batch_label(r: RowResult) -> str:
    if r.scenario.batch.isdigit() or not r.samples:
        return r.scenario.batch
    return f"{r.scenario.batch} (avg {r.avg_batch:.0f})"


def _note(r: RowResult) -> str:
    if r.status != "ok":
        return f"{r.status}: {r.reason.splitlines()[0] if r.reason else ''}"
    notes = []
    lost = sum(s.lost for s in r.samples)
    if r.scenario.lossy:
        exp = sum(s.expected for s in r.samples)
        notes.append(f"lost {100.0 * lost / exp:.1f}%" if exp else "")
        notes.append(per_receiver_loss(r))
    bad = sum(s.bad for s in r.samples)
    if bad:
        notes.append(f"{bad} order errors")
    return ", ".join(n for n in notes if n)


def per_receiver_loss(r: RowResult) -> str:
    """Broadcast rows: each receiver's loss over all runs (what it did not receive of what
    was sent to it), with the drops its RX ring counted where the backend counts them."""
    if r.scenario.fanout <= 1 or not all(s.receivers for s in r.samples) or not r.samples:
        return ""
    sent = sum(s.expected // r.scenario.fanout for s in r.samples)
    parts = []
    for role in [n for n, _, _ in r.samples[0].receivers]:
        got = sum(k for s in r.samples for n, k, _ in s.receivers if n == role)
        drops = [d for s in r.samples for n, _, d in s.receivers if n == role]
        counted = f", {sum(drops)} dropped" if drops and min(drops) >= 0 else ""
        parts.append(f"{role.replace('receiver', 'r')} {100.0 * (sent - got) / sent:.1f}%{counted}")
    return "per receiver: " + "; ".join(parts) if sent else ""


def _fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2g}x" if x < 0.995 else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")


def render_columns(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    """An aligned plain-text table: the header, a rule, one line per tuple of cells."""
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, lines)])


def table(rows: list[RowResult]) -> str:
    """The throughput table, grouped by frame size and per-packet work."""
    lines = []
    for r in sorted((r for r in rows if r.scenario.kind != "pingpong"),
                    key=lambda r: (r.size, r.work)):
        ok = r.status == "ok" and r.samples
        r1, rb = ratios(rows, r)
        lines.append((
            r.id, str(r.size), r.work, _batch_label(r),
            f"{r.median:.3f}" if ok else "-",
            f"{min(r.mpps):.3f}" if ok else "-", f"{max(r.mpps):.3f}" if ok else "-",
            _fmt_ratio(r1), _fmt_ratio(rb), _note(r)))
    return render_columns(COLUMNS, lines)


def pingpong_table(rows: list[RowResult]) -> str:
    lines = []
    for r in (r for r in rows if r.scenario.kind == "pingpong"):
        d = r.as_dict()
        ok = r.status == "ok" and r.samples
        lines.append((
            r.id, f"{d['rtt_median_us']:.1f}" if ok else "-",
            f"{d['rtt_p10_us']:.1f}" if ok else "-", f"{d['rtt_p90_us']:.1f}" if ok else "-",
            " ".join(f"{x:.1f}" for x in d.get("rtt_run_medians_us", [])) or "-",
            "" if ok else _note(r)))
    return render_columns(PP_COLUMNS, lines)


# --- the targets -------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    text: str
    measured: str
    met: bool | None     # None: not measured in this run


def _get(rows, rid: str, size: int, work: str) -> RowResult | None:
    return next((r for r in rows if r.id == rid and r.size == size and r.work == work
                 and r.status == "ok" and r.samples), None)


def targets(rows: list[RowResult]) -> list[Target]:
    out: list[Target] = []
    sizes = sorted({r.size for r in rows if r.scenario.kind != "pingpong"})
    works = sorted({r.work for r in rows if r.scenario.kind != "pingpong"})
    for tag in ("emu", "dev"):
        if not any(r.id.startswith((f"pnm-{tag}-", f"pingpong-pnm-{tag}", f"vale-{tag}-"))
                   for r in rows if r.status == "ok"):
            continue
        out += _backend_targets(rows, tag, sizes, works)
    out += [Target(*t) for t in tx_targets([r.as_dict() for r in rows])]
    return out


def _backend_targets(rows: list[RowResult], tag: str, sizes: list[int], works: list[str]) -> list[Target]:
    """The targets one backend's rows meet or miss (``tag``: emu or dev)."""
    out: list[Target] = []

    def check(text: str, rid: str, pred, fmt) -> None:
        for work in works:
            got = [(s, _get(rows, rid, s, work)) for s in sizes]
            got = [(s, r) for s, r in got if r is not None]
            if not got:
                continue
            vals = [(s, pred(r)) for s, r in got]
            measured = ", ".join(f"{s} B: {fmt(v)}" for s, v in vals)
            met = None if any(v is None for _, v in vals) else all(ok for _, (_, ok) in vals)
            out.append(Target(f"{text} [{tag}, work {work}]", measured, met))

    def at_least(limit):
        return lambda r: (r.median, r.median >= limit)

    mp = lambda v: "-" if v is None else f"{v[0]:.2f} Mpps"  # noqa: E731
    rx = lambda v: "-" if v is None else f"{v[0]:.1f}x"  # noqa: E731
    check("batch API >= 50 Mpps at every frame size", f"pnm-{tag}-batch-spin", at_least(50), mp)
    check("batch API >= 30 Mpps blocking in poll", f"pnm-{tag}-batch-poll", at_least(30), mp)

    def vs(kind, limit, only_size=None):
        def pred(r):
            if only_size is not None and r.size != only_size:
                return (0.0, True)
            best = _best(rows, r.size, r.work, kind)
            if best is None or best.median <= 0:
                return None
            x = r.median / best.median
            return (x, x >= limit)
        return pred

    for rid in (f"pnm-{tag}-batch-spin",):
        for work in works:
            r = _get(rows, rid, 1514, work)
            if r is None:
                continue
            best = _best(rows, 1514, work, "batched")
            if best is None:
                out.append(Target(f">= 5x the best batched peer at 1514 B [{tag}, work {work}]",
                                  "no batched peer measured", None))
                continue
            x = r.median / best.median
            out.append(Target(f">= 5x the best batched peer at 1514 B [{tag}, work {work}]",
                              f"{x:.1f}x ({r.median:.2f} vs {best.id} {best.median:.3f} Mpps)",
                              x >= 5))
    check(">= 30x every one-message-per-packet peer (batch API vs best)", f"pnm-{tag}-batch-spin",
          vs("per-message", 30), rx)

    def vs_bare(r):
        bare = _get(rows, f"pnm-{tag}-bare-loop", r.size, r.work)
        if bare is None or bare.median <= 0:
            return None
        x = r.median / bare.median
        return (x, x >= 0.7)
    check("per-packet API >= 0.7x a bare Python loop over the same slots (API / bare)",
          f"pnm-{tag}-per-packet", vs_bare, lambda v: "-" if v is None else f"{v[0]:.2f}x")
    out += _nf_targets(rows, tag, sizes, works)
    pp = next((r for r in rows if r.id == f"pingpong-pnm-{tag}-poll" and r.status == "ok"
               and r.samples), None)
    if pp is not None:
        out.append(Target(f"ping-pong round trip <= 60 us blocking in poll [{tag}]",
                          f"median {pp.rtt_median_us:.1f} us", pp.rtt_median_us <= 60))
        peers = [r for r in rows if r.scenario.kind == "pingpong" and r.scenario.family == "peer"
                 and r.status == "ok" and r.samples]
        best = min(peers, key=lambda r: r.rtt_median_us, default=None)
        if best is not None:
            x = pp.rtt_median_us / best.rtt_median_us
            out.append(Target(f"ping-pong blocking in poll <= 0.8x the best peer's round trip [{tag}]",
                              f"{x:.2f}x ({pp.rtt_median_us:.1f} vs {best.id} "
                              f"{best.rtt_median_us:.1f} us)", x <= 0.8))
    return out


def _nf_targets(rows: list[RowResult], tag: str, sizes: list[int], works: list[str]) -> list[Target]:
    """The network-function path's targets: per-packet work in the batch rows, VALE 1 -> 1."""
    out: list[Target] = []
    if "seq" in works:
        for rid in (f"pnm-{tag}-batch-spin", f"pnm-{tag}-batch-poll"):
            got = [(s, _get(rows, rid, s, "seq")) for s in sizes]
            got = [(s, r) for s, r in got if r is not None]
            if got:
                out.append(Target(
                    f"batch API with per-packet work (seq) >= 40 Mpps [{rid}]",
                    ", ".join(f"{s} B: {r.median:.2f} Mpps" for s, r in got),
                    all(r.median >= 40 for _, r in got)))
    limits = {60: 10.0, 1514: 5.0}
    for rid in (f"vale-{tag}-1to1-spin", f"vale-{tag}-1to1-poll"):
        got = [(s, _get(rows, rid, s, "none")) for s in sizes if s in limits]
        got = [(s, r) for s, r in got if r is not None]
        if got:
            out.append(Target(
                f"VALE 1 -> 1 >= 10 Mpps at 60 B, >= 5 Mpps at 1514 B [{rid}, work none]",
                ", ".join(f"{s} B: {r.median:.2f} Mpps" for s, r in got),
                all(r.median >= limits[s] for s, r in got)))
    for r in rows:
        if (r.id.startswith(f"vale-{tag}-1to") and r.id.endswith("-paced-poll") and r.status == "ok"
                and r.samples):
            lost = sum(s.lost for s in r.samples)
            exp = sum(s.expected for s in r.samples)
            out.append(Target(
                f"VALE broadcast paced to what the receivers keep up with: no loss "
                f"[{r.id}, {r.size} B, work {r.work}]",
                f"{lost} of {exp} lost ({r.median:.2f} Mpps aggregate)", lost == 0))
    return out


def targets_text(ts: list[Target]) -> str:
    mark = {True: "met    ", False: "NOT met", None: "n/a    "}
    return ("\n".join(f"  [{mark[t.met]}] {t.text}: {t.measured}" for t in ts)
            or "  (no pynetmap rows measured)")


# --- files ---------------------------------------------------------------------------------
def save_json(path: str, meta: dict, rows: list[RowResult], ts: list[Target]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    doc = {"meta": meta, "rows": [r.as_dict() for r in rows],
           "targets": [{"target": t.text, "measured": t.measured, "met": t.met} for t in ts]}
    doc["pktgen_comparison"] = comparison(doc["rows"])
    for d, r in zip(doc["rows"], rows):
        r1, rb = ratios(rows, r)
        d["ratio_vs_best_per_message"], d["ratio_vs_best_batched"] = r1, rb
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def plot(path: str, rows: list[RowResult]) -> str | None:
    """A log-scale bar chart of median Mpps per row and frame size; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ok = [r for r in rows if r.status == "ok" and r.samples and r.scenario.kind != "pingpong"]
    if not ok:
        return None
    groups = sorted({(r.size, r.work) for r in ok})
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3 + 0.35 * len(ok)), squeeze=False)
    for ax, (size, work) in zip(axes[:, 0], groups):
        sel = sorted((r for r in ok if r.size == size and r.work == work), key=lambda r: r.median)
        ax.barh([r.id for r in sel], [r.median for r in sel],
                xerr=[[r.median - min(r.mpps) for r in sel], [max(r.mpps) - r.median for r in sel]])
        ax.set_xscale("log")
        ax.set_title(f"{size} B, per-packet work: {work}")
        ax.set_xlabel("Mpps (median, min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
