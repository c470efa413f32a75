"""netmap's userspace ABI (control API version 14, LP64) as numpy dtypes and named constants.

Every dtype carries the C field names, offsets and itemsize of netmap's structs; the tests check
them against the compiler-measured tables in ``spec/abi/``. Byte order is the host's (x86-64).

Shared-memory layout of one allocator region (all offsets are region offsets)::

    0                if pool      ring pool                       buffer pool
    +----------------+------------+-------------------------------+----------------------+
    | netmap_if ...  | netmap_ring hdr (256 B) + slot[n] (16 B)  | buf 0 | buf 1 | ...  |
    +----------------+------------+-------------------------------+----------------------+
    nifp + ring_ofs[i]  -> ring          ring + buf_ofs + idx * nr_buf_size -> buffer idx

Control requests (NIOCCTRL) pass one ``nmreq_header`` whose ``nr_body`` points to the body of
its request type and whose ``nr_options`` starts a list of options linked by ``nro_next``; all
three are user addresses the kernel reads and writes in place.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np


def _struct(fields: list[tuple[str, object, int]], itemsize: int) -> np.dtype:
    """A dtype from (C field name, numpy format, byte offset); gaps are the C padding."""
    return np.dtype({
        "names": [f[0] for f in fields],
        "formats": [f[1] for f in fields],
        "offsets": [f[2] for f in fields],
        "itemsize": itemsize,
    })


# --- shared-memory structs -------------------------------------------------------------------

netmap_slot = _struct([("buf_idx", "<u4", 0), ("len", "<u2", 4), ("flags", "<u2", 6),
                       ("ptr", "<u8", 8)], 16)

#: struct timeval as netmap_ring.ts holds it
timeval = _struct([("tv_sec", "<i8", 0), ("tv_usec", "<i8", 8)], 16)

#: netmap_ring header up to the flexible slot array (which starts at byte 256)
netmap_ring = _struct([
    ("buf_ofs", "<i8", 0), ("num_slots", "<u4", 8), ("nr_buf_size", "<u4", 12),
    ("ringid", "<u2", 16), ("dir", "<u2", 18), ("head", "<u4", 20), ("cur", "<u4", 24),
    ("tail", "<u4", 28), ("flags", "<u4", 32), ("ts", timeval, 40), ("offset_mask", "<u8", 56),
    ("buf_align", "<u8", 64), ("sem", ("u1", 128), 128),
], 256)
NETMAP_RING_SLOTS_OFFSET = 256

#: netmap_if header up to the flexible ring_ofs[] array (int64 entries from byte 56)
netmap_if = _struct([
    ("ni_name", "S16", 0), ("ni_version", "<u4", 16), ("ni_flags", "<u4", 20),
    ("ni_tx_rings", "<u4", 24), ("ni_rx_rings", "<u4", 28), ("ni_bufs_head", "<u4", 32),
    ("ni_host_tx_rings", "<u4", 36), ("ni_host_rx_rings", "<u4", 40), ("ni_spare1", ("<u4", 3), 44),
], 56)
NETMAP_IF_RING_OFS_OFFSET = 56

#: one entry of the Communication Status Block, application to kernel (one per bound ring)
nm_csb_atok = _struct([("head", "<u4", 0), ("cur", "<u4", 4), ("appl_need_kick", "<u4", 8),
                       ("sync_flags", "<u4", 12), ("pad", ("<u4", 12), 16)], 64)

#: one entry of the Communication Status Block, kernel to application
nm_csb_ktoa = _struct([("hwcur", "<u4", 0), ("hwtail", "<u4", 4), ("kern_need_kick", "<u4", 8),
                       ("pad", ("<u4", 13), 12)], 64)

# --- control API v14: header, bodies, options --------------------------------------------------

nmreq_header = _struct([
    ("nr_version", "<u2", 0), ("nr_reqtype", "<u2", 2), ("nr_reserved", "<u4", 4),
    ("nr_name", "S64", 8), ("nr_options", "<u8", 72), ("nr_body", "<u8", 80),
], 88)

#: REGISTER body; 4 bytes of padding before nr_flags
nmreq_register = _struct([
    ("nr_offset", "<u8", 0), ("nr_memsize", "<u8", 8), ("nr_tx_slots", "<u4", 16),
    ("nr_rx_slots", "<u4", 20), ("nr_tx_rings", "<u2", 24), ("nr_rx_rings", "<u2", 26),
    ("nr_host_tx_rings", "<u2", 28), ("nr_host_rx_rings", "<u2", 30), ("nr_mem_id", "<u2", 32),
    ("nr_ringid", "<u2", 34), ("nr_mode", "<u4", 36), ("nr_extra_bufs", "<u4", 40),
    ("nr_flags", "<u8", 48),
], 56)

nmreq_port_info_get = _struct([
    ("nr_memsize", "<u8", 0), ("nr_tx_slots", "<u4", 8), ("nr_rx_slots", "<u4", 12),
    ("nr_tx_rings", "<u2", 16), ("nr_rx_rings", "<u2", 18), ("nr_host_tx_rings", "<u2", 20),
    ("nr_host_rx_rings", "<u2", 22), ("nr_mem_id", "<u2", 24), ("pad", ("<u2", 3), 26),
], 32)

nmreq_vale_attach = _struct([("reg", nmreq_register, 0), ("port_index", "<u4", 56),
                             ("pad1", "<u4", 60)], 64)

nmreq_vale_detach = _struct([("port_index", "<u4", 0), ("pad1", "<u4", 4)], 8)

nmreq_vale_list = _struct([("nr_bridge_idx", "<u2", 0), ("pad1", "<u2", 2),
                           ("nr_port_idx", "<u4", 4)], 8)

#: PORT_HDR_SET / PORT_HDR_GET body
nmreq_port_hdr = _struct([("nr_hdr_len", "<u4", 0), ("pad1", "<u4", 4)], 8)

nmreq_vale_newif = _struct([
    ("nr_tx_slots", "<u4", 0), ("nr_rx_slots", "<u4", 4), ("nr_tx_rings", "<u2", 8),
    ("nr_rx_rings", "<u2", 10), ("nr_mem_id", "<u2", 12), ("pad1", "<u2", 14),
], 16)

#: VALE_POLLING_ENABLE / VALE_POLLING_DISABLE body
nmreq_vale_polling = _struct([("nr_mode", "<u4", 0), ("nr_first_cpu_id", "<u4", 4),
                              ("nr_num_polling_cpus", "<u4", 8), ("pad1", "<u4", 12)], 16)

nmreq_pools_info = _struct([
    ("nr_memsize", "<u8", 0), ("nr_mem_id", "<u2", 8), ("pad1", ("<u2", 3), 10),
    ("nr_if_pool_offset", "<u8", 16), ("nr_if_pool_objtotal", "<u4", 24),
    ("nr_if_pool_objsize", "<u4", 28), ("nr_ring_pool_offset", "<u8", 32),
    ("nr_ring_pool_objtotal", "<u4", 40), ("nr_ring_pool_objsize", "<u4", 44),
    ("nr_buf_pool_offset", "<u8", 48), ("nr_buf_pool_objtotal", "<u4", 56),
    ("nr_buf_pool_objsize", "<u4", 60),
], 64)

nmreq_sync_kloop_start = _struct([("sleep_us", "<u4", 0), ("pad1", "<u4", 4)], 8)

#: the header every option starts with; nro_next links the list (0 ends it)
nmreq_option = _struct([("nro_next", "<u8", 0), ("nro_reqtype", "<u4", 8),
                        ("nro_status", "<u4", 12), ("nro_size", "<u8", 16)], 24)

#: EXTMEM: the user region at nro_usrptr becomes the port's allocator; nro_info sizes its pools
nmreq_opt_extmem = _struct([("nro_opt", nmreq_option, 0), ("nro_usrptr", "<u8", 24),
                            ("nro_info", nmreq_pools_info, 32)], 96)

nmreq_opt_offsets = _struct([
    ("nro_opt", nmreq_option, 0), ("nro_max_offset", "<u8", 24),
    ("nro_initial_offset", "<u8", 32), ("nro_offset_bits", "<u4", 40),
    ("nro_tx_align", "<u4", 44), ("nro_min_gap", "<u8", 48),
], 56)

#: CSB: user addresses of the nm_csb_atok / nm_csb_ktoa arrays
nmreq_opt_csb = _struct([("nro_opt", nmreq_option, 0), ("csb_atok", "<u8", 24),
                         ("csb_ktoa", "<u8", 32)], 40)

#: SYNC_KLOOP_MODE; 4 bytes of trailing padding
nmreq_opt_sync_kloop_mode = _struct([("nro_opt", nmreq_option, 0), ("mode", "<u4", 24)], 32)

#: SYNC_KLOOP_EVENTFDS header; ``sync_kloop_eventfd`` entries follow it, one per bound ring
nmreq_opt_sync_kloop_eventfds = _struct([("nro_opt", nmreq_option, 0)], 24)
sync_kloop_eventfd = _struct([("ioeventfd", "<i4", 0), ("irqfd", "<i4", 4)], 8)

# --- legacy API (NIOCREGIF / NIOCGINFO / NIOCCONFIG) -------------------------------------------

#: struct nmreq: 32-bit offset/memsize, nr_cmd selects the request (spec C9)
nmreq = _struct([
    ("nr_name", "S16", 0), ("nr_version", "<u4", 16), ("nr_offset", "<u4", 20),
    ("nr_memsize", "<u4", 24), ("nr_tx_slots", "<u4", 28), ("nr_rx_slots", "<u4", 32),
    ("nr_tx_rings", "<u2", 36), ("nr_rx_rings", "<u2", 38), ("nr_ringid", "<u2", 40),
    ("nr_cmd", "<u2", 42), ("nr_arg1", "<u2", 44), ("nr_arg2", "<u2", 46),
    ("nr_arg3", "<u4", 48), ("nr_flags", "<u4", 52), ("spare2", "<u4", 56),
], 60)

#: NIOCCONFIG argument: a switch name and opaque data for its config hook
nm_ifreq = _struct([("nifr_name", "S16", 0), ("data", ("u1", 256), 16)], 272)

# --- constants --------------------------------------------------------------------------------

NETMAP_API = 14
NETMAP_MIN_API = 14
NETMAP_MAX_API = 15
NM_CACHE_ALIGN = 128
NETMAP_REQ_MAXSIZE = 4096
NETMAP_REQ_IFNAMSIZ = 64
IFNAMSIZ = 16
NETMAP_MAX_FRAGS = 64
NI_PRIV_MEM = 0x1
NM_BDG_NAME = "vale"
NETMAP_DEVICE_NAME = "/dev/netmap"

# slot flags
NS_BUF_CHANGED = 0x0001
NS_REPORT = 0x0002
NS_FORWARD = 0x0004
NS_NO_LEARN = 0x0008
NS_INDIRECT = 0x0010
NS_MOREFRAG = 0x0020
NS_TXMON = 0x0040
NS_PORT_SHIFT = 8
NS_PORT_MASK = 0xFF << NS_PORT_SHIFT

# ring flags
NR_TIMESTAMP = 0x0002
NR_FORWARD = 0x0004

# request types (nmreq_header.nr_reqtype)
NETMAP_REQ_REGISTER = 1
NETMAP_REQ_PORT_INFO_GET = 2
NETMAP_REQ_VALE_ATTACH = 3
NETMAP_REQ_VALE_DETACH = 4
NETMAP_REQ_VALE_LIST = 5
NETMAP_REQ_PORT_HDR_SET = 6
NETMAP_REQ_PORT_HDR_GET = 7
NETMAP_REQ_VALE_NEWIF = 8
NETMAP_REQ_VALE_DELIF = 9
NETMAP_REQ_VALE_POLLING_ENABLE = 10
NETMAP_REQ_VALE_POLLING_DISABLE = 11
NETMAP_REQ_POOLS_INFO_GET = 12
NETMAP_REQ_SYNC_KLOOP_START = 13
NETMAP_REQ_SYNC_KLOOP_STOP = 14
NETMAP_REQ_CSB_ENABLE = 15

# option types (nmreq_option.nro_reqtype); types >= NETMAP_REQ_OPT_MAX are unknown to the kernel
NETMAP_REQ_OPT_EXTMEM = 1
NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS = 2
NETMAP_REQ_OPT_CSB = 3
NETMAP_REQ_OPT_SYNC_KLOOP_MODE = 4
NETMAP_REQ_OPT_OFFSETS = 5
NETMAP_REQ_OPT_MAX = 6
# nmreq_opt_sync_kloop_mode.mode bits
NM_OPT_SYNC_KLOOP_DIRECT_TX = 1
NM_OPT_SYNC_KLOOP_DIRECT_RX = 2

#: the body struct of each request type (None: nr_body must be NULL), spec C3
NMREQ_BODY_DTYPE = MappingProxyType({
    NETMAP_REQ_REGISTER: nmreq_register,
    NETMAP_REQ_PORT_INFO_GET: nmreq_port_info_get,
    NETMAP_REQ_VALE_ATTACH: nmreq_vale_attach,
    NETMAP_REQ_VALE_DETACH: nmreq_vale_detach,
    NETMAP_REQ_VALE_LIST: nmreq_vale_list,
    NETMAP_REQ_PORT_HDR_SET: nmreq_port_hdr,
    NETMAP_REQ_PORT_HDR_GET: nmreq_port_hdr,
    NETMAP_REQ_VALE_NEWIF: nmreq_vale_newif,
    NETMAP_REQ_VALE_DELIF: None,
    NETMAP_REQ_VALE_POLLING_ENABLE: nmreq_vale_polling,
    NETMAP_REQ_VALE_POLLING_DISABLE: nmreq_vale_polling,
    NETMAP_REQ_POOLS_INFO_GET: nmreq_pools_info,
    NETMAP_REQ_SYNC_KLOOP_START: nmreq_sync_kloop_start,
    NETMAP_REQ_SYNC_KLOOP_STOP: None,
    NETMAP_REQ_CSB_ENABLE: None,
})

#: bytes of nr_body the kernel copies in and out per request type (0: nr_body must be NULL)
NMREQ_BODY_SIZE = MappingProxyType({t: 0 if d is None else d.itemsize
                                    for t, d in NMREQ_BODY_DTYPE.items()})

#: the struct of each option type; SYNC_KLOOP_EVENTFDS is this header plus one
#: ``sync_kloop_eventfd`` per ring (its nro_size says how many); unknown types: header only
NMREQ_OPT_DTYPE = MappingProxyType({
    NETMAP_REQ_OPT_EXTMEM: nmreq_opt_extmem,
    NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS: nmreq_opt_sync_kloop_eventfds,
    NETMAP_REQ_OPT_CSB: nmreq_opt_csb,
    NETMAP_REQ_OPT_SYNC_KLOOP_MODE: nmreq_opt_sync_kloop_mode,
    NETMAP_REQ_OPT_OFFSETS: nmreq_opt_offsets,
})

#: bytes the kernel copies per option type, the 24-byte option header included (spec C4)
NMREQ_OPT_SIZE = MappingProxyType({t: d.itemsize for t, d in NMREQ_OPT_DTYPE.items()})

# register modes (nmreq_register.nr_mode)
NR_REG_DEFAULT = 0
NR_REG_ALL_NIC = 1
NR_REG_SW = 2
NR_REG_NIC_SW = 3
NR_REG_ONE_NIC = 4
NR_REG_PIPE_MASTER = 5
NR_REG_PIPE_SLAVE = 6
NR_REG_NULL = 7
NR_REG_ONE_SW = 8

# register flags (nmreq_register.nr_flags)
NR_MONITOR_TX = 0x100
NR_MONITOR_RX = 0x200
NR_ZCOPY_MON = 0x400
NR_EXCLUSIVE = 0x800
NR_RX_RINGS_ONLY = 0x2000
NR_TX_RINGS_ONLY = 0x4000
NR_ACCEPT_VNET_HDR = 0x8000
NR_DO_RX_POLL = 0x10000
NR_NO_TX_POLL = 0x20000

# VALE polling modes (nmreq_vale_polling.nr_mode)
NETMAP_POLLING_MODE_SINGLE_CPU = 1
NETMAP_POLLING_MODE_MULTI_CPU = 2

# legacy API: nmreq.nr_ringid bits, nr_flags mode mask, nr_cmd values
NETMAP_HW_RING = 0x4000
NETMAP_SW_RING = 0x2000
NETMAP_RING_MASK = 0x0FFF
NETMAP_NO_TX_POLL = 0x1000
NETMAP_DO_RX_POLL = 0x8000
NR_REG_MASK = 0xF
NETMAP_BDG_ATTACH = 1
NETMAP_BDG_DETACH = 2
NETMAP_BDG_REGOPS = 3
NETMAP_BDG_LIST = 4
NETMAP_BDG_VNET_HDR = 5
NETMAP_BDG_NEWIF = 6
NETMAP_BDG_DELIF = 7
NETMAP_PT_HOST_CREATE = 8
NETMAP_PT_HOST_DELETE = 9
NETMAP_BDG_POLLING_ON = 10
NETMAP_BDG_POLLING_OFF = 11
NETMAP_VNET_HDR_GET = 12
NETMAP_BDG_HOST = 1       # nmreq.nr_arg1 of BDG_ATTACH: attach the host stack too
NM_IFRDATA_LEN = 256

# --- ioctl numbers (Linux _IOC encoding) -------------------------------------------------------

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_char: str, nr: int, size: int) -> int:  # noqa: N802 - C macro name
    if not 0 <= size < 1 << _IOC_SIZEBITS:
        raise ValueError(f"ioctl argument size {size} does not fit {_IOC_SIZEBITS} bits")
    return ((direction << _IOC_DIRSHIFT) | (ord(type_char) << _IOC_TYPESHIFT)
            | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


def _IO(type_char: str, nr: int) -> int:  # noqa: N802
    return _IOC(_IOC_NONE, type_char, nr, 0)


def _IOWR(type_char: str, nr: int, size: int) -> int:  # noqa: N802
    return _IOC(_IOC_READ | _IOC_WRITE, type_char, nr, size)


NIOCGINFO = _IOWR("i", 145, nmreq.itemsize)
NIOCREGIF = _IOWR("i", 146, nmreq.itemsize)
NIOCTXSYNC = _IO("i", 148)
NIOCRXSYNC = _IO("i", 149)
NIOCCONFIG = _IOWR("i", 150, nm_ifreq.itemsize)
NIOCCTRL = _IOWR("i", 151, nmreq_header.itemsize)

# --- kernel-internal values an emulator reproduces (not in the user headers) -------------------

# kernel direction enum, as stored in netmap_ring.dir (spec A11)
NR_RX = 0
NR_TX = 1
NR_TXRX = 2

PAGE_SIZE = 4096          # x86-64; every pool and the region are page aligned
NM_BUF_ALIGN = 64         # object sizes are rounded up to this (LINE_ROUND)
NM_KRING_ALIGNMENT = 64
NETMAP_BUF_MAX_NUM = 20 * 4096 * 2
MAX_CLUSTSIZE = 1 << 22   # one pool cluster is at most 4 MiB
NETMAP_GLOBAL_MEM_ID = 1
NETMAP_RESERVED_BUFS = (0, 1)   # buffer 0 is the "bad buffer", both are never handed out
NR_NOSLOT = 0xFFFFFFFF

# kring flags and states (netmap_kern.h)
NKR_PENDINTR = 0x1
NKR_EXCLUSIVE = 0x2
NKR_FORWARD = 0x4
NKR_NEEDRING = 0x8
NKR_NOINTR = 0x10
NKR_FAKERING = 0x20
NAF_FORCE_READ = 1
NAF_FORCE_RECLAIM = 2
NAF_CAN_FORWARD_DOWN = 4
NM_KR_BUSY = 1
NM_KR_STOPPED = 2
NM_KR_LOCKED = 3

# VALE switches (netmap_bdg.h, netmap_vale.c)
NM_BRIDGES = 8
NM_BDG_MAXPORTS = 254
NM_BDG_BROADCAST = NM_BDG_MAXPORTS
NM_BDG_NOPORT = NM_BDG_MAXPORTS + 1
NM_BDG_HASH = 1024
NM_BDG_MFS_DEFAULT = 1514
NM_BDG_IFNAMSIZ = IFNAMSIZ
NM_BDG_MAXRINGS = 16
NM_BDG_MAXSLOTS = 4096
NM_BRIDGE_RINGSIZE = 1024
NM_BDG_BATCH = 1024
NM_BDG_BATCH_MAX = NM_BDG_BATCH + NETMAP_MAX_FRAGS
NM_BDG_MAX_EXTRA_BUFS = 128 * NM_BDG_MAXSLOTS   # VALE clamps nr_extra_bufs to this (spec A13)
NM_BDG_PRIV_NPIPES = 2    # pipes a VALE port's private allocator is sized for (spec A5)
NM_VNET_HDR_LENS = (0, 10, 12)   # virtio-net header lengths PORT_HDR_SET accepts

# pipes and monitors
NM_PIPE_MAXSLOTS = 4096
NM_PIPE_MAXRINGS = 256
NM_MAXPIPES = 64
NM_MONITOR_MAXSLOTS = 4096

NM_KLOOP_MAX_SLEEP_US = 1_000_000   # SYNC_KLOOP_START.sleep_us upper bound

#: sysctl (dev.netmap.*) defaults that change behaviour (spec L7)
SYSCTL_DEFAULTS = MappingProxyType({
    "no_timestamp": 0,
    "no_pendintr": 1,
    "txsync_retry": 2,
    "fwd": 0,
    "admode": 0,
    "generic_mit": 100_000,        # ns
    "generic_ringsize": 1024,
    "generic_rings": 1,
    "generic_txqdisc": 1,
    "generic_hwcsum": 0,
    "ptnet_vnet_hdr": 1,
    "bridge_batch": NM_BDG_BATCH,
    "max_bridges": NM_BRIDGES,
    "rx_buf_maxsize": 32768,       # emulated (generic) adapters
})


@dataclass(frozen=True)
class PoolParams:
    """Requested object size (bytes) and count of one allocator pool."""

    size: int
    num: int


@dataclass(frozen=True)
class PoolLimits:
    """Legal object size and count of one pool; None where netmap sets no bound of its own."""

    objminsize: int | None
    objmaxsize: int
    nummin: int
    nummax: int


#: global allocator (mem_id 1) defaults, sysctls dev.netmap.{if,ring,buf}_{size,num} (spec A4)
NETMAP_GLOBAL_PARAMS = MappingProxyType({
    "if": PoolParams(1024, 100),
    "ring": PoolParams(9 * PAGE_SIZE, 200),
    "buf": PoolParams(2048, NETMAP_BUF_MAX_NUM),
})
NETMAP_GLOBAL_LIMITS = MappingProxyType({
    "if": PoolLimits(netmap_if.itemsize, 4096, 10, 10000),
    "ring": PoolLimits(netmap_ring.itemsize, 32 * PAGE_SIZE, 2, 1024),
    "buf": PoolLimits(64, 65536, 4, 1_000_000),
})

#: starting point of private allocators (VALE ports, copy monitors, extmem zeros), dev.netmap.priv_*
NETMAP_MIN_PRIV_PARAMS = MappingProxyType({
    "if": PoolParams(1024, 2),
    "ring": PoolParams(5 * PAGE_SIZE, 4),
    "buf": PoolParams(2048, 4098),
})
NETMAP_PRIV_LIMITS = MappingProxyType({
    "if": PoolLimits(None, 4096, 1, 100),
    "ring": PoolLimits(None, 32 * PAGE_SIZE, 2, 1024),
    "buf": PoolLimits(64, 65536, 4, 1_000_000),
})
