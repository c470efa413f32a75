"""Ring selection by register mode, ring id and flags (spec H1, F2, C6 live rows)."""
import pytest

from netmap_core import abi
from netmap_core.errors import InvalidRequestError
from netmap_core.regmodes import bound_rings

PIPE_MODES = (abi.NR_REG_ALL_NIC, abi.NR_REG_ONE_NIC)


def test_all_nic_binds_every_hardware_ring():
    b = bound_rings(abi.NR_REG_ALL_NIC, 0, 0, tx=2, rx=3, host_tx=1, host_rx=1)
    assert (b.tx, b.rx) == ((0, 1), (0, 1, 2))


def test_one_nic_falls_back_to_ring_zero_where_the_ring_is_missing():
    # ring 2 of a 2-TX/3-RX port: TX0 (fallback) and RX2, as observed live (spec A8)
    b = bound_rings(abi.NR_REG_ONE_NIC, 2, 0, tx=2, rx=3)
    assert (b.tx, b.rx) == ((0,), (2,))
    with pytest.raises(InvalidRequestError, match="ringid=3 is beyond both"):
        bound_rings(abi.NR_REG_ONE_NIC, 3, 0, tx=2, rx=3)


def test_host_modes():
    kw = dict(tx=2, rx=2, host_tx=1, host_rx=2)
    assert bound_rings(abi.NR_REG_SW, 0, 0, **kw) == bound_rings(abi.NR_REG_SW, 5, 0, **kw)
    assert bound_rings(abi.NR_REG_SW, 0, 0, **kw).rx == (2, 3)
    assert bound_rings(abi.NR_REG_NIC_SW, 0, 0, **kw).tx == (0, 1, 2)
    b = bound_rings(abi.NR_REG_ONE_SW, 1, 0, **kw)
    assert (b.tx, b.rx) == ((2,), (3,))
    with pytest.raises(InvalidRequestError, match="needs host rings"):
        bound_rings(abi.NR_REG_NIC_SW, 0, 0, tx=1, rx=1)


def test_direction_flags_empty_one_side():
    assert bound_rings(abi.NR_REG_ALL_NIC, 0, abi.NR_TX_RINGS_ONLY, tx=1, rx=1).rx == ()
    assert bound_rings(abi.NR_REG_ALL_NIC, 0, abi.NR_RX_RINGS_ONLY, tx=1, rx=1).tx == ()


@pytest.mark.parametrize("mode", [0, 5, 6, 99, abi.NR_REG_NIC_SW])
def test_modes_a_pipe_refuses(mode):
    with pytest.raises(InvalidRequestError) as e:
        bound_rings(mode, 0, 0, tx=1, rx=1, name="pipe{1", allowed=PIPE_MODES)
    assert f"nr_mode={mode}" in str(e.value) and "NR_REG_ONE_NIC (4)" in str(e.value)


@pytest.mark.parametrize("mode", [0, 5, 6, 99])
def test_unknown_modes_are_einval(mode):
    with pytest.raises(InvalidRequestError, match=f"nr_mode={mode} is not a register mode"):
        bound_rings(mode, 0, 0, tx=1, rx=1)
