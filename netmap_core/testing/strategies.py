"""Hypothesis strategies for netmap port names and ring-operation programs.

Port names follow the grammar ``netmap_core.parse_portspec`` accepts (spec D1-D9): every name
drawn parses, and its canonical form parses back to an equal spec. Names are syntax only: a
drawn NIC or pipe need not exist. Needs Hypothesis (the ``testing`` extra).
"""
from __future__ import annotations

from hypothesis import strategies as st

from .ringops import RingOp

__all__ = ["identifiers", "pipe_names", "vale_names", "nic_names", "port_names", "ring_operations"]

_IDENT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def identifiers(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    """Letters, digits and ``_`` (what pipe ids and VALE switch/port names may hold)."""
    return st.text(_IDENT, min_size=min_size, max_size=max_size)


def _conf() -> st.SearchStrategy[str]:
    """An optional ``@conf:`` option with slot and ring hints."""
    keys = st.fixed_dictionaries({}, optional={"slots": st.integers(2, 4096), "rings": st.integers(1, 16)})
    return st.one_of(st.just(""), keys.filter(bool).map(
        lambda d: "@conf:" + ",".join(f"{k}={v}" for k, v in sorted(d.items()))))


def pipe_names(*, prefix: str | None = None) -> st.SearchStrategy[str]:
    """``netmap:PARENT{ID`` / ``netmap:PARENT}ID`` (master / slave end), maybe exclusive
    (``/x``), maybe with ``@conf:``; ``prefix`` fixes the parent's first characters (a unique
    prefix keeps concurrent tests apart)."""
    parent = identifiers(1, 8).map(lambda s: (prefix or "") + s)
    return st.builds(lambda p, end, i, x, conf: f"netmap:{p}{end}{i}{x}{conf}",
                     parent, st.sampled_from("{}"), identifiers(1, 4),
                     st.sampled_from(["", "/x"]), _conf())


def vale_names(*, prefix: str = "vale") -> st.SearchStrategy[str]:
    """``valeSW:PORT`` (``prefix`` must start with ``vale``), maybe a monitor (``/t``, ``/r``,
    ``/z``) or exclusive, maybe with ``@conf:``."""
    if not prefix.startswith("vale"):
        raise ValueError(f"prefix={prefix!r}: a VALE switch name starts with 'vale'")
    return st.builds(lambda sw, port, fl, conf: f"{prefix}{sw}:{port}{fl}{conf}",
                     identifiers(0, 6), identifiers(1, 8),
                     st.sampled_from(["", "/x", "/t", "/r", "/z", "/rt"]), _conf())


def nic_names() -> st.SearchStrategy[str]:
    """``netmap:IFNAME`` with a ring mode: all NIC rings, one (``-N``), the host rings (``^``,
    ``^N``) or both (``*``), maybe ``/R`` or ``/T`` (one direction only)."""
    mode = st.one_of(st.just(""), st.integers(0, 63).map(lambda r: f"-{r}"), st.just("^"),
                     st.integers(0, 7).map(lambda r: f"^{r}"), st.just("*"))
    ifname = st.builds(lambda a, b: a + b, st.sampled_from(["eth", "em", "ix", "enp0s"]),
                       st.integers(0, 9).map(str))
    return st.builds(lambda i, m, d, conf: f"netmap:{i}{m}{d}{conf}",
                     ifname, mode, st.sampled_from(["", "/R", "/T", "/x"]), _conf())


def port_names() -> st.SearchStrategy[str]:
    """Any of :func:`pipe_names`, :func:`vale_names`, :func:`nic_names`."""
    return st.one_of(pipe_names(), vale_names(), nic_names())


def ring_operations(*, max_count: int = 40, max_size: int = 30) -> st.SearchStrategy[list[RingOp]]:
    """Programs for :func:`netmap_core.testing.ringops.run_ring_ops`: up to ``max_size`` steps,
    send/receive of up to ``max_count`` slots (more than a ring holds, so fills get clipped)."""
    counted = st.builds(RingOp, st.sampled_from(["send", "receive"]), st.integers(0, max_count))
    syscall = st.sampled_from(["txsync", "rxsync", "poll"]).map(RingOp)
    return st.lists(st.one_of(counted, syscall), min_size=1, max_size=max_size)
