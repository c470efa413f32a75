"""REGISTER of an operating-system interface (``netmap:IFNAME``) as netmap's emulated (generic)
adapter shapes it: one NIC ring pair and one host ring pair of 1024 slots (spec L2, H2).

Every registration gets rings of its own in the allocator (the global one, mem_id 1, unless
``@N`` names another), freed with the binding; the frames come from an AF_PACKET socket the
binding opens in its own process (``datapath/afpacket.py``). Namespace lock held.
"""
from __future__ import annotations

import errno

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.errors import InvalidRequestError, OutOfMemoryError
from netmap_core.portspec import PortSpec
from netmap_core.regmodes import bound_rings

from ..shm.geometry import GLOBAL_PARAMS
from ..shm.namespace import Namespace
from . import memory
from .bindings import new_binding
from .memory import clamp
from .pipes import Registered, busy_check
from .registry import Store

__all__ = ["register", "NIC_RINGS", "HOST_RINGS", "GENERIC_RINGSIZE"]

#: hardware and host ring pairs of an emulated adapter (sysctl ``generic_rings`` 1, spec L2)
NIC_RINGS = 1
HOST_RINGS = 1
#: ``dev.netmap.generic_ringsize``
GENERIC_RINGSIZE = 1024
_MODES = (abi.NR_REG_ALL_NIC, abi.NR_REG_ONE_NIC, abi.NR_REG_SW, abi.NR_REG_NIC_SW, abi.NR_REG_ONE_SW)


def register(ns: Namespace, store: Store, spec: PortSpec, hints: dict, mtu: int) -> Registered:
    """REGISTER interface ``spec.name`` (whose MTU is ``mtu``); commits. EINVAL when RX rings
    are bound and a frame of the MTU (plus Ethernet and VLAN headers) exceeds the buffer size
    (spec L5: the emulator does not receive into NS_MOREFRAG chains)."""
    reg = store.reg
    kname, mode, ringid, flags = spec.name, spec.mode, spec.ringid, int(spec.flags)
    b = bound_rings(mode, ringid, flags, tx=NIC_RINGS, rx=NIC_RINGS, host_tx=HOST_RINGS,
                    host_rx=HOST_RINGS, name=kname, allowed=_MODES)
    tx_ids, rx_ids = list(b.tx), list(b.rx)
    # each binding has rings of its own (one socket each), but exclusive use (spec B17, D4) is
    # about the interface's ring ids, as on netmap.ko
    busy_check(reg, [o for o in reg.bindings.values() if o.kind == "nic" and o.name == kname],
               tx_ids, rx_ids, flags, kname)
    mem_id = hints.get("mem_id", 0) or memory.GLOBAL_MEM_ID
    if mem_id != memory.GLOBAL_MEM_ID and mem_id not in reg.mems:
        raise InvalidRequestError(errno.EINVAL, f"{kname}: nr_mem_id={mem_id} names no allocator; "
                                  f"existing: {sorted({memory.GLOBAL_MEM_ID, *reg.mems})}")
    txs = clamp(hints.get("tx_slots", 0), GENERIC_RINGSIZE, 1, abi.NM_PIPE_MAXSLOTS)
    rxs = clamp(hints.get("rx_slots", 0), GENERIC_RINGSIZE, 1, abi.NM_PIPE_MAXSLOTS)
    extra_req = max(0, min(int(hints.get("extra_bufs", 0)), abi.NM_BDG_MAX_EXTRA_BUFS))
    memory.mark(store, mem_id)
    try:
        if mem_id not in reg.mems:   # the global allocator, created on demand
            memory.create_mem(ns, reg, mem_id, GLOBAL_PARAMS, False)
        a = memory.mapped(ns, reg, mem_id)
        geom = a.geom
        frame = mtu + 14 + 4
        if rx_ids and frame > geom.buf_size:
            raise InvalidRequestError(
                errno.EINVAL, f"{kname}: MTU {mtu} gives frames of up to {frame} bytes (with Ethernet "
                f"and VLAN headers) but buffers of mem_id {mem_id} hold {geom.buf_size}; allowed: an "
                f"MTU of at most {geom.buf_size - 18} (ip link set {kname} mtu N), or bind TX rings "
                "only (/T)")
        if max(txs, rxs) > geom.max_slots():
            raise OutOfMemoryError(errno.ENOMEM, f"{kname}: {max(txs, rxs)} slots do not fit a ring "
                                   f"object of mem_id {mem_id} (at most {geom.max_slots()})")
        total = geom.ring_pool.objtotal
        tx_objs: dict[int, int] = {}
        rx_objs: dict[int, int] = {}
        for k in rx_ids:   # RX rings first, then TX, as the kernel creates them
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, rxs, k, abi.NR_RX, a.alloc_bufs(rxs))
            a.init_single(obj, rxs, abi.NR_RX)
            rx_objs[k] = obj
        for k in tx_ids:
            obj = memory.take_obj(reg, mem_id, "ring", total)
            a.init_ring(obj, txs, k, abi.NR_TX, a.alloc_bufs(txs))
            a.init_single(obj, txs, abi.NR_TX)
            tx_objs[k] = obj
        # netmap_if: the NIC ring, then the host ring, per direction (ring id NIC_RINGS is the host's)
        nic = range(NIC_RINGS)
        if_obj, if_off, extra = memory.write_netmap_if(
            reg, a, kname, kname, [tx_objs.get(k, -1) for k in nic], [rx_objs.get(k, -1) for k in nic],
            [k for k in tx_ids if k in nic], [k for k in rx_ids if k in nic], extra_req,
            host_tx=tx_objs.get(NIC_RINGS), host_rx=rx_objs.get(NIC_RINGS))
        bnd = new_binding(ns, reg, kind="nic", mem_id=mem_id, parent=None, pipe=None, end=0,
                          if_obj=if_obj, tx=tuple(tx_ids), rx=tuple(rx_ids),
                          excl=bool(flags & abi.NR_EXCLUSIVE), flags=flags, name=kname,
                          extra=int(extra.size), rings=(*rx_objs.values(), *tx_objs.values()))
        memory.finish(store)
    except BaseException:
        memory.undo(ns, store)
        raise
    info = RegisterInfo(name=kname, mode=mode, ringid=ringid, flags=flags, mem_id=mem_id,
                        memsize=geom.memsize, offset=if_off, tx_rings=NIC_RINGS, rx_rings=NIC_RINGS,
                        tx_slots=txs, rx_slots=rxs, host_tx_rings=HOST_RINGS,
                        host_rx_rings=HOST_RINGS, extra_bufs=int(extra.size))
    return Registered(bnd.bid, info, a, tuple(tx_objs[k] for k in tx_ids),
                      tuple(rx_objs[k] for k in rx_ids), tuple(tx_ids), tuple(rx_ids), kname)
