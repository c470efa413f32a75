"""Another user cannot reach a user's emulator: not its state directory, not its shared memory,
not the wake FIFOs. Needs root to become another user; skipped otherwise."""
from __future__ import annotations

import errno
import multiprocessing as mp
import os

import pytest

from netmap_emu.shm.namespace import namespace
from netmap_emu.testing import isolated_namespace, open_emu, segments

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def _as_nobody(q, paths, shm_names):
    import posix_ipc

    os.setgid(NOBODY)
    os.setuid(NOBODY)
    out = {}
    for p in paths:
        try:
            os.listdir(p) if os.path.isdir(p) else open(p, "rb").close()
            out[p] = "opened"
        except OSError as e:
            out[p] = e.errno
    for name in shm_names:
        try:
            posix_ipc.SharedMemory(name).close_fd()
            out[name] = "opened"
        except posix_ipc.PermissionsError:
            out[name] = errno.EACCES
        except posix_ipc.ExistentialError:
            out[name] = errno.ENOENT
    q.put(out)


def test_another_user_can_open_nothing_of_a_live_pipe():
    with isolated_namespace(), open_emu("netmap:sec{1") as master, open_emu("netmap:sec}1"):
        master.poll(0, 0)  # creates this binding's wake FIFO
        ns = namespace()
        paths = [ns.dir, os.path.join(ns.dir, "registry.db"), os.path.join(ns.dir, "lock")]
        names = segments()
        assert names, "a live pipe has shared memory"
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_as_nobody, args=(q, paths, names))
        p.start()
        result = q.get(timeout=30)
        p.join(10)
    assert all(v == errno.EACCES for v in result.values()), result
