"""The example network functions (examples/firewall.py, lb.py, nat.py), property-tested over
pipes of the chosen backend (--backend): generator -> NF -> sink, frames drawn by
netmap_core.testing.frames, results checked against a per-frame model of each NF."""
from __future__ import annotations

import importlib.util
import ipaddress
import itertools
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netmap_core import headers as hd
from netmap_core.testing import frames as fr

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
_names = itertools.count()


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


fw, lb, nat = load("firewall"), load("lb"), load("nat")


class Wire:
    """``gen`` -> pipe -> ``nf_in`` (the NF's input); NF outputs ``nf_out[j]`` -> pipe ->
    ``sink[j]``. A test opens one and runs all its Hypothesis examples over it: every example
    drains what it sent."""

    def __init__(self, opener, outputs: int) -> None:
        base = f"nf{os.getpid()}x{next(_names)}"
        self.gen = opener(f"netmap:{base}{{in")
        self.nf_in = opener(f"netmap:{base}}}in")
        self.nf_out = [opener(f"netmap:{base}{{{j}") for j in range(outputs)]
        self.sink = [opener(f"netmap:{base}}}{j}") for j in range(outputs)]

    def send(self, frames: list[bytes], port=None) -> None:
        from netmap_core.interop import send_packets

        port = port or self.gen
        assert send_packets(port.tx_rings[0], frames) == len(frames)
        port.txsync()
        self.nf_in.rxsync()

    def received(self, j: int = 0, port=None) -> list[bytes]:
        port = port or self.sink[j]
        port.rxsync()
        ring = port.rx_rings[0]
        b = ring.ready()
        out = [bytes(ring.payload(i)) for i in b.slot_idx.tolist()]
        ring.advance(len(b))
        return out


# --- firewall ---------------------------------------------------------------------------------
_nets = st.builds(lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
                  st.integers(0, 2**32 - 1), st.integers(0, 32))
_range = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(sorted).map(tuple)
_rules = st.builds(fw.Rule, st.sampled_from(fw.ACTIONS), st.none() | st.sampled_from([1, 6, 17]),
                   st.none() | _nets, st.none() | _nets, st.none() | _range, st.none() | _range)


def firewall_model(e: fr.Expected, rules, default: str) -> bool:
    """Whether the firewall passes a frame: one frame, one rule at a time."""
    if e.error != hd.OK:
        return False
    if e.ip_version == 6:
        return False
    if e.ip_version == 0:
        return True
    src, dst = ipaddress.IPv4Address(e.src), ipaddress.IPv4Address(e.dst)
    for r in rules:
        if ((r.proto is None or r.proto == e.proto)
                and (r.src is None or src in r.src) and (r.dst is None or dst in r.dst)
                and (r.sport is None or r.sport[0] <= e.sport <= r.sport[1])
                and (r.dport is None or r.dport[0] <= e.dport <= r.dport[1])):
            return r.action == "allow"
    return default == "allow"


def test_firewall_passes_exactly_what_the_acl_allows(opener):
    w = Wire(opener, 1)

    @SETTINGS
    @given(st.lists(fr.frames(malformed=0.2), min_size=1, max_size=60),
           st.lists(_rules, max_size=6), st.sampled_from(fw.ACTIONS), st.data())
    def run(frames, rules, default, data):
        # rules that surely match some frames: copy fields of drawn frames into a few rules
        rules = list(rules)
        for f in frames[:3]:
            e = f.expected
            if e.ip_version == 4 and e.error == hd.OK and data.draw(st.booleans()):
                rules.insert(0, fw.Rule(data.draw(st.sampled_from(fw.ACTIONS)), e.proto,
                                        ipaddress.IPv4Network(e.src), None, None, (e.dport, e.dport)))
        acl = fw.Acl(rules, default)
        w.send([f.data for f in frames])
        passed, dropped = fw.filter_once(w.nf_in, w.nf_out[0], acl, timeout=1.0)
        want = [f.data for f in frames if firewall_model(f.expected, rules, default)]
        assert (passed, dropped) == (len(want), len(frames) - len(want))
        assert w.received() == want

    run()


