"""pynetmap's ``netmap`` backend: ports registered on the real /dev/netmap (control API v14).

``BACKEND`` is what ``netmap_core.open(..., backend="netmap")`` uses; ``requests`` holds the
pure request encoding, ``device`` the system calls, ``binding`` one registration.
"""
from __future__ import annotations

from . import requests
from .backend import REGISTER_OPTIONS, NetmapBackend
from .binding import DevBinding
from .control import DevControl
from .device import REGISTRY, Device, Mapping, MemoryRegistry, SysOps

BACKEND = NetmapBackend()

__all__ = ["BACKEND", "NetmapBackend", "DevBinding", "DevControl", "Device", "Mapping",
           "MemoryRegistry", "SysOps", "REGISTRY", "REGISTER_OPTIONS", "requests"]
