"""Running out: /dev/shm full, the registry unwritable, segment names taken, no descriptor
left. Each is a NetmapError at open (never a signal), leaves nothing behind, and ``gc``
recovers a full /dev/shm (issue #10)."""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import posix_ipc
import pytest

from netmap_core.errors import NetmapOSError, OutOfMemoryError
from netmap_emu import cli
from netmap_emu.kernel.core import kernel_for
from netmap_emu.shm import allocator as shm_alloc
from netmap_emu.shm.namespace import namespace
from netmap_emu.shm.segment import SegmentExistsError, SegmentMissingError, TooManyFilesError, map_private_shm
from netmap_emu.testing import isolated_namespace, open_emu, segments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def ns():
    with isolated_namespace() as name:
        yield name


def _run(code: str, *, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def _fifos(name: str) -> list[str]:
    d = namespace(name).dir
    return sorted(f for f in os.listdir(d) if f.startswith("wake.")) if os.path.isdir(d) else []


# --- 1. memory reserved at creation -----------------------------------------------------------

def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_segment_that_cannot_be_reserved_is_out_of_memory_and_leaves_nothing(ns, monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", _enospc)
    with pytest.raises(OutOfMemoryError) as ei:
        open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    e = ei.value
    assert e.errno == errno.ENOMEM and isinstance(e, OSError)
    text = str(e)
    assert f"pnm.{os.getuid()}.{ns}.m" in text and "cannot reserve" in text and "free of" in text
    assert "pynetmap emu gc" in text and "extra_bufs" in text
    assert segments() == []
    monkeypatch.undo()
    p = open_emu("netmap:x{0", tx_slots=8, rx_slots=8)   # the failed open left no state behind
    assert len(segments()) == 2
    p.close()
    assert segments() == []


def test_kernel_state_segment_failing_unlinks_the_region_too(ns, monkeypatch):
    real = os.posix_fallocate
    calls = []

    def second_fails(fd, off, size):
        calls.append(size)
        if len(calls) == 2:
            _enospc()
        real(fd, off, size)

    monkeypatch.setattr(os, "posix_fallocate", second_fails)
    with pytest.raises(OutOfMemoryError, match=r"\.k2\.1: cannot reserve"):
        open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    assert len(calls) == 2 and segments() == []


def test_a_switch_segment_that_cannot_be_reserved_is_out_of_memory(ns, monkeypatch):
    real = os.posix_fallocate

    def switch_fails(fd, off, size):
        if size == 16384:
            _enospc()
        real(fd, off, size)

    monkeypatch.setattr(os, "posix_fallocate", switch_fails)
    with pytest.raises(OutOfMemoryError, match=r"\.v0\.\d+: cannot reserve 16384 bytes"):
        open_emu("vale0:a", tx_slots=64, rx_slots=64)
    assert segments() == []


def test_segments_are_reserved_not_sparse(ns):
    p = open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    for s in segments():
        st = os.stat("/dev/shm" + s)
        assert st.st_blocks * 512 >= st.st_size, s
    p.close()


# --- 2. gc frees before it writes -------------------------------------------------------------

class _FullDisk:
    """Stands in for the registry's SQLite connection: every write transaction fails as on a
    full disk while ``full()`` says so."""

    def __init__(self, conn, full) -> None:
        self._conn, self._full, self.failed = conn, full, 0

    def execute(self, sql, *args):
        if sql == "BEGIN IMMEDIATE" and self._full():
            self.failed += 1
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _fill_registry(store, full) -> _FullDisk:
    with namespace().locked():
        store.begin()
    proxy = _FullDisk(store._conn, full)
    store._conn = proxy
    return proxy


_VICTIM = """
    import sys, time
    from netmap_emu.testing import open_emu
    ports = [open_emu(f"netmap:v{i}{{0", tx_slots=8, rx_slots=8) for i in range(2)]
    print("ready", flush=True)
    time.sleep(60)
"""


def _dead_process_leaving_ports(ns: str) -> list[str]:
    """Segments a process killed with two ports open left behind."""
    before = set(segments())
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_VICTIM)], stdout=subprocess.PIPE,
                         text=True, cwd=ROOT, env={**os.environ, "PYNETMAP_EMU_NS": ns})
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    p.kill()
    p.wait()
    left = sorted(set(segments()) - before)
    assert len(left) == 4
    return left


