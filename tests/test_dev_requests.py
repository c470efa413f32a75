"""The exact bytes the netmap backend hands the kernel, checked against spec/abi/netmap-abi.json.

Expected bytes are packed here from the measured table (not from netmap_core.abi), so a wrong
dtype and a wrong encoder cannot agree by accident. Decoding is checked by writing results
through the request's own pointers, as the kernel does.
"""
from __future__ import annotations

import ctypes
import errno
import json
from pathlib import Path

import numpy as np
import pytest

from netmap_core import abi
from netmap_core.control import ListEntry, NewIf
from netmap_core.errors import (
    InvalidRequestError,
    NetmapOSError,
    NoSuchPortError,
    NotSupportedError,
    PortBusyError,
)
from netmap_core.portspec import Conf, ExtMem, Offset, PortSpec, parse_portspec
from netmap_dev import requests as rq

TABLE = json.loads((Path(__file__).resolve().parents[1] / "spec" / "abi" / "netmap-abi.json").read_text())
SIZES = next(v for k, v in TABLE["kernel_constants"].items() if k.startswith("request_sizes"))


def fields(struct: str) -> dict[str, tuple[int, int]]:
    return {f["name"]: (f["offset"], f["size"]) for f in TABLE["structs"][struct]["fields"]
            if not f.get("flexible_array")}


def pack(struct: str, **values) -> bytes:
    """Little-endian C struct bytes from the table's offsets; unnamed bytes stay 0."""
    out = bytearray(TABLE["structs"][struct]["size"])
    lay = fields(struct)
    for name, value in values.items():
        off, size = lay[name]
        raw = value.ljust(size, b"\0") if isinstance(value, bytes) else int(value).to_bytes(size, "little")
        assert len(raw) == size, name
        out[off:off + size] = raw
    return bytes(out)


def field(data: bytes, struct: str, name: str) -> int:
    off, size = fields(struct)[name]
    return int.from_bytes(data[off:off + size], "little")


def addr(arr) -> int:
    return arr.ctypes.data


def spec(name: str, mode: int = abi.NR_REG_ALL_NIC, **kw) -> PortSpec:
    return PortSpec(text=kw.pop("text", name), name=name, mode=mode, **kw)


def kernel_writes(address: int, data: bytes) -> None:
    """Write results at a user address, as copyout does."""
    ctypes.memmove(address, data, len(data))


# --- header -----------------------------------------------------------------------------------

BUILDERS = {
    "NETMAP_REQ_REGISTER": lambda: rq.register(spec("vale0:a")),
    "NETMAP_REQ_PORT_INFO_GET": lambda: rq.port_info_get("vale0:a"),
    "NETMAP_REQ_VALE_ATTACH": lambda: rq.vale_attach("vale0:a"),
    "NETMAP_REQ_VALE_DETACH": lambda: rq.vale_detach("vale0:a"),
    "NETMAP_REQ_VALE_LIST": lambda: rq.vale_list("vale0:a"),
    "NETMAP_REQ_PORT_HDR_SET": lambda: rq.port_hdr_set("vale0:a", 12),
    "NETMAP_REQ_PORT_HDR_GET": lambda: rq.port_hdr_get("vale0:a"),
    "NETMAP_REQ_VALE_NEWIF": lambda: rq.vale_newif("vale0:a"),
    "NETMAP_REQ_VALE_DELIF": lambda: rq.vale_delif("vale0:a"),
    "NETMAP_REQ_POOLS_INFO_GET": lambda: rq.pools_info_get("vale0:a"),
}


@pytest.mark.parametrize("reqname", sorted(BUILDERS))
def test_header_bytes_and_body_size(reqname):
    req = BUILDERS[reqname]()
    hdr = req.header_bytes()
    body_size = SIZES["body"][reqname]
    assert len(hdr) == TABLE["structs"]["nmreq_header"]["size"] == 88
    expected = pack("nmreq_header", nr_version=14, nr_reqtype=TABLE["reqtypes_NETMAP_REQ"][reqname],
                    nr_reserved=0, nr_name=b"vale0:a",
                    nr_body=addr(req.body) if body_size else 0, nr_options=0)
    assert hdr == expected, f"{reqname}: header bytes"
    assert len(req.body_bytes()) == body_size, f"{reqname}: body size (spec C3)"
    if body_size:
        assert ctypes.string_at(field(hdr, "nmreq_header", "nr_body"), body_size) == req.body_bytes()


