"""The typed error hierarchy shared by every backend.

Every error names what was wrong (field, value, what was allowed) and carries the errno the
kernel would return, so code written against one backend handles the other's failures alike.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "NetmapError",
    "PortSpecError",
    "RingProtocolError",
    "CorruptRingError",
    "NetmapOSError",
    "InvalidRequestError",
    "NoSuchPortError",
    "PortBusyError",
    "OutOfMemoryError",
    "NotSupportedError",
    "LockTimeoutError",
    "ClosedPortError",
    "BackendUnavailable",
    "error_from_errno",
]


class NetmapError(Exception):
    """Base of every error pynetmap raises on purpose. Subclasses carry ``errno``: the value
    the kernel would return for the same failure."""


class PortSpecError(NetmapError, ValueError):
    """A port name (``netmap:eth0-1/x@conf:...``) that libnetmap's grammar rejects.

    ``position`` is the 0-based index of the offending character in ``text``.
    """

    errno = _errno.EINVAL

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.text = text
        self.position = position
        self.reason = reason
        caret = " " * position + "^"
        super().__init__(f"{reason} at position {position} of {text!r}\n  {text}\n  {caret}")


class RingProtocolError(NetmapError):
    """The application moved ``head``/``cur`` (or left a slot) where netmap forbids it.

    Raised by a sync in ``rules="strict"`` mode instead of netmap's silent ring reinit.
    """

    errno = _errno.EINVAL

    def __init__(self, ring: str, field: str, value: int, allowed: str) -> None:
        self.ring = ring
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{ring}: {field}={value} is illegal; allowed: {allowed}")


class CorruptRingError(RingProtocolError):
    """An index or length read from a ring's shared memory is out of range (``value`` is what
    was read, ``allowed`` the legal range): another process, a stray write or a bug changed
    the ring behind the library's back. Nothing was read or written through it; ``hint``
    says how to recover."""

    def __init__(self, ring: str, field: str, value: int, allowed: str, hint: str) -> None:
        super().__init__(ring, field, value, allowed)
        self.hint = hint
        self.args = (f"{ring}: {field}={value} read from shared memory is out of range; "
                     f"allowed: {allowed}. {hint}",)


class NetmapOSError(NetmapError, OSError):
    """A request failed the way the kernel fails it: ``errno`` is set, ``detail`` says why."""

    errno: int   # always given (OSError's may be None)

    def __init__(self, code: int, detail: str) -> None:
        OSError.__init__(self, code, f"{os.strerror(code)}: {detail}")
        self.detail = detail


class InvalidRequestError(NetmapOSError):
    """EINVAL: a request or one of its fields is out of its legal range."""


class NoSuchPortError(NetmapOSError):
    """ENXIO: the named port, interface or switch does not exist."""


class PortBusyError(NetmapOSError):
    """EBUSY: exclusive use, a ring already bound, or a port owned by someone else."""


class OutOfMemoryError(NetmapOSError):
    """ENOMEM: the allocator, the switch or the port table is full."""


class NotSupportedError(NetmapOSError):
    """EOPNOTSUPP: the port does not support the request or option."""


class LockTimeoutError(NetmapOSError):
    """ETIMEDOUT: another process held a lock (``what``: the namespace, a ring, a switch) for
    longer than the call may wait. ``holder_pid`` and ``holder_state`` name that process as
    seen when giving up (0 and "" when unknown); a stopped one is resumed with ``kill -CONT``."""

    def __init__(self, code: int, detail: str, *, what: str = "", holder_pid: int = 0,
                 holder_state: str = "") -> None:
        super().__init__(code, detail)
        self.what = what
        self.holder_pid = holder_pid
        self.holder_state = holder_state


class ClosedPortError(NetmapError):
    """An operation on a port (or one of its rings) after ``close()``."""

    errno = _errno.EBADF


class BackendUnavailable(NetmapError):
    """The requested backend cannot run here; ``reason`` says why and ``hint`` what to do."""

    errno = _errno.ENODEV

    def __init__(self, backend: str, reason: str, hint: str = "") -> None:
        self.backend = backend
        self.reason = reason
        self.hint = hint
        text = f"backend {backend!r} is unavailable: {reason}"
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


_BY_ERRNO: dict[int, type[NetmapOSError]] = {
    _errno.EINVAL: InvalidRequestError,
    _errno.ENXIO: NoSuchPortError,
    _errno.EBUSY: PortBusyError,
    _errno.ENOMEM: OutOfMemoryError,
    _errno.EOPNOTSUPP: NotSupportedError,
}


def error_from_errno(code: int, detail: str) -> NetmapOSError:
    """The typed error for a kernel-style ``errno`` (a plain NetmapOSError for the others)."""
    return _BY_ERRNO.get(code, NetmapOSError)(code, detail)
