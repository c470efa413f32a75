"""The port-name parser against spec D1-D9, netmap's own parse table (utils/ctrl-api-test.c),
exact error positions, and round-trip / robustness properties."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from netmap_core import abi
from netmap_core.errors import NetmapError, PortSpecError
from netmap_core.portspec import (
    NETMAP_RING_MASK,
    Conf,
    ExtMem,
    Offset,
    PortSpec,
    parse_legacy,
    parse_portspec,
)

ALL_NIC, SW, NIC_SW, ONE_NIC, ONE_SW = (abi.NR_REG_ALL_NIC, abi.NR_REG_SW, abi.NR_REG_NIC_SW,
                                        abi.NR_REG_ONE_NIC, abi.NR_REG_ONE_SW)
X, Z, T_, R_ = abi.NR_EXCLUSIVE, abi.NR_ZCOPY_MON, abi.NR_MONITOR_TX, abi.NR_MONITOR_RX
RONLY, TONLY = abi.NR_RX_RINGS_ONLY, abi.NR_TX_RINGS_ONLY


def same_request(a: PortSpec, b: PortSpec) -> bool:
    return replace(a, text="") == replace(b, text="")


def rejects(text: str, position: int, *words: str, parse=parse_portspec) -> PortSpecError:
    with pytest.raises(PortSpecError) as info:
        parse(text)
    err = info.value
    assert err.text == text
    assert err.position == position, (err.position, err.reason)
    for w in words:
        assert w in err.reason, (w, err.reason)
    assert err.errno == 22
    return err


# --- D7: the spec's examples (name -> kernel name / mode / ringid / flags / mem_id) -------------
D7 = [
    ("netmap:eth0", "eth0", ALL_NIC, 0, 0, 0),
    ("netmap:eth0-1", "eth0", ONE_NIC, 1, 0, 0),
    ("netmap:eth0^", "eth0", SW, 0, 0, 0),
    ("netmap:eth0^1", "eth0", ONE_SW, 1, 0, 0),
    ("netmap:eth0*", "eth0", NIC_SW, 0, 0, 0),
    ("netmap:eth0-2/Tx", "eth0", ONE_NIC, 2, 0x4800, 0),
    ("netmap:eth0/rt", "eth0", ALL_NIC, 0, 0x300, 0),
    ("netmap:eth0@2/R", "eth0", ALL_NIC, 0, 0x2000, 2),
    ("vale0:0", "vale0:0", ALL_NIC, 0, 0, 0),
    ("vale:0", "vale:0", ALL_NIC, 0, 0, 0),
    ("valeXXX:YYY-4", "valeXXX:YYY", ONE_NIC, 4, 0, 0),
    ("netmap:pipe{in-7", "pipe{in", ONE_NIC, 7, 0, 0),
    ("vale0:0}0", "vale0:0}0", ALL_NIC, 0, 0, 0),
]


@pytest.mark.parametrize("text,name,mode,ringid,flags,mem_id", D7)
def test_d7_examples(text, name, mode, ringid, flags, mem_id):
    s = parse_portspec(text)
    assert (s.text, s.name, s.mode, s.ringid, s.flags, s.mem_id) == (
        text, name, mode, ringid, flags, mem_id)
    assert s.conf == Conf() and s.share is None and s.extmem is None and s.offset is None


def test_d7_option_examples():
    rejects("vale0:0/Tx@opt", 11, "unknown option 'opt'")
    s = parse_portspec("vale1:a@conf:rings=2,slots=512")
    assert s.name == "vale1:a"
    assert s.conf == Conf(tx_rings=2, rx_rings=2, tx_slots=512, rx_slots=512)


def test_d7_pipe_slave_of_vale_port():
    s = parse_portspec("vale0:0}0")
    assert (s.switch, s.port, s.pipe, s.pipe_id, s.parent) == ("vale0", "0", "}", "0", "vale0:0")
    assert s.is_vale and s.is_pipe


# --- netmap's nmreq_parse_tests (utils/ctrl-api-test.c), minus the two stale rows of D9 -------
# The C table checks nmreq_header_decode + nmreq_register_decode only and records the unparsed
# suffix. Rows whose suffix is a bogus option ('@opt', '@xxx', '@netmap:lo/R') would then fail in
# nmport_parse's option decoding: a full parse rejects them at the option name.
CTRL_OK = [  # text, nr_name, mode, ringid, flags
    ("netmap:eth0", "eth0", ALL_NIC, 0, 0),
    ("netmap:eth0-1", "eth0", ONE_NIC, 1, 0),
    ("netmap:eth0/x", "eth0", ALL_NIC, 0, X),
    ("netmap:eth0/z", "eth0", ALL_NIC, 0, Z),
    ("netmap:eth0/r", "eth0", ALL_NIC, 0, R_),
    ("netmap:eth0/t", "eth0", ALL_NIC, 0, T_),
    ("netmap:eth0-2/Tx", "eth0", ONE_NIC, 2, TONLY | X),
    ("netmap:eth0*", "eth0", NIC_SW, 0, 0),
    ("netmap:eth0^", "eth0", SW, 0, 0),
    ("netmap:eth0@2", "eth0", ALL_NIC, 0, 0),
    ("netmap:eth0@2/R", "eth0", ALL_NIC, 0, RONLY),
    ("netmap:eth0@2/R@2", "eth0", ALL_NIC, 0, RONLY),
    ("vale0:0", "vale0:0", ALL_NIC, 0, 0),
    ("vale:0", "vale:0", ALL_NIC, 0, 0),
    ("valeXXX:YYY", "valeXXX:YYY", ALL_NIC, 0, 0),
    ("valeXXX:YYY-4", "valeXXX:YYY", ONE_NIC, 4, 0),
    ("netmap:14", "14", ALL_NIC, 0, 0),
    ("netmap:pipe{0", "pipe{0", ALL_NIC, 0, 0),
    ("netmap:pipe{in", "pipe{in", ALL_NIC, 0, 0),
    ("netmap:pipe{in-7", "pipe{in", ONE_NIC, 7, 0),
    ("vale0:0{0", "vale0:0{0", ALL_NIC, 0, 0),
]

CTRL_BAD_OPTION = [  # text, nr_name, mode, ringid, flags, where the bogus option starts
    ("netmap:eth0@netmap:lo/R", "eth0", ALL_NIC, 0, 0, 11),
    ("netmap:eth0/R@xxx", "eth0", ALL_NIC, 0, RONLY, 13),
    ("vale0:0@opt", "vale0:0", ALL_NIC, 0, 0, 7),
    ("vale0:0/Tx@opt", "vale0:0", ALL_NIC, 0, TONLY | X, 10),
    ("vale0:0-3@opt", "vale0:0", ONE_NIC, 3, 0, 9),
]

CTRL_ERR = [  # text, position, reason fragment
    ("netmap:eth0-", 12, "ring number required after '-'"),
    ("netmap:eth0@2/R@3", 16, "mem id @3 conflicts with @2"),
    ("netmap:eth0@", 12, "required after '@'"),
    ("netmap:", 7, "empty"),
    ("netmap:^", 7, "empty"),
    ("netmap:{", 7, "port name missing before pipe"),
    ("eth0", 0, "netmap:eth0"),
    ("netmapXXX:eth0", 6, "prefix unknown or missing"),
    ("netmap:pipe{1}2", 13, "pipe id '1}2'"),
    ("vale0:0@", 8, "required after '@'"),
    ("", 0, "empty"),
]


@pytest.mark.parametrize("text,name,mode,ringid,flags", CTRL_OK)
def test_ctrl_api_table_accepts(text, name, mode, ringid, flags):
    s = parse_portspec(text)
    assert (s.name, s.mode, s.ringid, s.flags) == (name, mode, ringid, flags)
    assert s.mem_id == (2 if "@2" in text else 0)


@pytest.mark.parametrize("text,name,mode,ringid,flags,at", CTRL_BAD_OPTION)
def test_ctrl_api_table_suffix_is_an_unknown_option(text, name, mode, ringid, flags, at):
    assert text[at] == "@"
    rejects(text, at + 1, "unknown option")
    s = parse_portspec(text[:at])  # the header + register part the C table checks
    assert (s.name, s.mode, s.ringid, s.flags) == (name, mode, ringid, flags)


@pytest.mark.parametrize("text,position,reason", CTRL_ERR)
def test_ctrl_api_table_rejects(text, position, reason):
    rejects(text, position, reason)


@pytest.mark.parametrize("text,name", [("netmap:vale0:0", "vale0:0"), ("netmap:eth0&", "eth0&")])
def test_d9_stale_rows_are_accepted(text, name):
    """ctrl-api-test still expects EINVAL; the library has accepted these since commit 765f0979."""
    s = parse_portspec(text)
    assert s.name == name and s.mode == ALL_NIC


# --- D1: prefixes -------------------------------------------------------------------------------
def test_netmap_prefix_is_stripped_vale_name_is_kept():
    assert parse_portspec("netmap:em0.123").name == "em0.123"
    assert parse_portspec("vale_a1:p").name == "vale_a1:p"
    assert parse_portspec("netmap:vale0:x").switch == "vale0"


@pytest.mark.parametrize("text", ["eth0", "eth0-1", "lo", "pipe{1"])
def test_bare_interface_name_suggests_netmap_prefix(text):
    err = rejects(text, 0, "prefix unknown or missing", f"'netmap:{text}'")
    assert isinstance(err, NetmapError) and isinstance(err, ValueError)


@pytest.mark.parametrize("text,position", [
    ("va:x", 0), ("VALE0:x", 0), ("net:eth0", 0), ("netmapX:eth0", 6), ("netmap", 6),
    ("netmap-:x", 6),
])
def test_unknown_prefix(text, position):
    rejects(text, position, "prefix unknown or missing")


@pytest.mark.parametrize("text,position,reason", [
    ("vale0", 5, "missing ':'"),
    ("vale", 4, "missing ':'"),
    ("vale-1:x", 4, "VALE switch name"),
    ("vale0.1:x", 5, "VALE switch name"),
    ("vale0:", 6, "VALE port name is empty"),
    ("vale0:-1", 6, "VALE port name is empty"),
    ("vale0:{1", 6, "port name missing before pipe"),
])
def test_vale_name_rejections(text, position, reason):
    rejects(text, position, reason)


# --- D2: names and pipes ------------------------------------------------------------------------
@pytest.mark.parametrize("text,position,reason", [
    ("netmap:x{", 9, "pipe id required after '{'"),
    ("netmap:x}", 9, "pipe id required after '}'"),
    ("netmap:x{1}2", 10, "pipe id '1}2'"),
    ("netmap:x{a.b", 10, "pipe id"),
    ("netmap:x{-1", 9, "pipe id required"),
    ("netmap:}1", 7, "missing before pipe slave"),
    ("netmap:eth 0", 10, "whitespace"),
    ("netmap:eth0\n", 11, "control character U+000A"),
    ("netmap:et\x00h0", 9, "U+0000"),
])
def test_name_rejections(text, position, reason):
    rejects(text, position, reason)


def test_name_length_limit_is_63_bytes():
    ok = "netmap:" + "a" * 63
    assert parse_portspec(ok).name == "a" * 63
    rejects("netmap:" + "a" * 64, 7 + 63, "64 bytes", "at most 63")
    # VALE names count the whole valeSW:PORT; multi-byte characters count in bytes
    rejects("vale0:" + "b" * 58, 63, "64 bytes")
    rejects("netmap:" + "é" * 32, 7 + 31, "64 bytes")
    assert parse_portspec("netmap:" + "é" * 31).name == "é" * 31


def test_pipe_fields():
    s = parse_portspec("netmap:pipeA{in_1-3")
    assert (s.name, s.parent, s.port, s.pipe, s.pipe_id, s.switch) == (
        "pipeA{in_1", "pipeA", "pipeA", "{", "in_1", None)
    assert s.is_pipe and not s.is_vale and s.mode == ONE_NIC and s.ringid == 3
    s = parse_portspec("vale0:a{3")
    assert (s.switch, s.port, s.parent, s.pipe_id) == ("vale0", "a", "vale0:a", "3")
    s = parse_portspec("netmap:eth0")
    assert (s.port, s.parent, s.switch, s.pipe) == ("eth0", "eth0", None, None)
    assert not s.is_pipe and not s.is_vale


def test_kernel_val_prefix_quirk_is_reflected_in_switch():
    """Spec E1: the kernel takes any name starting with 'val' as a VALE request."""
    s = parse_portspec("netmap:val6:b")
    assert (s.name, s.switch, s.port) == ("val6:b", "val6", "b") and s.is_vale
    s = parse_portspec("netmap:valve0")          # no ':' -> no switch to name
    assert s.switch is None and s.port == "valve0"


# --- D3: modes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,position,reason", [
    ("netmap:eth0-", 12, "ring number required after '-'"),
    ("netmap:eth0-x", 12, "ring number required after '-'"),
    ("netmap:eth0-4095", 12, "out of range [0, 4095)"),
    ("netmap:eth0^4095", 12, "out of range [0, 4095)"),
    ("netmap:eth0-" + "9" * 5000, 12, "out of range"),
    ("netmap:eth0*1", 12, "unexpected '1' after mode '*'"),
    ("netmap:eth0-1*", 13, "at most one mode"),
    ("netmap:eth0^-1", 12, "at most one mode"),
    ("netmap:eth0**", 12, "at most one mode"),
    ("netmap:eth0^x", 12, "unexpected 'x' after mode '^'"),
    ("netmap:eth0/x-1", 13, "mode '-' must come right after the port name"),
    ("netmap:eth0@2*", 13, "mode '*' must come right after the port name"),
])
def test_mode_rejections(text, position, reason):
    rejects(text, position, reason)


def test_mode_ring_bounds():
    assert parse_portspec("netmap:eth0-4094").ringid == NETMAP_RING_MASK - 1
    assert parse_portspec("netmap:eth0-0").mode == ONE_NIC
    assert parse_portspec("netmap:eth0-007").ringid == 7
    assert parse_portspec("netmap:eth0^0").mode == ONE_SW


# --- D4: flags ----------------------------------------------------------------------------------
def test_every_flag_letter():
    s = parse_portspec("netmap:eth0/xztrRT")
    assert s.flags == X | Z | T_ | R_ | RONLY | TONLY
    assert parse_portspec("netmap:eth0/xx").flags == X
    assert parse_portspec("netmap:eth0/rt").is_monitor
    assert not parse_portspec("netmap:eth0/xR").is_monitor


@pytest.mark.parametrize("text,position,reason", [
    ("netmap:eth0/x/z", 13, "only one '/' flag group"),
    ("netmap:eth0/x@2/z", 15, "only one '/' flag group"),
    ("netmap:eth0/q", 12, "flag 'q' unknown; allowed: x z t r R T"),
    ("netmap:eth0/xX", 13, "flag 'X' unknown"),
    ("netmap:eth0/", 12, "flag letter required"),
    ("netmap:eth0/@2", 12, "flag letter required"),
])
def test_flag_rejections(text, position, reason):
    rejects(text, position, reason)


# --- D5: mem id ---------------------------------------------------------------------------------
def test_mem_id_positions():
    assert parse_portspec("netmap:eth0@2").mem_id == 2
    assert parse_portspec("netmap:eth0-1@3/x").mem_id == 3
    assert parse_portspec("netmap:eth0^@3").mode == SW
    assert parse_portspec("netmap:eth0/x@65535").mem_id == 65535
    assert parse_portspec("netmap:eth0@2@2").mem_id == 2


@pytest.mark.parametrize("text,position,reason", [
    ("netmap:eth0@2/R@3", 16, "mem id @3 conflicts with @2"),
    ("netmap:eth0@0", 12, "mem id must be > 0"),
    ("netmap:eth0@65536", 12, "out of range [1, 65535]"),
    ("netmap:eth0@", 12, "mem id or option name required"),
    ("netmap:eth0@2x", 13, "unexpected 'x' after mem id @2"),
    ("netmap:eth0@conf:rings=1@2", 25, "mem id @2 must come before the options"),
])
def test_mem_id_rejections(text, position, reason):
    rejects(text, position, reason)


# --- D6: options --------------------------------------------------------------------------------
def test_conf_keys_and_overrides():
    s = parse_portspec("netmap:eth0@conf:tx-rings=3,rings=2,host-rings=4,host_rx_rings=1,"
                       "slots=256,rx-slots=1024")
    assert s.conf == Conf(tx_rings=3, rx_rings=2, host_tx_rings=4, host_rx_rings=1,
                          tx_slots=256, rx_slots=1024)
    assert parse_portspec("netmap:a@conf:rings=0").conf == Conf()
    assert parse_portspec("netmap:a@conf:tx_slots=4294967295").conf.tx_slots == 2**32 - 1


def test_share_extmem_offset():
    s = parse_portspec("vale0:a@share=vale0:b")
    assert (s.share, s.share_name) == ("vale0:b", "vale0:b")
    s = parse_portspec("netmap:a@share=netmap:eth1")
    assert (s.share, s.share_name) == ("netmap:eth1", "eth1")
    assert parse_portspec("netmap:a@share:port=netmap:pipe{x").share_name == "pipe{x"
    assert parse_portspec("netmap:a@share=netmap:vale0:b").share == "vale0:b"  # canonical
    assert parse_portspec("netmap:a").share_name is None
    e = parse_portspec("netmap:a@extmem=/dev/shm/x,y").extmem
    assert e == ExtMem(file="/dev/shm/x,y")       # '=' form: the whole rest is the value
    e = parse_portspec("netmap:a@extmem:file=/tmp/m,if-num=2,if_size=1024,ring-num=3,"
                       "ring-size=36864,buf-num=9,buf-size=2048").extmem
    assert e == ExtMem("/tmp/m", 2, 1024, 3, 36864, 9, 2048)
    assert parse_portspec("netmap:a@offset=64").offset == Offset(64, 0)
    o = parse_portspec("netmap:a@offset:bits=16,initial=8").offset
    assert o == Offset(8, 16) and o.max_offset == 8
    s = parse_portspec("netmap:a-1/x@2@share=netmap:b@conf:slots=8@extmem=/f@offset=1")
    assert (s.mode, s.ringid, s.flags, s.mem_id, s.share_name, s.conf.rx_slots, s.extmem.file,
            s.offset.initial) == (ONE_NIC, 1, X, 2, "b", 8, "/f", 1)


@pytest.mark.parametrize("text,position,reason", [
    ("netmap:a@conf=4", 13, "option 'conf' has no default key"),
    ("netmap:a@conf", 13, "option 'conf' needs a value"),
    ("netmap:a@share", 14, "needs a value"),
    ("netmap:a@conf:", 14, "key list of option 'conf' is empty"),
    ("netmap:a@conf:rings=2,rings=3", 22, "key 'rings' repeated"),
    ("netmap:a@conf:tx-rings=2,tx_rings=3", 25, "key 'tx_rings' repeated"),
    ("netmap:a@conf:tx-ring=2", 14, "unknown key 'tx-ring' for option 'conf'"),
    ("netmap:a@conf:rings", 19, "needs '=VALUE'"),
    ("netmap:a@conf:rings=", 20, "value required for key 'rings'"),
    ("netmap:a@conf:rings=2,", 22, "key missing"),
    ("netmap:a@conf:=2", 14, "key missing"),
    ("netmap:a@conf:rings=x", 20, "non-negative decimal integer"),
    ("netmap:a@conf:rings=-1", 20, "non-negative decimal integer"),
    ("netmap:a@conf:rings=65536", 20, "out of range [0, 65535]"),
    ("netmap:a@conf:rings=1@conf:slots=2", 22, "option 'conf' given twice"),
    ("netmap:a@foo=1", 9, "unknown option 'foo'"),
    ("netmap:a@Conf:rings=1", 9, "unknown option 'Conf'"),
    ("netmap:a@=1", 9, "option name missing"),
    ("netmap:a@conf:rings=1@", 22, "empty option"),
    ("netmap:a@@x", 9, "empty option"),
    ("netmap:a@share=", 15, "value required"),
    ("netmap:a@share=eth1", 15, "'netmap:eth1'"),
    ("netmap:a@share=netmap:eth1-1", 26, "share takes a bare port name"),
    ("netmap:a@share=netmap:", 22, "empty"),
    ("netmap:a@extmem:if-num=2", 9, "option 'extmem' needs key 'file'"),
    ("netmap:a@extmem=/x@extmem=/y", 19, "option 'extmem' given twice"),
    ("netmap:a@extmem:file=/x,buf-num=1x", 33, "non-negative decimal integer"),
    ("netmap:a@offset:bits=3", 9, "needs key 'initial'"),
    ("netmap:a@offset:initial=1,bits=65", 31, "out of range [0, 64]"),
])
def test_option_rejections(text, position, reason):
    rejects(text, position, reason)


# --- the value type -----------------------------------------------------------------------------
def test_derived_fields_are_filled_from_the_name():
    s = PortSpec(text="", name="vale1:p}q", mode=ALL_NIC)
    assert (s.switch, s.port, s.pipe, s.pipe_id, s.parent) == ("vale1", "p", "}", "q", "vale1:p")
    with pytest.raises(ValueError, match="switch"):
        PortSpec(text="", name="eth0", mode=ALL_NIC, switch="vale0")


def test_share_is_validated_and_canonical_in_hand_built_specs():
    s = PortSpec(text="", name="x", mode=ALL_NIC, share="netmap:vale0:b")
    assert s.share == "vale0:b" and s.share_name == "vale0:b"
    with pytest.raises(PortSpecError, match="netmap:eth1"):
        PortSpec(text="", name="x", mode=ALL_NIC, share="eth1")


def test_describe_rejects_what_the_grammar_cannot_say():
    with pytest.raises(ValueError, match="mode 7"):
        PortSpec(text="", name="x", mode=abi.NR_REG_NULL).describe()
    with pytest.raises(ValueError, match="flags"):
        PortSpec(text="", name="x", mode=ALL_NIC, flags=abi.NR_ACCEPT_VNET_HDR).describe()
    assert "PortSpec(" in str(PortSpec(text="", name="x", mode=abi.NR_REG_NULL))


@pytest.mark.parametrize("text,canonical", [
    ("netmap:eth0", "netmap:eth0"),
    ("netmap:vale0:0", "vale0:0"),
    ("netmap:eth0@2/R", "netmap:eth0/R@2"),
    ("netmap:eth0-02/Tx", "netmap:eth0-2/xT"),
    ("netmap:eth0@2@2", "netmap:eth0@2"),
    ("netmap:vale0:", "netmap:vale0:"),          # not a valid VALE spelling: keeps the prefix
    ("vale1:a@conf:slots=512,rings=2", "vale1:a@conf:rings=2,slots=512"),
    ("netmap:a@conf:tx-rings=3,rings=2", "netmap:a@conf:tx-rings=3,rx-rings=2"),
    ("netmap:a@conf:rings=0", "netmap:a"),
    ("netmap:a@offset:initial=4", "netmap:a@offset=4"),
    ("netmap:a@extmem:file=/f", "netmap:a@extmem=/f"),
    ("netmap:a@extmem:if_num=2,file=/f", "netmap:a@extmem:file=/f,if-num=2"),
    ("netmap:a@share:port=netmap:vale0:b", "netmap:a@share=vale0:b"),
])
def test_canonical_form(text, canonical):
    s = parse_portspec(text)
    assert str(s) == s.describe() == canonical
    assert same_request(parse_portspec(canonical), s)


def test_type_error_for_non_text():
    with pytest.raises(TypeError):
        parse_portspec(b"netmap:eth0")


# --- D8: the legacy nm_open() syntax -------------------------------------------------------------
def test_legacy_pipe_modes_become_pipe_names():
    s = parse_legacy("netmap:eth0{3")
    assert (s.name, s.mode, s.ringid, s.pipe, s.pipe_id, s.parent) == (
        "eth0{3", ALL_NIC, 0, "{", "3", "eth0")
    s = parse_legacy("valeX1:Y4}12/x@2")
    assert (s.name, s.flags, s.mem_id, s.switch, s.port) == ("valeX1:Y4}12", X, 2, "valeX1", "Y4")
    assert same_request(parse_portspec(str(s)), s)
    s = parse_legacy("netmap:eth0-1/Tx")
    assert (s.mode, s.ringid, s.flags) == (ONE_NIC, 1, X | TONLY)


@pytest.mark.parametrize("text,position,reason", [
    ("netmap:eth0^1", 12, "unexpected '1' after mode '^'"),
    ("netmap:eth0{", 12, "pipe number required after '{'"),
    ("netmap:eth0{x", 12, "pipe number required"),
    ("netmap:eth0{1-2", 13, "at most one mode"),
    ("netmap:eth0@2@2", 13, "mem id given twice"),
    ("netmap:eth0@conf:rings=1", 12, "take no options"),
    ("netmap:abcdefghijklmnop", 22, "nr_name[16]"),
    ("vale0:a.b", 7, "VALE port name"),
    ("eth0", 0, "netmap:eth0"),
])
def test_legacy_rejections(text, position, reason):
    rejects(text, position, reason, parse=parse_legacy)


# --- properties ---------------------------------------------------------------------------------
IDENT = "abcXYZ019_"
NAME_CHARS = IDENT + ".&:%+,=#é"


def expected_conf(keys: dict) -> Conf:
    """Specific keys win over generic ones, whatever their order."""
    def pick(specific, generic):
        return keys.get(specific, keys.get(generic, 0))
    return Conf(tx_rings=pick("tx_rings", "rings"), rx_rings=pick("rx_rings", "rings"),
                host_tx_rings=pick("host_tx_rings", "host_rings"),
                host_rx_rings=pick("host_rx_rings", "host_rings"),
                tx_slots=pick("tx_slots", "slots"), rx_slots=pick("rx_slots", "slots"))


@st.composite
def valid_specs(draw):
    """A valid port name built from the grammar, with what it must parse to."""
    exp = {}
    if draw(st.booleans()):
        sw = "vale" + draw(st.text(IDENT, max_size=4))
        port = draw(st.text(IDENT + ".&", min_size=1, max_size=8))
        text = name = f"{sw}:{port}"
    else:
        name = draw(st.text(NAME_CHARS, min_size=1, max_size=12))
        text = "netmap:" + name
    if draw(st.booleans()):
        suffix = draw(st.sampled_from("{}")) + draw(st.text(IDENT, min_size=1, max_size=4))
        text, name = text + suffix, name + suffix
    exp["name"] = name
    mode = draw(st.sampled_from(["", "*", "^", "-", "^N"]))
    ring = draw(st.integers(0, NETMAP_RING_MASK - 1))
    zeros = "0" * draw(st.integers(0, 2))
    text += {"": "", "*": "*", "^": "^", "-": f"-{zeros}{ring}", "^N": f"^{zeros}{ring}"}[mode]
    exp["mode"] = {"": ALL_NIC, "*": NIC_SW, "^": SW, "-": ONE_NIC, "^N": ONE_SW}[mode]
    exp["ringid"] = ring if mode in ("-", "^N") else 0
    flags = draw(st.text("xztrRT", max_size=6))
    mem = draw(st.integers(0, 65535))
    mem_part = f"@{mem}" if mem else ""
    flag_part = f"/{flags}" if flags else ""
    if draw(st.booleans()):
        text += mem_part + flag_part + (mem_part if draw(st.booleans()) else "")
    else:
        text += flag_part + mem_part
    bits = {"x": X, "z": Z, "t": T_, "r": R_, "R": RONLY, "T": TONLY}
    exp["flags"] = sum({bits[c] for c in flags})
    exp["mem_id"] = mem
    opts = draw(st.lists(st.sampled_from(["share", "conf", "extmem", "offset"]), unique=True))
    for opt in opts:
        sep = draw(st.sampled_from("-_"))
        if opt == "share":
            text += "@share=" + draw(st.sampled_from(["netmap:eth1", "vale0:b", "netmap:p{1"]))
        elif opt == "conf":
            keys = draw(st.dictionaries(
                st.sampled_from(["rings", "host_rings", "slots", "tx_rings", "rx_rings",
                                 "host_tx_rings", "host_rx_rings", "tx_slots", "rx_slots"]),
                st.integers(0, 65535), min_size=1))
            text += "@conf:" + ",".join(f"{k.replace('_', sep)}={v}" for k, v in keys.items())
            exp["conf"] = expected_conf(keys)
        elif opt == "extmem":
            n = draw(st.integers(0, 2**32 - 1))
            text += draw(st.sampled_from(["@extmem=/m/f", f"@extmem:file=/m/f,buf{sep}num={n}"]))
        else:
            init = draw(st.integers(0, 2**64 - 1))
            text += draw(st.sampled_from([f"@offset={init}", f"@offset:initial={init},bits=7"]))
    return text, exp


@given(valid_specs())
def test_valid_specs_parse_as_built_and_round_trip(case):
    text, exp = case
    s = parse_portspec(text)
    for field, value in exp.items():
        assert getattr(s, field) == value, field
    canonical = str(s)
    again = parse_portspec(canonical)
    assert same_request(again, s)
    assert str(again) == canonical                  # the canonical form is a fixed point


GRAMMAR_ALPHABET = "netmap:vale0{}-*^/@xztrRT129,=_confsharextmofiletgbi. é\t"


def check_robust(text: str) -> None:
    try:
        s = parse_portspec(text)
    except PortSpecError as e:
        assert 0 <= e.position <= len(text)
        assert e.text == text and e.reason
        return
    assert same_request(parse_portspec(str(s)), s)    # anything accepted round-trips


@given(st.text(max_size=80))
def test_arbitrary_text_only_raises_portspec_error(text):
    check_robust(text)
    try:
        parse_legacy(text)
    except PortSpecError as e:
        assert 0 <= e.position <= len(text)


@given(st.sampled_from(["netmap:", "vale0:", "vale:", "netmap:eth0", ""]),
       st.text(GRAMMAR_ALPHABET, max_size=40))
def test_grammar_like_text_only_raises_portspec_error(prefix, rest):
    check_robust(prefix + rest)


@settings(max_examples=200)
@given(valid_specs(), st.data())
def test_mutated_valid_specs_only_raise_portspec_error(case, data):
    text = case[0]
    i = data.draw(st.integers(0, len(text)))
    op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    c = data.draw(st.sampled_from(GRAMMAR_ALPHABET + "\x00"))
    if op == "insert":
        text = text[:i] + c + text[i:]
    elif op == "delete":
        text = text[:i] + text[i + 1:]
    else:
        text = text[:i] + c + text[i + 1:]
    check_robust(text)
