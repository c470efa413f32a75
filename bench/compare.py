"""``python -m bench.compare``: the pipe and VALE throughput rows of ``python -m bench``, old code
against new code, side by side.

    python -m bench.compare --old REF [--new WORKTREE_OR_REF] [--runs R] [ROWS...]

``--old`` is a git ref, checked out into a temporary ``git worktree`` (removed afterwards);
``--new`` is a directory (default: this checkout, uncommitted changes included) or a ref. Each
run is one ``python -m bench --only ROWS --repeat 1`` in a fresh process whose PYTHONPATH puts
that tree's ``netmap_core`` and ``backends/netmap_emu`` first, so it imports that tree's library,
inside a fresh emulator namespace made and removed by that tree's ``isolated_namespace()`` (old
and new code never share a namespace, nor touch the user's).
The measuring code is the same for both, this checkout's ``bench`` package (``--own-bench``: each
tree's own), so only the library differs. The runs alternate, old then new in even rounds, new
then old in odd ones, R runs each (default 5), so a change of machine load hits both alike.
Before measuring, each tree's import paths are printed once and checked.

Printed per row: median Mpps old, new, and new / old; then why runs failed, if any did. ROWS
are ``python -m bench --only`` patterns (id glob or prefix), default ``pnm-emu vale-emu``: every
emulator pipe and VALE row.
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
from contextlib import ExitStack, contextmanager

from . import noise
from .report import render_columns

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # this checkout
DEFAULT_ROWS = ("pnm-emu", "vale-emu")
#: where a tree keeps the packages a run must import from it
PACKAGE_DIRS = {"netmap_core": ".", "netmap_emu": "backends", "netmap_dev": "backends"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Old vs new code on the emulator's pipe and VALE rows of python -m bench: "
                    "interleaved runs, median Mpps of each and new/old.")
    p.add_argument("--old", required=True, metavar="REF", help="git ref of the old code")
    p.add_argument("--new", default=HERE, metavar="WORKTREE_OR_REF",
                   help="a directory (default: this checkout, as it is) or a git ref")
    p.add_argument("--runs", type=int, default=5, metavar="R", help="runs of each side (default 5)")
    p.add_argument("--sizes", default="60", help="frame sizes passed to the bench (default 60)")
    p.add_argument("--work", default="none", help="per-packet work passed to the bench (default none)")
    p.add_argument("--duration", type=float, default=1.0,
                   help="target seconds per run passed to the bench (default 1.0)")
    p.add_argument("--own-bench", action="store_true",
                   help="each tree runs its own bench package (default: this checkout's for both)")
    p.add_argument("--json", metavar="PATH", help="also write the per-run results and medians here")
    p.add_argument("rows", nargs="*", metavar="ROWS", default=list(DEFAULT_ROWS),
                   help="row id patterns for python -m bench --only (default: pnm-emu vale-emu)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    a = build_parser().parse_args(argv)
    if a.runs < 1 or a.duration <= 0:
        raise SystemExit("bench.compare: --runs >= 1 and --duration > 0")
    return a


# --- the numbers --------------------------------------------------------------------------------

def row_key(row: dict) -> tuple[str, int, str]:
    return row["id"], row["size"], row["work"]


def compare(old_docs: list[dict], new_docs: list[dict]) -> list[dict]:
    """Per row (id, size, work) seen in either side's bench JSON documents: the Mpps of each run
    that succeeded, their medians, and new / old (None when a side has no successful run)."""
    runs: dict[tuple, dict[str, list[float]]] = {}
    errors: dict[tuple, dict[str, list[str]]] = {}
    for side, docs in (("old", old_docs), ("new", new_docs)):
        for doc in docs:
            for row in doc.get("rows", []):
                if row.get("kind") == "pingpong" or row.get("status") == "skipped":
                    continue
                k = row_key(row)
                runs.setdefault(k, {"old": [], "new": []})
                errors.setdefault(k, {"old": [], "new": []})
                if row.get("status") == "ok" and row.get("runs"):
                    runs[k][side] += [r["mpps"] for r in row["runs"]]
                else:
                    errors[k][side].append((row.get("reason") or row.get("status") or "?").splitlines()[0])
    out = []
    for k, sides in runs.items():
        mo = statistics.median(sides["old"]) if sides["old"] else None
        mn = statistics.median(sides["new"]) if sides["new"] else None
        out.append({"id": k[0], "size": k[1], "work": k[2], "old_mpps": sides["old"],
                    "new_mpps": sides["new"], "old_median": mo, "new_median": mn,
                    "ratio": mn / mo if mo and mn is not None else None,
                    "old_errors": len(errors[k]["old"]), "new_errors": len(errors[k]["new"]),
                    "old_failures": errors[k]["old"], "new_failures": errors[k]["new"]})
    return out


def failures(results: list[dict]) -> str:
    """Why runs failed: each distinct first line of a row's error, per side, with its count."""
    out = []
    for r in results:
        for side in ("old", "new"):
            for why in dict.fromkeys(r[f"{side}_failures"]):
                n = r[f"{side}_failures"].count(why)
                out.append(f"  {r['id']} {r['size']} B {r['work']}, {side}: {why}"
                           + (f" (x{n})" if n > 1 else ""))
    return "\n".join(out)


