"""Network namespaces, veth pairs and a small forwarding loop for the interface-port tests.
Everything made here is removed on exit, also when the test fails; :func:`unavailable` says why not."""
from __future__ import annotations

import errno
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import netns
from netmap_core.errors import NetmapOSError

__all__ = ["Side", "VethLab", "Pump", "unavailable", "veth_lab", "IF_GONE_ERRNOS"]

#: errno of a sync on a port whose interface was deleted (netmap.ko, and the emulator with it)
IF_GONE_ERRNOS = (errno.EIO,)


def unavailable() -> str | None:
    """Why namespaces, veth pairs and ping cannot be used here (None: they can)."""
    return netns.unavailable() or netns.ping_missing()


def sh(*args: str, ns: str | None = None, timeout: float = 60.0,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (in network namespace ``ns``); a failure raises with its stderr."""
    return netns.run(*args, netns=ns, check=check, timeout=timeout)


@dataclass(frozen=True)
class Side:
    """One veth pair: ``inner`` lives in namespace ``ns`` with IPv4 ``addr``/24, its peer
    ``outer`` stays in the root namespace (the interface a netmap port opens)."""

    ns: str
    inner: str
    outer: str
    addr: str


class VethLab:
    """Namespaces, each with a veth pair into the root namespace, all inner ends in one /24
    (so they can reach each other once something bridges the outer ends)."""

    def __init__(self) -> None:
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        self._made: list[netns.Netns | netns.VethPair] = []
        self._addrs = 0

    def side(self, letter: str) -> Side:
        """A new namespace with a veth pair; the inner end gets the next address of the subnet."""
        ns = netns.Netns(netns.unique_name(f"nm{letter}"))
        ns.__enter__()
        self._made.append(ns)
        self._addrs += 1
        addr = f"{self.net}.{self._addrs}"
        pair = netns.VethPair(a=netns.unique_name(f"nm{letter}o"), b=netns.unique_name(f"nm{letter}i"),
                              netns_b=ns, addr_b=f"{addr}/24")
        pair.__enter__()
        self._made.append(pair)
        return Side(ns.name, pair.b, pair.a, addr)

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

    def close(self) -> None:
        """Delete the veth pairs and namespaces (each helper's close never raises)."""
        while self._made:
            self._made.pop().close()


@contextmanager
def veth_lab() -> Iterator[VethLab]:
    """A :class:`VethLab` torn down on exit (after the body's ports are closed)."""
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
