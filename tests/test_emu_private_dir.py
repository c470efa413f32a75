"""The emulator's per-user directory cannot be denied by another local user (issue #10): a
``pynetmap-<uid>`` that is not ours (another owner, a symlink, group/world writable) is left
alone and a private directory of random name is used instead, recorded in a pointer only the
user can write, so that every process of the user finds the same one; ``$PYNETMAP_EMU_DIR``
names one explicitly. Everything runs under a private root (not the real /dev/shm)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from netmap_core.errors import NetmapError
from netmap_emu.shm import namespace as nsmod

UID = os.getuid()


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A sticky world-writable root standing for /dev/shm, a private $XDG_RUNTIME_DIR and a
    $HOME; returns the root."""
    r = tmp_path / "shm"
    r.mkdir()
    os.chmod(r, 0o1777)
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setattr(nsmod, "ROOTS", (str(r),))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(nsmod.ENV_DIR, raising=False)
    return r


def _default(root) -> str:
    return os.path.join(root, f"pynetmap-{UID}")


def _in_child(root, code: str, env: dict | None = None) -> str:
    """Run ``code`` in a new interpreter with the same root (what another process of the user
    sees); returns its stdout."""
    prog = f"from netmap_emu.shm import namespace as nsmod\nnsmod.ROOTS = ({str(root)!r},)\n{code}"
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_an_unclaimed_name_is_created_private_and_used(root):
    assert nsmod.base_dir(create=False) == "", "create=False creates nothing"
    assert os.listdir(root) == []
    d = nsmod.base_dir()
    assert d == _default(root)
    st = os.lstat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == UID
    assert nsmod.base_dir(create=False) == d


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a directory of another user")
def test_a_directory_of_another_user_is_left_alone_and_a_private_one_used(root):
    squat = _default(root)
    os.mkdir(squat, 0o755)
    os.chown(squat, 65534, 65534)
    assert nsmod.base_dir(create=False) == "", "nothing of ours exists yet"
    d = nsmod.base_dir()
    assert d != squat and os.path.dirname(d) == str(root)
    assert os.path.basename(d).startswith(f"pynetmap-{UID}-")
    st = os.lstat(d)
    assert st.st_uid == UID and stat.S_IMODE(st.st_mode) == 0o700
    assert os.lstat(squat).st_uid == 65534 and os.listdir(squat) == [], "the squatter's dir untouched"
    assert nsmod.base_dir() == d == nsmod.base_dir(create=False), "found again, not made anew"
    pointer = os.path.join(os.environ["XDG_RUNTIME_DIR"], "pynetmap", "shm-dir")
    assert stat.S_IMODE(os.stat(pointer).st_mode) == 0o600
    assert _in_child(root, "print(nsmod.base_dir())") == d, "another process of the user finds it"


def test_a_symlink_in_the_way_is_not_followed(root, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(target, _default(root))
    d = nsmod.base_dir()
    assert d != _default(root) and not os.path.islink(d)
    assert os.listdir(target) == []


def test_a_group_writable_directory_is_not_used(root):
    os.mkdir(_default(root))
    os.chmod(_default(root), 0o777)
    assert nsmod.base_dir() != _default(root)


def test_every_process_racing_to_fall_back_gets_the_same_directory(root, tmp_path):
    os.symlink(tmp_path, _default(root))
    prog = (f"from netmap_emu.shm import namespace as nsmod\nnsmod.ROOTS = ({str(root)!r},)\n"
            "print(nsmod.base_dir())")
    procs = [subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outs) == 1 and [n for n in os.listdir(root) if n.startswith(f"pynetmap-{UID}-")] == \
        [os.path.basename(outs.pop())]


def test_without_a_private_runtime_dir_the_pointer_lives_in_the_home(root, tmp_path, monkeypatch):
    shared = tmp_path / "shared-xdg"
    shared.mkdir()
    os.chmod(shared, 0o755)                       # not private: not used for the pointer
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    os.symlink(tmp_path, _default(root))
    d = nsmod.base_dir()
    pointer = os.path.join(os.environ["HOME"], ".cache", "pynetmap", "shm-dir")
    with open(pointer) as f:
        assert f.read().strip() == d
    assert not os.path.exists(shared / "pynetmap")


def test_a_pointer_naming_something_else_is_ignored(root, tmp_path):
    os.symlink(tmp_path, _default(root))
    d = nsmod.base_dir()
    pointer = os.path.join(os.environ["XDG_RUNTIME_DIR"], "pynetmap", "shm-dir")
    with open(pointer, "w") as f:
        f.write(str(tmp_path))                  # not a pynetmap-<uid>-* directory of the root
    d2 = nsmod.base_dir()
    assert d2 != str(tmp_path) and os.path.basename(d2).startswith(f"pynetmap-{UID}-")
    assert d2 != d or os.path.isdir(d)


def test_the_user_may_name_the_directory(root, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    monkeypatch.setenv(nsmod.ENV_DIR, str(mine))
    assert nsmod.base_dir(create=False) == ""
    assert nsmod.base_dir() == str(mine) and stat.S_IMODE(os.stat(mine).st_mode) == 0o700
    out = _in_child(root, "import json, netmap_core as nm\n"
                    "p = nm.open('netmap:pd{0', backend='emu')\n"
                    "from netmap_emu.shm.namespace import namespace\n"
                    "print(json.dumps(namespace().dir))\n"
                    "p.close()\n"
                    "from netmap_emu import cli\ncli.gc()\n",
                    {nsmod.ENV_DIR: str(mine), "PYNETMAP_EMU_NS": "pd"})
    assert json.loads(out) == str(mine / "pd")
    assert os.listdir(root) == [], "nothing made in the default root"


@pytest.mark.parametrize("make, match", [
    (lambda p: None, "not an absolute path"),
    (lambda p: os.symlink("/", p), "a symlink"),
    (lambda p: (os.mkdir(p), os.chmod(p, 0o777)), "group/world writable"),
])
def test_a_bad_named_directory_is_refused_with_the_remedy(root, tmp_path, monkeypatch, make, match):
    p = tmp_path / "named"
    make(str(p))
    monkeypatch.setenv(nsmod.ENV_DIR, "named" if match == "not an absolute path" else str(p))
    with pytest.raises(nsmod.NamespaceError, match=match) as ei:
        nsmod.base_dir()
    assert isinstance(ei.value, NetmapError) and ei.value.errno == 1
    assert nsmod.ENV_DIR in str(ei.value), "says what to change"
