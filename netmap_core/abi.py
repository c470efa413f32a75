"""netmap's userspace ABI (control API version 14, LP64) as numpy dtypes and named constants.

Every dtype carries the C field names, offsets and itemsize of netmap's structs; the tests check
them against the compiler-measured tables in ``spec/abi/``. Byte order is the host's (x86-64).

Shared-memory layout of one allocator region (all offsets are region offsets)::

    0                if pool      ring pool                       buffer pool
    +----------------+------------+-------------------------------+----------------------+
    | netmap_if ...  | netmap_ring hdr (256 B) + slot[n] (16 B)  | buf 0 | buf 1 | ...  |
    +----------------+------------+-------------------------------+----------------------+
    nifp + ring_ofs[i]  -> ring          ring + buf_ofs + idx * nr_buf_size -> buffer idx
"""
from __future__ import annotations

import numpy as np

# --- shared-memory structs -------------------------------------------------------------------

netmap_slot = np.dtype(
    {
        "names": ["buf_idx", "len", "flags", "ptr"],
        "formats": ["<u4", "<u2", "<u2", "<u8"],
        "offsets": [0, 4, 6, 8],
        "itemsize": 16,
    }
)

#: struct timeval as netmap_ring.ts holds it
timeval = np.dtype({"names": ["tv_sec", "tv_usec"], "formats": ["<i8", "<i8"], "itemsize": 16})

#: netmap_ring header up to the flexible slot array (which starts at byte 256)
netmap_ring = np.dtype(
    {
        "names": [
            "buf_ofs", "num_slots", "nr_buf_size", "ringid", "dir", "head", "cur", "tail",
            "flags", "ts", "offset_mask", "buf_align", "sem",
        ],
        "formats": [
            "<i8", "<u4", "<u4", "<u2", "<u2", "<u4", "<u4", "<u4",
            "<u4", timeval, "<u8", "<u8", ("u1", 128),
        ],
        "offsets": [0, 8, 12, 16, 18, 20, 24, 28, 32, 40, 56, 64, 128],
        "itemsize": 256,
    }
)
NETMAP_RING_SLOTS_OFFSET = 256

#: netmap_if header up to the flexible ring_ofs[] array (which starts at byte 56)
netmap_if = np.dtype(
    {
        "names": [
            "ni_name", "ni_version", "ni_flags", "ni_tx_rings", "ni_rx_rings", "ni_bufs_head",
            "ni_host_tx_rings", "ni_host_rx_rings", "ni_spare1",
        ],
        "formats": ["S16", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", ("<u4", 3)],
        "offsets": [0, 16, 20, 24, 28, 32, 36, 40, 44],
        "itemsize": 56,
    }
)
NETMAP_IF_RING_OFS_OFFSET = 56

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

# kernel-internal direction values, as stored in netmap_ring.dir (spec A11)
NR_RX = 0
NR_TX = 1
