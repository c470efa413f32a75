"""Programmable VALE switches on the emulator (mSwitch style, spec E14): replace a switch's
learning bridge with any Python lookup, inspect its ports and learned table.

    from netmap_emu import vale

    def by_vlan(batch):                     # arrays in, destination port per packet out
        vid = ((batch.head[:, 14] & 0x0F).astype(int) << 8) | batch.head[:, 15]
        return np.where(batch.ethertype == 0x8100, vid % 4, vale.NM_BDG_NOPORT)

    sw = vale.switch("vale0")               # the switch must exist (a port is open on it)
    sw.set_lookup(by_vlan)                  # every sender, in every process, uses it
    sw.reset_lookup()                       # back to the learning bridge, table cleared

A lookup runs inside each sender's txsync, in the sender's process, so it is named by
``"module:qualname"`` in shared memory and imported where needed; a lambda or closure can
only be installed with ``local=True`` (this process's senders only). See
:mod:`netmap_emu.datapath.lookup` for the batch a lookup receives.
"""
from __future__ import annotations

import errno
import importlib
import inspect
from collections.abc import Callable

import numpy as np

from netmap_core.errors import InvalidRequestError, NoSuchPortError

from .datapath.forward import lookup_result
from .datapath.lookup import (
    HEAD_BYTES,
    NM_BDG_BROADCAST,
    NM_BDG_NOPORT,
    LearningBridge,
    LookupBatch,
    drop_all,
    flood_all,
    int_to_mac,
    mac_to_int,
)
from .datapath.vale import import_lookup, local_lookups, runtime_for
from .kernel import vale as _vk
from .kernel.core import kernel_for
from .shm.namespace import namespace
from .views import switch_view

__all__ = ["switch", "Switch", "LookupBatch", "NM_BDG_BROADCAST", "NM_BDG_NOPORT", "flood_all",
           "drop_all", "mac_to_int", "int_to_mac", "LearningBridge", "lookup_name"]


def lookup_name(fn: Callable) -> str | None:
    """``"module:qualname"`` when ``fn`` can be imported back by that name, else None."""
    mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", None)
    if not mod or not qual or "<" in qual or mod == "__main__":
        return None
    try:
        obj: object = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return f"{mod}:{qual}" if obj is fn else None


