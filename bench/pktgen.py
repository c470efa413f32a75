"""netmap's own C traffic generator, pkt-gen, in the setups of the ``pnm-dev`` rows, so that
pynetmap on the real /dev/netmap is measured against C in the same machine and the same run.

Rows (60 B frames by default; work ``none`` only: pkt-gen sets each slot's len and flags and
sends frames built once, as the pynetmap batch rows do):

* ``pktgen-pipe``: ``pkt-gen -f tx`` on ``netmap:RUN{0`` -> ``pkt-gen -f rx`` on ``netmap:RUN}0``
  (the pipe of ``pnm-dev-batch-poll``, same ``@conf:slots``);
* ``pktgen-pipe-pytx``: the pynetmap batch sender of ``pnm-dev-batch-poll`` -> pkt-gen rx;
* ``pktgen-pipe-pyrx``: pkt-gen tx -> the pynetmap batch receiver;
* ``pktgen-vale``, ``pktgen-vale-pytx``, ``pktgen-vale-pyrx``: the same from ``valeRUN:s`` to
  ``valeRUN:r0`` (the switch of ``vale-dev-1to1-poll``; lossy).

pkt-gen's burst (``-b``) is the Python sender's batch (``--batch``, or every free slot); its
receiver takes every ready slot (``-b`` = slots - 1), as the Python receiver does. pkt-gen blocks
in poll(2) (its default build), like the ``-poll`` rows. Each side's rate is its own: the sender's
from its start to everything sent and released, the receiver's from its first packet to its last
(pkt-gen's "Sent/Received ... Speed:" lines; the Python roles time the same span). pkt-gen's
receiver runs with ``-W`` and stops after one second without a packet, which it subtracts.

The rows need /dev/netmap and pkt-gen (on PATH, or ``$PKTGEN``) and are skipped elsewhere with
the reason. :func:`comparison` turns the rows into Python / C ratios for TX and RX.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

from .harness import Role, Scenario
from .peer_pynetmap import OPEN_TRIES, available as pnm_available, batch_receiver, batch_sender, pipe_end

__all__ = ["PktgenResult", "parse_summary", "find_pktgen", "scenarios", "comparison",
           "comparison_text", "comparison_markdown", "tx_targets", "main"]

READY_MARK = "reading from"   # pkt-gen's receiver thread logs it once its port is registered
ENOMEM_TEXT = os.strerror(errno.ENOMEM)  # "Cannot allocate memory", as libnetmap reports it
READY_WAIT = 30.0             # s for pkt-gen to open its port (a TCG guest is slow)
RUN_WAIT = 600.0              # s for one pkt-gen run; the harness kills a role sooner
TX_TARGET = 0.5               # the target: Python batch TX >= 0.5x C pkt-gen


# --- pkt-gen's output ------------------------------------------------------------------------
@dataclass(frozen=True)
class PktgenResult:
    """pkt-gen's final lines: ``Sent|Received N packets B bytes E events S bytes each in T
    seconds.`` and ``Speed: X pps Bandwidth: ... Average batch: A pkts``."""

    kind: str          # "Sent" or "Received"
    packets: int
    bytes: int
    events: int        # batches (sync rounds that moved at least one packet)
    size: int
    seconds: float     # printed with 2 decimals: use packets / pps for the precise time
    pps: float
    avg_batch: float

    @property
    def exact_seconds(self) -> float:
        return self.packets / self.pps if self.pps > 0 else self.seconds


_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_DONE = re.compile(r"^(Sent|Received) (\d+) packets (\d+) bytes (\d+) events (\d+) bytes each "
                   r"in ([\d.]+) seconds\.", re.M)
_NOTHING = re.compile(r"^(Sent|Received) nothing\.", re.M)
_SPEED = re.compile(r"^Speed: ([\d.]+) ([KMGT]?)pps Bandwidth: .*Average batch: ([\d.]+) pkts", re.M)


def parse_summary(text: str) -> PktgenResult:
    """The result of one pkt-gen tx or rx run from its output (stdout, or stdout and stderr
    mixed). Rates may be scaled (``3.844 Mpps``) or not (``-N``: ``3844123 pps``). Raises
    ValueError when the final lines are missing (pkt-gen failed or was killed)."""
    if (m := _NOTHING.search(text)):
        return PktgenResult(m.group(1), 0, 0, 0, 0, 0.0, 0.0, 0.0)
    done, speed = _DONE.search(text), _SPEED.search(text)
    if not done or not speed:
        raise ValueError("no pkt-gen summary (Sent/Received ... and Speed: lines) in its output")
    kind, pk, by, ev, size, sec = done.groups()
    return PktgenResult(kind, int(pk), int(by), int(ev), int(size), float(sec),
                        float(speed.group(1)) * _UNITS[speed.group(2)], float(speed.group(3)))


def find_pktgen() -> str | None:
    """pkt-gen's path: ``$PKTGEN`` if set, else the first on PATH; None if there is none."""
    path = os.environ.get("PKTGEN") or shutil.which("pkt-gen")
    return path if path and os.access(path, os.X_OK) else None


