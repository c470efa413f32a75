"""Runs one benchmark row: each role (sender, receivers) in its own process, a fixed packet
count, calibrated to a target duration and repeated; the median decides.

Throughput of one run = packets delivered / (last receiver's end - first sender's start), both
read from CLOCK_MONOTONIC, which every process on the machine shares. Roles do their set-up
(open ports, prefill buffers) before a barrier, so set-up is never timed.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "WORKS", "Config", "Params", "Role", "Scenario", "Sample", "RowResult", "BenchError", "Skip",
    "now", "run_once", "calibrate", "sample", "measure", "unique_name",
]

#: per-packet work, identical for every transport in one row
WORKS = {
    "none": "nothing: the sender hands over a pre-built frame, the receiver takes it",
    "seq": "sender writes an 8-byte sequence number at byte 14; receiver reads it and checks order",
}


def now() -> float:
    """CLOCK_MONOTONIC in seconds: one clock for all processes of the machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class BenchError(RuntimeError):
    """A run that did not complete (a role failed, timed out, or lost packets it must not lose)."""


class Skip(Exception):
    """Raised by a scenario hook (setup, prepare): the row cannot run here; the message says why."""


@dataclass(frozen=True)
class Config:
    """How long and how often to measure (see ``python -m bench --help``)."""

    sizes: tuple[int, ...] = (60, 1514)
    works: tuple[str, ...] = ("none", "seq")
    duration: float = 1.0          # target seconds per run
    repeat: int = 5                # runs per row after calibration
    slots: int = 4096              # pynetmap pipe ring size (@conf:slots=)
    batch: int = 0                 # pynetmap sender: most slots per txsync (0 = all free)
    vale_receivers: tuple[int, ...] = (1, 3)  # VALE rows: receivers per sender (blocking)
    rounds: int = 2000             # ping-pong round trips per run
    pin: bool = True               # pin role i to CPU i (mod the CPUs we may use)
    calib_packets: int = 4096      # first calibration run
    max_packets: int = 400_000_000
    timeout: float = 0.0           # seconds per run before roles are killed; 0 = derived


@dataclass(frozen=True)
class Params:
    """What one run's roles are told: frame size, per-packet work, packet count and names."""

    size: int
    work: str
    packets: int
    run: str                       # unique per run: use it in port names, paths
    rounds: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Role:
    """One process of a row. ``fn(params, ctx, ready)`` does its set-up, calls ``ready()`` (the
    start barrier) and returns a dict: senders ``t_start``; receivers ``t_end``, ``packets``,
    ``bad`` (order errors) and optionally ``batches`` (receive operations); ping roles ``rtts``.

    Each side's own rate, optional: a sender may add ``t_sent`` (everything handed over and
    released) or, when it has no CLOCK_MONOTONIC timestamps (a C program), ``tx_seconds`` alone;
    a receiver ``t_first`` (first packet seen) or ``rx_seconds`` (first to last packet) alone."""

    name: str
    fn: Callable[[Params, Any, Callable[[], None]], dict]


@dataclass(frozen=True)
class Scenario:
    """One benchmark row (times each frame size and per-packet work).

    ``family``: ``pynetmap``, ``baseline`` or ``peer``; ``kind``: ``per-message`` (one packet per
    send call), ``batched`` (many per call) or ``pingpong``. ``batch`` labels the packets per
    operation. ``quantum``: packet counts are multiples of it. ``fanout``: receivers that each get
    every packet (VALE broadcast); 1 = every packet is delivered once. ``lossy``: receivers stop
    on a timeout and losses are reported instead of failing the run.

    Hooks, all optional: ``available()`` returns a reason to skip or None; ``setup()`` runs once
    before the scenario's first run and ``teardown(state)`` after its last (e.g. create/remove a
    veth pair); ``prepare(params, state)`` builds per-run objects in the parent before the roles
    fork (e.g. a socketpair) and ``finish(ctx)`` closes them.
    """

    id: str
    title: str
    family: str
    kind: str
    batch: str
    roles: tuple[Role, ...]
    quantum: int = 1
    fanout: int = 1
    lossy: bool = False
    extra: dict = field(default_factory=dict)
    available: Callable[[], str | None] | None = None
    setup: Callable[[], Any] | None = None
    teardown: Callable[[Any], None] | None = None
    prepare: Callable[[Params, Any], Any] | None = None
    finish: Callable[[Any], None] | None = None
    works: tuple[str, ...] = tuple(WORKS)
    sizes: tuple[int, ...] | None = None    # None: every size the run asks for
    quick: bool = True                      # part of --quick (unless named with --only)


