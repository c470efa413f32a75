"""An emulator namespace: its private directory, lock file, byte-range locks and shm names.

Everything the emulated kernel keeps outside the netmap-visible regions lives here, owned by the
user (dirs 0700, files and segments 0600), and is guarded by fcntl byte-range locks on one lock
file, which the OS drops when a holder dies::

    byte 0                       namespace lock (open, close, reclaim, gc)
    LIVE_BASE + binding id       held by the process owning that binding for its lifetime
    VALE_BASE + gen              a switch's forwarding lock (:mod:`.switch`)
    SYNC_BASE + gen*4096 + obj   per ring pair of allocator incarnation ``gen`` (txsync/rxsync)

The registry (``registry.db``, see :mod:`netmap_emu.kernel.registry`) lives in the same
directory; this module only names it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
import threading

from netmap_core.errors import InvalidRequestError, NetmapOSError

__all__ = [
    "ENV_NS", "ENV_DIR", "NamespaceError", "Namespace", "namespace", "namespace_name", "base_dir",
    "LIVE_BASE", "SYNC_BASE", "VALE_BASE", "SHM_PREFIX", "REGISTRY", "LOCK_FILE", "owner_id", "sync_lock_pos",
]

ENV_NS = "PYNETMAP_EMU_NS"
LIVE_BASE = 1 << 20
SYNC_BASE = 1 << 40
VALE_BASE = 1 << 36
REGISTRY = "registry.db"
_NS_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_LOCK = "lock"
LOCK_FILE = _LOCK   # the lock file's name in a namespace directory


class NamespaceError(NetmapOSError):
    """EPERM: the emulator's state directory is unsafe (wrong owner, group/world writable,
    not a directory) or the namespace name is not usable."""


def SHM_PREFIX(ns: str) -> str:  # noqa: N802 - a derived constant
    """Name prefix (without the leading '/') of every POSIX shm segment of namespace ``ns``."""
    return f"pnm.{os.getuid()}.{ns}."


_OWNER: list = [None, ""]


def owner_id() -> str:
    """This process as a binding's owner: its pid and a nonce (a pid can be reused)."""
    if _OWNER[0] != os.getpid():
        _OWNER[0], _OWNER[1] = os.getpid(), f"{os.getpid()}.{os.urandom(4).hex()}"
    return _OWNER[1]


def sync_lock_pos(gen: int, obj: int) -> int:
    """The lock byte of ring object ``obj`` of allocator incarnation ``gen``."""
    return SYNC_BASE + gen * 4096 + obj


def namespace_name(name: str | None = None) -> str:
    """The namespace in use: ``name``, else ``$PYNETMAP_EMU_NS``, else ``default`` (validated)."""
    ns = name if name is not None else os.environ.get(ENV_NS) or "default"
    if not _NS_RE.match(ns):
        raise InvalidRequestError(
            errno.EINVAL, f"{ENV_NS}={ns!r} is not a namespace name; allowed: 1-40 of [A-Za-z0-9_-]")
    return ns


def _describe(st: os.stat_result) -> str:
    kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
            else "not a directory")
    return f"{kind} owned by uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}"


def _unsafe(st: os.stat_result) -> str | None:
    """Why a directory with this lstat() cannot hold our state (None: it can)."""
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory (a symlink or file is refused)"
    if st.st_uid != os.getuid():
        return f"not owned by uid {os.getuid()}"
    if st.st_mode & 0o022:
        return "group/world writable; need mode 0700"
    return None