# --- running it --------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the role process dies (the harness kills roles
    that overrun), so no pkt-gen outlives its run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Pktgen:
    """One pkt-gen process; stdout and stderr go to one unnamed file, read back as text."""

    def __init__(self, args: list[str]) -> None:
        exe = find_pktgen()
        if exe is None:
            raise RuntimeError("pkt-gen not found (PATH, $PKTGEN)")
        self.cmd = [exe, *args]
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as self, close() closes it
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.out, preexec_fn=_die_with_parent)

    def text(self) -> str:
        return os.pread(self.out.fileno(), 1 << 20, 0).decode(errors="replace")

    def _fail(self, what: str) -> RuntimeError:
        tail = "\n".join(self.text().splitlines()[-8:])
        return RuntimeError(f"{' '.join(self.cmd)}: {what}\n{tail}")

    def wait_for(self, mark: str, timeout: float = READY_WAIT) -> None:
        deadline = time.monotonic() + timeout
        while mark not in self.text():
            if self.proc.poll() is not None:
                raise self._fail(f"exited ({self.proc.returncode}) before {mark!r}")
            if time.monotonic() > deadline:
                raise self._fail(f"no {mark!r} within {timeout:.0f} s")
            time.sleep(0.002)

    def finish(self, timeout: float = RUN_WAIT) -> PktgenResult:
        """Wait for pkt-gen to end and parse its summary."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)   # pkt-gen stops and prints what it did
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise self._fail(f"still running after {timeout:.0f} s") from None
        try:
            return parse_summary(self.text())
        except ValueError as exc:
            raise self._fail(f"exit status {self.proc.returncode}: {exc}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def _burst(p) -> int:
    """The Python sender's batch: ``--batch``, or every free slot of the ring."""
    return p.extra.get("batch") or p.extra["slots"] - 1


def c_sender(port_name):
    """Sender role: ``pkt-gen -f tx -n N -l SIZE -b BATCH``, started after the barrier; its rate
    is its own (from its thread's start, after opening the port, to all sent and released)."""
    def run(p, ctx, ready):
        ready()
        pg = _Pktgen(["-i", port_name(p), "-f", "tx", "-n", str(p.packets), "-l", str(p.size),
                      "-b", str(_burst(p)), "-w", "0", "-N"])
        try:
            res = pg.finish()
        finally:
            pg.close()
        if res.kind != "Sent" or res.packets != p.packets:
            raise RuntimeError(f"pkt-gen tx sent {res.packets} of {p.packets} packets")
        return {"tx_seconds": res.exact_seconds, "sent": res.packets, "tx_batches": res.events}
    return run


def c_receiver(port_name):
    """Receiver role: ``pkt-gen -f rx -W``, registered before the barrier; it stops one second
    after the last packet and reports the time from its first packet to its last."""
    def run(p, ctx, ready):
        args = ["-i", port_name(p), "-f", "rx", "-b", str(p.extra["slots"] - 1), "-w", "0",
                "-W", "-N"]
        for attempt in range(OPEN_TRIES):
            pg = _Pktgen(args)
            try:
                pg.wait_for(READY_MARK)
                break
            except RuntimeError:
                # the racing open of a new pipe's two ends (see peer_pynetmap.open_spec)
                if attempt == OPEN_TRIES - 1 or ENOMEM_TEXT not in pg.text():
                    pg.close()
                    raise
                pg.close()
                time.sleep(0.05 * (attempt + 1))
        try:
            ready()
            res = pg.finish()
        finally:
            pg.close()
        if res.kind != "Received":
            raise RuntimeError(f"pkt-gen rx printed {res.kind!r}")
        return {"rx_seconds": res.exact_seconds, "packets": res.packets,
                "batches": res.events or 1, "bad": 0}
    return run


# --- the rows ----------------------------------------------------------------------------------
def _vale_port(name: str):
    return lambda p: f"vale{p.run}:{name}@conf:slots={p.extra['slots']}"


