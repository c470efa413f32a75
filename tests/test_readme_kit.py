"""The README's "Testing a network function" example is a real test: extracted from README.md
and run by pytest in a directory of its own, with the plugin as an installed package gives it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MARK = "<!-- the test below is run by tests/test_readme_kit.py -->"


def snippet() -> str:
    text = README.read_text()
    m = re.search(re.escape(MARK) + r"\n```python\n(.*?)```", text, re.S)
    assert m, f"README.md has no python block after {MARK!r}"
    return m.group(1)


def test_the_readme_nf_test_is_complete_and_short():
    code = snippet()
    assert len(code.splitlines()) < 15
    assert "def test_" in code and "netmap_pipe" in code


def test_the_readme_nf_test_passes(tmp_path, backend_name):
    (tmp_path / "test_readme_nf.py").write_text(snippet())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYNETMAP_BACKEND")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--backend", backend_name], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
