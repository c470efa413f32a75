"""Exclusive opens (``/x``, NR_EXCLUSIVE, spec B17) across processes on the chosen backend
(netmap's scripts 001 and 003): while one process holds a pipe end or a VALE port exclusively,
every other open of its rings fails with EBUSY (rings of the other pipe end and other ports of
the switch stay free); an exclusive open fails while anyone else uses the rings; and the port is
free again as soon as the holder closes it or dies."""
from __future__ import annotations

import errno

import pytest

import netmap_core
from netmap_core.errors import PortBusyError
from procs import Child, port_pair

HOLDER = """
    import sys
    import netmap_core
    names, backend = sys.argv[1].split(","), sys.argv[2]
    ports = [netmap_core.open(n, backend=backend) for n in names]
    print("held", flush=True)
    sys.stdin.readline()
    for p in ports:
        p.close()
    print("closed", flush=True)
    sys.stdin.readline()
"""

TRY = """
    import sys
    import netmap_core
    from netmap_core.errors import NetmapOSError
    try:
        netmap_core.open(sys.argv[1], backend=sys.argv[2]).close()
        print("opened", flush=True)
    except NetmapOSError as exc:
        print("refused", exc.errno, flush=True)
"""


def names(kind: str) -> tuple[str, str]:
    return port_pair(kind, "ex")


def busy(name: str, backend: str) -> None:
    with pytest.raises(PortBusyError) as e:
        netmap_core.open(name, backend=backend).close()
    assert e.value.errno == errno.EBUSY


@pytest.mark.parametrize("end", ["close", "kill"])
@pytest.mark.parametrize("kind", ["pipe", "vale"])
def test_exclusive_holder_in_another_process(backend_name, kind, end):
    port, other = names(kind)
    with Child(HOLDER, f"{port}/x", backend_name) as holder:
        holder.expect("held")
        busy(port, backend_name)               # B17: its rings have an exclusive owner
        busy(f"{port}/x", backend_name)
        with netmap_core.open(other, backend=backend_name) as o:
            assert not o.closed                # other rings are not affected
        if end == "close":
            holder.tell("close")
            holder.expect("closed")
        else:
            holder.kill()                      # SIGKILL: the kernel closes its descriptors
        with netmap_core.open(f"{port}/x", backend=backend_name):
            busy(port, backend_name)           # ours now, in this process too
        with netmap_core.open(port, backend=backend_name):
            pass


@pytest.mark.parametrize("kind", ["pipe", "vale"])
def test_exclusive_open_refused_while_another_process_uses_the_rings(backend_name, kind):
    port, _ = names(kind)
    with Child(HOLDER, port, backend_name) as user:
        user.expect("held")
        with Child(TRY, f"{port}/x", backend_name) as t:
            assert t.expect("refused") == [str(errno.EBUSY)], "B17: the rings have a user"
        busy(f"{port}/x", backend_name)
        user.tell("close")
        user.expect("closed")
        with Child(TRY, f"{port}/x", backend_name) as t:
            t.expect("opened")
