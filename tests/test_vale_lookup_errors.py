"""A programmable VALE lookup that is wrong (issue #10): refused when installed if it cannot
import, cannot take a batch or fails on an empty one; when it fails later inside a sender's
txsync (raises, answers a wrong length or type, does not import there) that batch is dropped
and counted, never broadcast, and the error is recorded in the switch segment where the
installer reads it (``Switch.lookup_error``), whichever process the sender is in. The
sender's txsync never raises for it."""
from __future__ import annotations

import faulthandler
import multiprocessing as mp
import re

import numpy as np
import pytest

from netmap_core.errors import InvalidRequestError
from netmap_core.testing import BCAST, frame, mac, recv, send
from netmap_emu import vale
from netmap_emu.testing.vale import ValeEnv

_CTX = mp.get_context("fork")


@pytest.fixture
def env():
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        with ValeEnv("emu") as e:
            yield e
    finally:
        faulthandler.cancel_dump_traceback_later()


# lookups importable by name (module level); right on an empty batch, wrong on real ones
def raises_on_packets(batch):
    if len(batch):
        raise KeyError("no route for 02:00:00:00:00:01")
    return np.zeros(0, dtype=np.int64)


def one_port_for_all(batch):
    return np.full(min(len(batch), 1), vale.NM_BDG_BROADCAST)   # 1 answer for k packets


def scalar_flood(batch):
    return vale.NM_BDG_BROADCAST if len(batch) else np.zeros(0, dtype=np.int64)


def float_ports(batch):
    return np.full(len(batch), 1.0)


def good_flood(batch):
    return vale.flood_all(batch)


def test_a_lookup_that_cannot_be_called_with_a_batch_is_refused(env):
    env.switch("valeq", 2)
    s = vale.switch("valeq")
    with pytest.raises(InvalidRequestError, match="one argument") as ei:
        s.set_lookup("os:getpid")
    assert "'os:getpid'" in str(ei.value) and ei.value.errno == 22
    with pytest.raises(InvalidRequestError, match="not callable"):
        s.set_lookup("os:sep")
    assert s.seg.lookup_name == "", "the switch keeps its lookup"


def test_a_lookup_that_does_not_import_is_refused(env):
    env.switch("valer", 2)
    s = vale.switch("valer")
    with pytest.raises(InvalidRequestError, match="cannot be imported here: ModuleNotFoundError"):
        s.set_lookup("nosuch_module_pnm:fn")
    with pytest.raises(InvalidRequestError, match="AttributeError"):
        s.set_lookup("netmap_emu.datapath.lookup:nosuch")
    with pytest.raises(InvalidRequestError, match="module:qualname"):
        s.set_lookup("no_colon")
    assert s.seg.lookup_name == ""


def test_a_lookup_failing_on_an_empty_batch_is_refused(env):
    env.switch("valet", 2)
    s = vale.switch("valet")
    with pytest.raises(InvalidRequestError, match="empty batch.*IndexError"):
        s.set_lookup(lambda b: b.dst[0], local=True)
    with pytest.raises(InvalidRequestError, match=r"shape \(1,\) for 0 packets"):
        s.set_lookup(lambda b: np.array([1]), local=True)


def _send_in_child(name: str, frames, q) -> None:
    import netmap_core

    try:
        with netmap_core.open(name, backend="emu") as p:
            send(p, frames)          # txsync runs the lookup here
        q.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        q.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("lookup, why", [
    (raises_on_packets, "raised KeyError"),
    (one_port_for_all, r"shape \(1,\) for 3 packets"),
    (scalar_flood, r"shape \(\) for 3 packets"),
    (float_ports, "dtype float64"),
])
def test_a_failing_lookup_drops_its_batch_in_another_process_and_the_installer_sees_why(env, lookup, why):
    sw = "valeu"
    a, b = env.switch(sw, 2)
    s = vale.switch(sw)
    s.set_lookup(lookup)
    assert s.lookup_error is None and s.lookup_errors == 0
    q = _CTX.Queue()
    child = _CTX.Process(target=_send_in_child, args=(f"{sw}:c", [frame(BCAST, mac(1))] * 3, q))
    child.start()
    assert q.get(timeout=30) == "ok", "the sender's txsync did not raise"
    child.join(30)
    assert recv(a) == [] and recv(b) == [], "the batch was dropped, never broadcast"
    assert s.lookup_errors == 1
    assert s.lookup_error is not None and lookup.__name__ in s.lookup_error
    assert re.search(why, s.lookup_error)
    send(a, [frame(BCAST, mac(2))] * 2)             # and in this process too: counted, no raise
    assert s.lookup_errors == 2 and recv(b) == []
    assert s.stats.lookup_errors == 1 and s.stats.lookup_dropped == 2
    s.set_lookup(good_flood)                        # a new lookup starts a clean record
    assert s.lookup_error is None and s.lookup_errors == 0
    f = frame(BCAST, mac(3))
    send(a, [f])
    assert recv(b) == [f]


def test_a_lookup_that_does_not_import_in_the_senders_process_is_reported(env, monkeypatch):
    sw = "valev"
    a, b = env.switch(sw, 2)
    s = vale.switch(sw)
    s.set_lookup(good_flood)
    # in a sender that cannot import it (here: this process, after the name went away)
    monkeypatch.delitem(globals(), "good_flood")
    s.seg.set_lookup_name(s.seg.lookup_name)       # senders reload the lookup
    send(a, [frame(BCAST, mac(1))])
    assert recv(b) == []
    assert s.lookup_errors == 1 and "not importable in pid" in s.lookup_error
    assert "good_flood" in s.lookup_error
