"""netmap's non-REGISTER control requests on /dev/netmap (netmap_core.control.Control).

Each method is one NIOCCTRL on a private, never-registered descriptor (opened on first use):
the kernel's answer or errno is returned as it is, as a value or a typed error.
"""
from __future__ import annotations

from netmap_core import abi
from netmap_core.control import ListEntry, NewIf, PoolsInfo, PortInfo

from . import requests
from .device import SYSTEM, Device, SysOps

__all__ = ["DevControl"]


class DevControl:
    """Control requests over /dev/netmap. Not thread-safe; one request costs one ioctl."""

    def __init__(self, path: str = abi.NETMAP_DEVICE_NAME, ops: SysOps = SYSTEM) -> None:
        self._path = path
        self._ops = ops
        self._device: Device | None = None

    def _run(self, req: requests.Request) -> requests.Request:
        if self._device is None:
            self._device = Device(self._path, self._ops)
        self._device.ctrl(req)
        return req

    def request(self, req: requests.Request) -> requests.Request:
        """Send a prepared request as it is (e.g. one built with ``requests.build``)."""
        return self._run(req)

    def port_info(self, name: str = "", *, mem_id: int = 0) -> PortInfo:
        return requests.decode_port_info(self._run(requests.port_info_get(name, mem_id)))

    def pools_info(self, name: str) -> PoolsInfo:
        return requests.decode_pools_info(self._run(requests.pools_info_get(name)))

    def vale_attach(self, name: str, *, mode: int = abi.NR_REG_ALL_NIC, mem_id: int = 0) -> int:
        return requests.decode_port_index(self._run(requests.vale_attach(name, mode, mem_id)))

    def vale_detach(self, name: str) -> int:
        return requests.decode_port_index(self._run(requests.vale_detach(name)))

    def vale_list(self, name: str = "", *, bridge_idx: int = 0, port_idx: int = 0) -> ListEntry:
        return requests.decode_vale_list(self._run(requests.vale_list(name, bridge_idx, port_idx)))

    def vale_newif(self, name: str, *, tx_rings: int = 0, rx_rings: int = 0, tx_slots: int = 0,
                   rx_slots: int = 0, mem_id: int = 0) -> NewIf:
        req = requests.vale_newif(name, tx_rings, rx_rings, tx_slots, rx_slots, mem_id)
        return requests.decode_newif(self._run(req))

    def vale_delif(self, name: str) -> None:
        self._run(requests.vale_delif(name))

    def port_hdr_set(self, name: str, hdr_len: int) -> None:
        self._run(requests.port_hdr_set(name, hdr_len))

    def port_hdr_get(self, name: str) -> int:
        return requests.decode_hdr_len(self._run(requests.port_hdr_get(name)))

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None

    def __enter__(self) -> DevControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
