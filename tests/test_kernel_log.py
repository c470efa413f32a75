"""The netmap kernel log check (tests/kernel_log.py): /dev/kmsg records, what counts as a netmap
problem, and the plugin's verdicts, fed with records as the lab's kernel printed them."""
from __future__ import annotations

import os
from typing import ClassVar

import pytest

from tests import kernel_log as kl

pytest_plugins = ["pytester"]

# as read() returned them from /dev/kmsg in the lab guest (netmap 89607e1, Debian 6.1)
API_MISMATCH = (b"3,398,18318807,-;803.149302 [2776] netmap_ioctl              "
                b"API mismatch: got 13 need 14\n")
PROLOGUE = (b"6,399,18537247,-;803.367739 [1746] nm_txsync_prologue        vale9:a TX0: fail "
            b"'head < kring->rhead || head > kring->rtail' "
            b"h 1027 c 0 t 1023 rh 0 rc 0 rt 1023 hc 0 ht 1023\n")
REINIT = b"6,400,18537435,-;803.367948 [1854] netmap_ring_reinit        called for vale9:a TX0\n"
LOADED = b"6,60,3983006,-;788.813515 [4652] netmap_init               netmap: loaded module\n"
TAINT = b"4,57,3965504,-;netmap: loading out-of-tree module taints kernel.\n"
UNSIGNED = (b"5,58,3968819,-;netmap: module verification failed: "
            b"signature and/or required key missing - tainting kernel\n")
DOUBLE_FREE = (b"3,500,20000000,-;812.000001 [1079] netmap_obj_free           "
               b"ouch, double free on buffer 7\n")
WARN_SPLAT = (b"4,501,20000100,-;WARNING: CPU: 1 PID: 231 at sys/dev/netmap/netmap_mem2.c:1234 "
              b"netmap_mem_deref+0x51/0x90 [netmap]\n")
MODULES = b"4,502,20000200,c;Modules linked in: netmap(OE) 9p overlay\n"
OTHER_ERR = b"3,503,20000300,-;EXT4-fs error (device vda1): bad block\n"
FROM_USER = b"12,504,20000400,-;netmap: a line a process wrote to /dev/kmsg\n"
BRIDGE = (b"3,506,20000600,-;216.706608 [ 192] nm_find_bridge            "
          b"invalid bridge name vale128Z\n")          # nm_prerr from a function not named netmap_*
CMDLINE = (b"5,0,0,-;Kernel command line: console=ttyS0 quiet netmaplab.run=/lab/share/run.x "
           b"netmaplab.share=/lab/share\n")
WITH_FIELDS = (b"3,505,20000500,-;virtio_net virtio0: tab\\x09and backslash \\x5c here\n"
               b" SUBSYSTEM=virtio\n DEVICE=+virtio:virtio0\n")


def rec(raw: bytes) -> kl.Record:
    return kl.parse_record(raw)


def test_parse_record_header_and_text():
    r = rec(API_MISMATCH)
    assert (r.level, r.level_name, r.facility, r.seq, r.usec) == (3, "err", 0, 398, 18318807)
    assert r.text == "803.149302 [2776] netmap_ioctl              API mismatch: got 13 need 14"
    assert str(r) == "<err> [   18.318807] " + r.text


def test_parse_record_escapes_and_fields():
    r = rec(WITH_FIELDS)
    assert r.text == "virtio_net virtio0: tab\tand backslash \\ here"
    assert r.fields == (("SUBSYSTEM", "virtio"), ("DEVICE", "+virtio:virtio0"))
    assert rec(FROM_USER).facility == 1 and rec(FROM_USER).level == 4


@pytest.mark.parametrize("raw", [b"", b"no header here\n", b"3,1;short header\n"],
                         ids=["empty", "no-header", "short"])
def test_parse_record_refuses_other_text(raw):
    with pytest.raises(ValueError):
        kl.parse_record(raw)