#: setup -> (sender port, receiver port, the all-Python row of the same setup, lossy)
SETUPS = {
    "pipe": (pipe_end("{0"), pipe_end("}0"), "pnm-dev-batch-poll", False),
    "vale": (_vale_port("s"), _vale_port("r0"), "vale-dev-1to1-poll", True),
}
#: (tx, rx) -> row id suffix
PAIRS = {("c", "c"): "", ("py", "c"): "-pytx", ("c", "py"): "-pyrx"}
_WHO = {"c": "C pkt-gen", "py": "pynetmap"}


def _available(with_python: bool, warm: str):
    py_check = pnm_available("netmap", warm) if with_python else None

    def check() -> str | None:
        if not os.path.exists("/dev/netmap"):
            return "no /dev/netmap"
        if find_pktgen() is None:
            return "no pkt-gen (netmap's apps/pkt-gen) on PATH or in $PKTGEN"
        return py_check() if py_check else None
    return check


def scenarios(cfg) -> list[Scenario]:
    out = []
    batch = f"{cfg.batch or cfg.slots - 1}"
    for setup, (tx_port, rx_port, py_row, lossy) in SETUPS.items():
        warm = "netmap:{name}{{0" if setup == "pipe" else "vale{name}:w"
        for (tx, rx), suffix in PAIRS.items():
            snd = c_sender(tx_port) if tx == "c" else batch_sender(True, tx_port)
            rcv = (c_receiver(rx_port) if rx == "c"
                   else batch_receiver(True, rx_port, lossy=lossy))
            out.append(Scenario(
                id=f"pktgen-{setup}{suffix}",
                title=f"{_WHO[tx]} tx -> {_WHO[rx]} rx, netmap {setup} "
                      f"(pkt-gen -b {batch}; Python rows block in poll)",
                family="pktgen", kind="batched", batch=batch,
                roles=(Role("sender", snd), Role("receiver", rcv)), lossy=lossy,
                extra={"backend": "netmap", "setup": setup, "tx": tx, "rx": rx, "py_row": py_row},
                available=_available("py" in (tx, rx), warm), works=("none",), quick=False))
    return out


# --- Python / C ------------------------------------------------------------------------------
_PAIR_NAMES = {"py->py": "Python -> Python", "py->c": "Python -> C", "c->py": "C -> Python",
               "c->c": "C -> C"}


def _pair_ids(setup: str) -> dict[str, str]:
    ids = {f"{tx}->{rx}": f"pktgen-{setup}{suffix}" for (tx, rx), suffix in PAIRS.items()}
    ids["py->py"] = SETUPS[setup][2]
    return ids


def _side(r: dict | None, side: str) -> dict:
    """Median, min and max over the runs of one side's own rate (Mpps)."""
    xs = sorted(x[f"{side}_mpps"] for x in (r or {}).get("runs", ()) if x.get(f"{side}_mpps"))
    if not xs:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1]}


def _lost(r: dict | None) -> float | None:
    exp = sum(x["expected"] for x in (r or {}).get("runs", ()))
    return 100.0 * sum(x["lost"] for x in r["runs"]) / exp if exp else None


def comparison(rows: list[dict]) -> list[dict]:
    """Per setup, frame size and work that a ``pktgen-*`` row measured: each pairing's own TX and
    RX rates (median, min and max Mpps over its runs) and the ratios of medians Python / C:
    TX = (Python -> C).tx / (C -> C).tx (the same C receiver behind both senders), RX =
    (C -> Python).rx / (C -> C).rx, both = (Python -> Python).rx / (C -> C).rx.

    ``rows``: RowResult.as_dict() records (as saved in the JSON); records of one row from several
    files may be passed: their runs are pooled."""
    pooled: dict[tuple, dict] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("runs"):
            key = (r["id"], r["size"], r["work"])
            pooled.setdefault(key, {"runs": []})["runs"] += r["runs"]
    out = []
    for setup in SETUPS:
        ids = _pair_ids(setup)
        combos = sorted({(s, w) for (i, s, w) in pooled if i.startswith(f"pktgen-{setup}")})
        for size, work in combos:
            pairs = {}
            for key, rid in ids.items():
                r = pooled.get((rid, size, work))
                pairs[key] = {"id": rid, "tx": _side(r, "tx"), "rx": _side(r, "rx"),
                              "runs": len(r["runs"]) if r else 0, "lost": _lost(r)}
            out.append({"setup": setup, "size": size, "work": work, "pairs": pairs,
                        "tx_ratio": _ratio(pairs, "py->c", "tx", "c->c", "tx"),
                        "rx_ratio": _ratio(pairs, "c->py", "rx", "c->c", "rx"),
                        "both_ratio": _ratio(pairs, "py->py", "rx", "c->c", "rx")})
    return out


