"""Test support for code running on the emulator: isolated namespaces and quick port opening.

``isolated_namespace()`` gives a test its own emulator namespace and removes everything in it
afterwards, so tests cannot see or leak into each other's ports.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil

from netmap_core import Conf, Port, PortSpec, abi

from . import allocator as _alloc
from .backend import BACKEND
from .namespace import ENV_NS, namespace

__all__ = ["isolated_namespace", "spec_of", "open_emu", "segments"]

_COUNTER = itertools.count()
_FLAG_BITS = {"x": abi.NR_EXCLUSIVE, "z": abi.NR_ZCOPY_MON, "t": abi.NR_MONITOR_TX,
              "r": abi.NR_MONITOR_RX, "R": abi.NR_RX_RINGS_ONLY, "T": abi.NR_TX_RINGS_ONLY}
_CONF_KEYS = {"rings": ("tx_rings", "rx_rings"), "slots": ("tx_slots", "rx_slots"),
              "tx-rings": ("tx_rings",), "rx-rings": ("rx_rings",), "tx-slots": ("tx_slots",),
              "rx-slots": ("rx_slots",), "host-rings": ("host_tx_rings", "host_rx_rings"),
              "host-tx-rings": ("host_tx_rings",), "host-rx-rings": ("host_rx_rings",)}


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
        _alloc.destroy_segments(ns.list_segments())
        shutil.rmtree(ns.dir, ignore_errors=True)


def segments(name: str | None = None) -> list[str]:
    """The POSIX shm segments namespace ``name`` (default: current) holds right now."""
    return namespace(name).list_segments()


def spec_of(text: str) -> PortSpec:
    """A PortSpec for ``text``: netmap_core's parser when available, else a small subset
    (``netmap:``/``valeX:`` prefix, ``-N``, ``/xztrRT``, ``@N``, ``@conf:k=v,...``)."""
    try:
        from netmap_core import parse_portspec

        return parse_portspec(text)
    except NotImplementedError:
        pass
    m = re.match(r"^(netmap:|vale[A-Za-z0-9_]*:)", text)
    if not m:
        raise ValueError(f"{text!r}: prefix unknown or missing")
    rest = text[len(m.group(1)):] if m.group(1) == "netmap:" else text
    name = re.match(r"^[^-*^/@]+", rest).group(0)
    rest = rest[len(name):]
    mode, ringid, flags, mem_id, conf = abi.NR_REG_ALL_NIC, 0, 0, 0, {}
    if rest.startswith("-"):
        d = re.match(r"^-(\d+)", rest)
        mode, ringid = abi.NR_REG_ONE_NIC, int(d.group(1))
        rest = rest[d.end():]
    if rest.startswith("/"):
        f = re.match(r"^/([xztrRT]+)", rest)
        for ch in f.group(1):
            flags |= _FLAG_BITS[ch]
        rest = rest[f.end():]
    for part in filter(None, rest.split("@")):
        if part.isdigit():
            mem_id = int(part)
        elif part.startswith("conf:"):
            for kv in part[5:].split(","):
                k, v = kv.split("=")
                for field in _CONF_KEYS[k]:
                    conf[field] = int(v)
        else:
            raise ValueError(f"{text!r}: option {part!r} not understood by the fallback parser")
    pipe = next((i for i, ch in enumerate(name) if ch in "{}"), None)
    return PortSpec(text=text, name=name, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id,
                    conf=Conf(**conf), pipe=None if pipe is None else name[pipe],
                    pipe_id=None if pipe is None else name[pipe + 1:],
                    parent=name if pipe is None else name[:pipe])


def open_emu(text: str, *, rules: str = "strict", **options) -> Port:
    """Open ``text`` on the emulator in the current namespace (like ``netmap_core.open(text,
    backend="emu")``, usable before the port-name parser exists)."""
    spec = spec_of(text)
    binding = BACKEND.register(spec, rules=rules, **options)
    try:
        return Port(binding, spec)
    except BaseException:
        binding.close()
        raise
