"""Errors a user can act on (issue #10): vale-ctl says why a request failed, and the advice
the emulator gives works when followed."""
from __future__ import annotations

import io

import pytest

from netmap_core.control import control_for
from netmap_core.errors import InvalidRequestError, OutOfMemoryError, PortBusyError
from netmap_emu.testing import isolated_namespace, open_emu
from netmap_tools import valectl


@pytest.fixture(autouse=True)
def ns():
    with isolated_namespace("msg") as name:
        yield name


def ctl(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    c = control_for("emu")
    try:
        rc = valectl.main(list(argv), control=c, stdout=out, stderr=err)
    finally:
        c.close()
    return rc, err.getvalue()


def test_vale_ctl_says_which_limit_a_long_name_breaks():
    rc, err = ctl("-n", "x" * 20)
    assert rc == 1 and err.startswith(f"failed to create {'x' * 20}: Invalid argument: ")
    assert "20 characters, more than the limit of 15" in err
    rc, err = ctl("-n", "valebad")
    assert "starts with 'val'" in err


def test_vale_ctl_busy_says_detach_first_and_that_works():
    assert ctl("-n", "mv1") == (0, "")
    assert ctl("-a", "valemsg:mv1") == (0, "")
    rc, err = ctl("-r", "mv1")
    assert rc == 1 and err.startswith("failed to remove mv1: Device or resource busy: ")
    assert "detach it first (VALE_DETACH / vale-ctl -d valemsg:mv1)" in err
    assert ctl("-d", "valemsg:mv1") == (0, "")      # the advice, followed
    assert ctl("-r", "mv1") == (0, "")


def test_a_pipe_parent_is_not_advised_to_be_attached():
    with open_emu("netmap:mpar{1"):
        with pytest.raises(InvalidRequestError) as ei:
            open_emu("valemsg:mpar")
        assert "vale-ctl -a" not in str(ei.value), "attaching a pipe parent fails: not advised"
        assert "parent of netmap pipes" in str(ei.value)
        assert ctl("-a", "valemsg:mpar")[0] == 1    # indeed


def test_a_port_attached_elsewhere_gets_advice_that_works():
    assert ctl("-n", "mv2") == (0, "")
    assert ctl("-a", "valemsg:mv2") == (0, "")
    with pytest.raises(InvalidRequestError, match="vale-ctl -d valemsg:mv2") as ei:
        open_emu("valeoth:mv2")
    assert "attach it to valeoth" in str(ei.value)
    assert ctl("-d", "valemsg:mv2") == (0, "")
    assert ctl("-a", "valeoth:mv2") == (0, "")
    with open_emu("valeoth:mv2") as p:
        assert p.info.tx_rings == 1
    assert ctl("-d", "valeoth:mv2") == (0, "")
    assert ctl("-r", "mv2") == (0, "")


def test_detach_of_an_open_port_says_close_it_first():
    assert ctl("-n", "mv3") == (0, "")
    assert ctl("-a", "valemsg:mv3") == (0, "")
    with open_emu("valemsg:mv3"), pytest.raises(PortBusyError, match="close it first"):
        control_for("emu").vale_detach("valemsg:mv3")
    assert ctl("-d", "valemsg:mv3") == (0, "")
    assert ctl("-r", "mv3") == (0, "")


def test_too_many_pipe_rings_for_the_allocator_say_what_would_fit():
    with pytest.raises(OutOfMemoryError) as ei:
        open_emu("netmap:mr{0@conf:rings=10")
    text = str(ei.value)
    assert "too small for 10 rings per direction" in text and "need 40 ring objects" in text
    assert "all 38 ring objects are in use" not in text
    assert "at most 9 rings per direction" in text
    with open_emu("netmap:mr{0@conf:rings=9") as p:       # what the message says fits, fits
        assert len(p.tx_rings) == 9
    with open_emu("netmap:ms{0@1@conf:rings=10") as p:     # and so does its other advice
        assert len(p.tx_rings) == 10 and p.info.mem_id == 1
