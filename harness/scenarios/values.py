"""Parsing the values users type in suites and on the command line: versions, sizes, budgets."""

from __future__ import annotations

import re

from harness.errors import BadInputError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|k|mb|mib|m)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
}


def parse_version(value: str | int, *, field: str = "version") -> int:
    """A 32-bit OTA file version from ``0x01020000``, ``16908288`` or dotted ``1.2.0.0`` (one byte each)."""
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        try:
            if "." in text:
                parts = [int(p) for p in text.split(".")]
                if len(parts) != 4 or any(not 0 <= p <= 255 for p in parts):
                    raise ValueError
                number = (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]
            else:
                number = int(text, 0)
        except ValueError:
            raise BadInputError(
                "is not a firmware version; write 0x01020000, 16908288 or 1.2.0.0", field=field, value=value
            ) from None
    if not 0 <= number <= 0xFFFFFFFF:
        raise BadInputError("does not fit the 32-bit OTA file version", field=field, value=value)
    return number


def format_version(version: int) -> str:
    """``1.2.0.0 (0x01020000)``: the dotted form people say and the hex form on air."""
    dotted = ".".join(str((version >> shift) & 0xFF) for shift in (24, 16, 8, 0))
    return f"{dotted} (0x{version:08X})"


def parse_size(value: str | int, *, field: str = "size") -> int:
    """A byte count from ``204800``, ``200KiB``, ``200k`` (KiB) or ``0.2MB``."""
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if not match:
            raise BadInputError("is not a size; write 204800, 200KiB or 0.2MB", field=field, value=value)
        size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower() or None])
    if size <= 0:
        raise BadInputError("must be a positive number of bytes", field=field, value=value)
    return size


def parse_budget(value: str | float | int, *, field: str = "budget") -> float:
    """Seconds of testbed time from ``2h``, ``90s``, ``1h30m`` or a number of seconds."""
    from harness.testbed.model import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadInputError(str(exc), field=field, value=value) from None
    if seconds <= 0:
        raise BadInputError("must be a positive duration", field=field, value=value)
    return seconds
