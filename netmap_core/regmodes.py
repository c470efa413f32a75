"""Which rings a registration binds: netmap's register modes, ring id and flags (spec H1).

Pure: ring counts in, ring ids per direction out, or the EINVAL netmap returns.
"""
from __future__ import annotations

import errno
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from . import abi
from .errors import InvalidRequestError

__all__ = ["Bound", "bound_rings", "MODE_NAMES"]

MODE_NAMES = {
    abi.NR_REG_ALL_NIC: "NR_REG_ALL_NIC", abi.NR_REG_SW: "NR_REG_SW",
    abi.NR_REG_NIC_SW: "NR_REG_NIC_SW", abi.NR_REG_ONE_NIC: "NR_REG_ONE_NIC",
    abi.NR_REG_NULL: "NR_REG_NULL", abi.NR_REG_ONE_SW: "NR_REG_ONE_SW",
}


@dataclass(frozen=True)
class Bound:
    """Ring ids bound per direction; host rings are numbered after the hardware rings."""

    tx: tuple[int, ...]
    rx: tuple[int, ...]


def bound_rings(mode: int, ringid: int, flags: int, *, tx: int, rx: int, host_tx: int = 0,
                host_rx: int = 0, name: str = "port", allowed: Collection[int] | None = None) -> Bound:
    """The rings a REGISTER with (``mode``, ``ringid``, ``flags``) binds on a port with ``tx``/
    ``rx`` hardware and ``host_tx``/``host_rx`` host rings.

    ``allowed`` restricts the modes the port type accepts (pipes and VALE ports: ALL_NIC and
    ONE_NIC); others fail with EINVAL naming the allowed ones, as netmap does. ONE_NIC/ONE_SW
    fall back to ring 0 in a direction that lacks ring ``ringid`` (spec H1).
    """
    def fail(why: str) -> InvalidRequestError:
        return InvalidRequestError(errno.EINVAL, f"{name}: {why}")

    t: Sequence[int]
    r: Sequence[int]
    if allowed is not None and mode not in allowed:
        names = ", ".join(f"{MODE_NAMES[m]} ({m})" for m in allowed)
        raise fail(f"nr_mode={mode} is not valid here; allowed: {names}")
    if mode in (abi.NR_REG_ALL_NIC, abi.NR_REG_NULL):
        t, r = range(tx), range(rx)
    elif mode in (abi.NR_REG_SW, abi.NR_REG_NIC_SW, abi.NR_REG_ONE_SW) and not (host_tx or host_rx):
        raise fail(f"nr_mode={mode} ({MODE_NAMES[mode]}) needs host rings; this port has none")
    elif mode == abi.NR_REG_SW:
        t, r = range(tx, tx + host_tx), range(rx, rx + host_rx)
    elif mode == abi.NR_REG_NIC_SW:
        t, r = range(tx + host_tx), range(rx + host_rx)
    elif mode == abi.NR_REG_ONE_NIC:
        if ringid >= tx and ringid >= rx:
            raise fail(f"ringid={ringid} is beyond both ring counts (tx {tx}, rx {rx}); "
                       f"allowed: 0..{max(tx, rx) - 1}")
        t, r = [ringid if ringid < tx else 0], [ringid if ringid < rx else 0]
    elif mode == abi.NR_REG_ONE_SW:
        if ringid >= host_tx and ringid >= host_rx:
            raise fail(f"ringid={ringid} is beyond both host ring counts (tx {host_tx}, rx {host_rx})")
        t = [tx + (ringid if ringid < host_tx else 0)]
        r = [rx + (ringid if ringid < host_rx else 0)]
    else:
        raise fail(f"nr_mode={mode} is not a register mode; allowed: "
                   + ", ".join(f"{v} ({k})" for k, v in MODE_NAMES.items()))
    if flags & abi.NR_TX_RINGS_ONLY:
        r = ()
    if flags & abi.NR_RX_RINGS_ONLY:
        t = ()
    return Bound(tuple(t), tuple(r))
