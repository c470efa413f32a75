"""netmap_core.abi against the compiler-measured table in spec/abi/netmap-abi.json.

Every dtype must have the C field names, offsets, sizes and padding; every constant the value.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from netmap_core import abi

TABLE = json.loads((Path(__file__).resolve().parents[1] / "spec" / "abi" / "netmap-abi.json")
                   .read_text())
STRUCTS = TABLE["structs"]

# Structs of the C helper libraries (netmap_user.h's nm_open, libnetmap): process-private
# descriptors the kernel never sees, so the project does not model them.
EXCLUDED_STRUCTS = {"nm_pkthdr", "nm_desc", "nmport_d", "nmctx", "nmem_d"}

# Constant groups the project deliberately does not define:
EXCLUDED_GROUPS = {
    "netmap_user_helpers",   # nm_open() flags of the legacy C helper library
    "libnetmap",             # libnetmap's option-parser internals
    "netmap_virt_ptnetmap",  # ptnetmap guest PCI device registers (VM passthrough)
}
# Single constants left out on purpose: NM_IFNAMSZ exists only in utils/ctrl-api-test.c.
EXCLUDED_CONSTANTS = {"NM_IFNAMSZ"}
NON_CONSTANT_KEYS = {"_meta", "structs", "ioctls", "kernel_constants", "derived_layouts"}

# flexible array members: (offset constant, element dtype)
FLEXIBLE = {
    ("netmap_ring", "slot"): (abi.NETMAP_RING_SLOTS_OFFSET, abi.netmap_slot),
    ("netmap_if", "ring_ofs"): (abi.NETMAP_IF_RING_OFS_OFFSET, np.dtype("<i8")),
    ("nmreq_opt_sync_kloop_eventfds", "eventfds"): (abi.nmreq_opt_sync_kloop_eventfds.itemsize,
                                                    abi.sync_kloop_eventfd),
}


def modelled_structs() -> list[str]:
    return sorted(set(STRUCTS) - EXCLUDED_STRUCTS)


def dtype_fields(dt: np.dtype) -> list[tuple[str, int, int]]:
    """(name, offset, size) in offset order."""
    return sorted(((n, off, sub.itemsize) for n, (sub, off, *_) in dt.fields.items()),
                  key=lambda f: f[1])


def gaps(dt: np.dtype) -> list[tuple[int, int]]:
    """(offset, size) of every byte range no field covers, the tail included."""
    out, pos = [], 0
    for _, off, size in dtype_fields(dt):
        assert off >= pos, f"field at {off} overlaps the previous one ending at {pos}"
        if off > pos:
            out.append((pos, off - pos))
        pos = off + size
    if pos < dt.itemsize:
        out.append((pos, dt.itemsize - pos))
    return out


def test_every_kernel_struct_of_the_table_is_modelled():
    missing = [name for name in modelled_structs() if not isinstance(getattr(abi, name, None), np.dtype)]
    assert not missing, f"abi.py lacks dtypes for {missing}"


@pytest.mark.parametrize("name", modelled_structs())
def test_struct_layout(name):
    table = STRUCTS[name]
    dt: np.dtype = getattr(abi, name)
    assert dt.itemsize == table["size"], f"sizeof(struct {name})"
    fixed = [f for f in table["fields"] if not f.get("flexible_array")]
    assert [f[0] for f in dtype_fields(dt)] == [f["name"] for f in fixed], f"{name}: field names/order"
    for f in fixed:
        sub, off = dt.fields[f["name"]][:2]
        assert off == f["offset"], f"offsetof({name}, {f['name']})"
        assert sub.itemsize == f["size"], f"sizeof({name}.{f['name']})"


@pytest.mark.parametrize("name", modelled_structs())
def test_struct_padding(name):
    table = STRUCTS[name]
    flexible_start = [f["offset"] for f in table["fields"] if f.get("flexible_array")]
    expected = [(p["offset"], p["size"]) for p in table["implicit_padding"]]
    assert gaps(getattr(abi, name)) == expected, f"{name}: padding differs from the C layout"
    if flexible_start:  # the flexible array starts right at the end of the fixed part
        assert flexible_start == [table["size"]]


@pytest.mark.parametrize("struct,field", sorted(FLEXIBLE))
def test_flexible_arrays(struct, field):
    offset, elem = FLEXIBLE[struct, field]
    f = next(f for f in STRUCTS[struct]["fields"] if f["name"] == field)
    assert f["flexible_array"]
    assert offset == f["offset"], f"{struct}.{field} offset"
    assert elem.itemsize == f["elem_size"], f"{struct}.{field} element size"


def test_nested_structs_are_the_named_dtypes():
    assert abi.nmreq_vale_attach.fields["reg"][0] == abi.nmreq_register
    assert abi.nmreq_opt_extmem.fields["nro_info"][0] == abi.nmreq_pools_info
    for opt in (abi.nmreq_opt_extmem, abi.nmreq_opt_offsets, abi.nmreq_opt_csb,
                abi.nmreq_opt_sync_kloop_mode, abi.nmreq_opt_sync_kloop_eventfds):
        assert opt.fields["nro_opt"] == (abi.nmreq_option, 0)
    assert abi.netmap_ring.fields["ts"][0] == abi.timeval


# --- constants ------------------------------------------------------------------------------

def constant_groups() -> list[str]:
    return sorted(k for k in TABLE if k not in NON_CONSTANT_KEYS)


def c_name(key: str) -> str:
    return key.split(" ", 1)[0]


def test_constant_groups_are_known():
    assert EXCLUDED_GROUPS <= set(constant_groups())


@pytest.mark.parametrize("group", constant_groups())
def test_constants_equal_the_table(group):
    wrong = {}
    for key, value in TABLE[group].items():
        name = c_name(key)
        if hasattr(abi, name) and getattr(abi, name) != value:
            wrong[name] = (getattr(abi, name), value)
    assert not wrong, f"{group}: abi value != table value: {wrong}"


@pytest.mark.parametrize("group", sorted(set(constant_groups()) - EXCLUDED_GROUPS))
def test_every_constant_of_the_group_is_defined(group):
    missing = [c_name(k) for k in TABLE[group]
               if c_name(k) not in EXCLUDED_CONSTANTS and not hasattr(abi, c_name(k))]
    assert not missing, f"{group}: abi.py does not define {missing}"


@pytest.mark.parametrize("name", sorted(TABLE["ioctls"]))
def test_ioctl_numbers(name):
    t = TABLE["ioctls"][name]
    value = getattr(abi, name)
    assert value == t["value"], f"{name} = {value:#x}, table {t['hex']}"
    assert value >> abi._IOC_DIRSHIFT == t["dir"]
    assert (value >> abi._IOC_TYPESHIFT) & 0xFF == t["type"] == ord(t["type_char"])
    assert value & 0xFF == t["nr"]
    assert (value >> abi._IOC_SIZESHIFT) & 0x3FFF == t["size"]


def test_ioctl_sizes_are_the_argument_structs():
    assert TABLE["ioctls"]["NIOCCTRL"]["size"] == abi.nmreq_header.itemsize
    assert TABLE["ioctls"]["NIOCREGIF"]["size"] == abi.nmreq.itemsize
    assert TABLE["ioctls"]["NIOCCONFIG"]["size"] == abi.nm_ifreq.itemsize


def test_ioc_rejects_oversized_arguments():
    with pytest.raises(ValueError, match="does not fit"):
        abi._IOWR("i", 1, 1 << 14)


# --- kernel constants -------------------------------------------------------------------------

KERNEL = TABLE["kernel_constants"]

# kernel-source keys without an upper-case netmap name -> where abi.py keeps them
KERNEL_ALIASES = {
    "LINE_ROUND_NM_BUF_ALIGN": lambda: abi.NM_BUF_ALIGN,
    "global_params_default": lambda: abi.NETMAP_GLOBAL_PARAMS,
    "global_pool_limits": lambda: abi.NETMAP_GLOBAL_LIMITS,
    "private_min_params": lambda: abi.NETMAP_MIN_PRIV_PARAMS,
    "private_pool_limits": lambda: abi.NETMAP_PRIV_LIMITS,
    "reserved_buffer_indexes": lambda: list(abi.NETMAP_RESERVED_BUFS),
    "global_mem_id": lambda: abi.NETMAP_GLOBAL_MEM_ID,
    "netmap_no_timestamp": lambda: abi.SYSCTL_DEFAULTS["no_timestamp"],
    "netmap_no_pendintr": lambda: abi.SYSCTL_DEFAULTS["no_pendintr"],
    "netmap_txsync_retry": lambda: abi.SYSCTL_DEFAULTS["txsync_retry"],
    "netmap_fwd": lambda: abi.SYSCTL_DEFAULTS["fwd"],
    "netmap_admode": lambda: abi.SYSCTL_DEFAULTS["admode"],
    "netmap_generic_mit_ns": lambda: abi.SYSCTL_DEFAULTS["generic_mit"],
    "netmap_generic_ringsize": lambda: abi.SYSCTL_DEFAULTS["generic_ringsize"],
    "netmap_generic_rings": lambda: abi.SYSCTL_DEFAULTS["generic_rings"],
    "netmap_generic_txqdisc_linux": lambda: abi.SYSCTL_DEFAULTS["generic_txqdisc"],
    "netmap_generic_hwcsum": lambda: abi.SYSCTL_DEFAULTS["generic_hwcsum"],
    "ptnet_vnet_hdr": lambda: abi.SYSCTL_DEFAULTS["ptnet_vnet_hdr"],
    "valid_vnet_hdr_len": lambda: list(abi.NM_VNET_HDR_LENS),
    "bridge_batch_default": lambda: abi.SYSCTL_DEFAULTS["bridge_batch"],
    "vale_max_bridges_default": lambda: abi.SYSCTL_DEFAULTS["max_bridges"],
    "extra_bufs_max_per_vale_port": lambda: abi.NM_BDG_MAX_EXTRA_BUFS,
    "default_npipes_reserved_in_vale_private_memory": lambda: abi.NM_BDG_PRIV_NPIPES,
    "rx_buf_maxsize": lambda: abi.SYSCTL_DEFAULTS["rx_buf_maxsize"],
    "max_sleep_us": lambda: abi.NM_KLOOP_MAX_SLEEP_US,
}
PAGE_SIZE_X86_64 = 4096


def c_value(v):
    """A table value as a number: ints as they are, '9*PAGE_SIZE', 'sizeof(struct X)'."""
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"(\d+)\*PAGE_SIZE", v)
    if m:
        return int(m.group(1)) * PAGE_SIZE_X86_64
    m = re.fullmatch(r"sizeof\(struct (\w+)\)", v)
    if m:
        return STRUCTS[m.group(1)]["size"]
    raise AssertionError(f"table value {v!r} has no numeric reading")


def as_comparable(table_value, ours):
    """Pool tables compare field by field on the keys the table gives."""
    if isinstance(table_value, dict):
        return ({pool: {k: c_value(x) for k, x in fields.items()} for pool, fields in table_value.items()},
                {pool: {k: getattr(ours[pool], k) for k in fields} for pool, fields in table_value.items()})
    return table_value, ours


def kernel_items():
    for group, entries in KERNEL.items():
        if group.startswith("_") or group.startswith("request_sizes"):
            continue
        for key, value in entries.items():
            if key != "comment":
                yield pytest.param(key, value, id=f"{group.split(' ')[0]}.{key}")


@pytest.mark.parametrize("key,value", list(kernel_items()))
def test_kernel_constants(key, value):
    if key in KERNEL_ALIASES:
        ours = KERNEL_ALIASES[key]()
    else:
        assert key.isupper(), f"kernel constant {key!r} has no netmap name and no alias in this test"
        assert hasattr(abi, key), f"abi.py does not define kernel constant {key}"
        ours = getattr(abi, key)
    expected, got = as_comparable(value, ours)
    assert got == expected, f"{key}: abi has {got}, table {expected}"


def test_private_limits_leave_unstated_minimums_open():
    # the table gives no object minimum for the private if/ring pools; abi must not invent one
    for pool in ("if", "ring"):
        limits = KERNEL["memory (sys/dev/netmap/netmap_mem2.c)"]["private_pool_limits"]
        assert "objminsize" not in limits[pool]
        assert abi.NETMAP_PRIV_LIMITS[pool].objminsize is None


SIZES = KERNEL["request_sizes (sys/dev/netmap/netmap.c nmreq_size_by_type/nmreq_opt_size_by_type)"]


@pytest.mark.parametrize("name,size", sorted(SIZES["body"].items()))
def test_request_body_sizes(name, size):
    assert abi.NMREQ_BODY_SIZE[getattr(abi, name)] == size, f"body size of {name} (spec C3)"


def test_request_body_sizes_cover_every_request_type():
    reqtypes = {v for k, v in TABLE["reqtypes_NETMAP_REQ"].items()}
    assert set(abi.NMREQ_BODY_SIZE) == reqtypes


@pytest.mark.parametrize("name,size", sorted((k, v) for k, v in SIZES["option"].items()
                                             if k.startswith("NETMAP_REQ_OPT_")))
def test_option_sizes(name, size):
    ours = abi.NMREQ_OPT_SIZE[getattr(abi, name)]
    if isinstance(size, str):  # variable: "max(24, nro_size)" -> the fixed part is the header
        assert size == f"max({ours}, nro_size)"
    else:
        assert ours == size, f"option size of {name} (spec C4)"


def test_meta_names_the_measured_commit():
    assert TABLE["_meta"]["source_commit"].startswith("89607e14")
    assert "x86_64" in TABLE["_meta"]["arch"]
