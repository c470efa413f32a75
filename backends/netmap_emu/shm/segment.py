"""POSIX shared-memory segments private to their user: create or map one with its owner and
size checked, unlink by name. Every region, kernel-state block and switch segment uses these.

A segment's memory is reserved when it is created (``posix_fallocate``): POSIX shm is sparse,
so without the reservation a full /dev/shm shows up later as SIGBUS on the first touch of a
page, in whichever process touches it. Running out is an :class:`OutOfMemoryError` at creation
instead, and the half-made segment is unlinked.

Every failure is a :class:`~netmap_core.errors.NetmapOSError` with the errno (posix_ipc's own
exceptions carry none): a name taken by someone else (:class:`SegmentExistsError`), a segment
that is gone (:class:`SegmentMissingError`), a process out of descriptors
(:class:`TooManyFilesError`), /dev/shm full (:class:`OutOfMemoryError`).

Teardown (reclaiming a dead process, gc) may meet an allocator or switch whose segments were
unlinked before the registry forgot them (a process killed in between, or gc freeing space on
a full /dev/shm before it could write). Inside :func:`tolerate_missing`, mapping such a segment
gives an anonymous zero-filled mapping instead (see :func:`is_ghost`), so the teardown can
finish; anywhere else a missing segment is :class:`SegmentMissingError`.
"""
from __future__ import annotations

import contextlib
import errno
import mmap
import os
import resource
import threading
import weakref
from collections.abc import Iterable, Iterator

import posix_ipc

from netmap_core.errors import NetmapOSError, OutOfMemoryError

__all__ = ["map_private_shm", "create_private_shm", "unlink_segments", "SegmentExistsError",
           "SegmentMissingError", "TooManyFilesError", "fd_exhausted", "shm_space", "GC_HINT",
           "tolerate_missing", "tolerating", "is_ghost"]

SHM_DIR = "/dev/shm"
#: the remedy for a full /dev/shm, in every message about one
GC_HINT = ("run 'pynetmap emu gc' to remove what dead processes left, close ports you do not "
           "need, or open smaller ones (fewer rings or slots, fewer extra_bufs)")


class SegmentExistsError(NetmapOSError):
    """EEXIST: a segment name the emulator wanted is taken (``owner``: its uid, or None)."""

    def __init__(self, name: str, owner: int | None, detail: str) -> None:
        super().__init__(errno.EEXIST, detail)
        self.name = name
        self.owner = owner


class SegmentMissingError(NetmapOSError):
    """ENOENT: a segment the registry names does not exist any more."""


class TooManyFilesError(NetmapOSError):
    """EMFILE (this process) or ENFILE (the system): no file descriptor left."""