def _check_dir(path: str, remedy: str = "") -> None:
    """Create ``path`` (0700) if missing; refuse it unless it is a directory of ours that only
    we can write (NamespaceError naming its owner and mode, and ``remedy``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if st.st_uid == os.getuid() and stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(path, 0o700)
            st = os.lstat(path)
    why = _unsafe(st)
    if why is not None:
        raise NamespaceError(errno.EPERM, f"{path}: {_describe(st)}: {why}; "
                             + (remedy or f"remove it, or set {ENV_DIR} to a private directory"))


#: environment variable naming the directory that holds every namespace of this user
ENV_DIR = "PYNETMAP_EMU_DIR"
#: where the per-user directory is made (tests point this elsewhere)
ROOTS: tuple[str, ...] = ("/dev/shm",)
_POINTER = "shm-dir"


def _root() -> str:
    for root in (*ROOTS, os.environ.get("XDG_RUNTIME_DIR"), "/tmp"):
        if root and os.path.isdir(root) and os.access(root, os.W_OK | os.X_OK):
            return root
    raise NamespaceError(errno.EPERM, f"no writable directory among {', '.join(ROOTS)}, $XDG_RUNTIME_DIR, "
                         f"/tmp; set {ENV_DIR} to a private directory of yours")


def _pointer_dir(create: bool) -> str:
    """A directory only this user can write, for the pointer to a fallback base directory:
    ``$XDG_RUNTIME_DIR/pynetmap`` when that is private, else ``~/.cache/pynetmap``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        try:
            st = os.stat(xdg)
        except OSError:
            st = None
        private = st is not None and st.st_uid == os.getuid() and not st.st_mode & 0o077
        if st is not None and private and stat.S_ISDIR(st.st_mode):
            d = os.path.join(xdg, "pynetmap")
            if create:
                _check_dir(d, f"remove it, or set {ENV_DIR}")
            return d
    home = os.path.expanduser("~")
    cache = os.path.join(home, ".cache")
    d = os.path.join(cache, "pynetmap")
    if create:
        remedy = f"fix it, or set {ENV_DIR} to a private directory of yours"
        if not os.path.isdir(cache):
            os.makedirs(cache, 0o700, exist_ok=True)
        st = os.stat(cache)
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise NamespaceError(errno.EPERM, f"{cache}: {_describe(st)}, not a private directory of uid "
                                 f"{os.getuid()}; {remedy}")
        _check_dir(d, remedy)
    return d


def _read_pointer(root: str) -> str | None:
    """The fallback base directory a pointer names, if it is still one of ours in ``root``."""
    try:
        fd = os.open(os.path.join(_pointer_dir(False), _POINTER), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        target = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    prefix = os.path.join(root, f"pynetmap-{os.getuid()}-")
    if not target.startswith(prefix) or "/" in target[len(prefix):]:
        return None
    try:
        ok = _unsafe(os.lstat(target)) is None
    except OSError:
        return None
    return target if ok else None


def _fallback(root: str) -> str:
    """The base directory to use when ``<root>/pynetmap-<uid>`` is not ours: a directory of
    random name in ``root`` (nobody can take it first), recorded in a pointer file only this
    user can write so that every process of the user finds the same one."""
    pdir = _pointer_dir(True)
    fd = os.open(os.path.join(pdir, _POINTER + ".lock"),
                 os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        found = _read_pointer(root)
        if found is not None:
            return found
        made = tempfile.mkdtemp(dir=root, prefix=f"pynetmap-{os.getuid()}-")
        tmp = os.path.join(pdir, f"{_POINTER}.{os.getpid()}")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600),
                  "w") as f:
            f.write(made + "\n")
        os.replace(tmp, os.path.join(pdir, _POINTER))
        return made
    finally:
        os.close(fd)


def _from_env(path: str, create: bool) -> str | None:
    if not os.path.isabs(path):
        raise NamespaceError(errno.EPERM, f"{ENV_DIR}={path!r} is not an absolute path; name a private "
                             "directory of yours (mode 0700), or unset it")
    if create:
        _check_dir(path, f"{ENV_DIR}={path} must name a private directory of uid {os.getuid()} "
                         "(mode 0700): fix it, or name another one")
    return path if create or os.path.isdir(path) else None


def base_dir(create: bool = True) -> str:
    """The per-user directory holding every namespace, created (0700) if missing:
    ``$PYNETMAP_EMU_DIR`` when set, else ``<root>/pynetmap-<uid>`` in the first writable of
    /dev/shm, ``$XDG_RUNTIME_DIR``, /tmp. When that name is taken by someone else (another
    user's directory, a symlink, a group/world writable one) it is left alone and a private
    directory of random name is used instead (see :func:`_fallback`).

    ``create=False`` creates nothing: returns "" when no directory of ours exists yet."""
    env = os.environ.get(ENV_DIR)
    if env:
        return _from_env(env, create) or ""
    root = _root()
    found = _read_pointer(root)
    if found is not None:
        return found
    default = os.path.join(root, f"pynetmap-{os.getuid()}")
    try:
        st: os.stat_result | None = os.lstat(default)
    except FileNotFoundError:
        st = None
    if st is None:
        if not create:
            return ""
        try:
            _check_dir(default)
            return default
        except NamespaceError:
            pass   # someone made it between our look and our mkdir
    elif _unsafe(st) is None:
        return default
    return _fallback(root) if create else ""


