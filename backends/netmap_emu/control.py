"""netmap's control requests on the emulator (``BACKEND.control()``): PORT_INFO_GET,
POOLS_INFO_GET, VALE_ATTACH/DETACH/LIST/NEWIF/DELIF and PORT_HDR_SET/GET with the kernel's
results and errno rules (spec C5, Live check 7). Every call takes the namespace lock once;
a failing call changes nothing.
"""
from __future__ import annotations

import errno

from netmap_core import abi
from netmap_core.control import ListEntry, NewIf, PoolsInfo, PortInfo
from netmap_core.errors import InvalidRequestError, NetmapOSError, NoSuchPortError
from netmap_core.portspec import kernel_spec

from . import attach
from .kernel import memory, vale as _vk
from .kernel.core import Kernel, kernel_for
from .kernel.registry import Registry
from .shm.geometry import GLOBAL_PARAMS, Geometry, geometry, private_params
from .shm.namespace import namespace

__all__ = ["EmuControl"]

_GLOBAL = geometry(GLOBAL_PARAMS)


def _mem_geometry(reg: Registry, mem_id: int) -> Geometry:
    if mem_id in reg.mems:
        return geometry(reg.mems[mem_id].params)
    if mem_id == memory.GLOBAL_MEM_ID:
        return _GLOBAL
    raise InvalidRequestError(errno.EINVAL, f"nr_mem_id={mem_id} names no allocator; existing: "
                              f"{sorted({memory.GLOBAL_MEM_ID, *reg.mems})}")


def _resolve(reg: Registry, name: str, mem_hint: int):
    """(mem_id, geometry, (tx_rings, rx_rings, tx_slots, rx_slots)) of the port ``name`` as
    PORT_INFO_GET sees it: an existing VALE port, pipe or pipe parent, or the port a VALE or
    pipe name would create (a temporary port in netmap, nothing is created here)."""
    hints = {"mem_id": mem_hint}
    spec = kernel_spec(name)
    if not spec.is_pipe:
        p = reg.parents.get(name)
        if p is None and name[:3] == "val":
            pname = _vk.find_port(reg, name)
            p = reg.parents.get(pname) if pname else None
            if p is None:
                return _vk.would_be_port(reg, hints)
        if p is None:
            raise NoSuchPortError(errno.ENXIO, f"{name!r}: no such interface")
        v = p.vale
        counts = ((v.ntx, v.nrx, v.txs, v.rxs) if v else (1, 1, p.tx_slots, p.rx_slots))
        return p.mem_id, _mem_geometry(reg, p.mem_id), counts
    if not spec.parent or not spec.pipe_id:
        raise InvalidRequestError(errno.EINVAL, f"{name!r}: a pipe name needs PARENT{{ID or PARENT}}ID")
    parent = reg.parents.get(spec.parent)
    if parent is None and spec.parent[:3] == "val":
        pname = _vk.find_port(reg, spec.parent)
        parent = reg.parents.get(pname) if pname else None
    if parent is None:
        if spec.parent[:3] == "val":
            mem_id, g, c = _vk.would_be_port(reg, hints)
            return mem_id, g, (1, 1, c[2], c[3])
        if mem_hint:
            n = abi.NM_BRIDGE_RINGSIZE
            return mem_hint, _mem_geometry(reg, mem_hint), (1, 1, n, n)
        n = abi.NM_BRIDGE_RINGSIZE
        g = geometry(private_params(1, n, 1, n, 0, abi.NM_BDG_PRIV_NPIPES))
        return memory.new_mem_id(reg), g, (1, 1, n, n)
    pipe = reg.pipes.get(f"{spec.parent}{{{spec.pipe_id}")
    if pipe is None:
        counts = (1, 1, parent.tx_slots, parent.rx_slots)
    else:
        e = 0 if spec.pipe == "{" else 1
        counts = (pipe.ntx[e], pipe.nrx[e], pipe.txs[e], pipe.rxs[e])
    return parent.mem_id, _mem_geometry(reg, parent.mem_id), counts


