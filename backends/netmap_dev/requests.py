"""netmap's control requests (NIOCCTRL, API v14) as exact bytes, and their results decoded.

Pure: builds the ``nmreq_header`` + body + option chain the kernel reads through user pointers,
and turns what it writes back (or its errno) into values or typed errors. No system calls.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING

import numpy as np

from netmap_core import abi
from netmap_core.backend import RegisterInfo
from netmap_core.control import ListEntry, NewIf, PoolsInfo, PortInfo
from netmap_core.errors import InvalidRequestError, NetmapOSError, error_from_errno

if TYPE_CHECKING:
    from netmap_core.portspec import Conf, ExtMem, Offset, PortSpec

__all__ = [
    "Request", "build", "option", "register", "extmem_option", "offsets_option",
    "port_info_get", "pools_info_get", "vale_attach", "vale_detach", "vale_list", "vale_newif",
    "vale_delif", "port_hdr_set", "port_hdr_get", "error_for", "check_options",
    "decode_register", "decode_port_info", "decode_pools_info", "decode_newif",
    "decode_vale_list", "decode_port_index", "decode_hdr_len", "REQ_NAMES", "OPT_NAMES",
    "legacy_register", "decode_legacy_register",
]

REQ_NAMES = {getattr(abi, n): n for n in dir(abi) if n.startswith("NETMAP_REQ_")
             and not n.startswith("NETMAP_REQ_OPT_") and isinstance(getattr(abi, n), int)
             and n not in ("NETMAP_REQ_MAXSIZE", "NETMAP_REQ_IFNAMSIZ")}
OPT_NAMES = {getattr(abi, n): n for n in dir(abi) if n.startswith("NETMAP_REQ_OPT_")
             and n != "NETMAP_REQ_OPT_MAX"}


def _struct(dtype: np.dtype) -> np.ndarray:
    """One zeroed C struct in its own buffer (a 1-element array: stable address, writable)."""
    return np.zeros(1, dtype=dtype)


def _addr(arr: np.ndarray | None) -> int:
    return 0 if arr is None else int(arr.ctypes.data)


def _opt_header(opt: np.ndarray) -> np.ndarray:
    """The ``nmreq_option`` every option starts with (the option itself for a bare header)."""
    return opt if opt.dtype == abi.nmreq_option else opt["nro_opt"]


class Request:
    """One NIOCCTRL request: the header, its body and options, each at a fixed user address.

    The object owns every buffer the header points to, so it must stay alive until the ioctl
    returns; the kernel writes results into ``body`` and option headers in place and the
    header is copied back by the ioctl itself. Building one costs a few µs.
    """

    __slots__ = ("header", "body", "options")

    def __init__(self, header: np.ndarray, body: np.ndarray | None, options: tuple[np.ndarray, ...]):
        self.header = header
        self.body = body
        self.options = options

    @property
    def reqtype(self) -> int:
        return int(self.header["nr_reqtype"][0])

    @property
    def name(self) -> str:
        return bytes(self.header["nr_name"][0]).decode(errors="replace")

    @property
    def label(self) -> str:
        return REQ_NAMES.get(self.reqtype, f"request type {self.reqtype}")

    def header_bytes(self) -> bytes:
        return self.header.tobytes()

    def body_bytes(self) -> bytes:
        return b"" if self.body is None else self.body.tobytes()

    def option_status(self) -> list[tuple[int, int]]:
        """(nro_reqtype, nro_status) of every option, in chain order."""
        return [(int(h["nro_reqtype"][0]), int(h["nro_status"][0]))
                for h in map(_opt_header, self.options)]

    def __repr__(self) -> str:
        opts = ", ".join(OPT_NAMES.get(t, str(t)) for t, _ in self.option_status())
        return f"<Request {self.label} {self.name!r} options=[{opts}]>"


# --- field checks -----------------------------------------------------------------------------

def _put(struct: np.ndarray, field: str, value: int, what: str) -> None:
    """Store an integer field after checking it fits its C type (typed error naming it)."""
    kind = struct.dtype[field]
    info = np.iinfo(kind)
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
            or not info.min <= value <= info.max):
        raise InvalidRequestError(
            _errno.EINVAL, f"{what}: {field}={value!r} does not fit; allowed {info.min}..{info.max}")
    struct[field] = value


def _encode_name(name: str, what: str) -> bytes:
    if not isinstance(name, str):
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_name={name!r} must be a str")
    raw = name.encode()
    limit = abi.NETMAP_REQ_IFNAMSIZ - 1
    if b"\0" in raw:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_name={name!r} contains a NUL byte")
    if len(raw) > limit:
        raise InvalidRequestError(
            _errno.EINVAL, f"{what}: nr_name={name!r} is {len(raw)} bytes; allowed at most {limit} "
            f"(NETMAP_REQ_IFNAMSIZ {abi.NETMAP_REQ_IFNAMSIZ} with the terminating NUL)")
    return raw


# --- building ---------------------------------------------------------------------------------

def option(reqtype: int) -> np.ndarray:
    """A zeroed option of ``reqtype``'s struct (a bare header for unknown types) whose header
    says its type and its own size."""
    dtype = abi.NMREQ_OPT_DTYPE.get(reqtype, abi.nmreq_option)
    opt = _struct(dtype)
    hdr = _opt_header(opt)
    hdr["nro_reqtype"] = reqtype
    hdr["nro_size"] = dtype.itemsize
    return opt


def build(reqtype: int, name: str = "", body: np.ndarray | None = None,
          options: tuple[np.ndarray, ...] | list[np.ndarray] = (), *,
          version: int = abi.NETMAP_API, reserved: int = 0, check: bool = True) -> Request:
    """The header for ``reqtype`` on ``name`` pointing at ``body`` and the ``options`` chain.

    ``check`` refuses a body whose size is not the one the kernel copies for this type (spec
    C3) and an oversized request; pass False only to provoke the kernel's own checks.
    """
    label = REQ_NAMES.get(reqtype, f"request type {reqtype}")
    raw = _encode_name(name, label)
    options = tuple(options)
    if check:
        want = abi.NMREQ_BODY_SIZE.get(reqtype)
        if want is None:
            raise InvalidRequestError(_errno.EINVAL, f"nr_reqtype={reqtype} is not a request type; "
                                      f"allowed: {sorted(abi.NMREQ_BODY_SIZE)}")
        got = 0 if body is None else body.dtype.itemsize
        if got != want:
            raise InvalidRequestError(_errno.EINVAL, f"{label}: body of {got} bytes; the kernel "
                                      f"copies exactly {want} for this type")
        total = got + sum(o.dtype.itemsize for o in options)
        if total > abi.NETMAP_REQ_MAXSIZE:
            raise InvalidRequestError(_errno.EMSGSIZE, f"{label}: body and options take {total} "
                                      f"bytes; allowed at most NETMAP_REQ_MAXSIZE {abi.NETMAP_REQ_MAXSIZE}")
    hdr = _struct(abi.nmreq_header)
    _put(hdr, "nr_version", version, label)
    _put(hdr, "nr_reqtype", reqtype, label)
    _put(hdr, "nr_reserved", reserved, label)
    hdr["nr_name"] = raw
    for opt, nxt in zip(options, options[1:] + (None,)):
        _opt_header(opt)["nro_next"] = _addr(nxt)
    hdr["nr_options"] = _addr(options[0]) if options else 0
    hdr["nr_body"] = _addr(body)
    return Request(hdr, body, options)


def extmem_option(usrptr: int, length: int, pools: ExtMem | None = None) -> np.ndarray:
    """EXTMEM: the ``length`` bytes at ``usrptr`` become the allocator; ``pools`` (an
    ``ExtMem``) gives if/ring/buf counts and sizes, 0 = the kernel's priv_* default."""
    opt = option(abi.NETMAP_REQ_OPT_EXTMEM)
    what = "NETMAP_REQ_OPT_EXTMEM"
    _put(opt, "nro_usrptr", usrptr, what)
    info = opt["nro_info"]
    if not 0 < length < 1 << 64:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_memsize={length}; allowed 1..2^64-1")
    info["nr_memsize"] = length
    if pools is not None:
        for key, field in (("if_num", "nr_if_pool_objtotal"), ("if_size", "nr_if_pool_objsize"),
                           ("ring_num", "nr_ring_pool_objtotal"), ("ring_size", "nr_ring_pool_objsize"),
                           ("buf_num", "nr_buf_pool_objtotal"), ("buf_size", "nr_buf_pool_objsize")):
            value = getattr(pools, key)
            if not 0 <= value <= 0xFFFFFFFF:
                raise InvalidRequestError(_errno.EINVAL, f"{what}: {key}={value}; allowed 0..4294967295")
            info[field] = value
    return opt


