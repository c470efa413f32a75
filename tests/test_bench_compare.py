"""``python -m bench.compare``: argument handling and the medians / ratio of its table (no
benchmark is run, no timing asserted)."""
from __future__ import annotations

import pytest

from bench import compare


def test_compare_arguments():
    a = compare.parse_args(["--old", "main"])
    assert (a.old, a.new, a.runs, a.rows) == ("main", compare.HERE, 5, ["pnm-emu", "vale-emu"])
    assert (a.sizes, a.work, a.duration, a.own_bench) == ("60", "none", 1.0, False)
    a = compare.parse_args(["--old", "v1", "--new", "wt-x", "--runs", "3", "--own-bench",
                            "--sizes", "60,1514", "pnm-emu-batch-poll", "vale-emu-1to1*"])
    assert (a.old, a.new, a.runs, a.own_bench, a.sizes) == ("v1", "wt-x", 3, True, "60,1514")
    assert a.rows == ["pnm-emu-batch-poll", "vale-emu-1to1*"]
    with pytest.raises(SystemExit):
        compare.parse_args([])                     # --old is required
    with pytest.raises(SystemExit):
        compare.parse_args(["--old", "main", "--runs", "0"])


def _doc(*rows):
    return {"rows": [{"id": i, "size": 60, "work": "none", "kind": "throughput", "status": st,
                      "reason": "" if st == "ok" else "vale: role r0: boom\ntrace",
                      "runs": [{"mpps": m}] if m is not None else []} for i, m, st in rows]}


def test_compare_medians_and_ratio():
    old = [_doc(("pipe", 10.0, "ok"), ("vale", 2.0, "ok")),
           _doc(("pipe", 30.0, "ok"), ("vale", 4.0, "ok")),
           _doc(("pipe", 20.0, "ok"), ("vale", None, "error"))]
    new = [_doc(("pipe", 40.0, "ok"), ("vale", 3.0, "ok"), ("ping", None, "skipped")),
           _doc(("pipe", 50.0, "ok"), ("vale", None, "error")),
           _doc(("pipe", 45.0, "ok"), ("vale", None, "error"))]
    res = {r["id"]: r for r in compare.compare(old, new)}
    assert set(res) == {"pipe", "vale"}           # skipped rows are left out
    p, v = res["pipe"], res["vale"]
    assert (p["old_median"], p["new_median"]) == (20.0, 45.0)
    assert p["ratio"] == pytest.approx(2.25)
    assert (v["old_median"], v["new_median"], v["ratio"]) == (3.0, 3.0, 1.0)
    assert (v["old_errors"], v["new_errors"]) == (1, 2)
    text = compare.table(list(res.values()))
    assert "new/old" in text.splitlines()[0]
    line = next(ln for ln in text.splitlines() if ln.startswith("pipe"))
    assert line.split()[3:7] == ["20", "45", "2.25x", "3/3"]
    assert "(1/2 failed)" in text
    assert compare.failures(list(res.values())).splitlines() == [
        "  vale 60 B none, old: vale: role r0: boom", "  vale 60 B none, new: vale: role r0: boom (x2)"]
    only_old = compare.compare(old, [])
    assert all(r["ratio"] is None and r["new_median"] is None for r in only_old)
    assert "-" in compare.table(only_old).splitlines()[2].split()
