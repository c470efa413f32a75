"""The pynetmap command: version, info, delegation, and the subcommands backends register
(entry-point group pynetmap.commands), run as a user would run them."""
from __future__ import annotations

import subprocess
import sys

import pytest

import netmap_core
from netmap_tools import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netmap_tools", *args],
                          capture_output=True, text=True, timeout=60)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pynetmap {netmap_core.__version__}"


def test_info_says_why_each_backend_is_or_is_not_usable():
    r = run("info")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for name in ("emu", "netmap"):
        line = next(x for x in lines if x.strip().startswith(f"backend {name}"))
        ok, why = netmap_core.probe(name)
        assert ("usable" if ok else "unavailable") in line and why in line
    assert any("default backend" in x for x in lines)


def test_no_command_prints_help_and_fails():
    assert cli.main([]) == 2


@pytest.mark.parametrize("argv, says", [
    (["--size", "5"], "argument -l/--size: 5 is out of range; allowed 24..2048"),
    (["-n", "-5"], "argument -n/--count: -5 is out of range; allowed 1.."),
    (["-s", "1", "-n", "100"], "argument -s/--slots: 1 is out of range; allowed 2..4096"),
    (["-b", "0", "-n", "10"], "argument -b/--batch: 0 is out of range; allowed 1.."),
    (["-n", "ten"], "argument -n/--count: 'ten' is not an integer"),
])
def test_demo_refuses_arguments_it_cannot_run_with(capsys, argv, says):
    """-s 1 and -b 0 used to hang forever (no slot can be sent), -n -5 was accepted."""
    with pytest.raises(SystemExit) as ei:
        cli.main(["demo", *argv])
    assert ei.value.code == 2
    assert says in capsys.readouterr().err


def test_demo_run_refuses_bad_arguments_too(capsys):
    from netmap_tools import demo

    assert demo.run(count=10, batch=0) == 2
    assert "--batch=0 out of range; allowed 1.." in capsys.readouterr().out


def test_demo_with_the_smallest_ring_finishes(capsys):
    from netmap_tools import demo

    assert demo.run(count=50, batch=1, slots=2, backend="emu") == 0
    assert "received 50 of 50 frames" in capsys.readouterr().out


def _stuck_sender(*args) -> None:
    import time

    time.sleep(60)


def test_demo_gives_up_on_a_stuck_sender(capsys, monkeypatch):
    import time

    from netmap_tools import demo

    monkeypatch.setattr(demo, "STALL", 0.5)
    monkeypatch.setattr(demo, "_send", _stuck_sender)
    t0 = time.monotonic()
    assert demo.run(count=10, slots=8, backend="emu") == 1
    assert time.monotonic() - t0 < 15, "gave up, and did not wait for the sender"
    out = capsys.readouterr().out
    assert "no frame for 0 s: giving up" in out or "no frame for 1 s: giving up" in out
    assert "received 0 of 10" in out


def test_the_version_is_written_once():
    """pyproject.toml reads the version from netmap_core, so the installed metadata agrees."""
    import importlib.metadata
    import pathlib

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "netmap_core.__version__"}
    try:
        installed = importlib.metadata.version("pynetmap")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pynetmap is not installed (pip install -e .)")
    assert installed == netmap_core.__version__


# -- subcommands registered by backends (entry-point group pynetmap.commands) -------------------

FAKE_COMMAND = '''"""A backend's subcommand, for the CLI tests."""
HELP = "a fake backend's housekeeping"
CALLS = []


def main(argv):
    CALLS.append(list(argv))
    return 7
'''


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """Makes the pynetmap.commands group hold what the test passes, as if an installed
    distribution declared it; ``fake_cmd`` is an importable module with a working ``main``."""
    import importlib.metadata

    (tmp_path / "pynetmap_fake_cmd.py").write_text(FAKE_COMMAND)
    (tmp_path / "pynetmap_broken_cmd.py").write_text(
        "import pynetmap_no_such_module  # noqa: F401\n\n\ndef main(argv):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group: list = []
    real = importlib.metadata.entry_points

    def entry_points(**params):
        return list(group) if params.get("group") == cli.GROUP else real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    def register(*pairs):
        group[:] = [importlib.metadata.EntryPoint(name, value, cli.GROUP) for name, value in pairs]

    yield register
    for mod in ("pynetmap_fake_cmd", "pynetmap_broken_cmd"):
        sys.modules.pop(mod, None)


def help_text(capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_a_registered_subcommand_is_listed_with_its_help_and_dispatched(registered, capsys):
    registered(("fake", "pynetmap_fake_cmd:main"))
    lines = help_text(capsys).splitlines()
    for name, help_ in [("info", "which backends are usable here"), ("demo", "two processes"),
                        ("vale-ctl", "manage VALE switches"),
                        ("fake", "a fake backend's housekeeping")]:
        assert any(x.split() and x.split()[0] == name and help_ in x for x in lines), (name, lines)
    assert cli.main(["fake", "ls", "--all"]) == 7
    assert sys.modules["pynetmap_fake_cmd"].CALLS == [["ls", "--all"]]


def test_registered_subcommands_are_imported_only_when_needed(registered, capsys):
    registered(("fake", "pynetmap_fake_cmd:main"))
    assert cli.main(["info"]) == 0
    assert "pynetmap_fake_cmd" not in sys.modules


def test_a_broken_entry_point_is_reported_and_the_rest_still_works(registered, capsys):
    registered(("broken", "pynetmap_broken_cmd:main"), ("fake", "pynetmap_fake_cmd:main"),
               ("notmain", "pynetmap_fake_cmd:HELP"))
    why = "ModuleNotFoundError: No module named 'pynetmap_no_such_module'"
    where = f"entry point 'broken = pynetmap_broken_cmd:main' (group {cli.GROUP})"

    assert cli.main(["broken", "ls"]) == 2
    assert capsys.readouterr().err == f"pynetmap broken: cannot load {where}: {why}\n"

    text = help_text(capsys)
    assert any(x.split()[:2] == ["broken", "UNAVAILABLE:"] for x in text.splitlines())
    assert f"pynetmap broken: cannot load {where}: {why}" in text
    assert "pynetmap_fake_cmd:HELP is a str, not main(argv)" in text
    assert "a fake backend's housekeeping" in text

    assert cli.main(["fake"]) == 7
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().out.startswith(f"pynetmap {netmap_core.__version__}\n")


def test_an_entry_point_cannot_take_a_builtin_name(registered, capsys):
    registered(("info", "pynetmap_fake_cmd:main"))
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().out.startswith("pynetmap ")
    assert "pynetmap_fake_cmd" not in sys.modules
    assert "ignored: 'info' is a built-in subcommand" in help_text(capsys)


def installed_commands() -> set[str]:
    import importlib.metadata

    return {ep.name for ep in importlib.metadata.entry_points(group=cli.GROUP)}


def test_the_installed_emu_subcommand_is_listed():
    if "emu" not in installed_commands():
        pytest.skip("pynetmap is not installed with its entry points (pip install -e .)")
    r = run("--help")
    assert r.returncode == 0 and r.stderr == ""
    assert any(x.split()[:1] == ["emu"] and "emulator housekeeping: ls, gc" in x
               for x in r.stdout.splitlines())
