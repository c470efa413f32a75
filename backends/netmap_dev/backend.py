"""The ``netmap`` backend: netmap_core's Backend over the real /dev/netmap (control API v14).

``probe`` says precisely why the device is unusable; ``register`` turns a PortSpec into one
REGISTER on a new descriptor plus the shared mapping of its allocator.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import os
import stat
from typing import TYPE_CHECKING

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, NetmapOSError
from netmap_core.rules import check_mode

from . import requests
from .binding import DevBinding
from .control import DevControl
from .device import REGISTRY, SYSTEM, Device, Mapping, MemoryRegistry, SysOps, errno_of

if TYPE_CHECKING:
    from netmap_core.backend import RegisterInfo
    from netmap_core.portspec import PortSpec

__all__ = ["NetmapBackend", "REGISTER_OPTIONS"]

_HINTS = ("tx_rings", "rx_rings", "host_tx_rings", "host_rx_rings", "tx_slots", "rx_slots")
#: keyword options ``register`` accepts: extra buffers and ring/slot hints overriding @conf
REGISTER_OPTIONS = ("extra_bufs",) + _HINTS


def _ename(code: int | None) -> str:
    return _errno.errorcode.get(code, str(code)) if code is not None else "?"


class NetmapBackend:
    """/dev/netmap as a netmap_core Backend. ``path`` and ``ops`` exist for tests."""

    name = "netmap"

    def __init__(self, path: str = abi.NETMAP_DEVICE_NAME, ops: SysOps = SYSTEM,
                 registry: MemoryRegistry = REGISTRY) -> None:
        self.path = path
        self.ops = ops
        self.registry = registry

    def probe(self) -> tuple[bool, str]:
        """Usable when the path is a character device that opens read-write and answers a
        PORT_INFO_GET (no side effects) in control API version 14."""
        path = self.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False, (f"{path} does not exist (ENOENT): the netmap kernel module is not "
                           "loaded (modprobe netmap / insmod netmap.ko)")
        except OSError as exc:
            return False, f"cannot stat {path}: {exc.strerror} ({_ename(exc.errno)})"
        if not stat.S_ISCHR(st.st_mode):
            return False, f"{path} exists but is not a character device (mode {stat.filemode(st.st_mode)})"
        try:
            dev = Device(path, self.ops)
        except OSError as exc:
            return False, (f"{path} cannot be opened read-write: {os.strerror(errno_of(exc))} "
                           f"({_ename(exc.errno)})")
        try:
            req = requests.port_info_get("", 0)
            dev.ctrl(req)
        except NetmapOSError as exc:
            why = {_errno.ENOTTY: "it is not a netmap device",
                   _errno.EINVAL: f"the module does not accept control API version {abi.NETMAP_API}"}
            return False, (f"{path} refused NIOCCTRL PORT_INFO_GET ({_ename(exc.errno)}): "
                           f"{why.get(exc.errno, exc.detail)}")
        finally:
            dev.close()
        info = requests.decode_port_info(req)
        return True, (f"{path} answers control API {abi.NETMAP_API} (mem_id {info.mem_id}: "
                      f"{info.memsize} bytes)")

    def control(self) -> DevControl:
        return DevControl(self.path, self.ops)

    def _mem_id(self, dev: Device, spec: PortSpec) -> int:
        """``spec.mem_id``, or the allocator of the ``@share`` port (PORT_INFO_GET)."""
        share = spec.share_name   # None exactly when spec.share is
        if share is None:
            return spec.mem_id
        req = requests.port_info_get(share)
        dev.ctrl(req)
        mem_id = requests.decode_port_info(req).mem_id
        if spec.mem_id and spec.mem_id != mem_id:
            raise InvalidRequestError(
                _errno.EINVAL, f"{spec.text!r}: @share={spec.share} is in mem_id {mem_id} but "
                f"mem_id {spec.mem_id} was also asked for; allowed: one of them, or equal")
        return mem_id

    def register(self, spec: PortSpec, *, rules: str, **options: int) -> DevBinding:
        """One REGISTER on a new descriptor, then the allocator's mapping (shared per mem_id).

        ``options``: ``extra_bufs`` and ring/slot hints (see REGISTER_OPTIONS). Failure closes
        the descriptor and raises the kernel's errno as a typed error naming the port.
        """
        rules = check_mode(rules)
        unknown = sorted(set(options) - set(REGISTER_OPTIONS))
        if unknown:
            raise InvalidRequestError(_errno.EINVAL, f"register {spec.text!r}: unknown option(s) "
                                      f"{unknown}; allowed: {list(REGISTER_OPTIONS)}")
        conf = dataclasses.replace(spec.conf, **{k: options[k] for k in _HINTS if k in options})
        dev = Device(self.path, self.ops)
        ext: Mapping | None = None
        mapping: Mapping | None = None
        info: RegisterInfo | None = None
        try:
            mem_id = self._mem_id(dev, spec)
            if spec.extmem is not None:
                ext = self.ops.map_file(spec.extmem.file)
            req = requests.register(spec, mem_id=mem_id, extra_bufs=options.get("extra_bufs", 0),
                                    conf=conf, extmem=None if ext is None else (ext.addr, ext.length))
            dev.ctrl(req)
            info = requests.decode_register(req)
            dev.label = info.name
            if ext is not None:
                mapping = self.registry.adopt(info.mem_id, ext, dev)
            else:
                mapping = self.registry.acquire(info.mem_id, info.memsize, dev)
            return DevBinding(dev, info, mapping, self.registry, rules)
        except BaseException:
            if mapping is not None and info is not None:   # mapped only once REGISTER answered
                self.registry.release(info.mem_id, mapping, dev)
            elif ext is not None:
                ext.retire()
            dev.close()
            raise

    def __repr__(self) -> str:
        return f"<NetmapBackend {self.path}>"
