"""netmap_core does no I/O of its own: importing every module of it pulls in no argument parsing,
terminal, process machinery or tools (those are netmap_tools' and the backends' business).
The submodules of netmap_core.testing are the exception: they are built on Hypothesis."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("argparse", "getopt", "multiprocessing", "subprocess", "curses", "netmap_tools")

# run in a fresh interpreter: this one has pytest (and so several of these) loaded already
SCRIPT = """
import importlib, json, pkgutil, sys
forbidden = {forbidden!r}
before = sorted(m for m in forbidden if m in sys.modules)
import netmap_core
modules = ["netmap_core"]
def fail(name):
    raise ImportError(f"cannot walk {{name}}")
for info in pkgutil.walk_packages(netmap_core.__path__, "netmap_core.", onerror=fail):
    if info.name.startswith("netmap_core.testing."):
        continue  # Hypothesis' machines and strategies: Hypothesis itself imports argparse
    importlib.import_module(info.name)
    modules.append(info.name)
after = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({{"before": before, "modules": modules, "loaded": after}}))
"""


def test_the_core_imports_no_process_terminal_or_argument_machinery():
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(forbidden=FORBIDDEN)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    if seen["before"]:
        pytest.skip(f"the interpreter starts with {seen['before']} loaded (sitecustomize?)")
    assert {"netmap_core.port", "netmap_core.ring", "netmap_core.control",
            "netmap_core.testing"} <= set(seen["modules"])
    assert seen["loaded"] == [], f"importing netmap_core loads {seen['loaded']}"