def shm_space() -> tuple[int, int]:
    """(bytes free, bytes total) on /dev/shm for this user, (-1, -1) if unknown."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return -1, -1
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def fd_exhausted(code: int, what: str) -> TooManyFilesError:
    """The error for EMFILE/ENFILE while doing ``what``, naming the limit and the remedy."""
    if code == errno.ENFILE:
        return TooManyFilesError(code, f"{what}: the system's table of open files is full "
                                 "(fs.file-max); close files or raise fs.file-max")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return TooManyFilesError(errno.EMFILE, f"{what}: this process has reached its limit of {soft} "
                             f"open files (RLIMIT_NOFILE, hard limit {hard}); each emulated port "
                             "keeps about 3 descriptors open: close ports, or raise the limit "
                             "('ulimit -n', resource.setrlimit)")


def _owner(name: str) -> int | None:
    try:
        return os.stat(os.path.join(SHM_DIR, name.lstrip("/"))).st_uid
    except OSError:
        return None


def _ipc_error(exc: BaseException, name: str, what: str) -> NetmapOSError:
    """A posix_ipc (or OS) failure on segment ``name`` as a typed error with its errno."""
    if isinstance(exc, NetmapOSError):
        return exc
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.EMFILE, errno.ENFILE):
        return fd_exhausted(code, f"shm {name}: {what}")
    if code is None and "maximum number of files" in text:
        return fd_exhausted(errno.EMFILE, f"shm {name}: {what}")
    if code is None and "total number of open files" in text:
        return fd_exhausted(errno.ENFILE, f"shm {name}: {what}")
    if isinstance(exc, posix_ipc.PermissionsError) or code in (errno.EACCES, errno.EPERM):
        return NetmapOSError(errno.EACCES, f"shm {name}: {what}: permission denied (owned by uid "
                             f"{_owner(name)}, we are uid {os.getuid()}); remove it as its owner")
    if code in (errno.ENOSPC, errno.ENOMEM):
        free, total = shm_space()
        return OutOfMemoryError(errno.ENOMEM, f"shm {name}: {what}: {os.strerror(code)} "
                                f"({_mib(free)} free of {_mib(total)} on {SHM_DIR}); {GC_HINT}")
    return NetmapOSError(code or errno.EIO, f"shm {name}: {what}: {text}")


def _check(name: str, fd: int, size: int) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise NetmapOSError(errno.EPERM, f"shm {name}: owned by uid {st.st_uid} with mode "
                            f"{st.st_mode & 0o777:04o}, not a private (0600) segment of uid "
                            f"{os.getuid()}; refusing to map it (remove it as its owner)")
    if st.st_size < size:
        raise NetmapOSError(errno.EINVAL, f"shm {name}: {st.st_size} bytes, expected at least {size} "
                            "(changed behind the emulator's back); run 'pynetmap emu gc'")


def _map(name: str, fd: int, size: int) -> mmap.mmap:
    try:
        return mmap.mmap(fd, size)
    except OSError as exc:
        raise _ipc_error(exc, name, f"mapping {size} bytes") from exc


def create_private_shm(name: str, size: int) -> mmap.mmap:
    """Create segment ``name`` (0600, exclusively), reserve its ``size`` bytes and map it.
    Nothing is left behind when it fails: :class:`SegmentExistsError` if the name is taken,
    :class:`OutOfMemoryError` if /dev/shm cannot hold it."""
    try:
        shm = posix_ipc.SharedMemory(name, flags=posix_ipc.O_CREX, mode=0o600, size=size)
    except posix_ipc.ExistentialError:
        owner = _owner(name)
        raise SegmentExistsError(name, owner, f"shm {name}: the name is taken (by uid {owner})") from None
    except (posix_ipc.Error, OSError, ValueError) as exc:
        unlink_segments([name])   # posix_ipc may fail after creating it (the size step)
        raise _ipc_error(exc, name, f"creating {size} bytes") from exc
    try:
        try:
            os.posix_fallocate(shm.fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                free, total = shm_space()
                raise OutOfMemoryError(
                    errno.ENOMEM, f"shm {name}: cannot reserve {size} bytes ({_mib(size)}): "
                    f"{_mib(free)} free of {_mib(total)} on {SHM_DIR}; {GC_HINT}") from exc
            raise _ipc_error(exc, name, f"reserving {size} bytes") from exc
        return _map(name, shm.fd, size)
    except BaseException:
        unlink_segments([name])
        raise
    finally:
        shm.close_fd()


# --- teardown of what is already gone ---------------------------------------------------------

_TOLERANT = threading.local()
_GHOSTS: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()


@contextlib.contextmanager
def tolerate_missing() -> Iterator[None]:
    """Inside: mapping a missing segment gives a ghost (zero-filled, private) mapping."""
    depth = getattr(_TOLERANT, "depth", 0)
    _TOLERANT.depth = depth + 1
    try:
        yield
    finally:
        _TOLERANT.depth = depth


def tolerating() -> bool:
    return getattr(_TOLERANT, "depth", 0) > 0


def is_ghost(mm: mmap.mmap) -> bool:
    """Whether ``mm`` stands in for a segment that no longer exists."""
    return mm in _GHOSTS


def _ghost(size: int) -> mmap.mmap:
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _GHOSTS.add(mm)
    return mm


def map_private_shm(name: str, size: int, create: bool = False) -> mmap.mmap:
    """Map POSIX shm segment ``name``, refusing one that is not a private segment of this user
    or is smaller than ``size`` (``create``: see :func:`create_private_shm`)."""
    if create:
        return create_private_shm(name, size)
    try:
        shm = posix_ipc.SharedMemory(name, flags=0)
    except posix_ipc.ExistentialError:
        if tolerating():
            return _ghost(size)
        raise SegmentMissingError(errno.ENOENT, f"shm {name} does not exist (removed by hand, or "
                                  "its owner died while destroying it); run 'pynetmap emu gc'") from None
    except (posix_ipc.Error, OSError, ValueError) as exc:
        raise _ipc_error(exc, name, "opening") from exc
    try:
        _check(name, shm.fd, size)
        return _map(name, shm.fd, size)
    finally:
        shm.close_fd()


def unlink_segments(names: Iterable[str]) -> list[str]:
    """Unlink shm segments by name (mappings stay valid until dropped); returns those that
    existed. A segment that is not ours (another user's, under a name of ours) is left alone."""
    gone = []
    me = os.getuid()
    for name in names:
        owner = _owner(name)
        if owner is not None and owner != me:
            continue
        try:
            posix_ipc.unlink_shared_memory(name)
            gone.append(name)
        except (posix_ipc.ExistentialError, posix_ipc.PermissionsError):
            pass
    return gone
