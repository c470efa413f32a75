"""netmap_emu: netmap's memory, pipes and sync semantics in POSIX shared memory, no kernel needed.

The ``emu`` backend of pynetmap (see ``spec/emulator.md`` for the design): each allocator is a
shm region with netmap's exact byte layout, the kernel's private state lives in a second
segment, and txsync/rxsync run the kernel's side in the calling process. Layers: ``shm/``
(shared memory), ``kernel/`` (control path, registry), ``datapath/`` (inside the syncs); the
modules at the top tie them into the backend, its bindings and tools.
"""
from __future__ import annotations

from .backend import BACKEND, OPTIONS, EmuBackend
from .binding import EmuBinding
from .shm.namespace import ENV_NS, NamespaceError, namespace, namespace_name

__all__ = ["BACKEND", "OPTIONS", "EmuBackend", "EmuBinding", "ENV_NS", "NamespaceError",
           "namespace", "namespace_name"]
