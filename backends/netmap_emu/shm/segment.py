"""POSIX shared-memory segments private to their user: create or map one with its owner and
size checked, unlink by name. Every region, kernel-state block and switch segment uses these.
"""
from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterable

import posix_ipc

__all__ = ["map_private_shm", "unlink_segments"]


def map_private_shm(name: str, size: int, create: bool) -> mmap.mmap:
    """Map POSIX shm segment ``name`` (creating it, 0600, if asked), refusing one that is not a
    private segment of this user or is smaller than ``size``."""
    flags = posix_ipc.O_CREX if create else 0
    shm = posix_ipc.SharedMemory(name, flags=flags, mode=0o600, size=size if create else 0)
    try:
        st = os.fstat(shm.fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError(errno.EPERM, f"shm {name}: not a private segment of uid {os.getuid()}")
        if st.st_size < size:
            raise OSError(errno.EINVAL, f"shm {name}: {st.st_size} bytes, expected {size}")
        return mmap.mmap(shm.fd, size)
    finally:
        shm.close_fd()


def unlink_segments(names: Iterable[str]) -> list[str]:
    """Unlink shm segments by name (mappings stay valid until dropped); returns those that existed."""
    gone = []
    for name in names:
        try:
            posix_ipc.unlink_shared_memory(name)
            gone.append(name)
        except posix_ipc.ExistentialError:
            pass
    return gone
