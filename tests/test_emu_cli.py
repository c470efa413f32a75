"""Namespaces, permissions and the ``ls``/``gc`` commands of the emulator."""
from __future__ import annotations

import io
import json
import os
import stat

import pytest

from netmap_core.errors import InvalidRequestError
from netmap_emu import NamespaceError, cli
from netmap_emu.shm.namespace import Namespace, namespace
from netmap_emu.testing import isolated_namespace, open_emu, segments


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace() as name:
        yield name


def run(*argv):
    out = io.StringIO()
    assert cli.main(list(argv), out=out) == 0
    return out.getvalue()


def test_gc_on_a_clean_namespace_says_clean():
    assert run("gc") == "clean\n"


def test_ls_shows_segments_pipes_and_owners(ns):
    with open_emu("netmap:lsp{1") as m:
        text = run("ls")
        assert f"namespace {ns}" in text
        assert "mem_id 2: memsize 42369024" in text
        assert "pipe lsp{1 / lsp}1" in text
        assert f"pid {os.getpid()} alive" in text
        for seg in segments():
            assert seg in text
        data = json.loads(run("ls", "--json"))
        assert data[0]["bindings"][0]["name"] == "lsp{1"
        assert data[0]["mems"][0]["present"] == [True, True]
        assert m.info.mem_id == data[0]["mems"][0]["mem_id"]
    assert "(empty)" in run("ls")


def test_namespaces_are_isolated(ns):
    with open_emu("netmap:iso{1") as a:
        a.tx_rings[0].fill(3, template=b"x")
        a.txsync()
        with isolated_namespace("u") as other, open_emu("netmap:iso}1") as b:
            b.rxsync()
            assert b.rx_rings[0].space() == 0       # another pipe, in another region
            assert b._binding.peer_bound() is False
            assert set(segments(other)).isdisjoint(segments(ns))
            assert len(segments(ns)) == 2
        with open_emu("netmap:iso}1") as b:
            b.rxsync()
            assert b.rx_rings[0].space() == 3


def test_bad_namespace_name_is_refused(monkeypatch):
    monkeypatch.setenv("PYNETMAP_EMU_NS", "../etc")
    with pytest.raises(InvalidRequestError, match="PYNETMAP_EMU_NS"):
        open_emu("netmap:n{1")


def test_group_writable_dir_is_refused(ns):
    d = namespace().dir
    with open_emu("netmap:w{1"):
        pass
    os.chmod(d, 0o770)
    try:
        with pytest.raises(NamespaceError, match="group/world writable"):
            _ = Namespace(ns).fd
    finally:
        os.chmod(d, 0o700)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_dir_of_another_user_is_refused(ns):
    d = namespace().dir
    with open_emu("netmap:o{1"):
        pass
    os.chown(d, 65534, -1)
    try:
        with pytest.raises(NamespaceError, match="owned by uid 65534"):
            _ = Namespace(ns).fd
    finally:
        os.chown(d, 0, -1)


def test_symlinked_dir_is_refused(ns):
    d = namespace().dir
    with open_emu("netmap:l{1"):
        pass
    moved = d + ".moved"
    os.rename(d, moved)
    os.symlink(moved, d)
    try:
        with pytest.raises(NamespaceError, match="not a directory"):
            _ = Namespace(ns).fd
    finally:
        os.unlink(d)
        os.rename(moved, d)


def test_gc_removes_an_empty_namespace_dir(ns):
    with open_emu("netmap:e{1"):
        pass
    d = namespace().dir
    assert os.path.isdir(d)
    assert cli.gc() == [f"empty namespace {ns} removed"], "a removal is reported"
    assert not os.path.exists(d)
    assert cli.gc() == [], "and then there is nothing to do"
    with open_emu("netmap:e{1") as p:               # and the namespace comes back on demand
        assert p.info.mem_id == 2
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_gc_removes_an_allocator_no_port_uses(ns):
    """A process that dies after creating an allocator but before binding it leaves a registry
    entry nothing names; gc unlinks its segments."""
    from netmap_emu.kernel import memory
    from netmap_emu.kernel.core import kernel_for
    from netmap_emu.shm.geometry import private_params

    nso = namespace()
    k = kernel_for(nso)
    with open_emu("netmap:keep{1"):
        with k.op() as reg:
            memory.create_mem(nso, reg, 9, private_params(1, 8, 1, 8, 0, 2), True)
            k.store.commit()
        assert len(segments()) == 4  # the pipe's allocator and the stray one
        removed = cli.gc()
        assert any("unused allocator mem_id 9" in r for r in removed)
        assert len(segments()) == 2  # the live pipe's allocator is kept


