"""Damage OTA files on purpose, to prove that devices and the harness reject bad images.

Each function takes the bytes of a file and returns new bytes; none of them parses the file, so
they work on files that are already broken.
"""

from __future__ import annotations

import struct

from harness.errors import BadInputError
from harness.ota.image import HEADER_FIELD_OFFSETS

HEADER_FIELDS: tuple[str, ...] = tuple(HEADER_FIELD_OFFSETS)


def truncate(data: bytes, size: int) -> bytes:
    """Keep only the first ``size`` bytes, as an interrupted download would."""
    if not 0 <= size <= len(data):
        raise BadInputError(f"must be from 0 to the file size {len(data)}", field="truncate", value=size)
    return data[:size]


def append(data: bytes, extra: bytes) -> bytes:
    """Add ``extra`` bytes after the end of the file, as vendors that append a CRC do."""
    return data + extra


def flip_bit(data: bytes, bit: int) -> bytes:
    """Invert one bit; ``bit`` counts from the first byte's least significant bit (bit 8 is byte 1)."""
    if not 0 <= bit < len(data) * 8:
        raise BadInputError(f"must be from 0 to {len(data) * 8 - 1}", field="flip_bit", value=bit)
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def set_header_field(data: bytes, name: str, value: int) -> bytes:
    """Overwrite one fixed header field (e.g. ``manufacturer_code``, ``total_image_size``) in place.

    Nothing else is recomputed, so the header can be made to contradict the file.
    """
    if name not in HEADER_FIELD_OFFSETS:
        raise BadInputError(
            f"is not a header field; known: {', '.join(HEADER_FIELDS)}", field="set", value=name
        )
    offset, fmt = HEADER_FIELD_OFFSETS[name]
    size = struct.calcsize(fmt)
    if len(data) < offset + size:
        raise BadInputError(
            f"the file has {len(data)} bytes, too short to hold {name} at offset {offset}",
            field="set",
            value=name,
        )
    maximum = (1 << (8 * size)) - 1
    if not 0 <= value <= maximum:
        raise BadInputError(f"{name} must be from 0 to 0x{maximum:X}", field="set", value=value)
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)
