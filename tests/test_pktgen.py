"""``pynetmap pkt-gen`` end to end: sender and receiver are separate processes started here, on
a pipe and on a VALE switch, on the chosen backend; its summary lines are read with the parser
the bench uses for C pkt-gen, so the two print alike.
"""
from __future__ import annotations

import functools
import io
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.pktgen import parse_summary
from netmap_tools import frames as fr
from netmap_tools.meter import Meter
from netmap_tools.pktgen import IDLE, SeqCheck, parse_args
from toolproc import BOUND, unique_name


@pytest.fixture
def pktgen(tool):
    """``start(*args) -> Tool``: a ``pynetmap pkt-gen`` process, killed after the test."""
    return functools.partial(tool, "pkt-gen")



def _pair(pktgen, rx_port: str, tx_port: str, rx_args=(), tx_args=()):
    """Start the receiver (stops 1 s after the last packet), then the sender; both results."""
    rx = pktgen("-i", rx_port, "-W", "-T", "0", *rx_args)
    rx.wait_ready()
    tx = pktgen("-i", tx_port, "-T", "0", *tx_args)
    assert tx.finish() == 0, tx.stderr
    rc = rx.finish()
    return tx, rx, rc


def test_tx_to_rx_through_a_pipe(pktgen):
    pipe = unique_name("pgp")
    tx, rx, rc = _pair(pktgen, f"netmap:{pipe}}}0", f"netmap:{pipe}{{0",
                       ("-f", "rx"), ("-f", "tx", "-n", "20000", "-l", "60"))
    assert rc == 0, rx.stderr
    sent, got = parse_summary(tx.stdout), parse_summary(rx.stdout)
    assert (sent.kind, sent.packets, sent.bytes, sent.size) == ("Sent", 20000, 20000 * 60, 60)
    assert (got.kind, got.packets, got.bytes) == ("Received", 20000, 20000 * 60)
    assert sent.pps > 0 and got.pps > 0 and 1 <= sent.avg_batch <= 512
    assert got.seconds < IDLE, "the receiver's time is first to last packet, not the -W wait"


def test_txseq_rxseq_sees_no_loss_with_ranges_and_random_lengths(pktgen):
    pipe = unique_name("pgs")
    tx, rx, rc = _pair(pktgen, f"{pipe}}}0", f"{pipe}{{0", ("-f", "rxseq", "--json"),
                       ("-f", "txseq", "-n", "30000", "-l", "64", "-l", "200", "-b", "100",
                        "-s", "10.0.0.1:1000-10.0.0.9:1003", "-Z", "--json"))
    assert rc == 0, rx.stderr
    sent, got = json.loads(tx.stdout), json.loads(rx.stdout)
    assert sent["packets"] == got["packets"] == 30000
    assert sent["bytes"] == got["bytes"]
    assert 30000 * 64 <= got["bytes"] <= 30000 * 200
    assert got["extra"] == {"lost": 0, "out_of_order": 0}


def test_fragments_count_as_packets(pktgen):
    pipe = unique_name("pgf")
    tx, rx, rc = _pair(pktgen, f"{pipe}}}0", f"{pipe}{{0", ("-f", "rx"),
                       ("-f", "tx", "-n", "900", "-l", "3000", "-F", "3", "-b", "64"))
    assert rc == 0, rx.stderr
    sent, got = parse_summary(tx.stdout), parse_summary(rx.stdout)
    assert sent.packets == got.packets == 900
    assert got.bytes == 900 * 3000
    assert got.events >= 1


def test_ping_pong_reports_latency(pktgen):
    pipe = unique_name("pgq")
    pong = pktgen("-i", f"{pipe}}}0", "-f", "pong", "-W", "-T", "0")
    pong.wait_ready()
    ping = pktgen("-i", f"{pipe}{{0", "-f", "ping", "-n", "300", "-b", "3", "-T", "0", "--json")
    assert ping.finish() == 0, ping.stderr
    assert pong.finish() == 0, pong.stderr
    res = json.loads(ping.stdout)
    assert res["extra"]["sent"] == res["extra"]["received"] == 300
    rtt = res["extra"]["rtt_us"]
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["max"]
    echoed = parse_summary(pong.stdout)
    assert echoed.kind == "Sent" and echoed.packets == 300


