"""`pip install .` (a wheel, not the editable install) into a fresh venv, then `pynetmap
conformance` from that venv conforms on the backend under test (``--backend``).

Offline and quick: the wheel is built from a copy of the sources; the fresh venv has no pip and
sees only the wheel plus the installed distributions pynetmap[testing] needs (numpy, posix_ipc,
Hypothesis and what they require), linked from this interpreter's site-packages. Skipped, with
pip's reason, when no wheel can be built here (no setuptools to build with).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "netmap_core", "netmap_tools", "backends")


#: examples and steps per machine of the wheel-installed run
WHEEL_BUDGET = 30


def _name(req: str) -> tuple[str, str]:
    """(distribution name, marker) of a requirement string."""
    head, _, marker = req.partition(";")
    return re.split(r"[\s\[<>=!~(]", head.strip(), maxsplit=1)[0], marker


def _closure(extras: tuple[str, ...]) -> list[md.Distribution]:
    """pynetmap's installed requirements (with ``extras``) and theirs, recursively."""
    want = []
    for req in md.requires("pynetmap") or []:
        name, marker = _name(req)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if extra is None or extra.group(1) in extras:
            want.append(name)
    seen: dict[str, md.Distribution] = {}
    while want:
        name = want.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # a requirement for another Python version (markers are not evaluated)
        seen[name] = dist
        want += [_name(r)[0] for r in dist.requires or [] if "extra ==" not in r]
    return list(seen.values())


def _stage(dists: list[md.Distribution], into: Path) -> None:
    """Symlink each distribution's top-level entries (packages, modules, dist-info) into ``into``."""
    into.mkdir()
    for dist in dists:
        base = Path(dist.locate_file(""))
        for f in dist.files or []:
            top = f.parts[0]
            if top == ".." or top.endswith(".pth") or (into / top).exists():
                continue
            if (base / top).exists():
                (into / top).symlink_to(base / top)


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for item in SOURCES:
        p = ROOT / item
        if p.is_dir():
            shutil.copytree(p, src / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(p, src / item)
    out = tmp / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                        str(src)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        why = (r.stderr.strip() or r.stdout.strip()).splitlines()[-3:]
        if re.search(r"No matching distribution|Could not find a version|Network|connection",
                     r.stderr, re.I):
            pytest.skip(f"cannot build a wheel here (its build requirements are unreachable): {why}")
        pytest.fail(f"pip wheel failed: {r.stderr}")
    (wheel,) = out.glob("pynetmap-*.whl")
    return wheel


@pytest.mark.timeout(1800)
def test_an_installed_wheel_runs_the_conformance_suite(tmp_path, backend_name, request):
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    _stage(_closure(("testing",)), tmp_path / "deps")
    (site / "pynetmap_test_deps.pth").write_text(f"{tmp_path / 'deps'}\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet",
                        "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m, netmap_core, netmap_emu, netmap_tools; "
         "print(netmap_core.__file__); print(m.distribution('pynetmap').read_text('direct_url.json') or ''); "
         "print(sorted(e.value for e in m.entry_points(group='pytest11')))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr
    path, direct_url, plugins = where.stdout.splitlines()
    assert Path(path).is_relative_to(site), f"netmap_core imported from {path}, not the fresh venv"
    assert '"editable": true' not in direct_url
    assert "'netmap_tools.pytest_plugin'" in plugins

    # a small budget: this proves the installed command runs every machine and reports; the
    # conformance suite itself (spec/) runs them at the full budget against the same backend
    opt = request.config.getoption
    budget = [f"--examples={min(opt('--conformance-examples') or WHEEL_BUDGET, WHEEL_BUDGET)}",
              f"--steps={min(opt('--conformance-steps') or WHEEL_BUDGET, WHEEL_BUDGET)}"]
    run = subprocess.run([str(venv / "bin" / "pynetmap"), "conformance", "--backend", backend_name,
                          *budget], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1700)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(lines) == 3 and all(ln.endswith(": conforms") for ln in lines), lines