def test_registry_write_failure_is_out_of_memory_enospc(ns):
    k = kernel_for(namespace())
    proxy = _fill_registry(k.store, lambda: True)
    with pytest.raises(OutOfMemoryError) as ei:
        open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    e = ei.value
    assert e.errno == errno.ENOSPC and "registry.db" in str(e) and "pynetmap emu gc" in str(e)
    assert proxy.failed >= 1
    k.store.close()
    assert segments() == [] and _fifos(ns) == []


def test_gc_on_a_full_disk_unlinks_first_then_commits(ns):
    left = _dead_process_leaving_ports(ns)
    k = kernel_for(namespace())
    # space comes back only once the dead process's segments are gone
    proxy = _fill_registry(k.store, lambda: any(os.path.exists("/dev/shm" + s) for s in left))
    out = io.StringIO()
    assert cli.main(["gc", "--ns", ns], out=out) == 0
    text = out.getvalue()
    assert proxy.failed >= 1                         # the first try hit the full disk
    assert text.count("dead) reclaimed") == 2 and all(s in text for s in left)
    assert segments() == [] and not os.path.isdir(namespace().dir)


def test_gc_whose_commit_fails_still_unlinks_and_the_next_gc_finishes(ns):
    _dead_process_leaving_ports(ns)
    k = kernel_for(namespace())
    proxy = _fill_registry(k.store, lambda: True)
    with pytest.raises(OutOfMemoryError) as ei:
        cli.gc(ns)
    assert ei.value.errno == errno.ENOSPC and "pynetmap emu gc" in str(ei.value)
    assert proxy.failed >= 2 and segments() == []   # freed although nothing could be written
    k.store.close()                                  # the disk has room again
    reg = k.store.begin()
    assert len(reg.bindings) == 2 and len(reg.mems) == 2   # still named, segments gone
    p = open_emu("netmap:x{0", tx_slots=8, rx_slots=8)    # the open's reclaim copes with that
    assert len(reg.bindings) == 1 and len(segments()) == 2
    p.close()
    cli.gc(ns)
    assert segments() == [] and not os.path.isdir(namespace().dir)


def test_close_on_a_full_disk_frees_its_memory(ns):
    p = open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    mine = segments()
    k = kernel_for(namespace())
    proxy = _fill_registry(k.store, lambda: any(os.path.exists("/dev/shm" + s) for s in mine))
    p.close()
    assert proxy.failed >= 1 and segments() == []
    assert not k.store.begin().bindings


def test_teardown_tolerates_segments_unlinked_before_the_registry_forgot_them(ns):
    """A process killed between unlinking an allocator and the commit that forgets it (or
    gc on a full disk) leaves a registry naming missing segments: not fatal to anyone."""
    left = _dead_process_leaving_ports(ns)
    for s in left:
        posix_ipc.unlink_shared_memory(s)
    p = open_emu("netmap:x{0", tx_slots=8, rx_slots=8)    # reclaims the dead one on the way
    assert len(kernel_for(namespace()).store.begin().bindings) == 1
    p.close()
    assert segments() == []


def test_a_missing_segment_outside_teardown_is_segment_missing_error(ns):
    with pytest.raises(SegmentMissingError) as ei:
        map_private_shm(f"/pnm.{os.getuid()}.{ns}.m9.9", 4096)
    assert ei.value.errno == errno.ENOENT and isinstance(ei.value, NetmapOSError)
    assert "pynetmap emu gc" in str(ei.value)


# --- 3. segment names taken -------------------------------------------------------------------

def _squat(name: str, uid: int | None = None) -> None:
    s = posix_ipc.SharedMemory(name, flags=posix_ipc.O_CREX, mode=0o600, size=4096)
    if uid is not None:
        os.fchown(s.fd, uid, uid)
    s.close_fd()


def test_an_orphan_segment_of_ours_under_the_next_name_is_replaced(ns):
    name = f"/pnm.{os.getuid()}.{ns}.m2.1"
    _squat(name)
    p = open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    assert p._binding.info.mem_id == 2
    assert name in segments() and os.stat("/dev/shm" + name).st_size > 4096   # ours, new
    p.close()
    assert segments() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a segment owned by another user")
