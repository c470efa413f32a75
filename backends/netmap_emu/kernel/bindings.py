"""A new binding's record and its process-side resources (liveness lock, wake FIFO), and their
release when the operation that made it does not commit.

Every REGISTER (pipes, VALE, monitors, interfaces) enters its binding with :func:`new_binding`
before its final commit; :func:`drop_uncommitted` runs from ``memory.undo`` after a rollback, so
a failed REGISTER leaves no lock held and no FIFO behind, whatever step failed.
"""
from __future__ import annotations

import dataclasses
import os

from ..shm.namespace import Namespace, owner_id
from .registry import Registry
from .state import Binding

__all__ = ["new_binding", "drop_uncommitted", "unlink_quietly"]


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def new_binding(ns: Namespace, reg: Registry, **fields) -> Binding:
    """Give the binding an id, its liveness lock and its wake FIFO, and enter its record."""
    bid = reg.meta.next_bid
    reg.meta = dataclasses.replace(reg.meta, next_bid=bid + 1)
    ns.hold_live(bid)
    try:
        path = ns.fifo_path(bid)
        unlink_quietly(path)
        os.mkfifo(path, 0o600)
        b = Binding(bid=bid, owner=owner_id(), pid=os.getpid(), **fields)
        reg.bindings[bid] = b
    except BaseException:
        ns.release_live(bid)
        raise
    return b


def drop_uncommitted(ns: Namespace, reg: Registry) -> None:
    """After a rollback to the committed ``reg``: release the liveness lock and the FIFO of
    every binding this process made that the registry does not hold."""
    for bid in sorted(ns.local_bids - set(reg.bindings)):
        ns.release_live(bid)
        unlink_quietly(ns.fifo_path(bid))