def _ratio(pairs: dict, a: str, side_a: str, b: str, side_b: str) -> float | None:
    x, y = pairs[a][side_a]["median"], pairs[b][side_b]["median"]
    return x / y if x and y else None


def _f(x: float | None, fmt: str = "{:.3g}") -> str:
    return "-" if x is None else fmt.format(x)


def _range(d: dict) -> str:
    return "-" if d["median"] is None else f"{d['median']:.3g} ({d['min']:.3g}-{d['max']:.3g})"


def comparison_text(cmp: list[dict]) -> str:
    """The comparison as a plain table (what ``python -m bench`` prints)."""
    from .report import render_columns

    lines = []
    x = "{:.2f}x"
    for c in cmp:
        for key, name in _PAIR_NAMES.items():
            pr = c["pairs"][key]
            lost = "" if not pr["lost"] else f"lost {pr['lost']:.1f}%"
            lines.append((c["setup"], str(c["size"]), name, pr["id"], _range(pr["tx"]),
                          _range(pr["rx"]), str(pr["runs"]), lost))
        lines.append((c["setup"], str(c["size"]), "Python / C", "", _f(c["tx_ratio"], x),
                      _f(c["rx_ratio"], x), "", f"both sides Python: {_f(c['both_ratio'], x)}"))
    head = ("setup", "size", "tx -> rx", "row", "TX Mpps (min-max)", "RX Mpps (min-max)", "runs",
            "note")
    return render_columns(head, lines)


def comparison_markdown(cmp: list[dict]) -> str:
    x = "{:.2f}x"
    out = ["| setup | size | tx -> rx | row | runs | TX Mpps (min-max) | RX Mpps (min-max) |",
           "|---|---|---|---|---|---|---|"]
    for c in cmp:
        for key, name in _PAIR_NAMES.items():
            pr = c["pairs"][key]
            lost = f", {pr['lost']:.0f}% lost" if pr["lost"] else ""
            out.append(f"| {c['setup']} | {c['size']} B | {name} | `{pr['id']}` | {pr['runs']} | "
                       f"{_range(pr['tx'])} | {_range(pr['rx'])}{lost} |")
        out.append(f"| {c['setup']} | {c['size']} B | **Python / C** | TX: (Python -> C) / (C -> C), "
                   f"RX: (C -> Python) / (C -> C) | | **{_f(c['tx_ratio'], x)}** | "
                   f"**{_f(c['rx_ratio'], x)}** |")
    return "\n".join(out)


def tx_targets(rows: list[dict]) -> list[tuple[str, str, bool | None]]:
    """The issue's target per setup and frame size: Python batch TX >= 0.5x C pkt-gen TX."""
    out = []
    for c in comparison(rows):
        x = c["tx_ratio"]
        py, cc = c["pairs"]["py->c"]["tx"]["median"], c["pairs"]["c->c"]["tx"]["median"]
        out.append((f"Python batch TX >= {TX_TARGET}x C pkt-gen TX [dev, {c['setup']}, "
                    f"{c['size']} B, work {c['work']}]",
                    "-" if x is None else f"{x:.2f}x ({py:.3g} vs {cc:.3g} Mpps)",
                    None if x is None else x >= TX_TARGET))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.pktgen A.json [B.json ...]``: the comparison over the runs of several
    saved results (e.g. one per guest boot), pooled; then the ratios of each file alone."""
    import json
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m bench.pktgen RESULTS.json [RESULTS.json ...]", file=sys.stderr)
        return 2
    docs = []
    for path in paths:
        with open(path) as f:
            docs.append(json.load(f))
    print(comparison_markdown(comparison([r for d in docs for r in d["rows"]])))
    print("\n| file | setup | size | TX Python / C | RX Python / C | both sides Python / C |")
    print("|---|---|---|---|---|---|")
    for path, d in zip(paths, docs):
        for c in comparison(d["rows"]):
            print(f"| {os.path.basename(path)} | {c['setup']} | {c['size']} B | "
                  f"{_f(c['tx_ratio'], '{:.2f}x')} | {_f(c['rx_ratio'], '{:.2f}x')} | "
                  f"{_f(c['both_ratio'], '{:.2f}x')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
