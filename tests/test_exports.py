"""Pins the public API surface: a name disappearing from netmap_core is a breaking change."""
import netmap_core

PUBLIC = {
    "open", "open_port", "Port", "Ring", "Batch", "PortSpec", "parse_portspec", "abi", "rules",
    "RegisterInfo", "POLLIN", "POLLOUT", "POLLERR", "NetmapError", "PortSpecError",
    "RingProtocolError", "NetmapOSError", "PortBusyError", "ClosedPortError",
    "BackendUnavailable", "get_backend", "probe",
}


def test_public_names_exist_and_are_exported():
    assert PUBLIC <= set(netmap_core.__all__)
    for name in netmap_core.__all__:
        assert hasattr(netmap_core, name), name


def test_ring_public_members():
    for member in ("head", "cur", "tail", "num_slots", "buf_size", "ringid", "dir", "flags",
                   "space", "next", "empty", "slots", "buf", "buffers", "ready", "fill",
                   "forward", "advance"):
        assert hasattr(netmap_core.Ring, member) or member in netmap_core.Ring.__slots__, member


def test_port_public_members():
    from layout import FakeBinding, build

    region, _, info = build()
    port = netmap_core.Port(FakeBinding(region, info), netmap_core.PortSpec("netmap:t", "t", 1))
    for member in ("txsync", "rxsync", "poll", "fileno", "close", "wait", "tx_rings", "rx_rings",
                   "host_tx_rings", "host_rx_rings", "first_tx_ring", "last_tx_ring",
                   "first_rx_ring", "last_rx_ring", "name", "info", "spec", "bufs_head",
                   "extra_buffers", "__enter__", "__exit__"):
        assert hasattr(port, member), member