def test_pynetmap_emu_runs_through_the_registered_entry_point(ns):
    """``pynetmap emu`` is the emulator's own entry point (group pynetmap.commands), not a name
    the command knows: run it as a user would and see this process's port."""
    import importlib.metadata
    import subprocess
    import sys

    if "emu" not in {ep.name for ep in importlib.metadata.entry_points(group="pynetmap.commands")}:
        pytest.skip("pynetmap is not installed with its entry points (pip install -e .)")
    with open_emu("netmap:ep{1"):
        r = subprocess.run([sys.executable, "-m", "netmap_tools", "emu", "ls", "--json"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)[0]
    assert snap["namespace"] == ns
    assert [(b["name"], b["pid"]) for b in snap["bindings"]] == [("ep{1", os.getpid())]


def test_gc_says_clean_only_when_it_removed_nothing(ns):
    with open_emu("netmap:gcl{1"):
        pass
    assert run("gc") == f"{ns}: empty namespace {ns} removed\n"
    assert run("gc") == "clean\n"


def test_ls_shows_switches_and_what_each_binding_is(ns):
    from netmap_core.testing import unique_switch

    sw = unique_switch("valels")
    with open_emu(f"{sw}:a") as a, open_emu(f"{sw}:b"), open_emu(f"{sw}:a/rt"), open_emu("netmap:lsk{1"):
        snap = json.loads(run("ls", "--json"))[0]
        assert [(s["name"], s["ports"]) for s in snap["switches"]] == [(sw, {"0": f"{sw}:a", "1": f"{sw}:b"})]
        seg = snap["switches"][0]["segment"]
        assert seg in segments() and snap["switches"][0]["present"]
        assert snap["orphan_segments"] == [], "a live switch's segment is not an orphan"
        text = run("ls")
        assert f"switch {sw}: bridge_idx {snap['switches'][0]['bridge_idx']}, ports [0 {sw}:a, 1 {sw}:b], " \
               f"segment {seg}" in text
        assert f"{sw}:a (VALE port) pid {os.getpid()} alive, mem_id {a.info.mem_id}" in text
        assert f"{sw}:a/rt#0 (monitor)" in text and "lsk{1 (pipe master)" in text
        assert "(master)" not in text.replace("(pipe master)", "")


def test_ls_creates_nothing(tmp_path, monkeypatch):
    from netmap_emu.shm.namespace import ENV_DIR

    base = tmp_path / "base"
    monkeypatch.setenv(ENV_DIR, str(base))
    assert run("ls", "--all") == "no emulator namespace\n"
    assert run("ls", "--ns", "nosuch") == "no emulator namespace\n"
    assert run("gc", "--all") == "clean\n"
    assert not base.exists(), "no base directory made"
    base.mkdir(mode=0o700)
    (base / "bare").mkdir(mode=0o700)         # e.g. left by a process killed while creating it
    assert run("ls", "--all") == "no emulator namespace\n"
    assert run("ls", "--ns", "bare") == "no emulator namespace\n"
    assert os.listdir(base / "bare") == [], "no lock file made"


def test_an_isolated_namespace_leaves_nothing_when_a_cycle_holds_a_port(tmp_path, monkeypatch):
    """A port kept only by a reference cycle (an exception's traceback) was closed after the
    namespace had been removed, and its close made the directory again: each test run left
    an empty namespace directory behind."""
    import gc

    from netmap_emu.shm.namespace import ENV_DIR

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "base"))
    gc.disable()   # the cycle must outlive the body, as it does when no collection happens
    try:
        with isolated_namespace("cyc"):
            port = open_emu("netmap:cyc{1")
            holder = {"port": port}
            holder["self"] = holder       # a cycle that keeps the port
            del port, holder
        gc.collect()                      # whatever was left closes now
    finally:
        gc.enable()
    assert os.listdir(tmp_path / "base") == []
