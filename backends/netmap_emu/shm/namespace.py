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

No wait is unbounded: a process stopped (SIGSTOP, Ctrl-Z, a debugger) while holding a lock must
not freeze the others. Locks are taken by non-blocking attempts with backoff up to a deadline
(:func:`acquire`); past it the waiter gets a :class:`~netmap_core.errors.LockTimeoutError` that
names the holder (``F_GETLK``) and its state (``/proc/<pid>/stat``), or, where skipping is safe,
gives up quietly. Deadlines: the namespace lock and the kernel's other waits
:func:`lock_timeout` (``$PYNETMAP_EMU_LOCK_TIMEOUT``, 5 s), a sync's waits :func:`sync_timeout`
(``$PYNETMAP_EMU_SYNC_TIMEOUT``, 1 s); inside ``poll`` no wait outlasts poll's own deadline
(:func:`cap_waits`).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import time

from netmap_core.errors import InvalidRequestError, LockTimeoutError, NetmapOSError

__all__ = [
    "ENV_NS", "ENV_DIR", "NamespaceError", "Namespace", "namespace", "namespace_name", "base_dir",
    "LIVE_BASE", "SYNC_BASE", "VALE_BASE", "SHM_PREFIX", "REGISTRY", "LOCK_FILE", "owner_id", "sync_lock_pos",
    "ENV_LOCK_TIMEOUT", "ENV_SYNC_TIMEOUT", "lock_timeout", "sync_timeout", "wait_deadline",
    "cap_waits", "acquire", "take_mutex", "lock_holder", "proc_state", "timeout_error",
]

ENV_NS = "PYNETMAP_EMU_NS"
LIVE_BASE = 1 << 20
SYNC_BASE = 1 << 40
VALE_BASE = 1 << 36
REGISTRY = "registry.db"
_NS_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_LOCK = "lock"
LOCK_FILE = _LOCK   # the lock file's name in a namespace directory
ENV_LOCK_TIMEOUT = "PYNETMAP_EMU_LOCK_TIMEOUT"
ENV_SYNC_TIMEOUT = "PYNETMAP_EMU_SYNC_TIMEOUT"
#: default seconds the kernel (open, close, gc, control requests) waits for a lock
LOCK_TIMEOUT = 5.0
#: default seconds a txsync/rxsync waits for a lock (netmap's syncs never block)
SYNC_TIMEOUT = 1.0
#: the least a capped wait (inside poll) may last: a lock is normally held for microseconds
MIN_WAIT = 0.01
_FIRST_PAUSE, _MAX_PAUSE = 50e-6, 2e-3   # backoff between attempts: 50 us doubling to 2 ms
_BUSY = (errno.EAGAIN, errno.EACCES)
_EX_NB, _SH_NB = fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_SH | fcntl.LOCK_NB
#: struct flock as Linux defines it (native alignment): l_type, l_whence, l_start, l_len, l_pid
_FLOCK = "@hhqqi4x"
_STATES = {
    "T": "stopped by SIGSTOP or Ctrl-Z", "t": "stopped by a debugger", "R": "running",
    "S": "sleeping", "D": "in uninterruptible sleep", "Z": "a zombie", "X": "dead", "I": "idle",
}


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


# --- bounded lock waits --------------------------------------------------------------------------

_ENV_CACHE: dict[str, tuple[str | None, float]] = {}


def _seconds(var: str, default: float) -> float:
    raw = os.environ.get(var)
    hit = _ENV_CACHE.get(var)
    if hit is not None and hit[0] == raw:
        return hit[1]
    if not raw:
        value = default
    else:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0 <= value < math.inf:
            raise InvalidRequestError(
                errno.EINVAL, f"{var}={raw!r} is not a usable number of seconds; allowed: a finite "
                f"number >= 0 (default {default}); fix or unset it")
    _ENV_CACHE[var] = (raw, value)
    return value


def lock_timeout() -> float:
    """Seconds the kernel waits for a lock another process holds: ``$PYNETMAP_EMU_LOCK_TIMEOUT``,
    default 5."""
    return _seconds(ENV_LOCK_TIMEOUT, LOCK_TIMEOUT)


def sync_timeout() -> float:
    """Seconds a txsync/rxsync waits for a lock another process holds:
    ``$PYNETMAP_EMU_SYNC_TIMEOUT``, default 1."""
    return _seconds(ENV_SYNC_TIMEOUT, SYNC_TIMEOUT)


_CAP = threading.local()


def cap_waits(deadline: float | None) -> float | None:
    """Make every lock wait of this thread end by ``deadline`` (``time.monotonic()``; None: no
    cap) - poll sets its own deadline around its syncs. Returns the previous cap."""
    old = getattr(_CAP, "deadline", None)
    _CAP.deadline = deadline
    return old


def wait_deadline(timeout: float) -> float:
    """The deadline of a wait of ``timeout`` seconds starting now, ended earlier by the
    thread's cap (:func:`cap_waits`)."""
    end = time.monotonic() + timeout
    cap = getattr(_CAP, "deadline", None)
    return end if cap is None or cap >= end else cap