def test_firewall_rules_parse_from_text_and_bad_ones_say_why():
    r = fw.Rule.parse("deny proto=udp src=10.0.0.0/8 dport=53-54")
    assert (r.action, r.proto, str(r.src), r.dport, r.sport) == ("deny", 17, "10.0.0.0/8", (53, 54), None)
    with pytest.raises(ValueError, match="must start with one of"):
        fw.Rule.parse("drop proto=udp")
    with pytest.raises(ValueError, match="'port=53' is not"):
        fw.Rule.parse("deny port=53")


# --- load balancer ----------------------------------------------------------------------------
def test_maglev_table_is_balanced_and_disrupts_little_when_a_backend_goes():
    names = [f"backend{i}" for i in range(5)]
    t = lb.maglev_table(names, 1021)
    counts = np.bincount(t, minlength=5)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1021
    t4 = lb.maglev_table(names[:2] + names[3:], 1021)   # backend2 gone
    moved = np.count_nonzero((t != 2) & (np.array(names, object)[t] != np.array(names[:2] + names[3:],
                                                                                  object)[t4]))
    assert moved / np.count_nonzero(t != 2) < 0.1, moved
    with pytest.raises(ValueError, match="must be a prime"):
        lb.maglev_table(names, 1000)


_v4_flow = st.tuples(fr.ipv4_addrs(), fr.ipv4_addrs(), st.sampled_from([6, 17]),
                     st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))


def flow_frame(flow, reverse: bool = False) -> bytes:
    s, d, proto, sp, dp = flow
    if reverse:
        s, d, sp, dp = d, s, dp, sp
    seg = fr.udp(sp, dp, b"x", src=s, dst=d) if proto == 17 else fr.tcp(sp, dp, src=s, dst=d)
    return fr.ethernet(hd.ETH_IPV4, fr.ipv4(s, d, proto, seg))


def test_lb_keeps_both_directions_of_a_flow_on_one_backend(opener):
    w = Wire(opener, 3)

    @SETTINGS
    @given(st.lists(_v4_flow, min_size=1, max_size=12, unique=True), st.data())
    def run(flows, data):
        table = lb.maglev_table(["a", "b", "c"], 251)
        picks = data.draw(st.lists(st.tuples(st.integers(0, len(flows) - 1), st.booleans()),
                                   min_size=1, max_size=100))
        frames = [flow_frame(flows[i], rev) for i, rev in picks]
        w.send(frames)
        assert lb.balance_once(w.nf_in, w.nf_out, table, timeout=1.0) == (len(frames), 0)
        where: dict[tuple, set[int]] = {}
        got = []
        for j in range(3):
            for f in w.received(j):
                got.append(f)
                h = hd.parse(np.frombuffer(f, np.uint8)[None])
                key = tuple(sorted([(int(h.src4[0]), int(h.sport[0])), (int(h.dst4[0]), int(h.dport[0]))]))
                where.setdefault(key + (int(h.proto[0]),), set()).add(j)
                assert j == int(lb.choose(table, h.hash)[0])
        assert sorted(got) == sorted(frames)
        assert all(len(v) == 1 for v in where.values())

    run()


def test_lb_spreads_many_flows_over_every_backend(opener):
    w = Wire(opener, 3)
    table = lb.maglev_table(["a", "b", "c"], 251)
    flows = [(b"\x0a\0\0\x01", b"\x0a\0\x01" + bytes([i]), 17, 1000 + i, 80) for i in range(200)]
    w.send([flow_frame(f) for f in flows])
    assert lb.balance_once(w.nf_in, w.nf_out, table) == (200, 0)
    shares = [len(w.received(j)) for j in range(3)]
    assert sum(shares) == 200 and min(shares) > 30, shares


# --- NAT --------------------------------------------------------------------------------------
PUBLIC = "203.0.113.7"


def checksums_ok(frame: bytes) -> bool:
    h = hd.parse(np.frombuffer(frame, np.uint8)[None])
    l3, l4, end = int(h.l3[0]), int(h.l4[0]), int(h.ip_end[0])
    ihl = (frame[l3] & 0x0F) * 4
    seg = frame[l4:end]
    pseudo = frame[l3 + 12:l3 + 20] + struct.pack("!BBH", 0, int(h.proto[0]), len(seg))
    return fr.inet_checksum(frame[l3:l3 + ihl]) == 0 and fr.inet_checksum(pseudo + seg) == 0


