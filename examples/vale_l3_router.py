"""A VALE switch programmed as an IPv4 router on the emulator: the lookup sends each IPv4
packet to the port of its destination subnet (10.0.K.0/24 -> port ``netK``), floods ARP and
drops everything else. The lookup sees a whole batch as numpy arrays and returns one
destination port per packet.

    python examples/vale_l3_router.py
"""
from __future__ import annotations

import numpy as np

from netmap_core.testing.vale import BCAST, mac, recv, send
from netmap_emu import vale
from netmap_emu.testing.vale import ValeEnv

IPV4, ARP = 0x0800, 0x0806


def make_router(port_of_subnet: dict[int, int]):
    """A lookup: 10.0.K.x -> port_of_subnet[K]; ARP -> flood; the rest -> drop."""
    table = np.full(256, vale.NM_BDG_NOPORT, dtype=np.int64)
    for k, port in port_of_subnet.items():
        table[k] = port

    def route(batch: vale.LookupBatch) -> np.ndarray:
        et = batch.ethertype
        third = batch.head[:, 14 + 18]            # IPv4 header: destination address at +16..19
        out = np.where(et == IPV4, table[third], vale.NM_BDG_NOPORT)
        out[(et == ARP)] = vale.NM_BDG_BROADCAST
        out[batch.head_len < 34] = vale.NM_BDG_NOPORT   # no full IPv4 header: drop
        return out

    return route


def ipv4(dst_ip: bytes, src_ip: bytes, src_mac: bytes, size: int = 64) -> bytes:
    hdr = bytes([0x45, 0, 0, size - 14, 0, 0, 0, 0, 64, 17, 0, 0]) + src_ip + dst_ip
    return (b"\x02\xff\xff\xff\xff\xfe" + src_mac + IPV4.to_bytes(2, "big") + hdr).ljust(size, b"\0")


def main() -> int:
    with ValeEnv("emu") as env:
        hosts = [env.open(f"valer:net{k}") for k in range(3)]
        sw = vale.switch("valer")
        port_of = {int(name.rsplit("net", 1)[1]): idx for idx, name in sw.ports().items()}
        # a closure cannot be imported by other processes: install it for this process only
        sw.set_lookup(make_router(port_of), local=True)
        to_net2 = ipv4(bytes([10, 0, 2, 7]), bytes([10, 0, 0, 5]), mac(0))
        to_net1 = ipv4(bytes([10, 0, 1, 9]), bytes([10, 0, 2, 7]), mac(2))
        nowhere = ipv4(bytes([192, 168, 0, 1]), bytes([10, 0, 0, 5]), mac(0))
        arp = (BCAST + mac(0) + ARP.to_bytes(2, "big")).ljust(60, b"\0")
        send(hosts[0], [to_net2, nowhere, arp])
        send(hosts[2], [to_net1])
        got = [recv(h) for h in hosts]
        for k, frames in enumerate(got):
            kinds = ["ARP" if f[12:14] == ARP.to_bytes(2, "big") else
                     "IPv4 to " + ".".join(map(str, f[30:34])) for f in frames]
            print(f"net{k} received {kinds}")
        ok = (got[0] == [] and got[1] == [arp, to_net1] and got[2] == [to_net2, arp])
        sw.reset_lookup()
        print("router OK" if ok else "router FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