def lock_holder(fd: int, pos: int, shared: bool = False) -> int | None:
    """The pid of a process whose lock on byte ``pos`` of ``fd`` conflicts with ours (``F_GETLK``),
    None if none does (or it cannot be told: not Linux, or a pid in another pid namespace)."""
    if not sys.platform.startswith("linux"):
        return None
    req = struct.pack(_FLOCK, fcntl.F_RDLCK if shared else fcntl.F_WRLCK, os.SEEK_SET, pos, 1, 0)
    try:
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req)
    except OSError:
        return None
    typ, _, _, _, pid = struct.unpack(_FLOCK, res)
    return pid if typ != fcntl.F_UNLCK and pid > 0 else None


def proc_state(pid: int) -> str:
    """The state letter of process ``pid`` from ``/proc/<pid>/stat`` (``T`` stopped, ``t``
    stopped by a debugger, ``R``, ``S``, ``D``, ...), "" if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(512)
    except OSError:
        return ""
    rest = raw.rpartition(b")")[2].split()   # the command name may contain spaces and ')'
    return rest[0].decode("ascii", "replace") if rest else ""


def _stopped(state: str) -> bool:
    return state in ("T", "t")


def timeout_error(fd: int, pos: int, what: str, waited: float, *, shared: bool = False,
                  env: str = ENV_LOCK_TIMEOUT) -> LockTimeoutError:
    """The error for giving up on lock byte ``pos`` (``what`` names it for the user) after
    ``waited`` seconds: who holds it, in what state, and what to do."""
    pid = lock_holder(fd, pos, shared)
    state = proc_state(pid) if pid else ""
    if pid is None:
        who = "another process (not visible from here, or it just let go)"
        todo = "retry"
    elif pid == os.getpid():
        who, todo = f"this process ({pid})", "another thread holds it; retry"
    else:
        who = f"process {pid} ({_STATES.get(state, f'state {state!r}' if state else 'state unknown')})"
        if state == "T":
            todo = f"resume it with `kill -CONT {pid}`, or end it with `kill -KILL {pid}`"
        elif state == "t":
            todo = f"continue it in its debugger, or end it with `kill -KILL {pid}`"
        else:
            todo = f"retry, or set ${env} (seconds) higher if it needs longer"
    return LockTimeoutError(errno.ETIMEDOUT, f"{what} is held by {who}; gave up after {waited:.2f} s: "
                            f"{todo}", what=what, holder_pid=pid or 0, holder_state=state)


def acquire(fd: int, pos: int, deadline: float, what: str, *, shared: bool = False,
            early: bool = False, quiet: bool = False, env: str = ENV_LOCK_TIMEOUT) -> bool:
    """Take lock byte ``pos`` of ``fd`` (exclusive, or ``shared``) by non-blocking attempts with
    backoff until ``deadline`` (``time.monotonic()``; at least one attempt). True once held.
    Giving up - at the deadline, or (``early``) as soon as the holder is seen stopped - raises
    :func:`timeout_error`, or returns False when ``quiet``."""
    flags = _SH_NB if shared else _EX_NB
    start = time.monotonic()
    pause = _FIRST_PAUSE
    look = start   # when to look at the holder's state next (``early`` only)
    while True:
        try:
            fcntl.lockf(fd, flags, 1, pos)
            return True
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
        now = time.monotonic()
        give_up = now >= deadline
        if early and not give_up and now >= look:
            pid = lock_holder(fd, pos, shared)
            give_up = pid is not None and _stopped(proc_state(pid))
            look = now + 0.01
        if give_up:
            if quiet:
                return False
            raise timeout_error(fd, pos, what, now - start, shared=shared, env=env)
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, _MAX_PAUSE)


def take_mutex(mutex, deadline: float, what: str, *, quiet: bool = False) -> bool:
    """Acquire a thread lock of this process (paired with an fcntl byte) by ``deadline``: True
    once held; else raise :class:`LockTimeoutError`, or return False when ``quiet``."""
    if mutex.acquire(False) or mutex.acquire(True, max(0.0, deadline - time.monotonic())):
        return True
    if quiet:
        return False
    raise LockTimeoutError(errno.ETIMEDOUT, f"{what} is held by another thread of this process "
                           f"({os.getpid()}) for too long; retry", what=what, holder_pid=os.getpid())


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
        self.abandoned: set[int] = set()   # closed here, but the unregister timed out on a lock

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
    def locked(self, timeout: float | None = None, *, early: bool = False):
        """Hold the namespace lock (re-entrant within a process). Another process holding it is
        waited for ``timeout`` seconds at most (default :func:`lock_timeout`; less inside
        ``poll``, see :func:`cap_waits`), then :class:`LockTimeoutError` names it; ``early``:
        give up as soon as that process is seen stopped."""
        what = f"the lock of emulator namespace {self.name!r}"
        deadline = wait_deadline(lock_timeout() if timeout is None else timeout)
        take_mutex(self._mutex, deadline, what)
        try:
            if self._depth == 0:
                while True:
                    self._ensure()
                    acquire(self._fd, 0, deadline, what, early=early)
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
        finally:
            self._mutex.release()
        if self._depth == 0 and self.deferred:
            todo, self.deferred = self.deferred, []
            for fn in todo:
                fn()

    def holder(self) -> tuple[int, str] | None:
        """(pid, state letter) of the process holding the namespace lock, None if none does
        (or it is this process)."""
        pid = lock_holder(self.fd, 0)
        return None if pid is None else (pid, proc_state(pid))

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
