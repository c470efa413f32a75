"""``pynetmap bridge`` and ``pynetmap lb`` end to end: generator, network function and sinks are
separate processes started here (pkt-gen on both sides), on the chosen backend."""
from __future__ import annotations

import json
import re
import signal

import pytest

from bench.pktgen import parse_summary
from netmap_core.errors import InvalidRequestError
from netmap_tools.lb import Group, parse_group, pipe_names
from toolproc import Tool, unique_name


def _stop(t: Tool) -> int:
    t.proc.send_signal(signal.SIGINT)
    return t.finish()


@pytest.mark.parametrize("zero_copy", [True, False], ids=["shared-pool", "two-pools"])
def test_bridge_forwards_both_ways(tool, zero_copy):
    a = unique_name("bra")
    b = a if zero_copy else unique_name("brb")
    # the bridge sits between two pipes: A{0 -> A}0 = bridge = B}1 -> B{1 (one parent: one pool)
    br = tool("bridge", "-i", f"netmap:{a}}}0", "-i", f"netmap:{b}}}1", "-T", "0")
    br.wait_ready("bridge:")
    assert ("zero copy" if zero_copy else "copy,") in br.stderr
    rx = tool("pkt-gen", "-i", f"netmap:{b}{{1", "-f", "rxseq", "-W", "-T", "0", "--json")
    rx.wait_ready()
    tx = tool("pkt-gen", "-i", f"netmap:{a}{{0", "-f", "txseq", "-n", "20000", "-T", "0")
    assert tx.finish() == 0, tx.stderr
    assert rx.finish() == 0, rx.stderr
    got = json.loads(rx.stdout)
    assert got["packets"] == 20000 and got["extra"] == {"lost": 0, "out_of_order": 0}
    # and back: B{1 -> bridge -> A{0
    rx2 = tool("pkt-gen", "-i", f"netmap:{a}{{0", "-f", "rx", "-W", "-T", "0")
    rx2.wait_ready()
    tx2 = tool("pkt-gen", "-i", f"netmap:{b}{{1", "-f", "tx", "-n", "3000", "-T", "0")
    assert tx2.finish() == 0, tx2.stderr
    assert rx2.finish() == 0, rx2.stderr
    assert parse_summary(rx2.stdout).packets == 3000
    assert _stop(br) == 0, br.stderr
    m = re.search(r"forwarded (\d+) packets \(A->B (\d+), B->A (\d+)\)", br.stdout)
    assert m and tuple(map(int, m.groups())) == (23000, 20000, 3000), br.stdout


def test_lb_spreads_flows_over_pipes(tool):
    src, out = unique_name("lbi"), unique_name("lbo")
    lb = tool("lb", "-i", f"netmap:{src}}}0", "-p", f"{out}:2", "-o", "0")
    lb.wait_ready("lb:")
    # the sinks run until stopped: lb, stopped first, waits until they took all it forwarded
    sinks = [tool("pkt-gen", "-i", f"netmap:{out}}}{k}", "-f", "rx", "-T", "0") for k in (0, 1)]
    for s in sinks:
        s.wait_ready()
    # 64 flows (source ports 1000..1063), paced so that a slow sink rarely overflows
    tx = tool("pkt-gen", "-i", f"netmap:{src}{{0", "-f", "tx", "-n", "10000", "-R", "20000",
              "-s", "10.0.0.1:1000-10.0.0.1:1063", "-T", "0")
    assert tx.finish() == 0, tx.stderr
    assert _stop(lb) == 0, lb.stderr
    assert "still held frames" not in lb.stderr
    got = [parse_summary(s.stdout).packets if _stop(s) == 0 else -1 for s in sinks]
    m = re.search(r"(\d+) packets forwarded.  (\d+) packets dropped. Total (\d+)", lb.stdout)
    assert m, lb.stdout
    forwarded, dropped, total = map(int, m.groups())
    assert total == 10000 and forwarded + dropped == total
    assert sum(got) == forwarded
    assert min(got) > 0, f"one pipe got nothing: {got}"


def test_lb_bad_group_is_a_precise_error():
    with pytest.raises(InvalidRequestError, match="allowed: 1..64"):
        parse_group("x:0")
    with pytest.raises(InvalidRequestError, match="missing name"):
        parse_group(":3")
    assert parse_group("7") == Group(None, 7)
    assert pipe_names("in", [Group(None, 2), Group("vale1:o", 1), Group(None, 1)], 5) == [
        ["netmap:in{0/xT@5", "netmap:in{1/xT@5"], ["vale1:o{0/xT@5"], ["netmap:in{2/xT@5"]]