def test_name_is_nul_padded_and_limited_to_63_bytes():
    ok = rq.port_info_get("v" * 63)
    assert ok.header_bytes()[8:72] == b"v" * 63 + b"\0"
    with pytest.raises(InvalidRequestError, match=r"nr_name='v{64}' is 64 bytes; allowed at most 63") as e:
        rq.port_info_get("v" * 64)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(InvalidRequestError, match="NUL"):
        rq.vale_list("a\0b")
    with pytest.raises(InvalidRequestError, match="must be a str"):
        rq.vale_list(b"vale0:a")  # type: ignore[arg-type]


def test_build_refuses_what_the_kernel_would_reject():
    with pytest.raises(InvalidRequestError, match="copies exactly 56"):
        rq.build(abi.NETMAP_REQ_REGISTER, "x", None)
    with pytest.raises(InvalidRequestError, match="copies exactly 0"):
        rq.build(abi.NETMAP_REQ_VALE_DELIF, "x", np.zeros(1, abi.nmreq_port_hdr))
    with pytest.raises(InvalidRequestError, match="nr_reqtype=99 is not a request type"):
        rq.build(99, "x")
    many = [rq.option(1000 + i) for i in range(200)]
    with pytest.raises(InvalidRequestError, match="NETMAP_REQ_MAXSIZE 4096") as e:
        rq.build(abi.NETMAP_REQ_PORT_HDR_GET, "x", np.zeros(1, abi.nmreq_port_hdr), many)
    assert e.value.errno == errno.EMSGSIZE


def test_raw_build_reaches_the_kernel_unchecked():
    req = rq.build(99, "x", None, version=13, reserved=1, check=False)
    hdr = req.header_bytes()
    assert (field(hdr, "nmreq_header", "nr_version"), field(hdr, "nmreq_header", "nr_reqtype"),
            field(hdr, "nmreq_header", "nr_reserved")) == (13, 99, 1)
    with pytest.raises(InvalidRequestError, match="nr_version=70000 does not fit; allowed 0..65535"):
        rq.build(1, "x", None, version=70000, check=False)


# --- REGISTER ---------------------------------------------------------------------------------

# (port name, the register body libnetmap would send for it, spec D7)
D7 = [
    ("netmap:eth0", "eth0", dict(nr_mode=1)),
    ("netmap:eth0-1", "eth0", dict(nr_mode=4, nr_ringid=1)),
    ("netmap:eth0^", "eth0", dict(nr_mode=2)),
    ("netmap:eth0^1", "eth0", dict(nr_mode=8, nr_ringid=1)),
    ("netmap:eth0*", "eth0", dict(nr_mode=3)),
    ("netmap:eth0-2/Tx", "eth0", dict(nr_mode=4, nr_ringid=2, nr_flags=0x4800)),
    ("netmap:eth0/rt", "eth0", dict(nr_mode=1, nr_flags=0x300)),
    ("netmap:eth0@2/R", "eth0", dict(nr_mode=1, nr_mem_id=2, nr_flags=0x2000)),
    ("vale0:0", "vale0:0", dict(nr_mode=1)),
    ("valeXXX:YYY-4", "valeXXX:YYY", dict(nr_mode=4, nr_ringid=4)),
    ("netmap:pipe{in-7", "pipe{in", dict(nr_mode=4, nr_ringid=7)),
    ("vale1:a@conf:rings=2,slots=512", "vale1:a",
     dict(nr_mode=1, nr_tx_rings=2, nr_rx_rings=2, nr_tx_slots=512, nr_rx_slots=512)),
]


@pytest.mark.parametrize("text,name,body", D7, ids=[t for t, _, _ in D7])
def test_register_from_port_name(text, name, body):
    req = rq.register(parse_portspec(text))
    assert req.body_bytes() == pack("nmreq_register", **body), text
    assert req.header_bytes()[8:72] == name.encode().ljust(64, b"\0"), f"{text}: nr_name"
    assert field(req.header_bytes(), "nmreq_header", "nr_options") == 0