@pytest.mark.parametrize("what", ["m2.1", "k2.1", "v0.1"])
def test_a_name_squatted_by_another_user_is_skipped(ns, what):
    name = f"/pnm.{os.getuid()}.{ns}.{what}"
    _squat(name, uid=65534)
    try:
        port = "vale0:a" if what[0] == "v" else "netmap:x{0"
        p = open_emu(port, tx_slots=64, rx_slots=64)
        mine = [s for s in segments() if s != name]
        assert len(mine) == (3 if what[0] == "v" else 2)
        assert os.stat("/dev/shm" + name).st_uid == 65534     # left alone
        p.close()
        assert segments() == [name]
        assert cli.gc(ns) is not None and segments() == [name]   # gc leaves it alone too
    finally:
        posix_ipc.unlink_shared_memory(name)


def test_names_taken_every_time_is_a_typed_error_and_leaves_nothing(ns, monkeypatch):
    def taken(ns_, mem_id, gen, params, priv):
        name = f"/pnm.{os.getuid()}.{ns}.m{mem_id}.{gen}"
        raise SegmentExistsError(name, 65534, f"shm {name}: the name is taken (by uid 65534)")

    monkeypatch.setattr(shm_alloc, "create", taken)
    with pytest.raises(SegmentExistsError) as ei:
        open_emu("netmap:x{0", tx_slots=8, rx_slots=8)
    e = ei.value
    assert e.errno == errno.EEXIST and isinstance(e, NetmapOSError)
    assert "8 segment names" in str(e) and "uid 65534" in str(e) and "PYNETMAP_EMU_NS" in str(e)
    assert segments() == [] and _fifos(ns) == []
    assert kernel_for(namespace()).store.begin().meta.gen == 0


# --- 4. out of file descriptors ---------------------------------------------------------------

def test_running_out_of_descriptors_is_a_typed_error_and_leaves_nothing(ns):
    r = _run("""
        import json, resource
        from netmap_core.errors import NetmapError
        from netmap_emu import cli
        from netmap_emu.testing import open_emu, segments
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
        ports, err = [], None
        for i in range(100):
            try:
                ports.append(open_emu(f"netmap:x{i}{{0", tx_slots=8, rx_slots=8))
            except Exception as e:
                err = e
                break
        segs = len(segments())
        for p in ports:
            p.close()
        print(json.dumps({"type": type(err).__name__, "netmap": isinstance(err, NetmapError),
                          "oserror": isinstance(err, OSError), "errno": getattr(err, "errno", None),
                          "msg": str(err), "opened": len(ports), "segs": segs,
                          "left": len(segments())}))
    """, env={"PYNETMAP_EMU_NS": ns})
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["type"] == TooManyFilesError.__name__ and res["netmap"] and res["oserror"], res
    assert res["errno"] == errno.EMFILE and "48" in res["msg"] and "ulimit -n" in res["msg"]
    assert 5 <= res["opened"] < 48
    assert res["segs"] == 2 * res["opened"]          # the failing open left no segment
    assert res["left"] == 0 and segments() == [] and _fifos(ns) == []


# --- the headline: a 64 MB /dev/shm -----------------------------------------------------------

def _private_shm_usable() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if r.returncode:
        return f"cannot mount a private tmpfs on /dev/shm (needs root): {r.stderr.decode().strip()}"
    return None


