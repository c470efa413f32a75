"""Monitors (spec G1-G5): copy monitors with their own memory that see a port's TX slots at
its txsync and RX slots at its rxsync, and zero-copy monitors that swap buffers.
"""
from __future__ import annotations

__all__ = ["switch_monitors", "copy_to_monitors"]


def switch_monitors(ns, reg: dict, port_of: dict) -> tuple[dict, dict]:
    """(TX, RX) copy-monitor targets of a switch's ports, keyed by (port index, ring id)."""
    return {}, {}


def copy_to_monitors(mons, slots, buffers, *, tx: bool) -> None:
    raise NotImplementedError