class Namespace:
    """Per-process handle on one namespace. The lock file is opened once per process and never
    closed while the namespace may hold locks: closing any descriptor of a file drops all of the
    process's fcntl locks on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.base = base_dir()
        self.dir = os.path.join(self.base, name)
        self.shm_prefix = SHM_PREFIX(name)
        self._fd = -1
        self._ino: int | None = None
        self._mutex = threading.RLock()   # fcntl locks do not exclude threads of one process
        self._depth = 0
        self._holder: int | None = None
        self.deferred: list = []  # closes requested (by the GC) inside a locked section
        self.local_bids: set[int] = set()  # bindings opened (and not closed) by this process

    # --- files ---------------------------------------------------------------------------
    def _ensure(self) -> None:
        _check_dir(self.base)
        _check_dir(self.dir)
        path = os.path.join(self.dir, _LOCK)
        if self._fd >= 0:
            try:
                same = os.stat(path).st_ino == self._ino
            except FileNotFoundError:
                same = False
            if same:
                return
            if self.local_bids:  # our liveness locks live on the old inode: keep it
                return
            os.close(self._fd)
            self._fd = -1
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            os.close(fd)
            raise NamespaceError(errno.EPERM, f"{path}: not a private (0600) file of uid {os.getuid()}")
        self._fd, self._ino = fd, st.st_ino

    @property
    def fd(self) -> int:
        if self._fd < 0:
            self._ensure()
        return self._fd

    def path(self, leaf: str) -> str:
        return os.path.join(self.dir, leaf)

    def fifo_path(self, bid: int) -> str:
        return self.path(f"wake.{bid}")

    # --- the namespace lock --------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Hold the namespace lock (re-entrant within a process, blocking across processes)."""
        with self._mutex:
            if self._depth == 0:
                while True:
                    self._ensure()
                    fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, 0)
                    try:
                        ino = os.stat(self.path(_LOCK)).st_ino
                    except FileNotFoundError:
                        ino = None
                    # gc may have removed an empty namespace while we waited: start afresh.
                    # With bindings alive we stay on our inode (their locks live there), even
                    # if someone deleted the directory under us.
                    if ino == self._ino or self.local_bids:
                        break
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)
            self._depth += 1
            self._holder = threading.get_ident()
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._holder = None
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, 0)
        if self._depth == 0 and self.deferred:
            todo, self.deferred = self.deferred, []
            for fn in todo:
                fn()

    def held_here(self) -> bool:
        """True inside a ``locked()`` section of the calling thread."""
        return self._depth > 0 and self._holder == threading.get_ident()

    def remove(self) -> None:
        """Delete this namespace's directory (lock held, nothing alive in it, the registry's
        connection closed). Processes waiting on the old lock file notice and start afresh."""
        for leaf in os.listdir(self.dir):
            if leaf != _LOCK:
                os.unlink(self.path(leaf))
        os.unlink(self.path(_LOCK))
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    # --- liveness of bindings -------------------------------------------------------------
    def hold_live(self, bid: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, LIVE_BASE + bid)
        self.local_bids.add(bid)

    def release_live(self, bid: int) -> None:
        self.local_bids.discard(bid)
        if self._fd >= 0:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, LIVE_BASE + bid)

    def is_alive(self, bid: int, pid: int) -> bool:
        """Whether the process that opened binding ``bid`` still holds it. A lock we can take
        means its owner is gone (the OS released it at death)."""
        if pid == os.getpid():
            return bid in self.local_bids
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, LIVE_BASE + bid)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return True
            raise
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, LIVE_BASE + bid)
        return False

    # --- segments ---------------------------------------------------------------------------
    def shm_name(self, kind: str, mem_id: int, gen: int) -> str:
        """``/pnm.<uid>.<ns>.<kind><mem_id>.<gen>``: kind ``m`` = netmap region, ``k`` = kernel state."""
        return f"/{self.shm_prefix}{kind}{mem_id}.{gen}"

    def list_segments(self) -> list[str]:
        """POSIX shm segments of this namespace (names with the leading '/')."""
        try:
            names = os.listdir("/dev/shm")
        except OSError:
            return []
        return sorted("/" + n for n in names if n.startswith(self.shm_prefix))


_SPACES: dict[str, Namespace] = {}
_SPACES_LOCK = threading.Lock()


def namespace(name: str | None = None) -> Namespace:
    """The process-wide handle of namespace ``name`` (default: :func:`namespace_name`)."""
    ns = namespace_name(name)
    with _SPACES_LOCK:
        h = _SPACES.get(ns)
        if h is None:
            h = _SPACES[ns] = Namespace(ns)
        return h
