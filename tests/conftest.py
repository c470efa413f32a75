"""Makes the test helpers in this folder importable (``from layout import build``), and the
fixtures several test files share."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def opener(backend_name):
    """``open_(name, **options)``: a port on the chosen backend, closed after the test (last
    opened first)."""
    import netmap_core

    ports = []

    def open_(name, **kw):
        p = netmap_core.open(name, backend=backend_name, **kw)
        ports.append(p)
        return p

    yield open_
    for p in reversed(ports):
        p.close()


@pytest.fixture
def veth_pair(request):
    """``make(**kw)``: a ``netns.VethPair`` entered now and deleted after the test (even when
    it fails); skips with the precise reason when this machine cannot create veth pairs. Ask
    for it before ``opener`` so ports close before their interfaces go (netmap.ko's
    ``ip link del`` waits for the port)."""
    import netns

    why = netns.unavailable()
    if why:
        pytest.skip(why)

    def make(**kw):
        v = netns.VethPair(**kw)
        request.addfinalizer(v.close)
        return v.__enter__()

    return make


@pytest.fixture
def netns_pair(request, veth_pair):
    """``make(**kw)``: a veth pair whose end ``a`` stays here and end ``b`` lives in a new
    namespace (``pair.netns_b``; ``ns.run(...)`` executes there), with addresses of one /30 on
    both ends; all deleted after the test. ``kw`` goes to ``netns.VethPair``."""
    import netns

    def make(**kw):
        ns = netns.Netns()
        request.addfinalizer(ns.close)
        ns.__enter__()
        a = kw.pop("a", None) or netns.unique_name("pva")
        addr_a, addr_b = netns.subnet(a)
        kw.setdefault("addr_a", addr_a)
        kw.setdefault("addr_b", addr_b)
        return ns, veth_pair(a=a, netns_b=ns, **kw)

    return make


@pytest.fixture
def ping():
    """The path of ``ping``; skips with the reason when it is not installed."""
    import shutil

    import netns

    why = netns.ping_missing()
    if why:
        pytest.skip(why)
    return shutil.which("ping")


@pytest.fixture
def tool(backend_name):
    """``start(command, *args) -> Tool``: a ``pynetmap COMMAND`` process on the chosen backend
    (tests/toolproc.py), killed after the test if still running."""
    from toolproc import Tool

    started = []

    def start(command, *args):
        t = Tool(command, *args, backend=backend_name)
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


@pytest.fixture
def lab():
    """Network namespaces and veth pairs of this test (tests/ifnet.py), removed afterwards even
    when it fails; skipped with the reason where they cannot be made (not root, no ip)."""
    from ifnet import unavailable, veth_lab

    why = unavailable()
    if why:
        pytest.skip(why)
    with veth_lab() as lab:
        yield lab


@pytest.fixture
def sides(lab):
    """Two namespaces A and B, each with a veth pair whose outer end is in the root namespace."""
    return lab.side("A"), lab.side("B")