def test_register_hints_extra_bufs_and_padding():
    s = spec("vale0:a", conf=Conf(1, 2, 3, 4, 5, 6), mem_id=3, flags=abi.NR_EXCLUSIVE)
    body = rq.register(s, extra_bufs=10).body_bytes()
    assert body == pack("nmreq_register", nr_mode=1, nr_mem_id=3, nr_flags=abi.NR_EXCLUSIVE,
                        nr_extra_bufs=10, nr_tx_rings=1, nr_rx_rings=2, nr_host_tx_rings=3,
                        nr_host_rx_rings=4, nr_tx_slots=5, nr_rx_slots=6)
    assert body[44:48] == b"\0" * 4  # implicit padding before nr_flags
    over = rq.register(s, mem_id=9, conf=Conf(tx_slots=8, rx_slots=8)).body_bytes()
    assert field(over, "nmreq_register", "nr_mem_id") == 9
    assert field(over, "nmreq_register", "nr_tx_slots") == 8
    assert field(over, "nmreq_register", "nr_tx_rings") == 0


@pytest.mark.parametrize("kw,match", [
    (dict(ringid=70000), r"nr_ringid=70000 does not fit; allowed 0..65535"),
    (dict(mem_id=-1), r"nr_mem_id=-1 does not fit"),
    (dict(conf=Conf(tx_rings=1 << 16)), r"nr_tx_rings=65536 does not fit"),
    (dict(mode=True), r"nr_mode=True does not fit"),
])
def test_register_field_ranges(kw, match):
    mode = kw.pop("mode", abi.NR_REG_ALL_NIC)
    with pytest.raises(InvalidRequestError, match=match):
        rq.register(spec("vale0:a", mode, **kw))


def test_register_needs_a_name():
    with pytest.raises(InvalidRequestError, match="nr_name is empty"):
        rq.register(spec(""))


def test_option_chain_extmem_then_offsets():
    ext = ExtMem("/x", if_num=1, if_size=2, ring_num=3, ring_size=4, buf_num=5, buf_size=6)
    s = spec("vale0:a", extmem=ext, offset=Offset(64, 8))
    usr = np.zeros(4096, np.uint8)
    req = rq.register(s, extmem=(addr(usr), usr.size))
    first, second = req.options
    hdr = req.header_bytes()
    assert field(hdr, "nmreq_header", "nr_options") == addr(first)
    raw1 = ctypes.string_at(addr(first), 96)
    raw2 = ctypes.string_at(field(raw1, "nmreq_option", "nro_next"), 56)
    assert field(raw2, "nmreq_option", "nro_next") == 0, "the chain ends at the second option"
    info = pack("nmreq_pools_info", nr_memsize=4096, nr_if_pool_objtotal=1, nr_if_pool_objsize=2,
                nr_ring_pool_objtotal=3, nr_ring_pool_objsize=4, nr_buf_pool_objtotal=5,
                nr_buf_pool_objsize=6)
    opt_hdr1 = pack("nmreq_option", nro_next=addr(second), nro_reqtype=1, nro_status=0,
                    nro_size=SIZES["option"]["NETMAP_REQ_OPT_EXTMEM"])
    assert raw1 == pack("nmreq_opt_extmem", nro_opt=opt_hdr1, nro_usrptr=addr(usr), nro_info=info)
    opt_hdr2 = pack("nmreq_option", nro_next=0, nro_reqtype=5, nro_status=0,
                    nro_size=SIZES["option"]["NETMAP_REQ_OPT_OFFSETS"])
    assert raw2 == pack("nmreq_opt_offsets", nro_opt=opt_hdr2, nro_max_offset=64,
                        nro_initial_offset=64, nro_offset_bits=8)
    assert req.option_status() == [(1, 0), (5, 0)]


def test_extmem_region_must_match_the_spec():
    with pytest.raises(InvalidRequestError, match="missing for @extmem"):
        rq.register(spec("vale0:a", extmem=ExtMem("/x")))
    with pytest.raises(InvalidRequestError, match="without @extmem"):
        rq.register(spec("vale0:a"), extmem=(4096, 4096))
    with pytest.raises(InvalidRequestError, match="buf_num=-1"):
        rq.extmem_option(4096, 4096, ExtMem("/x", buf_num=-1))


# --- the other requests -----------------------------------------------------------------------

def test_port_info_get_zeroes_the_hints():
    req = rq.port_info_get("", mem_id=1)
    assert req.body_bytes() == pack("nmreq_port_info_get", nr_mem_id=1)
    assert req.header_bytes()[8:72] == b"\0" * 64