@pytest.mark.parametrize("raw,netmap,problem", [
    pytest.param(API_MISMATCH, True, True, id="nm_prerr"),      # KERN_ERR
    pytest.param(DOUBLE_FREE, True, True, id="double-free"),
    pytest.param(PROLOGUE, True, False, id="nm_prlim"),         # KERN_INFO: the app broke a ring rule
    pytest.param(REINIT, True, False, id="ring-reinit"),
    pytest.param(LOADED, True, False, id="nm_prinf"),
    pytest.param(TAINT, True, False, id="taint"),               # once a boot, on loading netmap.ko
    pytest.param(UNSIGNED, True, False, id="unsigned"),
    pytest.param(WARN_SPLAT, True, True, id="WARN_ON"),         # the kernel's report on netmap code
    pytest.param(MODULES, True, True, id="splat-modules"),      # any splat's module list names netmap
    pytest.param(BRIDGE, True, True, id="nm_prerr-in-nm_function"),
    pytest.param(OTHER_ERR, False, False, id="not-netmap"),
    pytest.param(CMDLINE, False, False, id="lab-boot-parameters"),
    pytest.param(FROM_USER, False, False, id="user-facility"),  # a process wrote it, whatever it says
])
def test_which_records_are_netmap_problems(raw, netmap, problem):
    assert (kl.is_netmap(rec(raw)), kl.is_problem(rec(raw))) == (netmap, problem)


def test_problems_minus_the_declared_ones():
    records = [rec(r) for r in (LOADED, API_MISMATCH, PROLOGUE, DOUBLE_FREE, OTHER_ERR)]
    assert [r.seq for r in kl.problems(records)] == [398, 500]
    assert [r.seq for r in kl.problems(records, [r"API mismatch: got 1[36] need 14"])] == [500]
    assert kl.problems(records, ["API mismatch", r"double free on buffer \d+"]) == []


def test_read_records_until_empty_noting_overwritten_ones():
    script = [API_MISMATCH, BrokenPipeError(), PROLOGUE, BlockingIOError(), REINIT]

    def read():
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    out = list(kl.read_records(read))
    assert [None if r is None else r.seq for r in out] == [398, None, 399]
    assert script == [REINIT]


def test_report_text_lists_problems_then_the_other_netmap_lines():
    seen = [rec(r) for r in (LOADED, API_MISMATCH, PROLOGUE, OTHER_ERR)]
    text = kl.report_text(kl.problems(seen), seen)
    lines = text.splitlines()
    assert lines[0] == "netmap reported problems in the kernel log during this test:"
    assert "API mismatch: got 13 need 14" in lines[1] and lines[1].startswith("    <err>")
    assert "kernel_warnings" in lines[2]
    assert "netmap: loaded module" in text and "nm_txsync_prologue" in text
    assert "EXT4" not in text


def test_netmap_log_is_the_netmap_lines_and_their_count():
    records = [rec(r) for r in (CMDLINE, TAINT, LOADED, OTHER_ERR, API_MISMATCH, PROLOGUE, BRIDGE)]
    lines = kl.netmap_log(records)
    assert lines[:-1] == [str(rec(r)) for r in (TAINT, LOADED, API_MISMATCH, PROLOGUE, BRIDGE)]
    assert lines[-1] == "5 netmap lines (2 err, 1 warning, 2 info); 2 at warning level or worse"
    assert kl.netmap_log([]) == ["0 netmap lines (none); 0 at warning level or worse"]


def test_long_listings_are_cut_in_the_middle():
    many = [kl.Record(6, 0, i, i, f"001.000000 [  1] f line {i}") for i in range(100)]
    lines = kl._listing(many, limit=10)
    assert len(lines) == 11 and "line 0" in lines[0] and "line 99" in lines[-1]
    assert "90 more" in lines[5]


@pytest.mark.skipif(not os.access(kl.KMSG, os.R_OK), reason=f"{kl.KMSG} not readable here")
def test_reader_starts_at_the_end_of_the_log():
    reader = kl.KmsgReader()
    try:
        first = reader.read()          # only what was printed since the open: a handful at most
        assert len(first) < 50 and all(isinstance(r, kl.Record) for r in first)
    finally:
        reader.close()


