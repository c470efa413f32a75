"""pytest plugin: a device test fails when netmap reports a problem in the kernel log meanwhile.

Loaded by the root conftest.py; it does something only with ``--backend=netmap`` and a readable
``/dev/kmsg`` (root, or CAP_SYSLOG when ``kernel.dmesg_restrict=1``); the report header says which.
Before a test's setup it opens /dev/kmsg and seeks to the end. After the test body it reads the
records printed since: a netmap problem among them FAILS the test, with the lines. After teardown
(ports closed, module fixtures finished) it reads the rest: a problem there is an error in
teardown. A test that provokes a problem on purpose declares it::

    @pytest.mark.kernel_warnings(r"API mismatch: got 13 need 14")

Every problem line must then match (``re.search``) one of the marker's patterns. A failing test
also gets a "netmap kernel log" section with every netmap line of its run, at any level.

Which records are problems -- from the levels netmap prints at. Its Linux glue
(``sys/dev/netmap/netmap_kern.h``) has two printing macros, both with the prefix
``SSS.UUUUUU [LINE] FUNCTION`` (seconds mod 1000, microseconds, source line, function padded to
25 columns)::

    nm_prerr -> printk(KERN_ERR ...)    level 3
    nm_prinf -> printk(KERN_INFO ...)   level 6
    nm_prlim -> nm_prinf, rate-limited  level 6   (nm_prdis is compiled out)

netmap has no warning level of its own: even its messages that start with "WARNING:" go through
nm_prerr. At level 3 it reports broken state and failed allocations ("ouch, double free on buffer
N", "no more buffers after ...", "Cannot allocate krings", "BUG: netmap on while going to delete
the krings") and a few bad requests printed whatever netmap's verbose setting ("API mismatch: got
13 need 14"). At level 6 it says that the module loaded, what it allocated when verbose, and --
rate-limited to 5 or 10 a second -- how an application broke the ring rules ("nm_txsync_prologue
vale0:a TX0: fail 'head < kring->rhead ...'", "netmap_ring_reinit called for ..."): netmap then
reinitialises the ring, returns success from the sync and POLLERR from poll. That is the
application's error, which netmap handles and reports through the ring, what ``rules="netmap"``
means and what the device suite provokes on purpose; it is not a kernel problem, and being
rate-limited it could not be counted reliably anyway. Level 5 (notice) netmap does not use. The
kernel's own reports about a module -- WARN_ON splats, oopses, call traces ("... [netmap]"), the
"Modules linked in: netmap ..." line -- come at level 4 (KERN_DEFAULT is 4 on Debian) or below.

So a problem is a kernel record (facility 0) at level 0-4, emerg to warning, that is netmap's
(netmap's prefix, or "netmap" in the text), except "netmap: loading out-of-tree module taints
kernel", which the kernel prints at warning level once a boot, when netmap.ko is first loaded.
Levels 5-7 never fail a test.

Attribution is by time: with ``pytest -n`` every test running when a line was printed gets it;
run the device suite serially to know which test caused what.

``python tests/kernel_log.py`` prints every netmap line still in the kernel log, with its level,
and a count by level: ./dev lab's record of a whole run in the guest.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator

import pytest

KMSG = "/dev/kmsg"
RECORD_MAX = 16384          # records are <= 8 KiB; a read() into a smaller buffer fails (EINVAL)

LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
WARNING = 4                 # levels 0 (emerg) .. 4 (warning) are problems; 5-7 never fail a test

NETMAP_PREFIX = re.compile(r"\d{3}\.\d{6} \[ *\d+\] \w+ ")
NETMAP_WORD = re.compile(r"netmap(?!lab\.)", re.IGNORECASE)   # not the lab's netmaplab.* parameters
BENIGN = re.compile(r"loading out-of-tree module taints kernel")
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


@dataclasses.dataclass(frozen=True)
class Record:
    """One /dev/kmsg record: ``PRI,SEQ,USEC,FLAGS[,...];TEXT`` then `` KEY=VALUE`` lines."""
    level: int
    facility: int
    seq: int
    usec: int
    text: str
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def level_name(self) -> str:
        return LEVELS[self.level]

    def __str__(self) -> str:
        secs, usecs = divmod(self.usec, 1_000_000)
        return f"<{self.level_name}> [{secs:5d}.{usecs:06d}] {self.text}"


def parse_record(raw: bytes) -> Record:
    """Decode one record as read() returns it from /dev/kmsg (``\\xNN`` escapes undone)."""
    head, sep, rest = raw.partition(b";")
    parts = head.split(b",")
    if not sep or len(parts) < 4:
        raise ValueError(f"not a /dev/kmsg record: {raw[:80]!r}")
    pri, seq, usec = int(parts[0]), int(parts[1]), int(parts[2])
    lines = rest.rstrip(b"\n").split(b"\n")
    fields = []
    for line in lines[1:]:
        key, _, value = line.strip().partition(b"=")
        fields.append((_unescape(key), _unescape(value)))
    return Record(level=pri & 7, facility=pri >> 3, seq=seq, usec=usec,
                  text=_unescape(lines[0]), fields=tuple(fields))


def _unescape(text: bytes) -> str:
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text).decode("utf-8", "replace")


def is_netmap(record: Record) -> bool:
    """A kernel record printed by netmap, or by the kernel about netmap."""
    return record.facility == 0 and (NETMAP_PREFIX.match(record.text) is not None
                                     or NETMAP_WORD.search(record.text) is not None)


def is_problem(record: Record) -> bool:
    """netmap's, at warning level or more severe, and not a module-taint notice."""
    return record.level <= WARNING and is_netmap(record) and not BENIGN.search(record.text)


