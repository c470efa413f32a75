"""The pynetmap command: version, info and delegation, run as a user would run them."""
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


def test_demo_rejects_a_bad_size(capsys):
    assert cli.main(["demo", "--size", "5"]) == 2
    assert "--size=5 out of range" in capsys.readouterr().out


def test_the_version_is_written_once():
    """pyproject.toml reads the version from netmap_core, so the installed metadata agrees."""
    import importlib.metadata
    import pathlib

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "netmap_core.__version__"}
    try:
        installed = importlib.metadata.version("pynetmap")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pynetmap is not installed (pip install -e .)")
    assert installed == netmap_core.__version__