class EmuControl:
    """The emulator's :class:`netmap_core.control.Control` for the current namespace."""

    def __init__(self, ns_name: str | None = None) -> None:
        self._ns_name = ns_name

    @property
    def _kernel(self) -> Kernel:
        return kernel_for(namespace(self._ns_name))

    def port_info(self, name: str = "", *, mem_id: int = 0) -> PortInfo:
        """PORT_INFO_GET. Empty name: ``memsize``/``mem_id`` of allocator ``mem_id`` (default
        1). A name: the port's geometry; a VALE name that does not exist reports what a new
        default port would get (netmap creates it for the call and destroys it)."""
        with self._kernel.op() as reg:
            if not name:
                mid = mem_id or memory.GLOBAL_MEM_ID
                return PortInfo(memsize=_mem_geometry(reg, mid).memsize, mem_id=mid)
            mid, g, (txr, rxr, txs, rxs) = _resolve(reg, name, mem_id)
            return PortInfo(memsize=g.memsize, mem_id=mid, tx_rings=txr, rx_rings=rxr, tx_slots=txs,
                            rx_slots=rxs, host_tx_rings=0, host_rx_rings=0)

    def pools_info(self, name: str) -> PoolsInfo:
        """POOLS_INFO_GET: the pools of the named port's allocator (ENXIO for an empty name)."""
        if not name:
            raise NoSuchPortError(errno.ENXIO, "POOLS_INFO_GET needs a port name")
        with self._kernel.op() as reg:
            mid, g, _c = _resolve(reg, name, 0)
        i, r, b = g.if_pool, g.ring_pool, g.buf_pool
        return PoolsInfo(memsize=g.memsize, mem_id=mid, if_pool_offset=i.offset, if_pool_objtotal=i.objtotal,
                         if_pool_objsize=i.objsize, ring_pool_offset=r.offset, ring_pool_objtotal=r.objtotal,
                         ring_pool_objsize=r.objsize, buf_pool_offset=b.offset, buf_pool_objtotal=b.objtotal,
                         buf_pool_objsize=b.objsize)

    def vale_attach(self, name: str, *, mode: int = abi.NR_REG_ALL_NIC, mem_id: int = 0) -> int:
        """VALE_ATTACH ``valeSW:IFNAME``; returns the port index. IFNAME is a persistent VALE
        interface (attached in the registry) or an OS network interface: then a supervised pump
        process joins a VALE port of that name to ``netmap:IFNAME`` (``NR_REG_NIC_SW``: to
        ``netmap:IFNAME*``, the host stack too) and this returns once it holds the port
        (spec/vale.md, "Attaching interfaces on the emulator")."""
        k = self._kernel
        if self._is_os_interface(name):
            if mode not in (abi.NR_REG_ALL_NIC, abi.NR_REG_NIC_SW):
                raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: nr_mode={mode}; allowed: "
                                          "NR_REG_ALL_NIC, NR_REG_NIC_SW")
            if mem_id not in (0, memory.GLOBAL_MEM_ID):
                raise InvalidRequestError(errno.EINVAL, f"VALE_ATTACH {name!r}: nr_mem_id={mem_id}; an "
                                          "attached interface uses the switch's memory (allowed: 0)")
            return attach.attach_interface(self._ns_name, name, host=mode == abi.NR_REG_NIC_SW)
        with k.op():
            return _vk.attach(k.ns, k.store, name, mode, mem_id)

    def _is_os_interface(self, name: str) -> bool:
        """``valeSW:IFNAME`` where IFNAME is no VALE interface of the registry but an OS one."""
        if name[:4] != abi.NM_BDG_NAME or ":" not in name:
            return False
        port = name.split(":", 1)[1]
        if not attach.interface_exists(port):
            return False
        with self._kernel.op() as reg:
            p = reg.parents.get(port)
            return p is None or p.vale is None

    def vale_detach(self, name: str) -> int:
        """VALE_DETACH; returns the former port index. An attached OS interface: its pump and
        supervisor are stopped."""
        idx = attach.detach_interface(self._ns_name, name)
        if idx is not None:
            return idx
        k = self._kernel
        with k.op():
            return _vk.detach(k.ns, k.store, name)

    def attachments(self) -> list[attach.Attachment]:
        """OS interfaces attached to emulated switches, with their pumps' states (for listings)."""
        return attach.attachments(self._ns_name)

    def vale_list(self, name: str = "", *, bridge_idx: int = 0, port_idx: int = 0) -> ListEntry:
        """VALE_LIST: with an empty name the first port at or after (bridge_idx, port_idx)
        (ENOENT when none is left); with a name its bridge and port index (255: no such port
        on an existing switch)."""
        with self._kernel.op() as reg:
            if not name:
                hit = _vk.list_next(reg, bridge_idx, port_idx)
                if hit is None:
                    raise NetmapOSError(errno.ENOENT, f"VALE_LIST: no port at or after bridge "
                                        f"{bridge_idx} port {port_idx}")
                return ListEntry(name=hit[0], bridge_idx=hit[1], port_idx=hit[2])
            b, p = _vk.list_port(reg, name)
            return ListEntry(name=name, bridge_idx=b, port_idx=p)

    def vale_newif(self, name: str, *, tx_rings: int = 0, rx_rings: int = 0, tx_slots: int = 0,
                   rx_slots: int = 0, mem_id: int = 0) -> NewIf:
        """VALE_NEWIF: create the persistent VALE interface ``name``."""
        k = self._kernel
        with k.op():
            r = _vk.newif(k.ns, k.store, name, tx_rings, rx_rings, tx_slots, rx_slots, mem_id)
        return NewIf(**r)

    def vale_delif(self, name: str) -> None:
        """VALE_DELIF: delete a persistent VALE interface (EBUSY while attached or open)."""
        k = self._kernel
        with k.op():
            _vk.delif(k.ns, k.store, name)

    def port_hdr_set(self, name: str, hdr_len: int) -> None:
        """PORT_HDR_SET: the virtio-net header length (0, 10, 12) of a VALE port."""
        k = self._kernel
        with k.op():
            _vk.set_hdr_len(k.ns, k.store, name, hdr_len)

    def port_hdr_get(self, name: str) -> int:
        """PORT_HDR_GET."""
        with self._kernel.op() as reg:
            return _vk.hdr_len_of(reg, name)

    def close(self) -> None:
        pass
