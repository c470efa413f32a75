"""VALE test environments on the emulator: :class:`ValeEnv` as in ``netmap_core.testing``, but
on the emulator every environment gets an emulator namespace of its own (the backend-neutral
helpers, frames, send/recv and unique_switch, are in ``netmap_core.testing.vale``).
"""
from __future__ import annotations

from netmap_core.testing.vale import ValeEnv as CoreValeEnv

from . import isolated_namespace

__all__ = ["ValeEnv"]


class ValeEnv(CoreValeEnv):
    """A :class:`netmap_core.testing.ValeEnv` that, on the emulator, runs inside a fresh
    emulator namespace (switch limits and learning tables start empty, and everything left in
    it is removed on exit); on other backends exactly the core one."""

    def __init__(self, backend: str = "emu", rules: str | None = None) -> None:
        super().__init__(backend, rules,
                         isolation=(lambda: isolated_namespace("v")) if backend == "emu" else None)
