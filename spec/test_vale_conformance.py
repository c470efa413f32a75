"""The VALE conformance machine on the backend under test, and proof that it notices a switch
that misbehaves (floods instead of learning, forgets the sender rule, or loses the ring
accounting)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from netmap_core.testing.vale_conformance import VALE_DEFAULTS, make_vale_machine, vale_settings


def test_vale_machine(conformance_backend):
    run_state_machine_as_test(make_vale_machine(conformance_backend), settings=vale_settings(*VALE_DEFAULTS))


def _hub(self, batch):
    return np.full(len(batch), 254)


def _echo(self, batch):
    return np.full(len(batch), batch.src_port)   # the engine must still never echo


@pytest.mark.parametrize("fault", ["hub", "no_drop_short", "blind_monitor", "no_room_check"])
def test_machine_detects_faulty_switch(conformance_backend, monkeypatch, fault):
    if conformance_backend != "emu":
        pytest.skip("faults are injected into the emulator")
    from netmap_emu.datapath import lookup as vale_lookup

    if fault == "hub":
        monkeypatch.setattr(vale_lookup.LearningBridge, "__call__", _hub)
    elif fault == "blind_monitor":
        from netmap_emu.datapath import delivery, vale

        monkeypatch.setattr(vale, "copy_to_monitors", lambda *a, **k: None)
        monkeypatch.setattr(delivery, "copy_to_monitors", lambda *a, **k: None)
    elif fault == "no_room_check":
        from netmap_emu.datapath import delivery

        orig_lease = delivery.RxTarget.lease
        monkeypatch.setattr(delivery.RxTarget, "lease", lambda self: (orig_lease(self)[0], 1000))
    else:
        orig = vale_lookup.LearningBridge.__call__

        def no_drop(self, batch):
            out = orig(self, batch)
            out[batch.head_len < 14] = 254
            return out

        monkeypatch.setattr(vale_lookup.LearningBridge, "__call__", no_drop)
    quick = vale_settings(150, 25, phases=[Phase.generate], database=None, derandomize=True)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(make_vale_machine(conformance_backend), settings=quick)


def test_echo_from_a_lookup_is_still_dropped(conformance_backend, monkeypatch):
    if conformance_backend != "emu":
        pytest.skip("faults are injected into the emulator")
    from netmap_emu.datapath import lookup as vale_lookup

    monkeypatch.setattr(vale_lookup.LearningBridge, "__call__", _echo)
    from netmap_core.testing import BCAST, frame, mac, recv, send
    from netmap_emu.testing.vale import ValeEnv

    with ValeEnv("emu") as env:
        a, b = env.switch("valeecho", 2)
        send(a, [frame(BCAST, mac(1))])
        assert recv(a) == [] and recv(b) == []
