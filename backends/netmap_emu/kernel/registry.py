"""The namespace registry: typed tables with secondary indexes, cached in each process and kept
in SQLite, where a commit writes only the records it changed.

Every operation runs under the namespace lock::

    reg = store.begin()     # catch up: rows committed by others since our last look
    reg.bindings[7] = b     # tables record what changed (and the old value, for rollback)
    store.commit()          # one SQLite transaction: the changed rows, a new version

Each row carries the version of the commit that wrote it; a deleted record leaves a tombstone
row for a while, so ``begin`` reads only the rows newer than what this process has seen - the
cost of an open or close does not grow with the number of ports in the namespace. A process
killed inside a commit leaves SQLite's journal, which the next connection rolls back: a
commit is whole or absent (allocator memory has its own recovery, see :mod:`.core`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import resource
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from netmap_core.errors import NetmapOSError, OutOfMemoryError

from ..shm.segment import GC_HINT, fd_exhausted
from .state import Binding, Mem, Meta, Parent, Pipe, Switch, from_json, port_key

__all__ = ["Table", "Registry", "Store", "db_error", "peek"]

K = TypeVar("K", int, str)
R = TypeVar("R")
_MISSING: Any = object()
#: tombstones older than this many commits are purged; a process further behind reloads all
_TOMBSTONE_SPAN = 4096


class Table(Generic[K, R]):
    """Records by key, with indexes ``by(index, value)`` (keys in ascending order). Writes go
    through ``t[key] = record`` and ``del t[key]``, which note the change for the commit."""

    def __init__(self, name: str, kind: type, int_keys: bool,
                 indexes: dict[str, Callable[[Any], Any]]) -> None:
        self.name = name
        self.kind = kind
        self.int_keys = int_keys
        self._rows: dict[K, R] = {}
        self._ixf = indexes
        self._idx: dict[str, dict[Any, set[K]]] = {n: {} for n in indexes}
        self.dirty: dict[K, None] = {}
        self._orig: dict[K, Any] = {}

    # --- reading ----------------------------------------------------------------------------
    def __getitem__(self, key: K) -> R:
        return self._rows[key]

    def get(self, key: K, default: Any = None) -> Any:
        return self._rows.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[K]:
        return iter(self._rows)

    def keys(self):
        return self._rows.keys()

    def values(self):
        return self._rows.values()

    def items(self):
        return self._rows.items()

    def by(self, index: str, value: Any) -> list[R]:
        """Records whose ``index`` value is ``value``, in key order."""
        keys = self._idx[index].get(value)
        return [self._rows[k] for k in sorted(keys)] if keys else []

    def first(self, index: str, value: Any) -> R | None:
        """The record with the lowest key among those whose ``index`` value is ``value``."""
        keys = self._idx[index].get(value)
        return self._rows[min(keys)] if keys else None

    def any(self, index: str, value: Any) -> bool:
        return bool(self._idx[index].get(value))

    def values_of(self, index: str) -> list[Any]:
        """The distinct values of ``index`` (e.g. every owner with a binding)."""
        return list(self._idx[index])

    # --- writing ----------------------------------------------------------------------------
    def __setitem__(self, key: K, rec: R) -> None:
        self._touch(key)
        self._put(key, rec)

    def __delitem__(self, key: K) -> None:
        self._touch(key)
        self._drop(key)

    def pop(self, key: K) -> R:
        rec = self._rows[key]
        del self[key]
        return rec

    def _touch(self, key: K) -> None:
        if key not in self.dirty:
            self.dirty[key] = None
            self._orig[key] = self._rows.get(key, _MISSING)

    def _put(self, key: K, rec: R) -> None:
        old = self._rows.get(key)
        if old is not None:
            self._unindex(key, old)
        self._rows[key] = rec
        for n, f in self._ixf.items():
            v = f(rec)
            if v is not None:
                self._idx[n].setdefault(v, set()).add(key)

    def _drop(self, key: K) -> None:
        old = self._rows.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def _unindex(self, key: K, rec: R) -> None:
        for n, f in self._ixf.items():
            v = f(rec)
            if v is not None:
                s = self._idx[n].get(v)
                if s is not None:
                    s.discard(key)
                    if not s:
                        del self._idx[n][v]

    # --- commit support ----------------------------------------------------------------------
    def rollback(self) -> None:
        """Undo every change since the last commit (in memory)."""
        for key, old in self._orig.items():
            if old is _MISSING:
                self._drop(key)
            else:
                self._put(key, old)
        self.clean()

    def clean(self) -> None:
        self.dirty.clear()
        self._orig.clear()

    def load(self, key: K, rec: R | None) -> None:
        """Apply a committed row (None = deleted) without marking it changed."""
        if rec is None:
            self._drop(key)
        else:
            self._put(key, rec)

    def clear(self) -> None:
        self._rows.clear()
        for d in self._idx.values():
            d.clear()
        self.clean()


def _monitor_key(b: Binding) -> Any:
    return b.mon.key if b.mon is not None else None


class Registry:
    """Every table of a namespace and its counters (:class:`Meta`)."""

    def __init__(self) -> None:
        self.mems: Table[int, Mem] = Table("mems", Mem, True, {})
        self.parents: Table[str, Parent] = Table("parents", Parent, False, {"mem": lambda p: p.mem_id})
        self.pipes: Table[str, Pipe] = Table("pipes", Pipe, False, {"parent": lambda p: p.parent})
        self.switches: Table[str, Switch] = Table("switches", Switch, False, {})
        self.bindings: Table[int, Binding] = Table("bindings", Binding, True, {
            "parent": lambda b: b.parent, "mem": lambda b: b.mem_id, "owner": lambda b: b.owner,
            "monitors": _monitor_key, "port": port_key,
        })
        self.tables: tuple[Table, ...] = (self.mems, self.parents, self.pipes, self.switches, self.bindings)
        self._by_name = {t.name: t for t in self.tables}
        self._meta = Meta()
        self._meta_orig: Meta | None = None

    @property
    def meta(self) -> Meta:
        return self._meta

    @meta.setter
    def meta(self, m: Meta) -> None:
        if self._meta_orig is None:
            self._meta_orig = self._meta
        self._meta = m

    def changed(self) -> bool:
        return self._meta_orig is not None or any(t.dirty for t in self.tables)

    def rollback(self) -> None:
        for t in self.tables:
            t.rollback()
        if self._meta_orig is not None:
            self._meta = self._meta_orig
            self._meta_orig = None

    def clean(self) -> None:
        for t in self.tables:
            t.clean()
        self._meta_orig = None

    def clear(self) -> None:
        for t in self.tables:
            t.clear()
        self._meta = Meta()
        self._meta_orig = None

    def empty(self) -> bool:
        return not any(len(t) for t in self.tables)

    def table(self, name: str) -> Table:
        return self._by_name[name]


#: below this much free space in the registry's directory, a failed write means "disk full"
#: whatever SQLite called it (growing its index file fails as an I/O error)
_LOW_SPACE = 1 << 20
#: SQLite's primary result codes (sqlite3.SQLITE_FULL, ...: not in every stub set)
_SQLITE_FULL, _SQLITE_CANTOPEN = 13, 14


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def db_error(exc: BaseException, path: str, what: str) -> NetmapOSError:
    """A failure of SQLite on the registry ``path`` as a typed error with the remedy:
    no space left (ENOSPC, the usual cause: a full /dev/shm), no descriptor left (EMFILE),
    else EIO with SQLite's words."""
    if isinstance(exc, NetmapOSError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    try:
        st = os.statvfs(os.path.dirname(path))
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    except OSError:
        free = total = -1
    full = code == _SQLITE_FULL or "database or disk is full" in str(exc)   # SQLITE_FULL's text
    if full or (isinstance(exc, sqlite3.OperationalError) and 0 <= free < _LOW_SPACE):
        return OutOfMemoryError(errno.ENOSPC, f"registry {path}: {what}: {exc} ({free} bytes free of "
                                f"{total} in {os.path.dirname(path)}); {GC_HINT}")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if code is not None and code & 0xFF == _SQLITE_CANTOPEN and _open_files() >= soft - 2:
        return fd_exhausted(errno.EMFILE, f"registry {path}: {what}")
    return NetmapOSError(errno.EIO, f"registry {path}: {what}: {exc}")


def _dump(rec: Any) -> str:
    return json.dumps(dataclasses.asdict(rec), separators=(",", ":"))


class Store:
    """This process's connection to a namespace's ``registry.db`` and its cached
    :class:`Registry`. Used only under the namespace lock (and re-opened after a fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reg = Registry()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._ino = -1
        self.ver = -1
        self._epoch = ""
        self._defer = False

    # --- connection ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            st = os.lstat(self.path)
            ino = st.st_ino
        except FileNotFoundError:
            ino = -2
        if self._conn is not None and self._pid == os.getpid() and ino == self._ino:
            return self._conn
        self.close()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise fd_exhausted(exc.errno, f"registry {self.path}: opening") from exc
            raise NetmapOSError(exc.errno or errno.EIO, f"registry {self.path}: opening: "
                                f"{exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise NetmapOSError(errno.EPERM,
                                    f"{self.path}: not a private (0600) file of uid {os.getuid()}")
        finally:
            os.close(fd)
        try:
            conn = self._open_db()
        except sqlite3.Error as exc:
            raise db_error(exc, self.path, "opening") from exc
        self._conn, self._pid, self._ino = conn, os.getpid(), os.stat(self.path).st_ino
        self.ver = -1
        return conn

    def _open_db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        # a process killed mid-commit is rolled back by the next connection; synchronous=OFF
        # gives up only durability across a machine crash, which loses /dev/shm anyway
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE IF NOT EXISTS rec (tbl TEXT NOT NULL, key TEXT NOT NULL, "
                     "ver INTEGER NOT NULL, data TEXT, PRIMARY KEY (tbl, key))")
        conn.execute("CREATE INDEX IF NOT EXISTS rec_ver ON rec (ver)")
        conn.execute("CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 0), "
                     "ver INTEGER NOT NULL, epoch TEXT NOT NULL, purged INTEGER NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO head VALUES (0, 0, ?, 0)", (os.urandom(8).hex(),))

    def close(self) -> None:
        """Drop the connection (before the namespace directory is removed, or after a fork)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        self.ver = -1

    # --- reading -----------------------------------------------------------------------------
    def begin(self) -> Registry:
        """The registry as last committed by anyone (namespace lock held)."""
        conn = self._connect()
        reg = self.reg
        if reg.changed():   # an operation of ours failed without rollback: start clean
            reg.rollback()
        try:
            ver, epoch, purged = conn.execute("SELECT ver, epoch, purged FROM head").fetchone()
            if ver == self.ver and epoch == self._epoch:
                return reg
            if epoch != self._epoch or self.ver < purged or self.ver > ver:
                reg.clear()
                self.ver = -1
                rows = conn.execute("SELECT tbl, key, data FROM rec").fetchall()
            else:
                rows = conn.execute("SELECT tbl, key, data FROM rec WHERE ver > ?", (self.ver,)).fetchall()
        except sqlite3.Error as exc:
            raise db_error(exc, self.path, "reading") from exc
        for tbl, key, data in rows:
            self._apply(reg, tbl, key, data)
        self.ver, self._epoch = ver, epoch
        return reg

    @staticmethod
    def _apply(reg: Registry, tbl: str, key: str, data: str | None) -> None:
        if tbl == "meta":
            reg._meta = from_json(Meta, json.loads(data)) if data else Meta()
            return
        t = reg.table(tbl)
        k: Any = int(key) if t.int_keys else key
        t.load(k, None if data is None else from_json(t.kind, json.loads(data)))

    # --- writing -----------------------------------------------------------------------------
    def commit(self) -> None:
        """Write every changed record in one transaction (namespace lock held). On failure
        nothing is written and the changes are forgotten; the error is a NetmapOSError
        (:class:`OutOfMemoryError` with ENOSPC when the disk is full). Inside
        :meth:`deferred` it writes nothing and keeps the changes for a later commit."""
        reg = self.reg
        if not reg.changed() or self._defer:
            return
        conn = self._conn
        if conn is None or self.ver < 0:   # commit() without begin(): nothing to base it on
            raise RuntimeError(f"{self.path}: commit without begin")
        nv = self.ver + 1
        rows = []
        for t in reg.tables:
            for key in t.dirty:
                rec = t.get(key)
                rows.append((t.name, str(key), nv, None if rec is None else _dump(rec)))
        if reg._meta_orig is not None:
            rows.append(("meta", "", nv, _dump(reg.meta)))
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO rec VALUES (?, ?, ?, ?)", rows)
            if nv % _TOMBSTONE_SPAN == 0:
                old = nv - _TOMBSTONE_SPAN
                conn.execute("DELETE FROM rec WHERE data IS NULL AND ver <= ?", (old,))
                conn.execute("UPDATE head SET ver = ?, purged = ?", (nv, old))
            else:
                conn.execute("UPDATE head SET ver = ?", (nv,))
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass   # SQLite rolls back a failed transaction itself
            reg.rollback()
            if isinstance(exc, sqlite3.Error):
                raise db_error(exc, self.path, f"writing {len(rows)} records") from exc
            raise
        reg.clean()
        self.ver = nv

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside, :meth:`commit` writes nothing: the changes of several operations pile up
        for one commit afterwards (gc on a full disk: free first, write once)."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False

    def rollback(self) -> None:
        """Forget uncommitted changes (in memory; nothing was written)."""
        self.reg.rollback()


def peek(path: str) -> Registry | None:
    """The registry as last committed, read WITHOUT the namespace lock (``ls`` while another
    process holds it): a read-only connection and one read transaction, a consistent snapshot
    in WAL mode even while a writer is stopped inside its commit. None if there is none."""
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, isolation_level=None,
                           timeout=1.0, check_same_thread=False)
    try:
        conn.execute("BEGIN")
        rows = conn.execute("SELECT tbl, key, data FROM rec").fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    reg = Registry()
    for tbl, key, data in rows:
        Store._apply(reg, tbl, key, data)
    return reg