def offsets_option(offset: Offset) -> np.ndarray:
    """OFFSETS from an ``Offset``: initial = max offset (as libnetmap's ``@offset`` does)."""
    opt = option(abi.NETMAP_REQ_OPT_OFFSETS)
    what = "NETMAP_REQ_OPT_OFFSETS"
    _put(opt, "nro_initial_offset", offset.initial, what)
    _put(opt, "nro_max_offset", offset.max_offset, what)
    _put(opt, "nro_offset_bits", offset.bits, what)
    return opt


_CONF_FIELDS = (("tx_rings", "nr_tx_rings"), ("rx_rings", "nr_rx_rings"),
                ("host_tx_rings", "nr_host_tx_rings"), ("host_rx_rings", "nr_host_rx_rings"),
                ("tx_slots", "nr_tx_slots"), ("rx_slots", "nr_rx_slots"))


def _register_body(body: np.ndarray, what: str, *, mode: int, ringid: int, flags: int,
                   mem_id: int, extra_bufs: int, conf: Conf | None) -> None:
    _put(body, "nr_mode", mode, what)
    _put(body, "nr_ringid", ringid, what)
    _put(body, "nr_flags", flags, what)
    _put(body, "nr_mem_id", mem_id, what)
    _put(body, "nr_extra_bufs", extra_bufs, what)
    if conf is not None:
        for key, field in _CONF_FIELDS:
            _put(body, field, getattr(conf, key), what)


