"""Test support for code running on the emulator: isolated namespaces and quick port opening.

``isolated_namespace()`` gives a test its own emulator namespace and removes everything in it
afterwards, so tests cannot see or leak into each other's ports.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import os
import shutil

from netmap_core import Port, parse_portspec

from ..backend import BACKEND
from ..kernel.core import kernel_for
from ..shm.namespace import ENV_NS, namespace
from ..shm.segment import unlink_segments

__all__ = ["isolated_namespace", "open_emu", "segments"]

_COUNTER = itertools.count()


@contextlib.contextmanager
def isolated_namespace(prefix: str = "t"):
    """Run the body in a fresh namespace (``$PYNETMAP_EMU_NS``); afterwards reclaim, unlink every
    segment of it and remove its directory. Yields the namespace name."""
    name = f"{prefix}{os.getpid()}-{next(_COUNTER)}-{os.urandom(3).hex()}"
    old = os.environ.get(ENV_NS)
    os.environ[ENV_NS] = name
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop(ENV_NS, None)
        else:
            os.environ[ENV_NS] = old
        ns = namespace(name)
        if ns.local_bids:
            # ports the body dropped but a reference cycle keeps (a traceback's frame, say)
            # are closed now, while the namespace exists: closed later, they would make its
            # directory again
            gc.collect()
        kernel_for(ns).store.close()
        unlink_segments(ns.list_segments())
        shutil.rmtree(ns.dir, ignore_errors=True)


def segments(name: str | None = None) -> list[str]:
    """The POSIX shm segments namespace ``name`` (default: current) holds right now."""
    return namespace(name).list_segments()


def open_emu(text: str, *, rules: str = "strict", **options) -> Port:
    """Open ``text`` on the emulator in the current namespace, like ``netmap_core.open(text,
    backend="emu")`` but with the emulator's rules default spelled out for tests."""
    spec = parse_portspec(text)
    binding = BACKEND.register(spec, rules=rules, **options)
    try:
        return Port(binding, spec)
    except BaseException:
        binding.close()
        raise
