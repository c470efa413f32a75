"""The error hierarchy: typed, errno-carrying, and precise about what was wrong."""
from __future__ import annotations

import errno

import pytest

from netmap_core import errors as E


@pytest.mark.parametrize("code,cls", [
    (errno.EINVAL, E.InvalidRequestError), (errno.ENXIO, E.NoSuchPortError),
    (errno.EBUSY, E.PortBusyError), (errno.ENOMEM, E.OutOfMemoryError),
    (errno.EOPNOTSUPP, E.NotSupportedError), (errno.EIO, E.NetmapOSError),
])
def test_errno_maps_to_a_typed_oserror(code, cls):
    err = E.error_from_errno(code, "REGISTER vale0:a")
    assert type(err) is cls
    assert isinstance(err, OSError) and isinstance(err, E.NetmapError)
    assert err.errno == code and "REGISTER vale0:a" in str(err)


def test_portspec_error_points_at_the_character():
    err = E.PortSpecError("netmap:eth0*1", 12, "nothing may follow '*'")
    assert err.position == 12 and isinstance(err, ValueError)
    assert str(err).splitlines()[-1].index("^") - 2 == 12


def test_ring_protocol_error_names_field_value_and_range():
    err = E.RingProtocolError("vale0:a:tx0", "head", 8, "[3, 2]")
    assert (err.field, err.value, err.allowed) == ("head", 8, "[3, 2]")
    assert "head=8" in str(err) and "allowed: [3, 2]" in str(err)


def test_backend_unavailable_carries_reason_and_hint():
    err = E.BackendUnavailable("netmap", "/dev/netmap does not exist", "use backend='emu'")
    assert err.reason.startswith("/dev/netmap") and "hint: use backend='emu'" in str(err)
