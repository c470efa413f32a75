""".ci/imports.py, the architecture check: each rule on a small package written for the test,
then the real repository (expected to fail until the emulator's restructure lands)."""
from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "imports.py"

_spec = importlib.util.spec_from_file_location("ci_imports", SCRIPT)
imports = importlib.util.module_from_spec(_spec)
sys.modules["ci_imports"] = imports      # dataclasses look their module up there
_spec.loader.exec_module(imports)


def make(root: Path, files: dict[str, str]) -> Path:
    """Write a package: {relative path: source}; every directory gets an __init__.py."""
    for rel, src in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))
    for d in {root, *(p.parent for p in root.rglob("*.py"))}:
        (d / "__init__.py").touch()
    return root


def check(*pkgs: Path) -> tuple[int, str]:
    out = io.StringIO()
    rc = imports.run(list(pkgs), out, index_project=False)
    return rc, out.getvalue()


def problems(text: str, rule: str) -> list[str]:
    return [ln for ln in text.splitlines() if f": {rule}: " in ln and not ln.startswith(" ")]


def test_clean_package_passes(tmp_path):
    pkg = make(tmp_path / "clean", {
        "a.py": "from . import b\nfrom .sub import c\nimport os\n\ndef f():\n    from . import d\n"
                "    return b, c, d, os\n",
        "b.py": "from .d import VALUE as _v\nX = _v\n__version__ = '1'\n",
        "d.py": "VALUE = 1\n_own = 2\nprint(_own)\n",
        "sub/c.py": "from .. import d\nfrom .._util import helper\nhelper(d)\n",
        "_util.py": "def helper(x):\n    pass\n",
        "e.py": "import clean.b\nprint(clean.b.__version__)\n"
                "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n",
    })
    rc, text = check(pkg)
    assert rc == 0, text
    lines = text.splitlines()
    assert "  a -> b, d (late), sub.c" in lines
    assert "  sub.c -> _util, d" in lines
    assert "  e -> b" in lines
    assert "  __init__ -> (none)" in lines
    assert "summary clean: 8 modules, 7 import edges (1 late), 0 cycles, 0 other violations" in lines
    assert lines[-1].endswith("ok")


