"""Testing a network function, or a backend, with pynetmap: VALE and traffic helpers that run on
any backend, and netmap's conformance suite as a library (like ``trio.testing``).

Importing this package needs only numpy. Running the conformance machines and the strategies
needs Hypothesis (``pip install pynetmap[testing]``); they live in submodules:

- :func:`run_conformance` (here): every conformance machine against a backend, one report each;
- ``netmap_core.testing.conformance``: the pipe machine (both rules modes) and its model
  ``netmap_core.testing.model``; ``netmap_core.testing.vale_conformance``: the VALE machine;
- ``netmap_core.testing.strategies``: port names and ring-operation programs, which
  :func:`run_ring_ops` (here) runs on a pipe, checking netmap's ring laws;
- ``netmap_core.testing.frames``: frames (Ethernet, VLAN, ARP, IPv4, IPv6, UDP, TCP; valid and
  malformed) with the header fields a parser must find in them.

The pytest plugin (fixtures ``netmap_backend``, ``netmap_pipe``, ``netmap_vale``,
``netmap_traffic``, ``netmap_sink``) is ``netmap_tools.pytest_plugin``, registered for pytest
when pynetmap is installed.
"""
from __future__ import annotations

from .budget import DEFAULT_BUDGETS, SUITES, THOROUGH_BUDGETS, Budget, budget
from .ringops import OP_KINDS, RingOp, RingOpsResult, run_ring_ops
from .runner import RULES, failure_lines, run_conformance
from .traffic import Sink, TrafficGenerator, frames_array
from .vale import (
    BCAST,
    PERSISTENT_RENAMED,
    UndoingControl,
    ValeEnv,
    frame,
    mac,
    recv,
    recv_slots,
    send,
    unique_switch,
)

__all__ = [
    "run_conformance", "failure_lines", "RULES", "SUITES", "Budget", "budget", "DEFAULT_BUDGETS",
    "THOROUGH_BUDGETS",
    "RingOp", "OP_KINDS", "RingOpsResult", "run_ring_ops",
    "TrafficGenerator", "Sink", "frames_array",
    "BCAST", "mac", "frame", "send", "recv", "recv_slots", "unique_switch", "ValeEnv",
    "UndoingControl", "PERSISTENT_RENAMED",
]