def test_nat_translates_out_and_back_with_valid_checksums(opener):
    w = Wire(opener, 1)

    @SETTINGS
    @given(st.lists(_v4_flow, min_size=1, max_size=10, unique_by=lambda f: (f[0], f[2], f[3])),
           st.lists(st.integers(0, 9), min_size=1, max_size=80), st.lists(fr.frames(), max_size=5))
    def run(flows, order, junk):
        table = nat.Nat(PUBLIC)
        sent = [flows[i % len(flows)] for i in order]
        untranslatable = [f.data for f in junk
                          if not (f.expected.error == hd.OK and f.expected.ip_version == 4
                                  and f.expected.proto in (6, 17) and f.expected.l4 >= 0)]
        w.send([flow_frame(f) for f in sent] + untranslatable)
        fwd, dropped = nat.process_batch(w.nf_in.rx_rings[0], w.nf_out[0].tx_rings[0], table, outbound=True)
        w.nf_out[0].txsync()
        assert (fwd, dropped) == (len(sent), len(untranslatable))
        out = w.received()
        public_port: dict[tuple, int] = {}
        replies = []
        for flow, f in zip(sent, out):
            h = hd.parse(np.frombuffer(f, np.uint8)[None])
            assert ipaddress.IPv4Address(int(h.src4[0])) == ipaddress.IPv4Address(PUBLIC)
            assert int(h.dst4[0]).to_bytes(4, "big") == flow[1] and int(h.dport[0]) == flow[4]
            assert checksums_ok(f)
            assert public_port.setdefault((flow[0], flow[2], flow[3]), int(h.sport[0])) == int(h.sport[0])
            replies.append(flow_frame((bytes(4), flow[1], flow[2], int(h.sport[0]), flow[4]), reverse=True))
        assert len(set(public_port.values())) == len(public_port)   # one public port per flow
        # replies come back from the outside, addressed to the public address
        replies = [r[:30] + ipaddress.IPv4Address(PUBLIC).packed + r[34:] for r in replies]
        replies = [_fix_checksums(r) for r in replies]
        w.send(replies, port=w.sink[0])   # the sink's end sends back into the NF's outside port
        w.nf_out[0].rxsync()
        fwd, dropped = nat.process_batch(w.nf_out[0].rx_rings[0], w.nf_in.tx_rings[0], table, outbound=False)
        w.nf_in.txsync()
        assert (fwd, dropped) == (len(sent), 0)
        back = w.received(port=w.gen)
        for flow, f in zip(sent, back):
            h = hd.parse(np.frombuffer(f, np.uint8)[None])
            assert int(h.dst4[0]).to_bytes(4, "big") == flow[0] and int(h.dport[0]) == flow[3]
            assert int(h.src4[0]).to_bytes(4, "big") == flow[1] and checksums_ok(f)

    run()


def _fix_checksums(frame: bytes) -> bytes:
    """Rebuild a frame's IPv4/L4 checksums from scratch (the test's own replies)."""
    h = hd.parse(np.frombuffer(frame, np.uint8)[None])
    l3, l4, end = int(h.l3[0]), int(h.l4[0]), int(h.ip_end[0])
    s, d = frame[l3 + 12:l3 + 16], frame[l3 + 16:l3 + 20]
    seg = frame[l4:end]
    seg = (fr.udp(int(h.sport[0]), int(h.dport[0]), seg[8:], src=s, dst=d) if h.proto[0] == 17
           else fr.tcp(int(h.sport[0]), int(h.dport[0]), seg[20:], src=s, dst=d))
    return fr.ethernet(hd.ETH_IPV4, fr.ipv4(s, d, int(h.proto[0]), seg),
                       dst=frame[:6], src=frame[6:12])


