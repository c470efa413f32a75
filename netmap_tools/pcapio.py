"""pcap and pcapng files through dpkt (the ``pcap`` extra): read frames with their timestamps,
write frames to either format. Only this module imports the pcap library.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from netmap_core.errors import InvalidRequestError, NotSupportedError

__all__ = ["FORMATS", "read_frames", "first_frame", "Writer"]

FORMATS = ("pcap", "pcapng")


def _dpkt() -> Any:
    try:
        return importlib.import_module("dpkt")   # untyped: reached through Any
    except ImportError:
        raise NotSupportedError(
            95, "pcap files need dpkt: pip install 'pynetmap[pcap]'") from None


def read_frames(path: str) -> Iterator[tuple[float, bytes]]:
    """(timestamp in seconds, frame bytes) of every record of a pcap or pcapng file."""
    dpkt = _dpkt()
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed when the generator ends
    except OSError as exc:
        raise InvalidRequestError(exc.errno or 2, f"pcap: cannot open {path!r}: {exc.strerror}") from None
    with f:
        try:
            reader = dpkt.pcap.UniversalReader(f)
        except (ValueError, dpkt.NeedData) as exc:
            raise InvalidRequestError(
                22, f"pcap: {path!r} is neither a pcap nor a pcapng file ({exc})") from None
        for ts, frame in reader:
            yield float(ts), bytes(frame)


def first_frame(path: str) -> bytes:
    """The first frame of a pcap/pcapng file (pkt-gen -P's prototype)."""
    for _, frame in read_frames(path):
        return frame
    raise InvalidRequestError(22, f"pcap: {path!r} holds no frame; give a file with at least one")


class Writer:
    """Frames with timestamps into a pcap (nanosecond resolution) or pcapng file (Ethernet
    link type). A context manager: the file is flushed and closed at exit."""

    def __init__(self, path: str, fmt: str = "pcap", snaplen: int = 65535) -> None:
        if fmt not in FORMATS:
            raise InvalidRequestError(22, f"pcap: format={fmt!r} is unknown; allowed: {FORMATS}")
        dpkt = _dpkt()
        self.path, self.fmt = path, fmt
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        if fmt == "pcap":
            self._w = dpkt.pcap.Writer(self.file, snaplen=snaplen, linktype=dpkt.pcap.DLT_EN10MB,
                                       nano=True)
        else:
            self._w = dpkt.pcapng.Writer(self.file, snaplen=snaplen, linktype=dpkt.pcap.DLT_EN10MB)
        self.count = 0

    def write(self, frame: bytes, ts: float) -> None:
        self._w.writepkt(frame, ts=ts)
        self.count += 1

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