def test_pools_info_get_body_is_zero():
    assert rq.pools_info_get("vale0:a").body_bytes() == bytes(64)


def test_vale_attach_embeds_the_register_body():
    body = rq.vale_attach("vale0:eth1", abi.NR_REG_NIC_SW, mem_id=4).body_bytes()
    reg = pack("nmreq_register", nr_mode=abi.NR_REG_NIC_SW, nr_mem_id=4)
    assert body == pack("nmreq_vale_attach", reg=reg, port_index=0)


def test_vale_list_newif_hdr_bodies():
    assert rq.vale_list("", 3, 7).body_bytes() == pack("nmreq_vale_list", nr_bridge_idx=3, nr_port_idx=7)
    assert rq.vale_newif("pv0", 2, 3, 64, 128, 1).body_bytes() == pack(
        "nmreq_vale_newif", nr_tx_rings=2, nr_rx_rings=3, nr_tx_slots=64, nr_rx_slots=128, nr_mem_id=1)
    assert rq.port_hdr_set("vale0:a", 12).body_bytes() == pack("nmreq_port_hdr", nr_hdr_len=12)
    assert rq.port_hdr_get("vale0:a").body_bytes() == bytes(8)
    assert rq.vale_detach("vale0:a").body_bytes() == bytes(8)
    delif = rq.vale_delif("pv0")
    assert delif.body is None and field(delif.header_bytes(), "nmreq_header", "nr_body") == 0


def test_unknown_option_type_is_sent_as_a_bare_header():
    opt = rq.option(1000)
    req = rq.build(abi.NETMAP_REQ_REGISTER, "vale0:a", np.zeros(1, abi.nmreq_register), [opt])
    assert field(req.header_bytes(), "nmreq_header", "nr_options") == addr(opt)
    assert opt.tobytes() == pack("nmreq_option", nro_reqtype=1000, nro_size=24)


# --- decoding ---------------------------------------------------------------------------------

def test_decode_register_reads_what_the_kernel_wrote():
    req = rq.register(spec("vale0:a"))
    kernel_writes(addr(req.body), pack(
        "nmreq_register", nr_offset=1024, nr_memsize=42369024, nr_tx_slots=1024, nr_rx_slots=1024,
        nr_tx_rings=1, nr_rx_rings=1, nr_mem_id=2, nr_mode=1, nr_extra_bufs=10))
    info = rq.decode_register(req)
    assert (info.name, info.offset, info.memsize, info.mem_id, info.tx_rings, info.rx_slots,
            info.host_tx_rings, info.extra_bufs, info.mode) == (
        "vale0:a", 1024, 42369024, 2, 1, 1024, 0, 10, 1)


def test_decode_other_bodies():
    req = rq.port_info_get("vale0:a")
    kernel_writes(addr(req.body), pack("nmreq_port_info_get", nr_memsize=42369024, nr_tx_slots=1024,
                                       nr_rx_slots=512, nr_tx_rings=1, nr_rx_rings=2, nr_mem_id=3))
    pi = rq.decode_port_info(req)
    assert (pi.memsize, pi.mem_id, pi.tx_slots, pi.rx_slots, pi.tx_rings, pi.rx_rings) == (
        42369024, 3, 1024, 512, 1, 2)
    req = rq.pools_info_get("vale0:a")
    kernel_writes(addr(req.body), pack(
        "nmreq_pools_info", nr_memsize=42369024, nr_mem_id=2, nr_if_pool_offset=0,
        nr_if_pool_objtotal=12, nr_if_pool_objsize=1024, nr_ring_pool_offset=12288,
        nr_ring_pool_objtotal=20, nr_ring_pool_objsize=20480, nr_buf_pool_offset=421888,
        nr_buf_pool_objtotal=20482, nr_buf_pool_objsize=2048))
    pools = rq.decode_pools_info(req)
    assert (pools.ring_pool_offset, pools.buf_pool_objtotal, pools.if_pool_objsize) == (12288, 20482, 1024)
    req = rq.vale_list("")
    kernel_writes(addr(req.body), pack("nmreq_vale_list", nr_bridge_idx=1, nr_port_idx=0))
    req.header["nr_name"] = b"vale1:b"  # the header comes back with the port's name
    assert rq.decode_vale_list(req) == ListEntry("vale1:b", 1, 0)
    req = rq.vale_attach("vale0:eth1")
    kernel_writes(addr(req.body) + 56, (5).to_bytes(4, "little"))
    assert rq.decode_port_index(req) == 5
    req = rq.vale_newif("pv0")
    kernel_writes(addr(req.body), pack("nmreq_vale_newif", nr_tx_slots=1024, nr_rx_slots=1024,
                                       nr_tx_rings=1, nr_rx_rings=1, nr_mem_id=4))
    assert rq.decode_newif(req) == NewIf(1, 1, 1024, 1024, 4)
    req = rq.port_hdr_get("vale0:a")
    kernel_writes(addr(req.body), pack("nmreq_port_hdr", nr_hdr_len=12))
    assert rq.decode_hdr_len(req) == 12


