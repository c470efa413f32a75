"""The ``emu`` backend object: probe, REGISTER (pipes, VALE ports, monitors) and the control
interface.

Ports live in a namespace chosen by ``$PYNETMAP_EMU_NS`` (default ``default``); processes in the
same namespace see the same ports, other namespaces are invisible to them.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable

from netmap_core import abi
from netmap_core.errors import InvalidRequestError, NetmapOSError, NoSuchPortError, NotSupportedError
from netmap_core.portspec import PortSpec

from .binding import EmuBinding, MonitorBinding, NicBinding, PipeBinding, ValeBinding
from .control import EmuControl
from .datapath import afpacket
from .kernel import memory, monitors, nics, pipes, vale
from .kernel.core import Kernel, kernel_for
from .kernel.pipes import Registered
from .shm.namespace import namespace

__all__ = ["EmuBackend", "BACKEND", "OPTIONS"]

#: keyword hints register() accepts; they override ``spec.conf`` / ``spec.mem_id``
OPTIONS = ("extra_bufs", "tx_rings", "rx_rings", "tx_slots", "rx_slots", "host_tx_rings",
           "host_rx_rings", "mem_id")


def _hints(spec, options: dict) -> dict:
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise InvalidRequestError(errno.EINVAL,
                                  f"register: unknown option(s) {bad}; allowed: {list(OPTIONS)}")
    conf = spec.conf
    h = {k: int(getattr(conf, k, 0) or 0) for k in OPTIONS if hasattr(conf, k)}
    h["mem_id"] = int(spec.mem_id or 0)
    h["extra_bufs"] = 0
    for k, v in options.items():
        if v is None:
            continue
        if not isinstance(v, int) or v < 0 or v > 0xFFFFFFFF:
            raise InvalidRequestError(errno.EINVAL, f"register: {k}={v!r}; allowed: an integer in 0..2**32-1")
        h[k] = v
    if h["mem_id"] > 0xFFFF:
        raise InvalidRequestError(errno.EINVAL, f"register: mem_id={h['mem_id']}; allowed: 0..65535")
    return h


def _open_interface(ifname: str) -> afpacket.AfPacket:
    """The AF_PACKET socket of a new interface binding, with the errors netmap_core types."""
    try:
        return afpacket.AfPacket(ifname)
    except PermissionError as exc:
        raise NetmapOSError(errno.EPERM, f"{ifname}: opening an AF_PACKET socket on the interface "
                            "needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode); run as root "
                            "or grant them to the interpreter (setcap cap_net_raw,cap_net_admin+ep)"
                            ) from exc
    except LookupError as exc:
        raise NoSuchPortError(errno.ENXIO, f"{ifname}: {exc}") from exc
    except OSError as exc:
        raise NetmapOSError(exc.errno or errno.EIO, f"{ifname}: AF_PACKET socket: {exc.strerror or exc}"
                            ) from exc


class EmuBackend:
    """netmap in POSIX shared memory, with the kernel's side run inside each process's syncs."""

    name = "emu"

    def probe(self) -> tuple[bool, str]:
        try:
            import posix_ipc
        except ImportError as exc:
            return False, f"posix_ipc is not importable ({exc}); install it (pip install posix_ipc)"
        if not os.path.isdir("/dev/shm"):
            return False, "/dev/shm does not exist: POSIX shared memory is unavailable"
        name = f"/pnm.{os.getuid()}.probe.{os.getpid()}"
        try:
            shm = posix_ipc.SharedMemory(name, flags=posix_ipc.O_CREX, mode=0o600, size=4096)
            shm.close_fd()
            shm.unlink()
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with the reason
            return False, f"cannot create a POSIX shm segment in /dev/shm: {exc}"
        try:
            namespace().fd  # noqa: B018 - creates and checks the namespace directory
        except Exception as exc:  # noqa: BLE001
            return False, f"emulator state directory unusable: {exc}"
        return True, f"posix_ipc {posix_ipc.VERSION}, /dev/shm writable, namespace {namespace().name!r}"

    def register(self, spec, *, rules: str, **options) -> EmuBinding:
        """REGISTER ``spec`` (a :class:`netmap_core.PortSpec`) in the current namespace."""
        if rules not in ("netmap", "strict"):
            raise InvalidRequestError(errno.EINVAL, f"rules={rules!r}; allowed: 'netmap', 'strict'")
        h = _hints(spec, options)
        if getattr(spec, "extmem", None) is not None:
            raise NotSupportedError(errno.EOPNOTSUPP, f"{spec.text}: @extmem is not emulated")
        if getattr(spec, "offset", None) is not None:
            raise NotSupportedError(errno.EOPNOTSUPP, f"{spec.text}: @offset is not emulated")
        kname = spec.name
        if not kname or len(kname) >= abi.NETMAP_REQ_IFNAMSIZ:
            raise InvalidRequestError(errno.EINVAL, f"port name {kname!r}: need 1..63 characters")
        if spec.share is not None:
            h["mem_id"] = self._shared_mem_id(spec, h["mem_id"])
        k = kernel_for(namespace())
        r, make = self._register(k, spec, h, rules)
        try:
            return make(r)
        except BaseException:
            k.unregister(r.bid)
            k.ns.release_live(r.bid)
            raise

    @staticmethod
    def _register(k: Kernel, spec: PortSpec, h: dict, rules: str) -> tuple[Registered, Callable]:
        """REGISTER in the kernel; returns the registration and how to make its binding."""
        ns, store = k.ns, k.store
        kname = spec.name
        with k.op() as reg:
            if spec.is_monitor:
                r = monitors.register(ns, store, spec, h)
                return r, lambda r: MonitorBinding(k, r, rules)
            if spec.is_pipe:
                r = pipes.register(ns, store, spec, h)
                return r, lambda r: PipeBinding(k, r, rules)
            if kname[:3] == "val" or vale.is_persistent(reg, kname):
                r = vale.register(ns, store, spec, h)
                v = reg.parents[r.pname].vale
                seg = None if v is None or v.switch is None else vale.segment_of(ns, reg, v.switch)
                sw = None if v is None or v.switch is None or seg is None else (v.switch, seg)
                return r, lambda r: ValeBinding(k, r, rules, sw)
            if kname in reg.parents:
                raise NotSupportedError(errno.EOPNOTSUPP, f"{kname}: registering a pipe parent itself "
                                        "is not emulated yet")
            if afpacket.ifindex(kname):
                sock = _open_interface(kname)
                try:
                    r = nics.register(ns, store, spec, h, afpacket.interface_mtu(kname))
                except BaseException:
                    sock.close()
                    raise
                return r, lambda r: NicBinding(k, r, rules, sock)
        raise NoSuchPortError(errno.ENXIO, f"{kname}: no such interface in this network namespace, "
                              f"and no pipe or VALE port of that name in emulator namespace {ns.name!r}")

    def _shared_mem_id(self, spec, mem_id: int) -> int:
        """``@share=PORT``: the allocator of PORT (PORT_INFO_GET, as libnetmap asks the kernel),
        which must agree with an ``@N`` given too. A VALE name that does not exist yields the
        id a temporary port would get, which no allocator has afterwards: REGISTER then fails
        with EINVAL, as on netmap."""
        name = spec.share_name
        try:
            shared = self.control().port_info(name).mem_id
        except NoSuchPortError as exc:
            raise NoSuchPortError(errno.ENXIO, f"{spec.text!r}: @share={spec.share}: no port {name!r} in "
                                  f"emulator namespace {namespace().name!r} ({exc.detail}); open that "
                                  "port first, or leave @share out") from None
        k = kernel_for(namespace())
        with k.op() as reg:
            exists = shared == memory.GLOBAL_MEM_ID or shared in reg.mems
        if not exists:   # a VALE name nobody has opened: its temporary port is gone (EINVAL, as netmap)
            raise InvalidRequestError(errno.EINVAL, f"{spec.text!r}: @share={spec.share}: VALE port "
                                      f"{name!r} does not exist (it lives while it is open or attached); "
                                      "open it first, or leave @share out")
        if mem_id and mem_id != shared:
            raise InvalidRequestError(
                errno.EINVAL, f"{spec.text!r}: @share={spec.share} is in mem_id {shared} but "
                f"mem_id {mem_id} was also asked for; allowed: one of them, or equal")
        return shared

    def control(self):
        """PORT_INFO_GET, POOLS_INFO_GET, VALE_* and PORT_HDR_* on this namespace."""
        return EmuControl()


BACKEND = EmuBackend()