def test_vale_switch_delivers_what_it_does_not_drop(pktgen):
    sw = unique_name("vale")
    tx, rx, rc = _pair(pktgen, f"{sw}:r", f"{sw}:s", ("-f", "rxseq", "--json"),
                       ("-f", "txseq", "-n", "5000", "-R", "20000", "-b", "64", "--json"))
    sent, got = json.loads(tx.stdout), json.loads(rx.stdout)
    assert sent["packets"] == 5000
    assert 0 < got["packets"] <= 5000
    # a switch drops what does not fit, never reorders: every loss shows up as a gap
    assert got["extra"]["out_of_order"] == 0
    assert got["packets"] + got["extra"]["lost"] <= 5000
    assert rc == (0 if got["extra"]["lost"] == 0 else 3)


def test_csv_has_a_header_and_a_total_row(pktgen):
    pipe = unique_name("pgc")
    tx, rx, rc = _pair(pktgen, f"{pipe}}}0", f"{pipe}{{0", ("-f", "rx", "--csv"),
                       ("-f", "tx", "-n", "1000", "--csv"))
    lines = rx.stdout.strip().splitlines()
    assert lines[0] == "time,packets,bytes,pps,bps,avg_batch"
    total = lines[-1].split(",")
    assert total[:3] == ["total", "1000", "60000"]


def test_ctrl_c_stops_with_a_summary(pktgen):
    rx = pktgen("-i", f"{unique_name('pgi')}}}0", "-f", "rx", "-T", "100")
    rx.wait_ready()
    rx.proc.send_signal(signal.SIGINT)
    assert rx.finish() == 0, rx.stderr
    assert parse_summary(rx.stdout).packets == 0
    assert "Received nothing." in rx.stdout


def test_pcap_prototype_is_sent_as_is(opener, pktgen, tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    proto = Ether(src="02:00:00:00:00:07", dst="02:00:00:00:00:08") / IP(src="192.0.2.1", dst="192.0.2.2") \
        / UDP(sport=7, dport=9) / (b"prototype!" * 5)
    path = tmp_path / "proto.pcap"
    wrpcap(str(path), [proto, Ether() / b"second frame is ignored"])
    pipe = unique_name("pgx")
    port = opener(f"netmap:{pipe}}}0")
    tx = pktgen("-i", f"netmap:{pipe}{{0", "-f", "tx", "-n", "5", "-P", str(path), "-T", "0")
    assert tx.finish() == 0, tx.stderr
    ring = port.rx_rings[0]
    end = time.monotonic() + BOUND
    while ring.space() < 5 and time.monotonic() < end:
        port.poll(timeout=1.0)
    b = ring.ready()
    assert len(b) == 5
    assert {bytes(ring.payload(int(i))) for i in b.slot_idx} == {bytes(proto)}


def test_bad_options_fail_with_one_line(backend_name):
    for args, needle in ((["-i", "x{0", "-l", "8"], "-l=8"), (["-i", "x{0", "-F", "64"], "-F=64"),
                         (["-i", "x{0", "-s", "10.0.0.300"], "-s"),
                         (["-i", "x{0", "-f", "ping", "-l", "50"], "-l=50")):
        r = subprocess.run([sys.executable, "-m", "netmap_tools", "pkt-gen", *args, "--backend",
                            backend_name], capture_output=True, text=True, timeout=BOUND)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)


# --- the pieces, without a port ---------------------------------------------------------------
def test_seq_check_counts_gaps_and_reordering():
    c = SeqCheck()
    c.check(np.array([5, 6, 7], np.uint32))
    c.check(np.array([10, 9, 11], np.uint32))   # 8 lost at 10 (2: 8, 9), 9 late
    assert (c.lost, c.disorder) == (2, 1)
    w = SeqCheck()
    w.check(np.array([0xFFFFFFFE], np.uint32))
    w.check(np.array([0xFFFFFFFF, 0, 1], np.uint32))   # the 32-bit number wraps: no loss
    assert (w.lost, w.disorder, w.expect) == (0, 0, 2)


