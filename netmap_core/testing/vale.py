"""VALE test support on either backend: Ethernet frames, sending and receiving whole frames
(fragments included), and an environment that opens ports and undoes what it created.

Everything here goes through the public API (``netmap_core.open``, ``Control``), so it runs
unchanged on the emulator and on /dev/netmap. Cost: a Python loop per slot; for many frames
use :mod:`netmap_core.testing.traffic` (batch) instead.

    with ValeEnv("emu") as env:
        ports = env.switch("vale0", 3, slots=64)      # vale0:p0 .. vale0:p2
        send(ports[0], [frame(BCAST, mac(0))])
        assert recv(ports[1]) == [frame(BCAST, mac(0))]
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

import netmap_core
from netmap_core import abi
from netmap_core.control import Control, control_for
from netmap_core.errors import NetmapError, NetmapOSError
from netmap_core.port import Port

__all__ = ["BCAST", "mac", "frame", "send", "recv", "recv_slots", "ValeEnv", "unique_switch",
           "PERSISTENT_RENAMED", "UndoingControl"]

BCAST = b"\xff" * 6
_COUNTER = itertools.count()


def mac(i: int, group: int = 0) -> bytes:
    """A locally administered unicast MAC ``02:00:00:00:GG:II``."""
    return bytes([0x02, 0, 0, 0, group & 0xFF, i & 0xFF])


def frame(dst: bytes, src: bytes, size: int = 60, fill: int = 0, ethertype: int = 0x88B5) -> bytes:
    """An Ethernet frame of ``size`` bytes whose payload counts up from ``fill``."""
    body = bytes((fill + j) & 0xFF for j in range(max(0, size - 14)))
    return (dst + src + ethertype.to_bytes(2, "big") + body)[:size]


def send(port: Port, frames: Iterable[bytes], ring: int = 0, *, flags: int | None = None,
         sync: bool = True) -> int:
    """Put ``frames`` (split into buffer-sized NS_MOREFRAG fragments) into TX ring ``ring`` and
    txsync. ``flags``: extra flags for every slot (e.g. NS_NO_LEARN). Returns slots used;
    raises if the ring lacks room."""
    r = port.tx_rings[ring]
    bs = r.buf_size
    used = 0
    for f in frames:
        parts = [f[i:i + bs] for i in range(0, len(f), bs)] or [b""]
        if len(parts) > r.space():
            raise RuntimeError(f"{r.name}: {len(parts)} slots needed, {r.space()} free")
        for j, part in enumerate(parts):
            i = r.head
            b = r.buf(i)
            b[:len(part)] = np.frombuffer(part, dtype=np.uint8)
            r.slots["len"][i] = len(part)
            r.slots["flags"][i] = (abi.NS_MOREFRAG if j < len(parts) - 1 else 0) | (flags or 0)
            r.advance(1)
            used += 1
    if sync:
        port.txsync()
    return used


def recv_slots(port: Port, ring: int = 0, *, sync: bool = True,
               release: bool = True) -> list[tuple[bytes, int]]:
    """(payload, flags) of every slot in RX ring ``ring`` after an rxsync; releases them (the
    release takes effect at the next rxsync, as in netmap)."""
    if sync:
        port.rxsync()
    r = port.rx_rings[ring]
    out = []
    i = r.head
    for _ in range(r.space()):
        out.append((bytes(r.buf(i)[: int(r.slots["len"][i])]), int(r.slots["flags"][i])))
        i = r.next(i)
    if release:
        r.advance(len(out))
    return out


def recv(port: Port, ring: int = 0, *, sync: bool = True) -> list[bytes]:
    """Whole frames received on RX ring ``ring`` (fragments joined), released."""
    out, cur = [], b""
    for data, flags in recv_slots(port, ring, sync=sync):
        cur += data
        if not flags & abi.NS_MOREFRAG:
            out.append(cur)
            cur = b""
    return out


def unique_switch(prefix: str = "vale") -> str:
    """A switch name unlikely to exist on a shared netmap host."""
    return f"{prefix}{os.getpid() % 100000}x{next(_COUNTER)}"


#: Backends on which registering an attached persistent VALE port renames its switch port to the
#: bare interface name (spec E5, netmap_update_config): from then on VALE_DETACH ``valeX:NAME``
#: is ENXIO, VALE_DELIF EBUSY and a REGISTER of ``valeX:NAME`` EINVAL, until the module is
#: unloaded. The emulator keeps the name (spec/vale.md V19).
PERSISTENT_RENAMED = frozenset({"netmap"})

_SHARED_SWITCH: dict[str, str] = {}


class UndoingControl:
    """A Control that remembers the persistent state it creates (VALE_NEWIF interfaces,
    VALE_ATTACH bindings) so that :meth:`undo` can remove whatever is left of it: a kernel
    outlives the test that changed it, and a failed test must not leave a switch or an
    interface behind for the next one to trip on. Every other request goes to ``ctl``."""

    def __init__(self, ctl: Control) -> None:
        self._ctl = ctl
        self.created: list[str] = []
        self.attached: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctl, name)

    def vale_newif(self, name: str, **kw: Any) -> Any:
        r = self._ctl.vale_newif(name, **kw)
        self.created.append(name)
        return r

    def vale_attach(self, name: str, **kw: Any) -> int:
        r = self._ctl.vale_attach(name, **kw)
        self.attached.append(name)
        return r

    def undo(self) -> None:
        """Detach what is still attached, then delete the interfaces (errors mean it is
        already gone, which is what undo wants)."""
        for name in reversed(self.attached):
            with contextlib.suppress(NetmapError):
                self._ctl.vale_detach(name)
        for name in reversed(self.created):
            with contextlib.suppress(NetmapError):
                self._ctl.vale_delif(name)
        self.attached.clear()
        self.created.clear()


class ValeEnv:
    """Ports opened on ``backend`` and closed on exit. On exit it also detaches and deletes
    what its ``ctl`` attached and created, so a failing test leaves the kernel as it found it.

    ``isolation``: a context-manager factory entered for the environment's lifetime, e.g. the
    emulator's ``netmap_emu.testing.isolated_namespace`` so that switch limits and learning
    tables start empty (``netmap_emu.testing.vale.ValeEnv`` passes it on the emulator)."""

    def __init__(self, backend: str = "emu", rules: str | None = None, *,
                 isolation: Callable[[], AbstractContextManager[object]] | None = None) -> None:
        self.backend = backend
        self.rules = rules
        self.ports: list[Port] = []
        self._isolation = isolation
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ValeEnv:
        if self._isolation is not None:
            self._stack.enter_context(self._isolation())
        self.ctl = UndoingControl(control_for(self.backend))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close_all()
            self.ctl.undo()
        finally:
            self._stack.close()

    def open(self, name: str, **options: Any) -> Port:
        p = netmap_core.open(name, backend=self.backend, rules=self.rules, **options)
        self.ports.append(p)
        return p

    def persistent_switch(self) -> str:
        """The switch to attach persistent ports to. Where registering such a port makes it
        impossible to detach (:data:`PERSISTENT_RENAMED`), every caller in this process shares
        one switch, so the ports left behind use up one of netmap's eight switches, not one per
        test; elsewhere a fresh switch."""
        if self.backend in PERSISTENT_RENAMED:
            return _SHARED_SWITCH.setdefault(self.backend, unique_switch())
        return unique_switch()

    def release_persistent(self, sw: str, name: str) -> bool:
        """Detach persistent port ``name`` (registered since it was attached) from ``sw`` and
        delete it, checking each step's outcome for this backend: both succeed on the
        emulator; on a :data:`PERSISTENT_RENAMED` backend VALE_DETACH must fail with ENXIO
        and VALE_DELIF with EBUSY (the port stays where it is). Returns whether it is gone."""
        if self.backend not in PERSISTENT_RENAMED:
            self.ctl.vale_detach(f"{sw}:{name}")
            self.ctl.vale_delif(name)
            return True
        steps: list[tuple[Callable[[str], object], str, int]] = [
            (self.ctl.vale_detach, f"{sw}:{name}", errno.ENXIO),
            (self.ctl.vale_delif, name, errno.EBUSY)]
        for call, arg, want in steps:
            try:
                call(arg)
            except NetmapOSError as exc:
                if exc.errno != want:
                    raise
            else:
                raise AssertionError(f"{call.__name__}({arg!r}) succeeded: the kernel no longer "
                                     f"renames registered persistent ports (spec E5)")
        return False

    def switch(self, sw: str, n: int, *, slots: int = 0, prefix: str = "p") -> list[Port]:
        """``n`` ephemeral ports ``sw:p0`` .. on switch ``sw`` (slot hint ``slots``)."""
        conf = f"@conf:slots={slots}" if slots else ""
        return [self.open(f"{sw}:{prefix}{i}{conf}") for i in range(n)]

    def close(self, port: Port) -> None:
        port.close()
        if port in self.ports:
            self.ports.remove(port)

    def close_all(self) -> None:
        for p in reversed(self.ports):
            p.close()
        self.ports.clear()
