"""netmap port names (libnetmap's ``nmport`` grammar, spec D1-D9) parsed into a frozen PortSpec.

One pass over the text, no I/O: every rejection is a PortSpecError pointing at the offending
character. ``str(spec)`` renders the canonical form, which parses back to an equal spec.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import abi
from .errors import PortSpecError

__all__ = ["PortSpec", "Conf", "ExtMem", "Offset", "parse_portspec", "kernel_spec", "parse_legacy",
           "NETMAP_RING_MASK"]

NETMAP_RING_MASK = 0x0FFF        # ring numbers after '-' / '^' must be < this (libnetmap)
_NAME_MAX = abi.NETMAP_REQ_IFNAMSIZ - 1   # nr_name[64] keeps room for the NUL
_LEGACY_NAME_MAX = abi.IFNAMSIZ - 1       # struct nmreq.nr_name[16] of the legacy API
_U16 = 0xFFFF
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF

_FLAG_LETTERS = {
    "x": abi.NR_EXCLUSIVE,
    "z": abi.NR_ZCOPY_MON,
    "t": abi.NR_MONITOR_TX,
    "r": abi.NR_MONITOR_RX,
    "R": abi.NR_RX_RINGS_ONLY,
    "T": abi.NR_TX_RINGS_ONLY,
}
_FLAG_BITS = 0
for _bit in _FLAG_LETTERS.values():
    _FLAG_BITS |= _bit
_ALLOWED_FLAGS = " ".join(_FLAG_LETTERS)
_MODE_CHARS = "-*^"
_SEPARATORS = "-*^/@"            # where the port name ends (nmreq_header_decode)
_LEGACY_SEPARATORS = "-*^{}/@"   # nm_parse(): '{' and '}' are modes there
_DIGITS = frozenset("0123456789")
_IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# The kernel routes any name whose first three characters are "val" to its VALE code and takes
# everything before the first ':' as the switch name (spec E1).
_KERNEL_VALE = re.compile(r"(val[A-Za-z0-9_]*):", re.ASCII)

_MODE_NAMES = {
    abi.NR_REG_ALL_NIC: "ALL_NIC", abi.NR_REG_SW: "SW", abi.NR_REG_NIC_SW: "NIC_SW",
    abi.NR_REG_ONE_NIC: "ONE_NIC", abi.NR_REG_ONE_SW: "ONE_SW",
}


# --- values ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conf:
    """``@conf:`` ring and slot hints for nmreq_register (0 = the port's default).

    Honoured by the kernel only when this open creates the port (or it has no other users).
    """

    tx_rings: int = 0
    rx_rings: int = 0
    host_tx_rings: int = 0
    host_rx_rings: int = 0
    tx_slots: int = 0
    rx_slots: int = 0

    @property
    def is_default(self) -> bool:
        return self == _DEFAULT_CONF


_DEFAULT_CONF = Conf()


@dataclass(frozen=True)
class ExtMem:
    """``@extmem:`` a file to mmap and pass as the EXTMEM option; pool sizes 0 = kernel default."""

    file: str
    if_num: int = 0
    if_size: int = 0
    ring_num: int = 0
    ring_size: int = 0
    buf_num: int = 0
    buf_size: int = 0


@dataclass(frozen=True)
class Offset:
    """``@offset``: the OFFSETS option with ``initial`` = max offset, ``bits`` 0 = whole ptr."""

    initial: int
    bits: int = 0

    @property
    def max_offset(self) -> int:
        """libnetmap asks for max = initial."""
        return self.initial


@dataclass(frozen=True)
class PortSpec:
    """A parsed port name: what one REGISTER request asks for.

    ``name`` is exactly the kernel's ``nr_name``; ``mode``/``ringid``/``flags``/``mem_id`` go to
    nmreq_register; ``conf``/``share``/``extmem``/``offset`` are the ``@`` options. ``switch``,
    ``port``, ``pipe``, ``pipe_id`` and ``parent`` are derived from ``name`` (how the kernel will
    read it) and are filled in automatically.
    """

    text: str
    name: str
    mode: int
    ringid: int = 0
    flags: int = 0
    mem_id: int = 0
    conf: Conf = _DEFAULT_CONF
    share: str | None = None          # port whose allocator to use, canonical spelling
    extmem: ExtMem | None = None
    offset: Offset | None = None
    switch: str | None = None
    port: str = ""
    pipe: str | None = None
    pipe_id: str | None = None
    parent: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"PortSpec.name must be str, got {type(self.name).__name__}")
        for field_name, derived in _derive(self.name).items():
            given = getattr(self, field_name)
            if given != _DERIVED_DEFAULTS[field_name] and given != derived:
                raise ValueError(f"PortSpec.{field_name}={given!r} contradicts name "
                                 f"{self.name!r} (which means {derived!r})")
            object.__setattr__(self, field_name, derived)
        if self.share is not None:
            object.__setattr__(self, "share", _render_name(_share_kernel_name(self.share)))

    @property
    def is_vale(self) -> bool:
        """The kernel treats the name as a VALE port (``valeSW:PORT``, spec E1)."""
        return self.switch is not None

    @property
    def is_pipe(self) -> bool:
        """The name is one end of a netmap pipe (``PARENT{ID`` or ``PARENT}ID``)."""
        return self.pipe is not None

    @property
    def share_name(self) -> str | None:
        """The kernel name of the ``@share`` port (what PORT_INFO_GET must be asked about)."""
        return None if self.share is None else _share_kernel_name(self.share)

    @property
    def is_monitor(self) -> bool:
        """The flags ask for a (copy or zero-copy) monitor of the port."""
        return bool(self.flags & (abi.NR_MONITOR_TX | abi.NR_MONITOR_RX | abi.NR_ZCOPY_MON))

    @property
    def mode_name(self) -> str:
        return _MODE_NAMES.get(self.mode, str(self.mode))

    def describe(self) -> str:
        """The canonical port name: parses back to a spec equal to this one (except ``text``).

        Raises ValueError for a hand-built spec the grammar cannot express (e.g. NR_REG_NULL).
        """
        return _render(self)

    def __str__(self) -> str:
        try:
            return _render(self)
        except ValueError:
            return repr(self)


_DERIVED_DEFAULTS = {"switch": None, "port": "", "pipe": None, "pipe_id": None, "parent": ""}


def _derive(name: str) -> dict:
    """switch/port/pipe/pipe_id/parent of a kernel name (pipe suffix first, then VALE prefix)."""
    pipe = pipe_id = None
    parent = name
    for i, c in enumerate(name):
        if c in "{}":
            pipe, pipe_id, parent = c, name[i + 1:], name[:i]
            break
    switch = None
    port = parent
    m = _KERNEL_VALE.match(parent)
    if m:
        switch, port = m.group(1), parent[m.end():]
    return {"switch": switch, "port": port, "pipe": pipe, "pipe_id": pipe_id, "parent": parent}


# --- parser ------------------------------------------------------------------------------------

class _Parser:
    """Cursor over one port name; ``fail`` raises with the offending position."""

    def __init__(self, text: str, legacy: bool) -> None:
        self.text = text
        self.n = len(text)
        self.legacy = legacy

    def fail(self, pos: int, reason: str) -> PortSpecError:
        raise PortSpecError(self.text, pos, reason)

    # characters that no part of a port name may contain
    def check_characters(self) -> None:
        for i, c in enumerate(self.text):
            o = ord(c)
            if o < 0x20 or 0x7F <= o <= 0x9F:
                self.fail(i, f"control character U+{o:04X} not allowed in a port name")
            if 0xD800 <= o <= 0xDFFF:
                self.fail(i, f"lone surrogate U+{o:04X} cannot be passed to the kernel")

    def digits_end(self, pos: int, end: int | None = None) -> int:
        end = self.n if end is None else end
        while pos < end and self.text[pos] in _DIGITS:
            pos += 1
        return pos

    def number(self, start: int, end: int, limit: int, what: str, low: int = 0) -> int:
        """The decimal number text[start:end] (all ASCII digits), checked against [low, limit]."""
        digits = self.text[start:end]
        # int() of thousands of digits is slow and limited: anything this long is out of range
        value = int(digits) if len(digits) <= 25 else limit + 1
        if value < low or value > limit:
            shown = digits if len(digits) <= 25 else digits[:20] + "..."
            if limit == NETMAP_RING_MASK - 1:
                allowed = f"[0, {NETMAP_RING_MASK})"
            elif low == 1 and value == 0:
                self.fail(start, f"{what} must be > 0 (leave it out to let the kernel choose)")
            else:
                allowed = f"[{low}, {limit}]"
            self.fail(start, f"{what} {shown} out of range {allowed}")
        return value

    # --- the name ------------------------------------------------------------------------------

    def header(self, start: int, end: int, what: str = "port name") -> tuple[str, int]:
        """Parse ``netmap:NAME`` / ``valeSW:PORT`` in text[start:end]; return (kernel name, end
        of the name). The name stops at the first separator (``- * ^ / @``)."""
        text = self.text
        seg = text[start:end]
        if seg.startswith("netmap"):
            if start + 6 >= end or text[start + 6] != ":":
                self.fail(start + 6, "prefix unknown or missing: expected ':' right after "
                          "'netmap' (no identifier is allowed between 'netmap' and ':')")
            name_start = port_start = start + 7
            vale = False
        elif seg.startswith(abi.NM_BDG_NAME):
            colon = text.find(":", start + 4, end)
            if colon < 0:
                self.fail(end, f"missing ':' after VALE switch name {seg!r} "
                          "(expected valeSW:PORT)")
            for i in range(start + 4, colon):
                if text[i] not in _IDENT_CHARS:
                    self.fail(i, f"VALE switch name {text[start:colon]!r} may only contain "
                              "letters, digits and '_' after 'vale'")
            name_start, port_start = start, colon + 1
            vale = True
        else:
            self.fail(start, _prefix_hint(seg))
        seps = _LEGACY_SEPARATORS if self.legacy else _SEPARATORS
        scan = port_start
        while scan < end and text[scan] not in seps:
            scan += 1
        if scan == port_start:
            kind = "VALE port name" if vale else what
            self.fail(port_start, f"{kind} is empty")
        for i in range(port_start, scan):
            if text[i].isspace():
                self.fail(i, f"whitespace not allowed in a {what}")
        if self.legacy:
            if vale:
                for i in range(port_start, scan):
                    if text[i] not in _IDENT_CHARS:
                        self.fail(i, "VALE port name may only contain letters, digits and '_' "
                                  "in an nm_open() name")
            limit = _LEGACY_NAME_MAX
        else:
            self.pipe_suffix(port_start, scan)
            limit = _NAME_MAX
        self.check_length(name_start, scan, limit)
        return text[name_start:scan], scan

    def pipe_suffix(self, port_start: int, scan: int) -> None:
        """``{ID`` / ``}ID`` inside the name: ID must be a non-empty identifier."""
        text = self.text
        for p in range(port_start, scan):
            if text[p] in "{}":
                break
        else:
            return
        end_kind = "master" if text[p] == "{" else "slave"
        if p == port_start:
            self.fail(p, f"port name missing before pipe {end_kind} '{text[p]}'")
        if p + 1 == scan:
            self.fail(p + 1, f"pipe id required after '{text[p]}' (letters, digits, '_')")
        for i in range(p + 1, scan):
            if text[i] not in _IDENT_CHARS:
                self.fail(i, f"pipe id {text[p + 1:scan]!r} may only contain letters, digits "
                          "and '_'")

    def check_length(self, start: int, end: int, limit: int) -> None:
        size = 0
        for i in range(start, end):
            size += len(self.text[i].encode("utf-8"))
            if size > limit:
                total = len(self.text[start:end].encode("utf-8"))
                field = "struct nmreq nr_name[16]" if self.legacy else "nr_name[64]"
                self.fail(i, f"name is {total} bytes long; at most {limit} fit in the "
                          f"kernel's {field}")

    # --- mode, flags, mem id -------------------------------------------------------------------

    def ring_number(self, pos: int, after: str) -> tuple[int, int]:
        end = self.digits_end(pos)
        if end == pos:
            self.fail(pos, f"ring number required after '{after}'")
        return self.number(pos, end, NETMAP_RING_MASK - 1, "ring number"), end

    def register(self, pos: int) -> dict:
        """The suffix after the name up to the options: mode, one flag group, ``@N`` mem ids."""
        text, n = self.text, self.n
        out: dict[str, Any] = {"mode": abi.NR_REG_ALL_NIC, "ringid": 0, "flags": 0, "mem_id": 0}
        mode_char = None
        pipe_name = None
        if pos < n and text[pos] in (_MODE_CHARS + ("{}" if self.legacy else "")):
            mode_char = c = text[pos]
            pos += 1
            if c == "*":
                out["mode"] = abi.NR_REG_NIC_SW
            elif c == "-":
                out["mode"] = abi.NR_REG_ONE_NIC
                out["ringid"], pos = self.ring_number(pos, "-")
            elif c == "^":
                out["mode"] = abi.NR_REG_SW
                if not self.legacy and pos < n and text[pos] in _DIGITS:
                    out["mode"] = abi.NR_REG_ONE_SW
                    out["ringid"], pos = self.ring_number(pos, "^")
            else:  # legacy pipe modes {N / }N: the kernel renames the port NAME{N / NAME}N
                end = self.digits_end(pos)
                if end == pos:
                    self.fail(pos, f"pipe number required after '{c}'")
                num = self.number(pos, end, NETMAP_RING_MASK - 1, "pipe number")
                pipe_name = f"{c}{num}"
                pos = end
        flags_seen = False
        mem_pos = -1
        last = f"mode '{mode_char}'" if mode_char else "the port name"
        while pos < n:
            c = text[pos]
            if c == "/":
                if flags_seen:
                    self.fail(pos, "only one '/' flag group allowed")
                flags_seen = True
                pos += 1
                start = pos
                while pos < n and text[pos] != "@":
                    f = text[pos]
                    if f in _FLAG_LETTERS:
                        out["flags"] |= _FLAG_LETTERS[f]
                    elif f == "/":
                        self.fail(pos, "only one '/' flag group allowed")
                    elif f in _MODE_CHARS:
                        self.fail(pos, f"mode '{f}' must come right after the port name, "
                                  "before the flags")
                    else:
                        self.fail(pos, f"flag {f!r} unknown; allowed: {_ALLOWED_FLAGS}")
                    pos += 1
                if pos == start:
                    self.fail(pos, f"flag letter required after '/'; allowed: {_ALLOWED_FLAGS}")
                last = "the flags"
            elif c == "@":
                if pos + 1 == n:
                    self.fail(pos + 1, "mem id or option name required after '@'")
                if text[pos + 1] not in _DIGITS:
                    if self.legacy:
                        self.fail(pos + 1, "mem id (a decimal number > 0) required after '@'; "
                                  "nm_open() names take no options")
                    break  # the option list starts here
                end = self.digits_end(pos + 1)
                mem = self.number(pos + 1, end, _U16, "mem id", low=1)
                if out["mem_id"]:
                    if self.legacy:
                        self.fail(pos, "mem id given twice")
                    if mem != out["mem_id"]:
                        self.fail(pos + 1, f"mem id @{mem} conflicts with @{out['mem_id']} "
                                  f"given at position {mem_pos}")
                out["mem_id"], mem_pos = mem, pos
                pos = end
                last = f"mem id @{mem}"
            elif c in _MODE_CHARS or (self.legacy and c in "{}"):
                if mode_char is not None:
                    self.fail(pos, f"at most one mode (-N * ^ ^N) may be given; "
                              f"'{mode_char}' came first")
                self.fail(pos, f"mode '{c}' must come right after the port name")
            else:
                self.fail(pos, f"unexpected {c!r} after {last}; expected '/' flags, '@' "
                          "mem id or option, or the end")
        out["pos"] = pos
        out["pipe_name"] = pipe_name
        return out

    # --- options -------------------------------------------------------------------------------

    def options(self, pos: int) -> dict:
        """``@name``, ``@name=value`` and ``@name:key=value,...`` up to the end of the text."""
        text, n = self.text, self.n
        seen: dict[str, int] = {}
        out: dict = {}
        while pos < n:
            ostart = pos + 1
            oend = text.find("@", ostart)
            if oend < 0:
                oend = n
            if oend == ostart:
                self.fail(ostart, "empty option after '@'")
            body = text[ostart:oend]
            if all(c in _DIGITS for c in body):
                self.fail(ostart, f"mem id @{body} must come before the options")
            d = ostart
            while d < oend and text[d] not in ":=":
                d += 1
            oname = text[ostart:d]
            if not oname:
                self.fail(ostart, f"option name missing before '{text[d]}'")
            if oname not in _OPTIONS:
                self.fail(ostart, f"unknown option {oname!r}; known options: "
                          f"{', '.join(sorted(_OPTIONS))}")
            if oname in seen:
                self.fail(ostart, f"option {oname!r} given twice (first at position "
                          f"{seen[oname]}); put all its keys in one @{oname}:")
            seen[oname] = ostart - 1
            opt = _OPTIONS[oname]
            if d == oend:
                self.fail(d, f"option {oname!r} needs a value: {opt.usage}")
            if text[d] == "=":
                if opt.default_key is None:
                    self.fail(d, f"option {oname!r} has no default key; write {opt.usage}")
                if d + 1 == oend:
                    self.fail(d + 1, f"value required after '@{oname}='")
                keys = {opt.default_key: (d + 1, oend)}
            else:
                keys = self.keys(oname, opt, d + 1, oend)
            out[oname] = opt.build(self, keys, ostart)
            pos = oend
        return out

    def keys(self, oname: str, opt: _Option, start: int, end: int) -> dict:
        text = self.text
        if start == end:
            self.fail(start, f"key list of option {oname!r} is empty; write {opt.usage}")
        keys: dict[str, tuple[int, int]] = {}
        pos = start
        while True:
            iend = text.find(",", pos, end)
            if iend < 0:
                iend = end
            eq = text.find("=", pos, iend)
            kend = iend if eq < 0 else eq
            key = text[pos:kend]
            if not key:
                self.fail(pos, f"key missing in option {oname!r}")
            canon = key.replace("-", "_")
            if canon not in opt.keys:
                allowed = ", ".join(k.replace("_", "-") for k in opt.keys)
                self.fail(pos, f"unknown key {key!r} for option {oname!r}; allowed: {allowed}")
            if canon in keys:
                self.fail(pos, f"key {key!r} repeated in option {oname!r}")
            if eq < 0:
                self.fail(iend, f"key {key!r} of option {oname!r} needs '=VALUE'")
            if eq + 1 == iend:
                self.fail(eq + 1, f"value required for key {key!r} of option {oname!r}")
            keys[canon] = (eq + 1, iend)
            if iend == end:
                return keys
            pos = iend + 1

    def uint(self, span: tuple[int, int], limit: int, what: str) -> int:
        start, end = span
        for i in range(start, end):
            if self.text[i] not in _DIGITS:
                self.fail(i, f"{what} must be a non-negative decimal integer, got "
                          f"{self.text[start:end]!r}")
        return self.number(start, end, limit, what)


@dataclass(frozen=True)
class _Option:
    """One ``@`` option: its keys (canonical ``_`` spelling), default key, and value builder."""

    keys: tuple[str, ...]
    default_key: str | None
    usage: str
    build: Callable  # (parser, {key: (start, end)}, option start) -> value


def _build_share(p: _Parser, keys: dict, ostart: int) -> str:
    start, end = keys["port"]
    name, stop = p.header(start, end, what="share port name")
    if stop != end:
        p.fail(stop, "share takes a bare port name, without mode, flags or mem id")
    return _render_name(name)


def _share_kernel_name(share: str) -> str:
    """Kernel name of a ``@share`` value (a port name with its prefix, nothing after it)."""
    p = _Parser(share, legacy=False)
    p.check_characters()
    name, stop = p.header(0, len(share), what="share port name")
    if stop != len(share):
        p.fail(stop, "share takes a bare port name, without mode, flags or mem id")
    return name


_CONF_LIMITS = {"rings": _U16, "host_rings": _U16, "slots": _U32, "tx_rings": _U16,
                "rx_rings": _U16, "host_tx_rings": _U16, "host_rx_rings": _U16,
                "tx_slots": _U32, "rx_slots": _U32}


def _build_conf(p: _Parser, keys: dict, ostart: int) -> Conf:
    v = {k: p.uint(span, _CONF_LIMITS[k], f"conf {k.replace('_', '-')}")
         for k, span in keys.items()}
    # generic keys first, specific ones override them whatever the textual order (libnetmap)
    fields = {}
    for generic, specific in (("rings", ("tx_rings", "rx_rings")),
                              ("host_rings", ("host_tx_rings", "host_rx_rings")),
                              ("slots", ("tx_slots", "rx_slots"))):
        for f in specific:
            if f in v:
                fields[f] = v[f]
            elif generic in v:
                fields[f] = v[generic]
    return Conf(**fields)


def _build_extmem(p: _Parser, keys: dict, ostart: int) -> ExtMem:
    if "file" not in keys:
        p.fail(ostart, "option 'extmem' needs key 'file'")
    start, end = keys["file"]
    sizes = {k: p.uint(span, _U32, f"extmem {k.replace('_', '-')}")
             for k, span in keys.items() if k != "file"}
    return ExtMem(file=p.text[start:end], **sizes)


def _build_offset(p: _Parser, keys: dict, ostart: int) -> Offset:
    if "initial" not in keys:
        p.fail(ostart, "option 'offset' needs key 'initial'")
    initial = p.uint(keys["initial"], _U64, "offset initial")
    bits = p.uint(keys["bits"], 64, "offset bits") if "bits" in keys else 0
    return Offset(initial=initial, bits=bits)


_OPTIONS = {
    "share": _Option(("port",), "port", "@share=PORTNAME", _build_share),
    "conf": _Option(tuple(_CONF_LIMITS), None,
                    "@conf:KEY=N[,KEY=N...] (keys: rings, host-rings, slots, tx-rings, rx-rings, "
                    "host-tx-rings, host-rx-rings, tx-slots, rx-slots)", _build_conf),
    "extmem": _Option(("file", "if_num", "if_size", "ring_num", "ring_size", "buf_num",
                       "buf_size"), "file", "@extmem=FILE or @extmem:file=FILE[,if-num=N,...]",
                      _build_extmem),
    "offset": _Option(("initial", "bits"), "initial", "@offset=N or @offset:initial=N[,bits=B]",
                      _build_offset),
}


def _prefix_hint(seg: str) -> str:
    if not seg:
        return "empty port name; expected netmap:NAME or valeSW:PORT"
    head = seg
    for i, c in enumerate(seg):
        if c in _SEPARATORS:
            head = seg[:i]
            break
    if ":" not in head:
        return (f"prefix unknown or missing: use 'netmap:{seg}' for a network interface "
                f"(or valeSW:PORT for a VALE port)")
    return (f"prefix unknown or missing: {head.split(':', 1)[0] + ':'!r} is neither 'netmap:' "
            "nor 'valeSW:'")


def parse_portspec(text: str) -> PortSpec:
    """Parse a libnetmap port name, e.g. ``netmap:eth0-1/x@conf:slots=512`` or ``vale0:a{1``.

    Raises PortSpecError (position = offending character) for anything libnetmap rejects, and
    for the few loose spots it accepts but this parser does not (see spec/portspec.md). Cost:
    one linear pass; no I/O (``@share`` and ``@extmem`` are resolved when the port is opened).
    """
    return _parse(text, legacy=False)


def kernel_spec(name: str) -> PortSpec:
    """The spec of a bare kernel port name (``nr_name`` as control requests carry it, e.g.
    ``vale0:a`` or ``p{1``): no prefix, no suffixes, the derived fields filled in."""
    return PortSpec(text=name, name=name, mode=abi.NR_REG_ALL_NIC)


def parse_legacy(text: str) -> PortSpec:
    """Parse a name in the legacy ``nm_open()`` syntax (spec D8).

    Differences from parse_portspec: ``{N``/``}N`` are modes with a decimal pipe number, which
    the kernel turns into the pipe name ``NAME{N``/``NAME}N`` (mode ALL_NIC) and so does this
    parser; no ``^N`` mode; no ``@`` options; ``@N`` at most once; names (before the pipe
    suffix) shorter than 16 bytes; VALE port names must be identifiers.
    """
    return _parse(text, legacy=True)


def _parse(text: str, *, legacy: bool) -> PortSpec:
    if not isinstance(text, str):
        raise TypeError(f"port name must be str, got {type(text).__name__}")
    p = _Parser(text, legacy)
    p.check_characters()
    name, pos = p.header(0, len(text))
    reg = p.register(pos)
    if reg["pipe_name"] is not None:
        name += reg["pipe_name"]
    opts = p.options(reg["pos"]) if not legacy else {}
    return PortSpec(
        text=text, name=name, mode=reg["mode"], ringid=reg["ringid"], flags=reg["flags"],
        mem_id=reg["mem_id"], conf=opts.get("conf", _DEFAULT_CONF), share=opts.get("share"),
        extmem=opts.get("extmem"), offset=opts.get("offset"),
    )


# --- canonical rendering -----------------------------------------------------------------------

def _render_name(name: str) -> str:
    """``valeSW:PORT`` when that spelling parses back to ``name``, else ``netmap:NAME``."""
    if name.startswith(abi.NM_BDG_NAME):
        try:
            got, stop = _Parser(name, legacy=False).header(0, len(name))
            if got == name and stop == len(name):
                return name
        except PortSpecError:
            pass
    return "netmap:" + name


def _render(spec: PortSpec) -> str:
    out = [_render_name(spec.name)]
    if spec.mode == abi.NR_REG_ALL_NIC:
        pass
    elif spec.mode == abi.NR_REG_NIC_SW:
        out.append("*")
    elif spec.mode == abi.NR_REG_SW:
        out.append("^")
    elif spec.mode in (abi.NR_REG_ONE_NIC, abi.NR_REG_ONE_SW):
        if not 0 <= spec.ringid < NETMAP_RING_MASK:
            raise ValueError(f"ringid {spec.ringid} not expressible; allowed [0, "
                             f"{NETMAP_RING_MASK})")
        out.append(("-" if spec.mode == abi.NR_REG_ONE_NIC else "^") + str(spec.ringid))
    else:
        raise ValueError(f"mode {spec.mode} has no port-name syntax; allowed: ALL_NIC, SW, "
                         "NIC_SW, ONE_NIC, ONE_SW")
    if spec.mode in (abi.NR_REG_ALL_NIC, abi.NR_REG_NIC_SW, abi.NR_REG_SW) and spec.ringid:
        raise ValueError(f"ringid {spec.ringid} is meaningless in mode {spec.mode_name}")
    if spec.flags & ~_FLAG_BITS:
        raise ValueError(f"flags 0x{spec.flags & ~_FLAG_BITS:x} have no port-name letter")
    if spec.flags:
        out.append("/" + "".join(c for c, bit in _FLAG_LETTERS.items() if spec.flags & bit))
    if spec.mem_id:
        out.append(f"@{spec.mem_id}")
    if spec.share is not None:
        out.append("@share=" + spec.share)
    if not spec.conf.is_default:
        out.append("@conf:" + _render_conf(spec.conf))
    if spec.extmem is not None:
        e = spec.extmem
        sizes = [f"{k.replace('_', '-')}={getattr(e, k)}" for k in _OPTIONS["extmem"].keys[1:]
                 if getattr(e, k)]
        out.append(f"@extmem:file={e.file},{','.join(sizes)}" if sizes else f"@extmem={e.file}")
    if spec.offset is not None:
        o = spec.offset
        out.append(f"@offset:initial={o.initial},bits={o.bits}" if o.bits else
                   f"@offset={o.initial}")
    return "".join(out)


def _render_conf(c: Conf) -> str:
    parts = []
    for generic, tx, rx in (("rings", "tx_rings", "rx_rings"),
                            ("host-rings", "host_tx_rings", "host_rx_rings"),
                            ("slots", "tx_slots", "rx_slots")):
        a, b = getattr(c, tx), getattr(c, rx)
        if a and a == b:
            parts.append(f"{generic}={a}")
            continue
        if a:
            parts.append(f"{tx.replace('_', '-')}={a}")
        if b:
            parts.append(f"{rx.replace('_', '-')}={b}")
    return ",".join(parts)

