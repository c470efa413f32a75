"""VALE test environments on the emulator: :class:`ValeEnv` as in ``netmap_core.testing``, but
on the emulator every environment gets an emulator namespace of its own.

The backend-neutral helpers (frames, send/recv, unique_switch) live in ``netmap_core.testing``;
their names are repeated here for the callers that import them from this module.
"""
from __future__ import annotations

from netmap_core.testing.vale import (
    BCAST,
    PERSISTENT_RENAMED,
    ValeEnv as CoreValeEnv,
    frame,
    mac,
    recv,
    recv_slots,
    send,
    unique_switch,
)

from . import isolated_namespace

__all__ = ["BCAST", "mac", "frame", "send", "recv", "recv_slots", "ValeEnv", "unique_switch",
           "PERSISTENT_RENAMED"]


class ValeEnv(CoreValeEnv):
    """A :class:`netmap_core.testing.ValeEnv` that, on the emulator, runs inside a fresh
    emulator namespace (switch limits and learning tables start empty, and everything left in
    it is removed on exit); on other backends exactly the core one."""

    def __init__(self, backend: str = "emu", rules: str | None = None) -> None:
        super().__init__(backend, rules,
                         isolation=(lambda: isolated_namespace("v")) if backend == "emu" else None)