def test_nat_drops_unknown_inbound_and_refuses_new_flows_when_ports_run_out(opener):
    w = Wire(opener, 1)
    table = nat.Nat(PUBLIC, ports=(30000, 30001))
    flows = [(b"\x0a\0\0" + bytes([i]), b"\x08\x08\x08\x08", 17, 5000, 53) for i in range(3)]
    w.send([flow_frame(f) for f in flows])
    assert nat.process_batch(w.nf_in.rx_rings[0], w.nf_out[0].tx_rings[0], table, outbound=True) == (2, 1)
    w.nf_out[0].txsync()
    assert table.exhausted == 1 and len(w.received()) == 2
    stray = flow_frame((b"\x08\x08\x08\x08", ipaddress.IPv4Address(PUBLIC).packed, 17, 53, 40000))
    w.send([stray], port=w.sink[0])
    w.nf_out[0].rxsync()
    assert nat.process_batch(w.nf_out[0].rx_rings[0], w.nf_in.tx_rings[0], table, outbound=False) == (0, 1)


@pytest.mark.parametrize("name", ["firewall", "lb", "nat"])
def test_each_example_main_runs_as_a_program(name, backend_name, opener, monkeypatch, capsys):
    """The runnable main: forwards -n packets between real ports, then prints its counts."""
    monkeypatch.setenv("PYNETMAP_BACKEND", backend_name)
    base = f"m{name[:2]}{os.getpid()}x{next(_names)}"
    gen, sink = opener(f"netmap:{base}{{in"), opener(f"netmap:{base}}}out")
    flows = [(b"\x0a\0\0\x01", b"\x0a\0\x01\x01", 17, 1000 + i, 80) for i in range(8)]
    gen.tx_rings[0].fill(data=np.stack([np.frombuffer(flow_frame(f), np.uint8) for f in flows]))
    gen.txsync()
    mod = load(name)
    args = {"firewall": ["-i", f"netmap:{base}}}in", "-o", f"netmap:{base}{{out",
                         "--rule", "deny dport=80", "--rule", "allow", "-n", "8"],
            "lb": ["-i", f"netmap:{base}}}in", "-o", f"netmap:{base}{{out", "-n", "8"],
            "nat": ["--inside", f"netmap:{base}}}in", "--outside", f"netmap:{base}{{out",
                    "--public", PUBLIC, "-n", "8"]}[name]
    assert mod.main(args) == 0
    out = capsys.readouterr().out
    assert {"firewall": "passed 0, dropped 8", "lb": "forwarded 8, dropped 0",
            "nat": "forwarded 8, dropped 0, flows 8"}[name] in out
    sink.rxsync()
    assert sink.rx_rings[0].space() == (0 if name == "firewall" else 8)


def test_readme_parsing_example_runs(backend_name, monkeypatch, capsys):
    import re

    monkeypatch.setenv("PYNETMAP_BACKEND", backend_name)
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Parsing headers, and dpkt / scapy.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("hdr{0", f"hdr{os.getpid()}{{0").replace("hdr}0", f"hdr{os.getpid()}}}0")
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["True", "[53,", "53,", "53,", "53]", "True"]


def test_nf_bench_rows_deliver_every_frame(backend_name, tmp_path):
    """bench/nf.py's rows run (generator -> NF -> sink, three processes) and lose nothing."""
    import json
    import subprocess

    if backend_name != "emu":
        pytest.skip("the nf-emu-* rows measure the emulator")
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "bench", "--only", "nf-emu-lb", "nf-emu-nat", "--sizes", "60",
           "--work", "none", "--repeat", "1", "--duration", "0.05", "--no-plot", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["id"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"nf-emu-lb", "nf-emu-nat"}
    for r in rows.values():
        assert r["status"] == "ok", r
        assert all(run["lost"] == 0 and run["packets"] > 0 for run in r["runs"])


def test_parse_cost_reports_each_batch_size(backend_name, monkeypatch):
    if backend_name != "emu":
        pytest.skip("the parser bench runs on the emulator")
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.nf import parse_cost

    rows = parse_cost(sizes=(32, 256), repeat=1)
    assert [r["batch"] for r in rows] == [32, 256]
    assert all(r["parse"] > 0 and r["parse_batch"] > 0 for r in rows)