def problems(records: Iterable[Record], allowed: Iterable[str | re.Pattern] = ()) -> list[Record]:
    """The problem records that none of the ``allowed`` patterns matches (``re.search``)."""
    pats = [re.compile(p) for p in allowed]
    return [r for r in records if is_problem(r) and not any(p.search(r.text) for p in pats)]


def read_records(read: Callable[[], bytes]) -> Iterator[Record | None]:
    """Records from ``read`` (one record per call, as /dev/kmsg gives them) until none is left
    (BlockingIOError). ``None`` stands for records overwritten before they were read (EPIPE)."""
    while True:
        try:
            raw = read()
        except BlockingIOError:
            return
        except BrokenPipeError:
            yield None
            continue
        if not raw:
            return
        yield parse_record(raw)


class KmsgReader:
    """/dev/kmsg from the moment it is opened (``from_start``: from the oldest record kept)."""

    def __init__(self, path: str = KMSG, from_start: bool = False) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not from_start:
            os.lseek(self.fd, 0, os.SEEK_END)
        self.overrun = False

    def read(self) -> list[Record]:
        """Every record printed since the last read (or the open)."""
        out = []
        for rec in read_records(lambda: os.read(self.fd, RECORD_MAX)):
            if rec is None:
                self.overrun = True
            else:
                out.append(rec)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def report_text(bad: list[Record], seen: list[Record]) -> str:
    """What a test failed by this plugin shows."""
    lines = ["netmap reported problems in the kernel log during this test:"]
    lines += [f"    {r}" for r in bad]
    lines.append("A test that provokes them on purpose declares them: "
                 "@pytest.mark.kernel_warnings(r'REGEX', ...)")
    others = [r for r in seen if is_netmap(r) and r not in bad]
    if others:
        lines.append("Its other netmap lines:")
        lines += _listing(others)
    return "\n".join(lines)


def _listing(records: list[Record], limit: int = 40) -> list[str]:
    """The records, indented; beyond ``limit`` the first and last halves."""
    if len(records) > limit:
        half = limit // 2
        return ([f"    {r}" for r in records[:half]]
                + [f"    ... {len(records) - 2 * half} more ..."]
                + [f"    {r}" for r in records[-half:]])
    return [f"    {r}" for r in records]


def netmap_log(records: Iterable[Record]) -> list[str]:
    """The netmap records, one a line, then their count by level."""
    mine = [r for r in records if is_netmap(r)]
    counts = {name: 0 for name in LEVELS}
    for r in mine:
        counts[r.level_name] += 1
    by_level = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    summary = (f"{len(mine)} netmap lines ({by_level or 'none'}); "
               f"{sum(map(is_problem, mine))} at warning level or worse")
    return [str(r) for r in mine] + [summary]


def main() -> int:
    reader = KmsgReader(from_start=True)
    try:
        records = reader.read()
    finally:
        reader.close()
    if reader.overrun:
        print("(the oldest records were overwritten while being read)")
    print("\n".join(netmap_log(records)))
    return 0


# --- pytest hooks ----------------------------------------------------------------------------

_OFF = pytest.StashKey[str]()              # why the check is off here ("" when it is on)
_READER = pytest.StashKey[KmsgReader]()
_SEEN = pytest.StashKey[list]()


def _netmap_backend(config: pytest.Config) -> bool:
    return config.getoption("--backend", default="emu") == "netmap"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_OFF] = "not the netmap backend"
    if _netmap_backend(config):
        try:
            KmsgReader().close()
        except OSError as e:
            config.stash[_OFF] = f"cannot read {KMSG}: {e.strerror} (errno {e.errno})"
        else:
            config.stash[_OFF] = ""


def pytest_report_header(config: pytest.Config) -> str | None:
    if not _netmap_backend(config):
        return None
    why = config.stash.get(_OFF, "")
    return f"netmap kernel log check: {f'off, {why}' if why else f'on ({KMSG})'}"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):
    if item.config.stash.get(_OFF, "off") == "":
        item.stash[_READER] = KmsgReader()
        item.stash[_SEEN] = []
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    reader = item.stash.get(_READER, None)
    if reader is None or call.when == "setup":
        return                      # setup's lines are read with the body's or the teardown's
    rep = outcome.get_result()
    new = reader.read()
    seen = item.stash[_SEEN]
    seen.extend(new)
    if call.when == "teardown":
        reader.close()
        del item.stash[_READER], item.stash[_SEEN]
        if reader.overrun:
            item.warn(pytest.PytestWarning("kernel log records were overwritten before the netmap "
                                           "kernel log check could read them"))
    allowed = [p for m in item.iter_markers("kernel_warnings") for p in m.args]
    bad = problems(new, allowed)
    if bad:
        text = report_text(bad, seen)
        if rep.failed:
            rep.sections.append(("netmap kernel log", text))
        else:
            rep.outcome = "failed"
            rep.longrepr = text
            if hasattr(rep, "wasxfail"):
                del rep.wasxfail
    elif rep.failed and any(is_netmap(r) for r in seen):
        rep.sections.append(("netmap kernel log",
                             "\n".join(_listing([r for r in seen if is_netmap(r)]))))


if __name__ == "__main__":
    raise SystemExit(main())
