"""Markdown summary of a saved run (``python -m bench.markdown bench/results/X.json``): one line
per row, one column per frame size and work, medians in Mpps; then ping-pong and targets.

Used to paste measured tables into bench/README.md.
"""
from __future__ import annotations

import json
import sys


def render(doc: dict) -> str:
    rows = [r for r in doc["rows"] if r["kind"] != "pingpong" and r["status"] != "skipped"]
    combos = sorted({(r["size"], r["work"]) for r in rows})
    ids = list(dict.fromkeys(r["id"] for r in rows))
    by = {(r["id"], r["size"], r["work"]): r for r in rows}
    head = ["row", "batch"] + [f"{s} B {w}" for s, w in combos]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rid in ids:
        cells = []
        batch = ""
        for s, w in combos:
            r = by.get((rid, s, w))
            if r is None or r["status"] != "ok":
                cells.append("error" if r else "")
                continue
            batch = r["batch"]
            cell = f"{r['mpps_median']:.3g}"
            lost = sum(x["lost"] for x in r["runs"])
            exp = sum(x["expected"] for x in r["runs"])
            if r["kind"] != "pingpong" and exp and lost:
                cell += f" ({100 * lost / exp:.0f}% lost)"
            cells.append(cell)
        out.append(f"| `{rid}` | {batch} | " + " | ".join(cells) + " |")
    pp = [r for r in doc["rows"] if r["kind"] == "pingpong" and r["status"] == "ok"]
    if pp:
        out += ["", "| ping-pong | median µs | p10 | p90 | medians of the runs |", "|---|---|---|---|---|"]
        for r in pp:
            runs = " ".join(f"{x:.1f}" for x in r["rtt_run_medians_us"])
            out.append(f"| `{r['id']}` | {r['rtt_median_us']:.1f} | {r['rtt_p10_us']:.1f} | "
                       f"{r['rtt_p90_us']:.1f} | {runs} |")
    if doc.get("pktgen_comparison"):
        from .pktgen import comparison_markdown

        out += ["", comparison_markdown(doc["pktgen_comparison"])]
    if doc.get("targets"):
        out += ["", "| target | measured | met |", "|---|---|---|"]
        mark = {True: "yes", False: "**no**", None: "n/a"}
        for t in doc["targets"]:
            out.append(f"| {t['target']} | {t['measured']} | {mark[t['met']]} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.markdown RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        doc = json.load(f)
    m = doc["meta"]
    def share(d):
        return ", ".join(f"cpu{c} {100 * f:.0f}%" for c, f in sorted((d or {}).items())) or "?"
    before = m.get("loadavg_before", m["loadavg"])[0]
    print(f"`{m['command']}` at commit {m['git']}, {m['date']}; {m['cpu']}, "
          f"{m['cpus_usable']} CPUs; share of each CPU a pinned busy loop got before / after: "
          f"{share(m.get('cpu_share_before'))} / {share(m.get('cpu_share_after'))}; load average "
          f"{before:.2f} / {m['loadavg'][0]:.2f}; {m['elapsed_s']} s.\n")
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