_CHILD = r"""
import gc as gc_module, io, json, os, sqlite3, subprocess, sys
import netmap_core as nm
from netmap_core.errors import NetmapError
from netmap_emu import cli
from netmap_emu.shm.namespace import namespace
from netmap_core.testing import BCAST, frame, mac, recv, send

out = {}
def segs(): return sorted(n for n in os.listdir("/dev/shm") if n.startswith("pnm."))
def free():
    st = os.statvfs("/dev/shm")
    return st.f_bavail * st.f_frsize
def err(e): return [type(e).__name__, isinstance(e, NetmapError), e.errno, str(e)]
def gc():
    buf = io.StringIO()
    rc = cli.main(["gc"], out=buf)
    return rc, buf.getvalue()

out["total"] = os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize
# the issue's first crash: one open asking for more than /dev/shm holds
try:
    nm.open("netmap:f{0", backend="emu", extra_bufs=100000)
    out["big"] = "opened"
except Exception as e:
    out["big"] = err(e)
out["after_big"] = segs()

# VALE traffic on 16 ports: the ports that fit open, the others fail at open
vale, verr = [], []
for i in range(16):
    try:
        vale.append(nm.open(f"vale0:p{i}", backend="emu", tx_slots=64, rx_slots=64))
    except Exception as e:
        verr.append(err(e))
got = 0
for rnd in range(20):
    for i, p in enumerate(vale):
        send(p, [frame(BCAST, mac(i), size=1514, fill=rnd)] * 4)
    for p in vale:
        got += len(recv(p))
out["vale"] = [len(vale), verr, got, free()]
for p in vale:
    p.close()
del vale, p        # a closed port's memory is returned once nothing maps it any more
gc_module.collect()
out["after_vale"] = [segs(), free()]

# a process with ports open, killed once /dev/shm is full
victim = subprocess.Popen([sys.executable, "-c", VICTIM], stdout=subprocess.PIPE, text=True)
assert victim.stdout.readline().strip() == "ready"
pipes, perr = [], []
for i in range(64):
    try:
        pipes.append(nm.open(f"netmap:x{i}{{0", backend="emu", tx_slots=8, rx_slots=8, extra_bufs=256))
    except Exception as e:
        perr.append(err(e))
        break
out["pipes"] = [len(pipes), perr, len(segs())]
# fill what is left, the registry's write-ahead log included
ns = namespace()
with ns.locked():
    c = sqlite3.connect(ns.path("registry.db"))
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
with open("/dev/shm/filler", "wb", buffering=0) as f:
    for chunk in (1 << 20, 1 << 12, 1):
        try:
            while True:
                f.write(b"\0" * chunk)
        except OSError:
            pass
victim.kill()
victim.wait()
out["full"] = [free(), len(segs())]
try:
    nm.open("netmap:y{0", backend="emu", tx_slots=8, rx_slots=8)
    out["open_full"] = "opened"
except Exception as e:
    out["open_full"] = err(e)
out["gc_full"] = list(gc()) + [free(), len(segs())]
os.unlink("/dev/shm/filler")
try:
    p = nm.open("netmap:y{0", backend="emu", tx_slots=8, rx_slots=8)
    p.close()
    out["open_after"] = "opened"
except Exception as e:
    out["open_after"] = err(e)
for p in pipes:
    p.close()
del pipes, p
gc_module.collect()
base = os.path.dirname(ns.dir)
out["gc_end"] = list(gc()) + [segs(), sorted(os.listdir("/dev/shm")), os.listdir(base)]
print(json.dumps(out))
"""

_CHILD_VICTIM = """
import time, netmap_core as nm
ports = [nm.open(f"netmap:v{i}{{0", backend="emu", tx_slots=8, rx_slots=8) for i in range(2)]
print("ready", flush=True)
time.sleep(120)
"""


def test_a_64mb_dev_shm_filled_by_opens_and_traffic():
    why = _private_shm_usable()
    if why:
        pytest.skip(why)
    code = f"VICTIM = {_CHILD_VICTIM!r}\n" + _CHILD
    env = {k: v for k, v in os.environ.items() if k != "PYNETMAP_EMU_NS"}
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "$0" -c "$1"',
                        sys.executable, code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, (r.returncode, signal.Signals(-r.returncode).name if r.returncode < 0 else "",
                               r.stderr[-3000:])
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["total"] == 64 << 20

    def oom(e, *codes):
        assert e[0] == "OutOfMemoryError" and e[1] and e[2] in codes, e
        assert "pynetmap emu gc" in e[3], e

    oom(res["big"], errno.ENOMEM)
    assert "cannot reserve" in res["big"][3] and "free of 64.0 MiB" in res["big"][3]
    assert res["after_big"] == []
    nvale, verr, got, _ = res["vale"]
    assert 2 <= nvale < 16 and len(verr) == 16 - nvale          # /dev/shm was the limit
    for e in verr:
        oom(e, errno.ENOMEM)
    assert got == 20 * 4 * nvale * (nvale - 1)                   # every broadcast delivered
    assert res["after_vale"][0] == [] and res["after_vale"][1] > 60 << 20
    npipes, perr, nsegs = res["pipes"]
    assert npipes >= 1 and nsegs == 2 * npipes + 4 and len(perr) == 1   # 4: the victim's
    oom(perr[0], errno.ENOMEM)
    free, nsegs = res["full"]
    assert free < 4096 and nsegs == 2 * npipes + 4
    oom(res["open_full"], errno.ENOMEM, errno.ENOSPC)
    rc, text, free, nsegs = res["gc_full"]
    assert rc == 0 and text.count("dead) reclaimed") == 2, text
    assert nsegs == 2 * npipes and free > 16 << 20                # the victim's memory is back
    assert res["open_after"] == "opened"
    rc, text, left, shm, base = res["gc_end"]
    assert rc == 0 and left == [] and base == [] and shm == [f"pynetmap-{os.getuid()}"], res["gc_end"]