def register(spec: PortSpec, *, mem_id: int | None = None, extra_bufs: int = 0, conf: Conf | None = None,
             extmem: tuple[int, int] | None = None) -> Request:
    """REGISTER for a parsed port name.

    ``mem_id`` overrides ``spec.mem_id`` (after ``@share`` was resolved); ``conf`` overrides
    ``spec.conf``; ``extmem`` is the (address, length) of the mapped ``@extmem`` file, required
    exactly when the spec has one. ``@offset`` adds the OFFSETS option.
    """
    what = f"NETMAP_REQ_REGISTER of {spec.text!r}"
    if not spec.name:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_name is empty; a port name is required")
    if (extmem is None) != (spec.extmem is None):
        raise InvalidRequestError(_errno.EINVAL, f"{what}: extmem region given "
                                  f"{'without' if spec.extmem is None else 'missing for'} @extmem")
    body = _struct(abi.nmreq_register)
    _register_body(body, what, mode=spec.mode, ringid=spec.ringid, flags=spec.flags,
                   mem_id=spec.mem_id if mem_id is None else mem_id, extra_bufs=extra_bufs,
                   conf=spec.conf if conf is None else conf)
    opts = []
    if extmem is not None:
        opts.append(extmem_option(extmem[0], extmem[1], spec.extmem))
    if spec.offset is not None:
        opts.append(offsets_option(spec.offset))
    return build(abi.NETMAP_REQ_REGISTER, spec.name, body, opts)


def port_info_get(name: str = "", mem_id: int = 0) -> Request:
    """PORT_INFO_GET. The body's counts are creation hints to the kernel (spec C5), so only
    ``nr_mem_id`` is set (selects the allocator when ``name`` is empty)."""
    body = _struct(abi.nmreq_port_info_get)
    _put(body, "nr_mem_id", mem_id, "NETMAP_REQ_PORT_INFO_GET")
    return build(abi.NETMAP_REQ_PORT_INFO_GET, name, body)


def pools_info_get(name: str) -> Request:
    return build(abi.NETMAP_REQ_POOLS_INFO_GET, name, _struct(abi.nmreq_pools_info))


def vale_attach(name: str, mode: int = abi.NR_REG_ALL_NIC, mem_id: int = 0) -> Request:
    """VALE_ATTACH ``valeX:ifname``; ``mode`` NR_REG_NIC_SW attaches the host stack too."""
    body = _struct(abi.nmreq_vale_attach)
    reg = body["reg"]
    _put(reg, "nr_mode", mode, "NETMAP_REQ_VALE_ATTACH")
    _put(reg, "nr_mem_id", mem_id, "NETMAP_REQ_VALE_ATTACH")
    return build(abi.NETMAP_REQ_VALE_ATTACH, name, body)


def vale_detach(name: str) -> Request:
    return build(abi.NETMAP_REQ_VALE_DETACH, name, _struct(abi.nmreq_vale_detach))


