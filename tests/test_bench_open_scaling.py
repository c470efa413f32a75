"""``python -m bench.open_scaling``: port names, windows and statistics, and a tiny open/close
run on the emulator (no timing is asserted)."""
from __future__ import annotations

import json

import pytest

from bench import open_scaling


def test_open_scaling_names_and_windows():
    assert open_scaling.port_name("pipe", 7) == "netmap:sc7{0"
    assert [open_scaling.port_name("vale", i) for i in (0, 249, 250, 999)] == \
        ["vale0:p0", "vale0:p249", "vale1:p250", "vale3:p999"]
    first, last = open_scaling.windows(1000)
    assert (first, last) == (range(0, 100), range(900, 1000))
    assert open_scaling.window_label(last) == "ports 901-1000"
    assert open_scaling.windows(5) == (range(0, 1), range(4, 5))


def test_open_scaling_statistics():
    times = [0.001] * 10 + [0.002] * 80 + [0.010] * 9 + [0.100]   # seconds per port
    s = open_scaling.summarize(times)
    assert s["first_mean"] == pytest.approx(1.0) and s["first_median"] == pytest.approx(1.0)
    assert s["last_mean"] == pytest.approx(19.0) and s["last_median"] == pytest.approx(10.0)
    assert open_scaling.tenths(times)[0] == pytest.approx(1.0)
    assert len(open_scaling.tenths(times)) == 10
    c = open_scaling.combine([s, {**s, "last_median": 30.0}, {**s, "last_median": 20.0}])
    assert c["last_median"] == pytest.approx(20.0) and c["ratio_median"] == pytest.approx(20.0)


def test_open_scaling_tiny_run(tmp_path, backend_name, capsys):
    if backend_name != "emu":
        pytest.skip("opens emulator ports")
    out = tmp_path / "o.json"
    assert open_scaling.main(["--ports", "12", "--kind", "both", "--runs", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| pipe | open |" in text and "| vale | close |" in text and "ports 12-12" in text
    doc = json.loads(out.read_text())
    for kind in ("pipe", "vale"):
        k = doc["kinds"][kind]
        assert len(k["per_port_ms"]["open"][0]) == 12 and k["open"]["first_mean"] > 0
        assert len(k["open_tenths_ms"]) == 10
    with pytest.raises(SystemExit):
        open_scaling.main(["--ports", "2001", "--kind", "vale"])