def test_frames_pass_an_independent_parser():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    o = parse_args(["-i", "p{0", "-l", "97", "-s", "10.0.0.3:99", "-D", "02:01:02:03:04:05"])
    raw = fr.build_frame(o.length, o.src, o.dst, o.smac, o.dmac)
    assert len(raw) == 97
    pkt = Ether(raw)
    assert pkt.dst == "02:01:02:03:04:05" and pkt[IP].src == "10.0.0.3" and pkt[UDP].sport == 99
    # scapy recomputes both checksums from scratch: they must equal what we wrote
    ref = Ether(bytes(pkt.__class__(bytes(pkt))))
    del ref[IP].chksum, ref[UDP].chksum
    ref = Ether(bytes(ref))
    assert (pkt[IP].chksum, pkt[UDP].chksum) == (ref[IP].chksum, ref[UDP].chksum)
    # varied addresses: the vectorised header checksum matches scapy's for every frame
    rows = np.tile(np.frombuffer(raw, np.uint8), (4, 1))
    rows[:, 26:30] = np.array([[10, 0, 0, i] for i in range(4)], np.uint8)
    sums = fr.ip_checksums(rows[:, 14:34].copy())
    for row, s in zip(rows, sums):
        p = Ether(bytes(row))
        del p[IP].chksum
        assert Ether(bytes(p))[IP].chksum == int(s)


def _meter_on_a_fake_clock(monkeypatch):
    """(clock, out, meter): a 1 s-interval text Meter writing to ``out``, whose time.monotonic
    returns ``clock["t"]`` and counts its calls in ``clock["reads"]``."""
    from netmap_tools import meter as m

    clock = {"t": 100.0, "reads": 0}

    def monotonic() -> float:
        clock["reads"] += 1
        return clock["t"]

    monkeypatch.setattr(m.time, "monotonic", monotonic)
    out = io.StringIO()
    return clock, out, m.Meter(1.0, "text", out=out)


def test_meter_reads_the_clock_every_few_batches_and_after_every_wait(monkeypatch):
    """A sender ticks once a batch: the clock is read ~16 times a report interval, the rate
    line comes at most an eighth of an interval late, and a tick with a time (after a wait)
    puts the stride back to 1, so a slower pace does not delay the lines."""
    clock, out, meter = _meter_on_a_fake_clock(monkeypatch)
    lines_at = []
    for _ in range(320_000):             # 3.2 s of 10-us batches
        clock["t"] += 10e-6
        meter.add(512, 512 * 60)
        before = out.tell()
        meter.tick()
        if out.tell() != before:
            lines_at.append(clock["t"] - 100.0)
    assert clock["reads"] < 320, clock["reads"]     # against one read per batch: 320,000
    assert len(lines_at) == 3
    assert all(k + 1 <= t <= k + 1 + 1 / 8 for k, t in enumerate(lines_at)), lines_at
    meter.tick(clock["t"])               # the sender waited: the next batch reads the clock
    reads = clock["reads"]
    clock["t"] += 1.5
    meter.tick()
    assert clock["reads"] == reads + 1 and out.getvalue().count("pps") == 4


def test_meter_totals_are_called_back_every_few_batches(monkeypatch):
    """The usual tx and rx loops count in locals and hand their totals over when Meter.totals
    says: the same ~16 clock reads an interval and lines at most an eighth of an interval late as a
    tick every batch, the totals exact, min_space the least sample, and after a wait (a time
    given) the very next batch calls again."""
    clock, out, meter = _meter_on_a_fake_clock(monkeypatch)
    sent = events = calls = 0
    due = 1
    lines_at = []
    for i in range(320_000):             # 3.2 s of 10-us batches of 512
        clock["t"] += 10e-6
        sent += 512
        events += 1
        due -= 1
        if not due:
            calls += 1
            before = out.tell()
            due = meter.totals(sent, sent * 60, events, 4000 - i % 7)
            assert due >= 1
            if out.tell() != before:
                lines_at.append(clock["t"] - 100.0)
    assert calls < 320 and clock["reads"] == calls + 1, (calls, clock["reads"])   # +1: Meter()
    assert len(lines_at) == 3
    assert all(k + 1 <= t <= k + 1 + 1 / 8 for k, t in enumerate(lines_at)), lines_at
    assert (meter.packets, meter.bytes, meter.events) <= (sent, sent * 60, events)
    assert meter.totals(sent, sent * 60, events, 17, clock["t"]) == 1   # after a wait
    assert (meter.packets, meter.bytes, meter.events) == (sent, sent * 60, events)
    meter.tick(clock["t"] + 1.0)
    assert out.getvalue().splitlines()[-1].endswith(" 17 min_space")
    assert Meter(0, "text", out=io.StringIO()).totals(1, 60, 1, 5) > 1000   # no lines: rarely