@dataclass(frozen=True)
class Sample:
    """One run's outcome."""

    packets: int        # delivered (summed over receivers)
    expected: int
    seconds: float
    bad: int
    batches: int
    rtts_us: tuple[float, ...] = ()
    tx_seconds: float = 0.0   # the sender's own time, start to all released (0: not reported)
    rx_seconds: float = 0.0   # the receiver's own time, first packet to last (0: not reported)
    sent: int = 0             # packets the senders handed over (summed)
    #: per receiver (fanout rows): (role, packets delivered, drops its RX ring counted or -1)
    receivers: tuple[tuple[str, int, int], ...] = ()

    @property
    def mpps(self) -> float:
        return self.packets / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def tx_mpps(self) -> float | None:
        """The sending side's own rate (what pkt-gen's "Sent ... Speed" reports), if known."""
        return self.sent / self.tx_seconds / 1e6 if self.tx_seconds > 0 else None

    @property
    def rx_mpps(self) -> float | None:
        """The receiving side's own rate (pkt-gen's "Received ... Speed"), if known."""
        return self.packets / self.rx_seconds / 1e6 if self.rx_seconds > 0 else None

    @property
    def lost(self) -> int:
        return self.expected - self.packets


@dataclass
class RowResult:
    """A row's runs (or why it was skipped / failed)."""

    scenario: Scenario
    size: int
    work: str
    status: str = "ok"          # ok | skipped | error
    reason: str = ""
    packets_per_run: int = 0
    samples: list[Sample] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.scenario.id

    @property
    def mpps(self) -> list[float]:
        return [s.mpps for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.mpps) if self.samples else 0.0

    @property
    def rtt_median_us(self) -> float:
        meds = [statistics.median(s.rtts_us) for s in self.samples if s.rtts_us]
        return statistics.median(meds) if meds else 0.0

    @property
    def tx_median(self) -> float | None:
        return self._med("tx_mpps")

    @property
    def rx_median(self) -> float | None:
        return self._med("rx_mpps")

    def _med(self, attr: str) -> float | None:
        xs = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return statistics.median(xs) if xs else None

    @property
    def avg_batch(self) -> float:
        pk = sum(s.packets for s in self.samples)
        bt = sum(s.batches for s in self.samples)
        return pk / bt if bt else 0.0

    def as_dict(self) -> dict:
        sc = self.scenario
        d = {
            "id": sc.id, "title": sc.title, "family": sc.family, "kind": sc.kind,
            "batch": sc.batch, "size": self.size, "work": self.work, "status": self.status,
            "reason": self.reason, "packets_per_run": self.packets_per_run,
            "extra": {k: v for k, v in sc.extra.items() if isinstance(v, (str, int, float, bool))},
            "runs": [{"packets": s.packets, "expected": s.expected, "seconds": s.seconds,
                      "mpps": s.mpps, "bad": s.bad, "lost": s.lost, "batches": s.batches,
                      "tx_mpps": s.tx_mpps, "rx_mpps": s.rx_mpps,
                      **({"receivers": [{"role": n, "packets": k, "drops": d}
                                        for n, k, d in s.receivers]} if s.receivers else {})}
                     for s in self.samples],
        }
        if self.samples:
            d.update(mpps_median=self.median, mpps_min=min(self.mpps), mpps_max=max(self.mpps),
                     avg_batch=self.avg_batch, tx_mpps_median=self.tx_median,
                     rx_mpps_median=self.rx_median)
        if any(s.rtts_us for s in self.samples):
            per_run = [statistics.median(s.rtts_us) for s in self.samples]
            d.update(rtt_median_us=self.rtt_median_us, rtt_run_medians_us=per_run,
                     rtt_p10_us=_pct([r for s in self.samples for r in s.rtts_us], 10),
                     rtt_p90_us=_pct([r for s in self.samples for r in s.rtts_us], 90))
        return d


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else 0.0


_counter = 0


def unique_name(prefix: str = "b") -> str:
    """A name no other run of this machine uses now: prefix, pid and counter in hex, at most
    12 characters with a one-letter prefix (a VALE switch name, "vale" included, allows 16)."""
    global _counter
    _counter += 1
    return f"{prefix}{os.getpid():x}x{_counter:x}"


