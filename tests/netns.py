"""Network namespaces and veth pairs for tests, with names unique to this process and teardown
that runs even when the test fails (use them as context managers or through the fixtures).

    with VethPair() as v:                       # v.a, v.b: interface names, both up
        ...
    with Netns() as ns, VethPair(netns_b=ns, addr_a="10.9.0.1/30", addr_b="10.9.0.2/30") as v:
        ns.run("ping", "-c1", "10.9.0.1")

``unavailable()`` says why a machine cannot do this (not root, no ``ip``, no veth); the
fixtures in tests/conftest.py skip with that reason. ``ping_missing()`` likewise for ``ping``.
Deleting one end of a veth deletes its peer; deleting a namespace deletes the interfaces in it.
On netmap.ko ``ip link del`` blocks until the interface's netmap port is closed: close ports
first (the fixtures finalize after the test's own ports when requested before ``opener``).
"""
from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import subprocess
import zlib
from types import TracebackType

__all__ = [
    "IFNAMSIZ", "Netns", "VethPair", "NetnsError", "unique_name", "unavailable", "ping_missing",
    "run", "subnet",
]

#: the kernel's IFNAMSIZ minus the terminating NUL
IFNAMSIZ = 15

#: seconds one ``ip`` command may take before the helper calls it a hang
BOUND = 30.0

_counter = itertools.count()


class NetnsError(RuntimeError):
    """An ``ip`` (or other) command failed; the message carries the command and its stderr."""


def unique_name(prefix: str) -> str:
    """``prefix`` + pid + a per-process counter, at most IFNAMSIZ characters (raises if the
    prefix leaves no room)."""
    tail = f"{os.getpid():x}{next(_counter):x}"
    name = prefix + tail
    if len(name) > IFNAMSIZ:
        raise ValueError(f"name {name!r} longer than IFNAMSIZ ({IFNAMSIZ}); shorten the prefix")
    return name


def subnet(name: str) -> tuple[str, str]:
    """Two host addresses of a /30 in 10.128.0.0/9 derived from ``name`` (unique names give
    distinct subnets with high probability; collisions only matter in one namespace)."""
    base = 10 << 24 | 0x800000 | (zlib.crc32(f"{os.getpid()}:{name}".encode()) & 0x7FFFFC)
    a, b = (ipaddress.IPv4Address(base + i) for i in (1, 2))
    return f"{a}/30", f"{b}/30"


def run(*argv: str, netns: str | None = None, check: bool = True,
        timeout: float = BOUND) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (inside ``netns`` through ``ip netns exec`` when given); raise NetnsError
    with the command and its stderr when it fails and ``check`` is set."""
    cmd = list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)!r} exited {p.returncode}: {p.stderr.strip()}")
    return p


def _quiet(ifname: str, netns: str | None) -> None:
    # IPv6 on a fresh link sends router solicitations and MLD reports: frames a test did not
    # send. Disabling it keeps the wire to what the test puts there.
    run("sysctl", "-q", "-w", f"net.ipv6.conf.{ifname}.disable_ipv6=1", netns=netns,
        check=False)


_unavailable: str | None = None
_probed = False


def unavailable() -> str | None:
    """None when this process can create namespaces and veth pairs, else the precise reason
    (probed once per process: creates and deletes a veth pair, loading the veth module first
    if needed)."""
    global _unavailable, _probed
    if _probed:
        return _unavailable
    _probed = True
    if os.geteuid() != 0:
        _unavailable = f"needs root for network namespaces and veth (euid {os.geteuid()})"
    elif shutil.which("ip") is None:
        _unavailable = "'ip' (iproute2) not on PATH"
    else:
        a, b = unique_name("vpa"), unique_name("vpb")
        p = run("ip", "link", "add", a, "type", "veth", "peer", "name", b, check=False)
        if p.returncode != 0 and shutil.which("modprobe") is not None:
            run("modprobe", "veth", check=False)
            p = run("ip", "link", "add", a, "type", "veth", "peer", "name", b, check=False)
        if p.returncode != 0:
            _unavailable = f"cannot create a veth pair: {p.stderr.strip()}"
        else:
            run("ip", "link", "del", a, check=False)
            ns = unique_name("nsp")
            p = run("ip", "netns", "add", ns, check=False)
            if p.returncode != 0:
                _unavailable = f"cannot create a network namespace: {p.stderr.strip()}"
            else:
                run("ip", "netns", "del", ns, check=False)
    return _unavailable


def ping_missing() -> str | None:
    """None when ``ping`` is on PATH, else the reason a ping test cannot run."""
    if shutil.which("ping") is None:
        return "'ping' not on PATH (package iputils-ping not installed)"
    return None


class Netns:
    """A network namespace named ``name`` (default: unique), created on enter, deleted on exit
    with everything in it. ``run`` executes a command inside it."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or unique_name("pnm")
        self._made = False

    def __enter__(self) -> Netns:
        run("ip", "netns", "add", self.name)
        self._made = True
        run("ip", "link", "set", "lo", "up", netns=self.name)
        return self

    def run(self, *argv: str, check: bool = True,
            timeout: float = BOUND) -> subprocess.CompletedProcess[str]:
        return run(*argv, netns=self.name, check=check, timeout=timeout)

    def close(self) -> None:
        if self._made:
            self._made = False
            run("ip", "netns", "del", self.name, check=False)

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __str__(self) -> str:
        return self.name


