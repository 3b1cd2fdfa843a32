"""Classic pcap files of captured radio frames: a writer that survives a kill, and a tolerant reader.

The writer puts the 24-byte pcap header on disk as soon as the file is opened and flushes every
record, so Wireshark or tshark can read everything captured up to a crash. Nothing is fsynced per
frame: a flush hands the bytes to the operating system, which is enough to survive the harness
being killed (only a power loss of the host itself could lose the last frames).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "LINKTYPE_IEEE802_15_4_NOFCS",
    "LINKTYPE_IEEE802_15_4_WITHFCS",
    "PcapFormatError",
    "PcapReader",
    "PcapWriter",
    "read_pcap",
]

LINKTYPE_IEEE802_15_4_WITHFCS = 195
"""IEEE 802.15.4 frames that end with their 2-byte FCS (what a sniffer hands over)."""
LINKTYPE_IEEE802_15_4_NOFCS = 230
"""IEEE 802.15.4 frames without the FCS."""

_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_SNAPLEN = 65535
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER_LE = struct.Struct("<IIII")
_RECORD_HEADER_BE = struct.Struct(">IIII")
# A record bigger than this is not a torn tail but a damaged or foreign file.
_MAX_RECORD = 262_144


class PcapFormatError(ValueError):
    """The file is not a classic pcap file, or a record in it is damaged (not merely cut short)."""


class PcapWriter:
    """Writes frames to a new classic pcap file, one flushed record per frame.

    Args:
        path: the file to create. An existing file is never overwritten (``FileExistsError``),
            so evidence from an earlier run cannot be destroyed by mistake.
        linktype: the pcap link type; 195 (IEEE 802.15.4 with FCS) unless told otherwise.
    """

    __slots__ = ("_file", "linktype", "path")

    def __init__(self, path: str | os.PathLike[str], linktype: int = LINKTYPE_IEEE802_15_4_WITHFCS) -> None:
        self.path = Path(path)
        self.linktype = linktype
        self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - lives as long as the writer
        self._file.write(_FILE_HEADER.pack(_MAGIC_US, 2, 4, 0, 0, _SNAPLEN, linktype))
        self._file.flush()

    def write(self, frame: bytes, timestamp: float) -> None:
        """Append one frame captured at ``timestamp`` (seconds since the Unix epoch) and flush it."""
        f = self._file
        if f is None:
            raise ValueError(f"pcap file {self.path} is already closed")
        seconds = math.floor(timestamp)
        micros = round((timestamp - seconds) * 1_000_000)
        if micros >= 1_000_000:
            seconds += 1
            micros -= 1_000_000
        n = len(frame)
        f.write(_RECORD_HEADER_LE.pack(seconds, micros, n, n) + frame)
        f.flush()

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._file is None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PcapReader:
    """Iterates over ``(timestamp, frame)`` pairs of a classic pcap file.

    A file cut short in the middle of its last record (the harness was killed while writing it)
    is read up to the last complete record; afterwards :attr:`torn_tail` is True and
    :attr:`torn_bytes` says how many bytes were left over. A file that is not pcap at all, or whose
    record lengths are absurd, raises :class:`PcapFormatError` naming the file and the offset.

    Attributes:
        linktype: the link type from the file header (None until iteration starts).
        frames: how many complete records have been read so far.
        torn_tail: True if the file ended part-way through a record (or its header).
        torn_bytes: the size of that incomplete piece.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.linktype: int | None = None
        self.frames = 0
        self.torn_tail = False
        self.torn_bytes = 0
        self._iter = self._records()

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return self

    def __next__(self) -> tuple[float, bytes]:
        return next(self._iter)

    def _records(self) -> Iterator[tuple[float, bytes]]:
        with open(self.path, "rb") as f:
            head = f.read(_FILE_HEADER.size)
            if len(head) < 4:
                # Killed before even the magic number reached the disk: nothing to read.
                self.torn_tail = bool(head)
                self.torn_bytes = len(head)
                return
            magic_le = struct.unpack_from("<I", head)[0]
            if magic_le in (_MAGIC_US, _MAGIC_NS):
                order = "<"
            elif struct.unpack_from(">I", head)[0] in (_MAGIC_US, _MAGIC_NS):
                order = ">"
            else:
                raise PcapFormatError(
                    f"{self.path}: not a classic pcap file (magic number 0x{magic_le:08x} at offset 0)"
                )
            if len(head) < _FILE_HEADER.size:
                self.torn_tail = True
                self.torn_bytes = len(head)
                return
            magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(
                order + "IHHiIII", head
            )
            self.linktype = linktype
            divisor = 1e9 if magic == _MAGIC_NS else 1e6
            rec = _RECORD_HEADER_LE if order == "<" else _RECORD_HEADER_BE
            offset = _FILE_HEADER.size
            while True:
                rh = f.read(rec.size)
                if not rh:
                    return
                if len(rh) < rec.size:
                    self.torn_tail = True
                    self.torn_bytes = len(rh)
                    return
                seconds, fraction, incl_len, _orig_len = rec.unpack(rh)
                if incl_len > _MAX_RECORD:
                    raise PcapFormatError(
                        f"{self.path}: record at offset {offset} claims {incl_len} bytes; the file is damaged"
                    )
                data = f.read(incl_len)
                if len(data) < incl_len:
                    self.torn_tail = True
                    self.torn_bytes = rec.size + len(data)
                    return
                offset += rec.size + incl_len
                self.frames += 1
                yield seconds + fraction / divisor, data


def read_pcap(path: str | os.PathLike[str]) -> PcapReader:
    """Open a pcap file for reading; iterate the result for ``(timestamp, frame)`` pairs.

    After iterating, the returned reader's ``torn_tail`` tells whether the last record was cut
    short (for example because the harness was killed while writing it).
    """
    return PcapReader(path)