# --- one run ------------------------------------------------------------------------------
_BARRIER_WAIT = 60.0


def _child(role: Role, params: Params, ctx, barrier, out, cpu) -> None:
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        gc.collect()
        gc.disable()
        res = role.fn(params, ctx, lambda: barrier.wait(_BARRIER_WAIT))
        out.send({"ok": True, **res})
    except Skip as exc:
        barrier.abort()
        out.send({"ok": False, "skip": str(exc), "error": str(exc)})
    except BaseException as exc:  # report every failure to the parent, never hang it
        barrier.abort()
        out.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
    finally:
        out.close()


def run_once(scn: Scenario, params: Params, state=None, *, pin: bool = True,
             timeout: float = 60.0) -> Sample:
    """Fork every role of ``scn``, wait for their reports and turn them into a Sample."""
    mpc = mp.get_context("fork")
    ctx = scn.prepare(params, state) if scn.prepare else state
    procs, conns = [], []
    try:
        barrier = mpc.Barrier(len(scn.roles))
        cpus = sorted(os.sched_getaffinity(0))
        for i, role in enumerate(scn.roles):
            rd, wr = mpc.Pipe(duplex=False)
            cpu = cpus[i % len(cpus)] if pin and len(cpus) > 1 else None
            pr = mpc.Process(target=_child, args=(role, params, ctx, barrier, wr, cpu),
                             name=f"bench-{scn.id}-{role.name}", daemon=True)
            pr.start()
            wr.close()
            procs.append(pr)
            conns.append(rd)
        deadline = time.monotonic() + timeout
        results: dict[str, dict] = {}
        for role, rd in zip(scn.roles, conns):
            left = max(0.0, deadline - time.monotonic())
            try:
                got = rd.recv() if rd.poll(left) else None
            except EOFError:
                got = None
            results[role.name] = got or {"ok": False, "error": f"no report within {timeout:.0f} s"}
            if not results[role.name]["ok"]:  # the others may be blocked forever: short grace
                deadline = min(deadline, time.monotonic() + 2.0)
    finally:
        for pr in procs:
            pr.join(0.5)
            if pr.is_alive():
                pr.kill()
                pr.join(5)
        for rd in conns:
            rd.close()
        if scn.finish:
            scn.finish(ctx)
    failed = {n: r for n, r in results.items() if not r["ok"]}
    for r in failed.values():
        if "skip" in r:
            raise Skip(r["skip"])
    if failed or len(results) < len(scn.roles):
        # the role that failed first, not one that only saw the start barrier break
        cause = [(n, r) for n, r in failed.items() if not r["error"].startswith("BrokenBarrierError")]
        name, r = (cause or list(failed.items()) or [("?", {"error": "missing report"})])[0]
        raise BenchError(f"{scn.id}: role {name}: {r['error']}"
                         + (f"\n{r['trace']}" if r.get("trace") else ""))
    return _sample(scn, params, results)


def _own_seconds(r: dict, key: str, a: str, b: str) -> float:
    """A role's own duration: ``key`` if it reported it, else ``r[b] - r[a]``, else 0."""
    if r.get(key):
        return float(r[key])
    return r[b] - r[a] if a in r and b in r else 0.0


def _sample(scn: Scenario, params: Params, results: dict[str, dict]) -> Sample:
    senders = [r for n, r in results.items() if "t_start" in r or "tx_seconds" in r]
    receivers = [r for n, r in results.items() if "t_end" in r or "rx_seconds" in r]
    rtts = tuple(x for r in results.values() for x in r.get("rtts", ()))
    if rtts:
        return Sample(len(rtts), len(rtts), sum(rtts) / 1e6, 0, len(rtts), rtts)
    if not senders or not receivers:
        raise BenchError(f"{scn.id}: roles reported neither t_start nor t_end")
    packets = sum(r["packets"] for r in receivers)
    expected = params.packets * scn.fanout
    tx_s = [_own_seconds(r, "tx_seconds", "t_start", "t_sent") for r in senders]
    rx_s = [_own_seconds(r, "rx_seconds", "t_first", "t_end") for r in receivers]
    tx_seconds = max(tx_s) if all(tx_s) else 0.0
    rx_seconds = max(rx_s) if all(rx_s) else 0.0
    if all("t_start" in r for r in senders) and all("t_end" in r for r in receivers):
        seconds = max(r["t_end"] for r in receivers) - min(r["t_start"] for r in senders)
    elif rx_seconds > 0:   # a side without CLOCK_MONOTONIC stamps: the receiver's own time
        seconds = rx_seconds
    else:
        raise BenchError(f"{scn.id}: no common clock and no receiver duration reported")
    sent = sum(r.get("sent", params.packets) for r in senders)
    bad = sum(r.get("bad", 0) for r in receivers)
    batches = sum(r.get("batches", r["packets"]) for r in receivers)
    if not scn.lossy and (packets != expected or bad):
        raise BenchError(f"{scn.id}: delivered {packets} of {expected} packets, {bad} out of order")
    per = tuple((n, r["packets"], r.get("drops", -1)) for n, r in results.items()
                if "t_end" in r or "rx_seconds" in r) if scn.fanout > 1 else ()
    return Sample(packets, expected, seconds, bad, batches, tx_seconds=tx_seconds,
                  rx_seconds=rx_seconds, sent=sent, receivers=per)