def test_command_line(tmp_path):
    pkg = make(tmp_path / "cli", {"a.py": "from . import b\n", "b.py": "from . import a\n"})
    r = subprocess.run([sys.executable, str(SCRIPT), str(pkg)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "cycle: a -> b -> a" in r.stdout
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nothing")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "not a package" in r.stderr


def test_cycle(tmp_path):
    pkg = make(tmp_path / "cyc", {
        "a.py": "from .b import X\n",
        "b.py": "from . import c\nX = 1\n",
        "c.py": "import cyc.a\n",
        "d.py": "from . import a\n",            # reaches the cycle, is not in it
    })
    rc, text = check(pkg)
    assert rc == 1
    found = problems(text, "cycle")
    assert [ln.split(": cycle: ")[1] for ln in found] == ["a -> b -> c -> a"]
    assert found[0].startswith(os.path.relpath(pkg / "a.py") + ":1: ")
    assert "strongly connected component: a, b, c" in text
    assert "c.py:1: c imports a (module level)" in text
    assert "1 cycles in 1 strongly connected component" in text


def test_late_import_cycle(tmp_path):
    pkg = make(tmp_path / "late", {
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .a import g\n    return g\n",
    })
    rc, text = check(pkg)
    assert rc == 1
    cycles = [ln.split(": cycle: ")[1] for ln in problems(text, "cycle")]
    assert cycles == ["a -> b -> a (with a late import)"]
    assert "b imports a (late, in f())" in text
    assert "  b -> a (late)" in text


def test_several_cycles_in_one_component(tmp_path):
    pkg = make(tmp_path / "many", {
        "a.py": "from . import b, c\n",
        "b.py": "from . import a\n",
        "c.py": "from . import a\n",
    })
    rc, text = check(pkg)
    assert sorted(ln.split(": cycle: ")[1] for ln in problems(text, "cycle")) == \
        ["a -> b -> a", "a -> c -> a"]


def test_type_checking_imports_are_no_cycle(tmp_path):
    pkg = make(tmp_path / "typ", {
        "a.py": "from . import b\nA = b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                "def f(x: 'a.A'):\n    pass\n",
    })
    rc, text = check(pkg)
    assert rc == 0, text
    assert "  b -> a (type)" in text


def test_private_names(tmp_path):
    core = make(tmp_path / "core", {"_impl.py": "Y = 1\n", "m.py": "_secret = 1\nPUBLIC = 2\n"})
    pkg = make(tmp_path / "priv", {
        "x.py": "_y = 1\n__dunder__ = 2\nz = _y\n",
        "a.py": "from .x import _y, __dunder__\n",
        "b.py": "from . import x\n\ndef f():\n    return x._y + x.__dunder__\n",
        "c.py": "from . import x as mod\nv = getattr(mod, '_y')\n",
        "d.py": "import core._impl\n",
        "e.py": "import core.m\nfrom core import m as cm\nprint(core.m._secret, cm._secret, cm.PUBLIC)\n",
        "f.py": "import numpy as np\nprint(np._NoValue)\n",      # third-party: not our business
    })
    rc, text = check(pkg, core)
    assert rc == 1
    found = [ln.split(": private-name: ")[1] for ln in problems(text, "private-name")]
    assert found == [
        "priv.a imports _y from priv.x",
        "priv.b uses priv.x._y",
        "priv.c uses getattr(priv.x, '_y')",
        "priv.d imports core._impl",
        "priv.e uses core.m._secret",
        "priv.e uses core.m._secret",
    ]
    assert "why: _y is a private name of priv.x" in text
    assert "why: _impl is a private module of core, used from outside it" in text


def test_layering(tmp_path):
    emu = make(tmp_path / "netmap_emu", {
        "top.py": "X = 1\n",
        "shm/seg.py": "from .. import top\n",                         # shm: nothing else
        "kernel/reg.py": "from ..shm import seg\nfrom .. import top\n"
                         "def f():\n    from ..datapath import sync\n",  # not datapath
        "datapath/sync.py": "from ..shm.seg import top\nfrom ..kernel import reg\n",
    })
    rc, text = check(emu)
    assert rc == 1
    found = [ln.split(": layering: ")[1] for ln in problems(text, "layering")]
    assert found == [
        "netmap_emu.datapath.sync (layer datapath/) imports netmap_emu.kernel.reg (layer kernel/)",
        "netmap_emu.kernel.reg (layer kernel/) imports netmap_emu.datapath.sync (layer datapath/), "
        "late, in f()",
        "netmap_emu.shm.seg (layer shm/) imports netmap_emu.top (outside the layers)",
    ]
    assert "kernel/ may import only kernel/, shm/ and modules outside the layers" in text


def test_layers_that_do_not_exist_are_skipped(tmp_path):
    emu = make(tmp_path / "netmap_emu", {
        "top.py": "from .kernel import reg\nY = reg\n",
        "kernel/reg.py": "from .. import top2\nY = top2\n",
        "top2.py": "X = 1\n",
    })
    rc, text = check(emu)
    assert rc == 0, text


def test_forbidden_imports_of_the_core(tmp_path):
    core = make(tmp_path / "netmap_core", {
        "ring.py": "import os\nimport select\n",
        "cli.py": "import argparse\n",
        "tools/run.py": "def go():\n    import subprocess\n    from multiprocessing import Pool\n",
    })
    rc, text = check(core)
    assert rc == 1
    found = [ln.split(": forbidden-import: ")[1] for ln in problems(text, "forbidden-import")]
    assert found == ["netmap_core.cli imports argparse",
                     "netmap_core.tools.run imports subprocess (late, in go())",
                     "netmap_core.tools.run imports multiprocessing (late, in go())"]
    assert "the core does no I/O, process or terminal work" in text


def test_import_side_effects(tmp_path):
    pkg = make(tmp_path / "fx", {
        "reg.py": "HOOKS = []\nMAP = {}\nflag = False\n\ndef register_thing(x):\n    HOOKS.append(x)\n",
        "plug.py": """\
            from . import reg
            from . import reg as _r

            def hook():
                pass

            reg.HOOKS.append(hook)
            if hook not in _r.HOOKS:
                _r.MAP["k"] = hook
            reg.flag = True
            register_me = reg.register_thing
            reg.register_thing(hook)

            def install():
                reg.HOOKS.append(hook)      # inside a function: fine until it is called

            install()

            @reg.register_thing
            def other():
                pass
            """,
        "user.py": "from . import plug as _plug\n",
        "guard.py": """\
            try:
                from .reg import HOOKS
            except ImportError:
                HOOKS = []
            try:
                import numpy
            except ImportError:
                numpy = None

            def f():
                try:
                    from . import plug
                except (ModuleNotFoundError, OSError):
                    plug = None
                return plug
            """,
        "fine.py": "from . import reg\n\ndef setup():\n    reg.HOOKS.append(setup)\n    reg.flag = 1\n",
    })
    rc, text = check(pkg)
    assert rc == 1
    found = [ln.split(": import-side-effect: ")[1] for ln in problems(text, "import-side-effect")]
    assert found == [
        "fx.plug: module-level reg.HOOKS.append(...) changes reg.HOOKS",
        "fx.plug: module-level assignment changes _r.MAP['k']",
        "fx.plug: module-level assignment changes reg.flag",
        "fx.plug: module-level call reg.register_thing(...)",
        "fx.plug: module-level call install(...)",
        "fx.plug: decorator @reg.register_thing registers other",
        "fx.user: imports fx.plug as _plug and never uses it",
    ]
    guards = [ln.split(": import-guard: ")[1] for ln in problems(text, "import-guard")]
    assert guards == ["fx.guard guards its import of fx.reg with except ImportError",
                      "fx.guard guards its import of fx.plug with except ImportError"]


def test_package_reexports_are_no_side_effect(tmp_path):
    pkg = make(tmp_path / "rex", {"__init__.py": "from .a import A\nfrom . import a\n",
                                  "a.py": "A = 1\n"})
    rc, text = check(pkg)
    assert rc == 0, text


def test_repository_is_clean():
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