@pytest.mark.parametrize("code,cls", [(errno.ENXIO, NoSuchPortError), (errno.EBUSY, PortBusyError),
                                      (errno.EINVAL, InvalidRequestError), (errno.EEXIST, NetmapOSError)])
def test_errno_becomes_a_typed_error_naming_request_and_port(code, cls):
    err = rq.error_for(rq.vale_newif("pv0"), code)
    assert type(err) is cls and err.errno == code
    assert f"NETMAP_REQ_VALE_NEWIF on 'pv0' failed with {errno.errorcode[code]}" in str(err)


def test_option_status_is_reported():
    req = rq.register(spec("vale0:a", offset=Offset(0)))
    (opt,) = req.options
    kernel_writes(addr(opt) + 12, errno.EINVAL.to_bytes(4, "little"))
    err = rq.error_for(req, errno.EINVAL)
    assert isinstance(err, InvalidRequestError)
    assert "option NETMAP_REQ_OPT_OFFSETS: nro_status 22 (EINVAL" in str(err)


def test_unconsumed_option_is_eopnotsupp_even_after_success():
    req = rq.register(spec("vale0:a", offset=Offset(0)))
    rq.check_options(req)  # status 0: consumed
    kernel_writes(addr(req.options[0]) + 12, errno.EOPNOTSUPP.to_bytes(4, "little"))
    with pytest.raises(NotSupportedError, match="option NETMAP_REQ_OPT_OFFSETS: nro_status 95") as e:
        rq.check_options(req)
    assert e.value.errno == errno.EOPNOTSUPP


def test_unknown_option_type_named_by_number():
    opt = rq.option(1000)
    req = rq.build(abi.NETMAP_REQ_REGISTER, "vale0:a", np.zeros(1, abi.nmreq_register), [opt])
    opt["nro_status"] = errno.EOPNOTSUPP
    assert "option type 1000: nro_status 95" in str(rq.error_for(req, errno.EOPNOTSUPP))


# --- legacy NIOCREGIF -------------------------------------------------------------------------

def test_legacy_register_bytes():
    req = rq.legacy_register("vale0:a", mode=abi.NR_REG_ONE_NIC, ringid=3, flags=abi.NR_EXCLUSIVE,
                             mem_id=2, extra_bufs=20, conf=Conf(tx_slots=64, rx_slots=128))
    assert req.tobytes() == pack("nmreq", nr_name=b"vale0:a", nr_version=14,
                                 nr_flags=abi.NR_REG_ONE_NIC | abi.NR_EXCLUSIVE, nr_ringid=3,
                                 nr_arg2=2, nr_arg3=20, nr_tx_slots=64, nr_rx_slots=128)
    with pytest.raises(InvalidRequestError, match="allowed 1..15"):
        rq.legacy_register("vale0:abcdefghijk")
    with pytest.raises(InvalidRequestError, match="overlaps NR_REG_MASK"):
        rq.legacy_register("x", flags=3)


def test_legacy_decode():
    req = rq.legacy_register("vale0:a", extra_bufs=5)
    kernel_writes(addr(req), pack("nmreq", nr_name=b"vale0:a", nr_version=14, nr_offset=0,
                                  nr_memsize=42389504, nr_tx_slots=1024, nr_rx_slots=1024,
                                  nr_tx_rings=1, nr_rx_rings=1, nr_flags=1, nr_arg2=2, nr_arg3=5))
    info = rq.decode_legacy_register(req)
    assert ((info.mode, info.mem_id, info.extra_bufs, info.memsize, info.host_tx_rings)
            == (1, 2, 5, 42389504, 0))