# --- a row: calibrate, then repeat ---------------------------------------------------------
def _round(n: int, quantum: int) -> int:
    return max(quantum, (n + quantum - 1) // quantum * quantum)


def _params(scn: Scenario, cfg: Config, size: int, work: str) -> Params:
    return Params(size=size, work=work, packets=0, run="", rounds=cfg.rounds,
                  extra={"slots": cfg.slots, "batch": cfg.batch,
                         "quiet": min(0.5, max(0.2, cfg.duration / 2)), **scn.extra})


def _once(row: RowResult, cfg: Config, n: int, state) -> Sample:
    p = replace(_params(row.scenario, cfg, row.size, row.work), packets=n, run=unique_name())
    budget = cfg.timeout or max(20.0, 30 * cfg.duration)
    return run_once(row.scenario, p, state, pin=cfg.pin, timeout=budget)


def _guard(row: RowResult, f) -> None:
    try:
        f()
    except Skip as exc:
        row.status, row.reason = "skipped", str(exc)
    except BenchError as exc:
        row.status, row.reason = "error", str(exc)


def calibrate(row: RowResult, cfg: Config, state=None, hint_pps: float = 0.0) -> None:
    """Find the packet count that makes one run last about ``cfg.duration`` (sets
    ``row.packets_per_run``). ``hint_pps``: a rate this scenario reached before (another size or
    work) to start from. A calibration run that already has the right length (0.5..2 x the
    duration) is kept as the row's first sample. Ping-pong rows need no calibration."""
    scn = row.scenario

    def go() -> None:
        if scn.kind == "pingpong":
            return
        n = _round(int(hint_pps * cfg.duration) if hint_pps > 0 else cfg.calib_packets, scn.quantum)
        n = min(n, _round(cfg.max_packets, scn.quantum))
        enough = min(0.1, cfg.duration / 4)
        while True:
            s = _once(row, cfg, n, state)
            if s.seconds >= enough or n >= cfg.max_packets or s.packets == 0:
                break
            grow = min(64.0, max(2.0, 1.5 * enough / max(s.seconds, 1e-6)))
            n = _round(min(cfg.max_packets, int(n * grow)), scn.quantum)
        if 0.5 * cfg.duration <= s.seconds <= 2 * cfg.duration:
            row.samples.append(s)
        rate = s.packets / s.seconds if s.seconds > 0 else 0.0
        row.packets_per_run = _round(min(cfg.max_packets, int(rate * cfg.duration) or n), scn.quantum)

    _guard(row, go)


def sample(row: RowResult, cfg: Config, state=None) -> None:
    """One more run of a calibrated row (a row that failed is left alone)."""
    if row.status == "ok" and len(row.samples) < cfg.repeat:
        _guard(row, lambda: row.samples.append(_once(row, cfg, row.packets_per_run, state)))


def measure(scn: Scenario, cfg: Config, size: int, work: str, state=None,
            log: Callable[[str], None] = lambda s: None, hint_pps: float = 0.0) -> RowResult:
    """Calibrate one row and run it ``cfg.repeat`` times in a row (``python -m bench`` instead
    interleaves the repeats of all rows, so a change of machine load hits every row alike)."""
    row = RowResult(scn, size, work)
    calibrate(row, cfg, state, hint_pps)
    while row.status == "ok" and len(row.samples) < cfg.repeat:
        sample(row, cfg, state)
        log(".")
    return row