def table(results: list[dict]) -> str:
    def f(x):
        return "-" if x is None else f"{x:.3g}"
    lines = [(r["id"], str(r["size"]), r["work"], f(r["old_median"]), f(r["new_median"]),
              "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
              f"{len(r['old_mpps'])}/{len(r['new_mpps'])}"
              + (f" ({r['old_errors']}/{r['new_errors']} failed)"
                 if r["old_errors"] or r["new_errors"] else ""))
             for r in results]
    return render_columns(("row", "size", "work", "old Mpps", "new Mpps", "new/old", "runs old/new"),
                          lines)


# --- the trees ----------------------------------------------------------------------------------

def _git(*args: str, cwd: str = HERE) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench.compare: git {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


@contextmanager
def checkout(ref: str, parent: str, label: str):
    """``ref`` checked out (detached) in a temporary worktree under ``parent``; removed after."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = os.path.join(parent, label)
    _git("worktree", "add", "--detach", "--quiet", path, commit)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", path], cwd=HERE,
                       capture_output=True)


def describe(tree: str) -> str:
    """The commit a tree has checked out, and whether it has uncommitted changes."""
    head = _git("rev-parse", "--short", "HEAD", cwd=tree)
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=tree)
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def tree_env(tree: str, shim: str | None) -> dict:
    """The environment of a run against ``tree``: its packages first on PYTHONPATH, after the
    shim directory that holds the bench package to use (if any)."""
    roots = list(dict.fromkeys(os.path.join(tree, d) for d in PACKAGE_DIRS.values()))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(([shim] if shim else []) + [os.path.abspath(r) for r in roots])
    env.pop("PYTHONHOME", None)
    return env


def imported_paths(tree: str, env: dict, cwd: str) -> dict[str, str]:
    """Where a run of ``tree`` imports each package (and the bench) from."""
    code = ("import json, importlib\n"
            "out = {}\n"
            f"for m in {sorted(PACKAGE_DIRS) + ['bench']!r}:\n"
            "    try:\n"
            "        out[m] = importlib.import_module(m).__file__\n"
            "    except ImportError as e:\n"
            "        out[m] = 'not importable: %s' % e\n"
            "print(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench.compare: cannot import from {tree}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def _check_paths(label: str, tree: str, paths: dict[str, str]) -> None:
    real = os.path.realpath(tree) + os.sep
    for m in ("netmap_core", "netmap_emu"):
        p = paths.get(m, "")
        if not os.path.realpath(p).startswith(real):
            raise SystemExit(f"bench.compare: the {label} run imports {m} from {p}, not from {tree}")


#: ``python -m bench`` inside a fresh emulator namespace of the run's own tree, removed afterwards:
#: old and new code never share one (their registries need not agree), nor use the user's
RUNNER = """\
import os, runpy, sys
try:
    from netmap_emu.testing import isolated_namespace
except ImportError:          # a tree without it: a namespace of its own, left behind
    import contextlib
    os.environ["PYNETMAP_EMU_NS"] = "cmp%d" % os.getpid()
    isolated_namespace = lambda prefix: contextlib.nullcontext()
sys.argv = ["bench"] + sys.argv[1:]
with isolated_namespace("cmp"):
    runpy.run_module("bench", run_name="__main__", alter_sys=True)
"""


def bench_command(a: argparse.Namespace, out_json: str) -> list[str]:
    return [sys.executable, "-c", RUNNER, "--only", *a.rows, "--repeat", "1", "--sizes", a.sizes,
            "--work", a.work, "--duration", str(a.duration), "--no-plot", "--json", out_json]


def bench_once(env: dict, cwd: str, a: argparse.Namespace, out_json: str, log) -> dict | None:
    cmd = bench_command(a, out_json)
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    if not os.path.exists(out_json):
        log(f"\nbench.compare: python -m bench {' '.join(cmd[3:])} failed (exit {r.returncode}):\n"
            f"{r.stderr[-2000:]}\n")
        return None
    with open(out_json) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)

    def log(s: str) -> None:
        print(s, end="", file=sys.stderr, flush=True)

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pnm-compare-"))
        trees = {"old": stack.enter_context(checkout(a.old, tmp, "old"))}
        if os.path.isdir(a.new):
            trees["new"] = os.path.abspath(a.new)
        else:
            trees["new"] = stack.enter_context(checkout(a.new, tmp, "new"))
        labels = {side: describe(tree) for side, tree in trees.items()}
        envs, runs_dir = {}, os.path.join(tmp, "runs")
        os.makedirs(runs_dir)
        shim = None
        if not a.own_bench:           # this checkout's bench package, and nothing else of it
            shim = os.path.join(tmp, "shim")
            os.makedirs(shim)
            os.symlink(os.path.join(HERE, "bench"), os.path.join(shim, "bench"))
        for side, tree in trees.items():
            envs[side] = tree_env(tree, shim)
            cwd = runs_dir if shim else tree      # -m bench: the tree's own bench is found in cwd
            paths = imported_paths(tree, envs[side], cwd)
            _check_paths(side, tree, paths)
            print(f"{side}: {a.old if side == 'old' else a.new}, {labels[side]}")
            for m, p in paths.items():
                print(f"  {m:12s} {os.path.realpath(p) if os.path.exists(p) else p}")
        share_before, load_before = noise.cpu_share(0.2), os.getloadavg()
        docs: dict[str, list[dict]] = {"old": [], "new": []}
        t0 = time.monotonic()
        for k in range(a.runs):
            order = ("old", "new") if k % 2 == 0 else ("new", "old")
            log(f"round {k + 1}/{a.runs}:")
            for side in order:
                log(f" {side}")
                doc = bench_once(envs[side], runs_dir if shim else trees[side], a,
                                 os.path.join(runs_dir, f"{side}-{k}.json"), log)
                if doc is not None:
                    docs[side].append(doc)
            log(f" ({time.monotonic() - t0:.0f} s)\n")
        share_after = noise.cpu_share(0.2)

    results = compare(docs["old"], docs["new"])
    print(f"\nmedian Mpps of {a.runs} interleaved runs per side (python -m bench --only "
          f"{' '.join(a.rows)} --repeat 1 --sizes {a.sizes} --work {a.work} --duration {a.duration:g}); "
          f"bench package: {'each tree its own' if a.own_bench else 'this checkout for both'}")
    print(f"share of each CPU a pinned busy loop got before / after: {noise.describe(share_before)} / "
          f"{noise.describe(share_after)}; load average {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"(a shared, noisy machine: differences under ~10-20 % are within its swings)\n")
    print(table(results))
    why = failures(results)
    if why:
        print(f"\nfailed runs:\n{why}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"old": labels["old"], "new": labels["new"], "args": vars(a),
                       "cpu_share_before": share_before, "cpu_share_after": share_after,
                       "rows": results}, f, indent=1)
        print(f"\nresults: {a.json}")
    return 0 if docs["old"] and docs["new"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
