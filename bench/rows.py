"""The list of benchmark rows: every module named in MODULES contributes ``scenarios(cfg)``.

To add rows (e.g. VALE: one sender to one receiver, one to many, 2..254 ports), write a module
with ``scenarios(cfg) -> list[Scenario]`` and add its name here; the table, ratios and JSON pick
it up. Use ``fanout`` for broadcast (every receiver gets every packet) and one Role per process.
"""
from __future__ import annotations

import fnmatch
import importlib

from .harness import Scenario

MODULES = ("peer_pynetmap", "peer_vale", "pktgen", "peer_mppipe", "peer_unix", "peer_ospipe",
           "peer_zmq", "peer_afpacket", "pingpong", "nf")


def all_scenarios(cfg) -> list[Scenario]:
    out: list[Scenario] = []
    for name in MODULES:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue  # an optional module not written yet
            raise
        out.extend(mod.scenarios(cfg))
    ids = [s.id for s in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate row ids: {sorted(dup)}")
    return out


def select(scenarios: list[Scenario], only: list[str] | None) -> list[Scenario]:
    """Rows whose id matches any pattern (shell glob, or a plain prefix such as ``pnm-emu``)."""
    if not only:
        return scenarios
    return [s for s in scenarios
            if any(fnmatch.fnmatchcase(s.id, pat) or s.id.startswith(pat) for pat in only)]