class VethPair:
    """A veth pair ``a`` <-> ``b`` (default names unique), created on enter with both ends up,
    deleted on exit. ``netns_a``/``netns_b`` move an end into a namespace (a Netns or a name);
    ``addr_a``/``addr_b`` ("10.1.2.1/30") assign addresses; ``quiet`` disables IPv6 on both ends
    so the link carries only what the test sends; ``mtu`` sets both ends' MTU."""

    def __init__(self, a: str | None = None, b: str | None = None, *,
                 netns_a: Netns | str | None = None, netns_b: Netns | str | None = None,
                 addr_a: str | None = None, addr_b: str | None = None,
                 quiet: bool = True, mtu: int | None = None) -> None:
        self.a = a or unique_name("pva")
        self.b = b or unique_name("pvb")
        self.netns_a = None if netns_a is None else str(netns_a)
        self.netns_b = None if netns_b is None else str(netns_b)
        self.addr_a, self.addr_b = addr_a, addr_b
        self.quiet, self.mtu = quiet, mtu
        self._made = False

    def __enter__(self) -> VethPair:
        try:
            run("ip", "link", "add", self.a, "type", "veth", "peer", "name", self.b)
            self._made = True
            for ifname, ns, addr in ((self.a, self.netns_a, self.addr_a),
                                     (self.b, self.netns_b, self.addr_b)):
                if ns is not None:
                    run("ip", "link", "set", ifname, "netns", ns)
                if self.quiet:
                    _quiet(ifname, ns)
                if self.mtu is not None:
                    run("ip", "link", "set", ifname, "mtu", str(self.mtu), netns=ns)
                if addr is not None:
                    run("ip", "addr", "add", addr, "dev", ifname, netns=ns)
                run("ip", "link", "set", ifname, "up", netns=ns)
        except BaseException:
            self.close()
            raise
        return self

    def ifindex(self, end: str = "a") -> int:
        """The interface index of end ``a`` or ``b`` (in its namespace)."""
        ifname, ns = (self.a, self.netns_a) if end == "a" else (self.b, self.netns_b)
        return int(run("cat", f"/sys/class/net/{ifname}/ifindex", netns=ns).stdout)

    def close(self) -> None:
        """Delete the pair (deleting either end removes both); idempotent, never raises."""
        if not self._made:
            return
        self._made = False
        for ifname, ns in ((self.a, self.netns_a), (self.b, self.netns_b)):
            p = run("ip", "link", "del", ifname, netns=ns, check=False)
            if p.returncode == 0:
                break

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