class Switch:
    """A handle on switch ``name`` of the current emulator namespace."""

    def __init__(self, name: str, ns_name: str | None = None) -> None:
        self.name = name
        self._ns = namespace(ns_name)
        self._kernel = kernel_for(self._ns)
        with self._kernel.op() as reg:
            rec = reg.switches.get(name)
            if rec is None:
                raise NoSuchPortError(errno.ENXIO, f"switch {name!r} does not exist (it lives while "
                                      "a port is on it)")
            seg = _vk.segment_of(self._ns, reg, name)
            assert seg is not None   # the switch exists: so does its segment
        ns = self._ns
        self._rt = runtime_for(ns.name, name, seg, ns.fd, ns.dir, switch_view(self._kernel, name))
        self.bridge_idx = rec.idx

    @property
    def seg(self):
        return self._rt.seg

    def ports(self) -> dict[int, str]:
        """{port index: name as VALE_LIST shows it}."""
        with self._kernel.op() as reg:
            rec = reg.switches.get(self.name)
            out = {}
            for k, pname in (rec.ports if rec is not None else ()):
                v = reg.parents[pname].vale
                assert v is not None
                out[k] = v.listed(pname) if v.persistent else pname
            return dict(sorted(out.items()))

    def learned(self) -> dict[str, int]:
        """The learning table as {"02:00:..": port}."""
        return {":".join(f"{b:02x}" for b in int_to_mac(m)): p for m, p in self._rt.bridge.entries().items()}

    def set_lookup(self, fn: Callable | str, *, local: bool = False) -> None:
        """Install ``fn`` (a callable or ``"module:qualname"``) as the switch's lookup.

        It is checked here: it must import (by name), be callable with one argument and
        answer an empty :class:`LookupBatch` with an empty integer array (it is called once
        so); otherwise InvalidRequestError and the switch keeps its lookup. Without ``local``
        the name goes to shared memory and every sender imports it; with ``local=True`` only
        senders of this process use ``fn`` (any callable). A lookup that fails later (raises,
        answers a wrong length or type, does not import in a sender's process) drops that
        batch, in that sender only; see :attr:`lookup_error`."""
        key = (self._ns.name, self.name)
        if local:
            if not callable(fn):
                raise InvalidRequestError(errno.EINVAL,
                                          f"set_lookup(local=True) needs a callable, got {fn!r}")
            _check_lookup(fn, repr(fn))
            local_lookups[key] = fn
            self.seg.set_lookup_name(self.seg.lookup_name)   # bump: senders pick it up
            return
        name = fn if isinstance(fn, str) else lookup_name(fn)
        if name is None:
            raise InvalidRequestError(
                errno.EINVAL, f"lookup {fn!r} cannot be imported by name from other processes "
                "(define it at module level in an importable module, or pass local=True)")
        mod, _, qual = name.partition(":")
        if not mod or not qual:
            raise InvalidRequestError(errno.EINVAL, f"lookup name {name!r}: need 'module:qualname'")
        try:
            obj = import_lookup(name)
        except Exception as exc:  # noqa: BLE001 - whatever the import raised, reported
            raise InvalidRequestError(errno.EINVAL, f"lookup {name!r} cannot be imported here: "
                                      f"{type(exc).__name__}: {exc}; senders import it by this "
                                      "name") from None
        _check_lookup(obj, repr(name))
        local_lookups.pop(key, None)
        self.seg.set_lookup_name(name)

    def reset_lookup(self) -> None:
        """Back to the learning bridge; the learned table is cleared (as netmap's regops(NULL))."""
        local_lookups.pop((self._ns.name, self.name), None)
        self.seg.clear_table()
        self.seg.set_lookup_name("")

    @property
    def lookup_error(self) -> str | None:
        """The last failure of the current lookup in any sender of any process (it raised,
        answered wrongly or could not be imported there; that batch was dropped), or None.
        Cleared when a lookup is set."""
        return self.seg.lookup_error or None

    @property
    def lookup_errors(self) -> int:
        """Batches the current lookup failed on, in every process, since it was set."""
        return self.seg.lookup_errors

    @property
    def stats(self):
        """What this process's senders forwarded through the switch (delivered/dropped per
        destination port, packets without destination)."""
        return self._rt.stats

    def __repr__(self) -> str:
        lookup = self.seg.lookup_name or "learning"
        return f"<vale.Switch {self.name!r} bridge_idx={self.bridge_idx} lookup={lookup!r}>"


def _empty_batch() -> LookupBatch:
    z = np.zeros(0, dtype=np.uint64)
    z.flags.writeable = False
    return LookupBatch(dst=z, src=z, len=np.zeros(0, dtype=np.int64),
                       head=np.zeros((0, HEAD_BYTES), np.uint8), head_len=np.zeros(0, dtype=np.int64),
                       src_port=0, src_ring=0)


def _check_lookup(fn, what: str) -> None:
    """EINVAL unless ``fn`` is callable with one argument and answers an empty batch with an
    empty integer array (or a pair of them)."""
    if not callable(fn):
        raise InvalidRequestError(errno.EINVAL, f"lookup {what} is a {type(fn).__name__}, not callable")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None   # some builtins have none: the trial call below decides
    if sig is not None:
        try:
            sig.bind(object())
        except TypeError as exc:
            raise InvalidRequestError(errno.EINVAL, f"lookup {what}{sig} cannot be called with one "
                                      f"argument (the batch): {exc}; need fn(batch) -> ports") from None
    try:
        lookup_result(fn(_empty_batch()), 0)
    except Exception as exc:  # noqa: BLE001 - whatever the lookup raised, reported
        raise InvalidRequestError(errno.EINVAL, f"lookup {what} failed on an empty batch (it is "
                                  f"tried once when installed): {type(exc).__name__}: {exc}; a lookup "
                                  "must take a LookupBatch of any size, 0 included, and return one "
                                  "integer port per packet") from None


def switch(name: str) -> Switch:
    """The switch ``name`` (``valeX``) of the current namespace; ENXIO if it has no port."""
    if name[:3] != "val" or ":" in name:
        raise InvalidRequestError(errno.EINVAL, f"switch name {name!r}: need 'valeX' without ':'")
    return Switch(name)