def vale_list(name: str = "", bridge_idx: int = 0, port_idx: int = 0) -> Request:
    """VALE_LIST: with an empty name, the first port at or after (bridge_idx, port_idx)."""
    body = _struct(abi.nmreq_vale_list)
    _put(body, "nr_bridge_idx", bridge_idx, "NETMAP_REQ_VALE_LIST")
    _put(body, "nr_port_idx", port_idx, "NETMAP_REQ_VALE_LIST")
    return build(abi.NETMAP_REQ_VALE_LIST, name, body)


def vale_newif(name: str, tx_rings: int = 0, rx_rings: int = 0, tx_slots: int = 0,
               rx_slots: int = 0, mem_id: int = 0) -> Request:
    body = _struct(abi.nmreq_vale_newif)
    for field, value in (("nr_tx_rings", tx_rings), ("nr_rx_rings", rx_rings),
                         ("nr_tx_slots", tx_slots), ("nr_rx_slots", rx_slots), ("nr_mem_id", mem_id)):
        _put(body, field, value, "NETMAP_REQ_VALE_NEWIF")
    return build(abi.NETMAP_REQ_VALE_NEWIF, name, body)


def vale_delif(name: str) -> Request:
    """VALE_DELIF carries no body (nr_body must be NULL)."""
    return build(abi.NETMAP_REQ_VALE_DELIF, name, None)


def port_hdr_set(name: str, hdr_len: int) -> Request:
    body = _struct(abi.nmreq_port_hdr)
    _put(body, "nr_hdr_len", hdr_len, "NETMAP_REQ_PORT_HDR_SET")
    return build(abi.NETMAP_REQ_PORT_HDR_SET, name, body)


def port_hdr_get(name: str) -> Request:
    return build(abi.NETMAP_REQ_PORT_HDR_GET, name, _struct(abi.nmreq_port_hdr))


# --- results ----------------------------------------------------------------------------------

def _errname(code: int) -> str:
    return _errno.errorcode.get(code, str(code))


def _option_report(req: Request) -> str:
    parts = [f"option {OPT_NAMES.get(t, f'type {t}')}: nro_status {s} ({_errname(s)}, {os.strerror(s)})"
             for t, s in req.option_status() if s]
    return "; ".join(parts)


def error_for(req: Request, code: int) -> NetmapOSError:
    """The typed error for ``req`` failing with ``code``, naming the request, the port and
    every option the kernel flagged (``nro_status``, spec C4)."""
    detail = f"{req.label} on {req.name!r} failed with {_errname(code)}"
    opts = _option_report(req)
    if opts:
        detail += f"; {opts}"
    return error_from_errno(code, detail)


def check_options(req: Request) -> None:
    """After a successful call: every option must have been consumed (status 0). The kernel
    fails REGISTER itself with EOPNOTSUPP when one was not (spec C4); this catches the rest."""
    bad = [status for _, status in req.option_status() if status]
    if bad:
        raise error_for(req, bad[0])


def _get(struct: np.ndarray, field: str) -> int:
    return int(struct[field][0])


def _body(req: Request) -> np.ndarray:
    """The body a decoder reads: every request whose results are decoded has one."""
    assert req.body is not None, f"{req.label} has no body to decode"
    return req.body


def decode_register(req: Request) -> RegisterInfo:
    """REGISTER's results; call only after the ioctl succeeded (the body is written back only
    on success, spec C3)."""
    b = _body(req)
    return RegisterInfo(
        name=req.name, mode=_get(b, "nr_mode"), ringid=_get(b, "nr_ringid"),
        flags=_get(b, "nr_flags"), mem_id=_get(b, "nr_mem_id"), memsize=_get(b, "nr_memsize"),
        offset=_get(b, "nr_offset"), tx_rings=_get(b, "nr_tx_rings"), rx_rings=_get(b, "nr_rx_rings"),
        tx_slots=_get(b, "nr_tx_slots"), rx_slots=_get(b, "nr_rx_slots"),
        host_tx_rings=_get(b, "nr_host_tx_rings"), host_rx_rings=_get(b, "nr_host_rx_rings"),
        extra_bufs=_get(b, "nr_extra_bufs"))


def decode_port_info(req: Request) -> PortInfo:
    b = _body(req)
    return PortInfo(
        memsize=_get(b, "nr_memsize"), mem_id=_get(b, "nr_mem_id"),
        tx_rings=_get(b, "nr_tx_rings"), rx_rings=_get(b, "nr_rx_rings"),
        tx_slots=_get(b, "nr_tx_slots"), rx_slots=_get(b, "nr_rx_slots"),
        host_tx_rings=_get(b, "nr_host_tx_rings"), host_rx_rings=_get(b, "nr_host_rx_rings"))


