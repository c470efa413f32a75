"""Network namespaces, veth pairs and a small forwarding loop for the interface-port tests.
Everything made here is removed on exit, also when the test fails; :func:`unavailable` says why not."""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from netmap_core.errors import NetmapOSError

__all__ = ["Side", "VethLab", "Pump", "unavailable", "veth_lab", "IF_GONE_ERRNOS"]

#: errno of a sync on a port whose interface was deleted (netmap.ko: EIO; ENXIO/ENODEV allowed)
IF_GONE_ERRNOS = (errno.EIO, errno.ENXIO, errno.ENODEV)


def unavailable() -> str | None:
    """Why namespaces and veth pairs cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs"
    for tool, pkg in (("ip", "iproute2"), ("ping", "iputils-ping")):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (Debian package {pkg}; ./dev test installs it as root)"
    return None


def sh(*args: str, ns: str | None = None, timeout: float = 60.0,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (in network namespace ``ns``); a failure raises with its stderr."""
    argv = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> exit {r.returncode}: {r.stderr.strip()}")
    return r


@dataclass(frozen=True)
class Side:
    """One veth pair: ``inner`` lives in namespace ``ns`` with IPv4 ``addr``/24, its peer
    ``outer`` stays in the root namespace (the interface a netmap port opens)."""

    ns: str
    inner: str
    outer: str
    addr: str


class VethLab:
    """Namespaces and veth pairs named with a random tag (concurrent runs do not collide).
    Interface names stay within IFNAMSIZ (15 characters)."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        self._namespaces: list[str] = []
        self._links: list[str] = []
        self._addrs = 0

    def side(self, letter: str) -> Side:
        """A new namespace with a veth pair; the inner end gets the next address of the subnet."""
        ns, inner, outer = f"nm{letter}{self.tag}", f"nm{letter}{self.tag}0", f"nm{letter}{self.tag}1"
        sh("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        r = sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns,
               check=False)
        if r.returncode != 0:
            raise RuntimeError(f"cannot create a veth pair ({r.stderr.strip()}); is the veth "
                               "module available (modprobe veth)?")
        self._links.append(outer)
        self._addrs += 1
        addr = f"{self.net}.{self._addrs}"
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "addr", "add", f"{addr}/24", "dev", inner, ns=ns)
        sh("ip", "link", "set", inner, "up", ns=ns)
        sh("ip", "link", "set", outer, "up")
        return Side(ns, inner, outer, addr)

    def host_address(self, side: Side) -> str:
        """Give ``side.outer`` (root namespace) an address of the subnet; returns it."""
        addr = f"{self.net}.254"
        sh("ip", "addr", "add", f"{addr}/24", "dev", side.outer)
        return addr

    def ping(self, src: Side, addr: str, *, count: int = 2, deadline: float = 20.0) -> bool:
        """True when ``addr`` answers a ping from ``src``'s namespace before the deadline
        (stops at ``count`` replies)."""
        r = sh("ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-w", str(int(deadline)), addr,
               ns=src.ns, timeout=deadline + 30, check=False)
        return r.returncode == 0

    def forget_link(self, name: str) -> None:
        """The link was deleted by the test itself."""
        if name in self._links:
            self._links.remove(name)

    def close(self) -> None:
        """Delete the links (their peers go with them) and the namespaces; errors are collected
        and raised after everything was tried."""
        problems = []
        for link in reversed(self._links):
            r = sh("ip", "link", "del", link, check=False, timeout=60)
            if r.returncode != 0 and "Cannot find device" not in r.stderr:
                problems.append(f"ip link del {link}: {r.stderr.strip()}")
        for ns in reversed(self._namespaces):
            r = sh("ip", "netns", "del", ns, check=False, timeout=60)
            if r.returncode != 0:
                problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self._links.clear()
        self._namespaces.clear()
        if problems:
            raise RuntimeError("; ".join(problems))


@contextmanager
def veth_lab() -> Iterator[VethLab]:
    """A :class:`VethLab` torn down on exit (after the body's ports are closed)."""
    sh("modprobe", "veth", check=False)
    lab = VethLab()
    try:
        yield lab
    finally:
        lab.close()


class Pump:
    """Forwards ready RX slots to TX rings in a thread: each route is (source port, its RX
    rings, destination port, its TX rings). Counts slots moved per route; an exception in the
    loop is kept in ``error`` and ends it."""

    def __init__(self, routes: Sequence[tuple[object, Sequence, object, Sequence]]) -> None:
        self.routes = list(routes)
        self.moved = [0] * len(self.routes)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for src in {id(r[0]): r[0] for r in self.routes}.values():
                    src.rxsync()  # type: ignore[attr-defined]
                busy = False
                for i, (_src, rx, dst, tx) in enumerate(self.routes):
                    n = sum(r.forward(t) for r in rx for t in tx)
                    if n:
                        self.moved[i] += n
                        dst.txsync()  # type: ignore[attr-defined]
                        busy = True
                if not busy:
                    time.sleep(0.001)
        except BaseException as exc:   # kept for the test to report
            self.error = exc

    def __enter__(self) -> Pump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError("the forwarding thread did not stop within 30 s")


def is_gone_error(exc: BaseException) -> bool:
    """A sync error meaning the port's interface no longer exists."""
    return isinstance(exc, NetmapOSError) and exc.errno in IF_GONE_ERRNOS