# --- the plugin in a pytest run, with a stand-in for /dev/kmsg ---------------------------------

class ScriptedKmsg:
    """Each read() returns the next list of records from ``SCRIPT``: the plugin reads once after
    each test's body and once after its teardown."""
    SCRIPT: ClassVar[list[list[bytes]]] = []

    def __init__(self, path=kl.KMSG):
        self.overrun = False

    def read(self):
        return [kl.parse_record(r) for r in self.SCRIPT.pop(0)]

    def close(self):
        pass


INNER_CONFTEST = """
pytest_plugins = ["tests.kernel_log"]

def pytest_configure(config):
    config.addinivalue_line("markers", "kernel_warnings(*regex): provoked on purpose")
"""

INNER_TESTS = """
import pytest

@pytest.fixture
def port():
    yield

def test_clean():
    pass

def test_body_problem():
    pass

def test_teardown_problem(port):
    pass

@pytest.mark.kernel_warnings(r"API mismatch: got \\d+ need 14")
def test_declared():
    pass

@pytest.mark.kernel_warnings(r"API mismatch")
def test_declared_other_problem():
    pass

def test_info_only():
    pass

def test_fails_anyway():
    assert False
"""


def run_inner(pytester, monkeypatch, script, *args):
    monkeypatch.setattr(kl, "KmsgReader", ScriptedKmsg)
    monkeypatch.setattr(ScriptedKmsg, "SCRIPT", [list(s) for s in script])
    pytester.syspathinsert(os.path.dirname(os.path.dirname(__file__)))
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester.inline_run("-p", "no:cacheprovider", "-p", "no:randomly", *args)


def test_plugin_verdicts(pytester, monkeypatch):
    script = [
        [LOADED], [],                         # test_clean: info only
        [API_MISMATCH], [],                   # test_body_problem: err in the body
        [PROLOGUE], [DOUBLE_FREE],            # test_teardown_problem: err when the port closes
        [API_MISMATCH], [],                   # test_declared
        [API_MISMATCH, DOUBLE_FREE], [],      # test_declared_other_problem
        [PROLOGUE, REINIT], [TAINT],          # test_info_only
        [REINIT], [],                         # test_fails_anyway: the netmap lines as a section
    ]
    result = run_inner(pytester, monkeypatch, script, "--backend=netmap")
    by = {}
    for r in result.getreports("pytest_runtest_logreport"):
        by.setdefault(r.nodeid.split("::")[1], {})[r.when] = r
    assert ScriptedKmsg.SCRIPT == []
    assert by["test_clean"]["call"].passed and by["test_clean"]["teardown"].passed
    assert by["test_body_problem"]["call"].failed
    assert "API mismatch: got 13 need 14" in str(by["test_body_problem"]["call"].longrepr)
    assert by["test_teardown_problem"]["call"].passed
    assert by["test_teardown_problem"]["teardown"].failed
    td = str(by["test_teardown_problem"]["teardown"].longrepr)
    assert "double free on buffer 7" in td and "nm_txsync_prologue" in td   # with the body's lines
    assert by["test_declared"]["call"].passed
    bad = str(by["test_declared_other_problem"]["call"].longrepr)
    assert by["test_declared_other_problem"]["call"].failed and "double free" in bad
    assert "API mismatch" not in bad.split("Its other")[0]
    assert by["test_info_only"]["call"].passed and by["test_info_only"]["teardown"].passed
    fails = by["test_fails_anyway"]["call"]
    assert fails.failed
    assert ("netmap kernel log", f"    {kl.parse_record(REINIT)}") in fails.sections


def test_plugin_is_off_on_the_emulator(pytester, monkeypatch):
    result = run_inner(pytester, monkeypatch, [])        # no read at all
    result.assertoutcome(passed=6, failed=1)