def decode_pools_info(req: Request) -> PoolsInfo:
    b = _body(req)
    return PoolsInfo(**{f.removeprefix("nr_"): _get(b, f) for f in abi.nmreq_pools_info.names or ()
                        if f != "pad1"})


def decode_newif(req: Request) -> NewIf:
    b = _body(req)
    return NewIf(tx_rings=_get(b, "nr_tx_rings"), rx_rings=_get(b, "nr_rx_rings"),
                 tx_slots=_get(b, "nr_tx_slots"), rx_slots=_get(b, "nr_rx_slots"),
                 mem_id=_get(b, "nr_mem_id"))


def decode_vale_list(req: Request) -> ListEntry:
    """The port found: its name comes back in the header's nr_name."""
    return ListEntry(name=req.name, bridge_idx=_get(_body(req), "nr_bridge_idx"),
                     port_idx=_get(_body(req), "nr_port_idx"))


def decode_port_index(req: Request) -> int:
    """VALE_ATTACH / VALE_DETACH: the switch port index."""
    return _get(_body(req), "port_index")


def decode_hdr_len(req: Request) -> int:
    return _get(_body(req), "nr_hdr_len")


# --- legacy API (NIOCREGIF) -------------------------------------------------------------------

def legacy_register(name: str, *, mode: int = abi.NR_REG_ALL_NIC, ringid: int = 0, flags: int = 0,
                    mem_id: int = 0, extra_bufs: int = 0, conf: Conf | None = None) -> np.ndarray:
    """A ``struct nmreq`` for NIOCREGIF (spec C9): mode in ``nr_flags & NR_REG_MASK`` with the
    NR_* flags above it, ring number in ``nr_ringid``, mem_id in ``nr_arg2``, extra buffers in
    ``nr_arg3``. Host ring counts cannot be asked for in this API."""
    what = "NIOCREGIF"
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_name={name!r}; a port name is required")
    raw = name.encode()
    if b"\0" in raw or len(raw) > abi.IFNAMSIZ - 1:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_name={name!r} is {len(raw)} bytes; "
                                  f"allowed 1..{abi.IFNAMSIZ - 1} without NUL (IFNAMSIZ {abi.IFNAMSIZ})")
    if not 0 < mode <= abi.NR_REG_MASK:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_mode={mode}; allowed 1..{abi.NR_REG_MASK}")
    if flags & abi.NR_REG_MASK:
        raise InvalidRequestError(_errno.EINVAL, f"{what}: nr_flags={flags:#x} overlaps NR_REG_MASK")
    if not 0 <= ringid <= abi.NETMAP_RING_MASK:
        raise InvalidRequestError(_errno.EINVAL,
                                  f"{what}: nr_ringid={ringid}; allowed 0..{abi.NETMAP_RING_MASK}")
    req = _struct(abi.nmreq)
    req["nr_name"] = raw
    req["nr_version"] = abi.NETMAP_API
    _put(req, "nr_flags", mode | flags, what)
    req["nr_ringid"] = ringid
    _put(req, "nr_arg2", mem_id, what)
    _put(req, "nr_arg3", extra_bufs, what)
    if conf is not None:
        for key in ("tx_rings", "rx_rings", "tx_slots", "rx_slots"):
            _put(req, f"nr_{key}", getattr(conf, key), what)
    return req


def decode_legacy_register(req: np.ndarray) -> RegisterInfo:
    """NIOCREGIF's results (copied back only on success)."""
    flags = _get(req, "nr_flags")
    return RegisterInfo(
        name=bytes(req["nr_name"][0]).decode(errors="replace"), mode=flags & abi.NR_REG_MASK,
        ringid=_get(req, "nr_ringid") & abi.NETMAP_RING_MASK, flags=flags & ~abi.NR_REG_MASK,
        mem_id=_get(req, "nr_arg2"), memsize=_get(req, "nr_memsize"), offset=_get(req, "nr_offset"),
        tx_rings=_get(req, "nr_tx_rings"), rx_rings=_get(req, "nr_rx_rings"),
        tx_slots=_get(req, "nr_tx_slots"), rx_slots=_get(req, "nr_rx_slots"),
        host_tx_rings=0, host_rx_rings=0, extra_bufs=_get(req, "nr_arg3"))
