"""The firmware manifest, as an emulated device reads it from the image it runs or has downloaded.

An image the harness builds for an emulated device carries, at the start of its firmware payload
(the upgrade-image sub-element 0x0000 of a ZigBee-form file, or the opaque body of a GBCS-form file),
a small manifest saying what the firmware is and does (``docs/firmware-manifest.md`` is the
contract). This module is the device's own reader, kept apart from the harness's image toolkit so
that a mistake in one cannot hide a mistake in the other::

    ALTHAN-FW1\\n                 magic line
    sha256=<64 lowercase hex>\\n  SHA-256 of every payload byte after this line
    {...}\\n                      one line of UTF-8 JSON, at most 4096 bytes with its end of line
    <rest of the firmware>

JSON fields: ``firmware_version`` (uint32, the OTA header's file version), ``stack_version``
(uint16, what the OTA cluster's CurrentZigBeeStackVersion reports), ``p2p_protocol`` (1-255 or
null: the P2P link protocol of a bridge's firmware), ``behaviours`` (list of defect names of
:mod:`testbeds.emulator.defects`). Unknown fields are ignored.

How the running image's manifest and the testbed file's defects combine (:func:`effective_defects`):
the testbed's ``defects`` describe the factory firmware and the device's upgrade path. Once an image
with a valid manifest runs, its ``behaviours`` replace the factory firmware's defects, except those
that belong to the device rather than to one image, which stay from the testbed:
:data:`DEVICE_DEFECTS` (the bootloader's, and what the device loses across an upgrade from its
factory firmware). An image without a manifest (a vendor image) runs with the testbed's defects.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass

from .ota_file import OtaFileError, parse_header

__all__ = [
    "DEVICE_DEFECTS",
    "MANIFEST_MAGIC",
    "FirmwareManifest",
    "ManifestError",
    "effective_defects",
    "firmware_payload",
    "manifest_of_image",
    "parse_manifest",
]

MANIFEST_MAGIC = b"ALTHAN-FW1\n"
_DIGEST_LINE = re.compile(rb"sha256=([0-9a-f]{64})\n")
_DIGEST_LINE_LENGTH = 7 + 64 + 1
_MAX_JSON_LINE = 4096
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

DEVICE_DEFECTS: frozenset[str] = frozenset(
    {
        # the bootloader's: flashing an application image does not replace the bootloader
        "bricks-on-cut-during-swap",
        "torn-boot-flags",
        "no-boot-try-counter",
        # secure boot not enforced: a property of the device (bootloader and key store), whatever
        # an image says about itself
        "skips-signature-check",
        # the upgrade path from the factory firmware: they trigger once the device runs another
        # version than its factory one, whatever that image says about itself
        "drops-off-after-upgrade",
        "stops-polling-after-upgrade",
        "resets-frame-counter-on-upgrade",
        "loses-bindings-on-upgrade",
        # the stack's rejoin path: they act on the boot that follows an upgrade or a reboot
        "loses-network-key-on-stack-upgrade",
        "never-rejoins-after-reboot",
        "children-do-not-rejoin",
    }
)
"""Testbed defects that belong to the device, not to the image it runs: a manifest never removes them."""


class ManifestError(ValueError):
    """A manifest is present but cannot be used; the message says where and why."""


@dataclass(frozen=True)
class FirmwareManifest:
    """What a firmware image says about itself.

    ``digest_ok`` is False when the bytes after the digest line do not hash to the digest the
    manifest carries (a corrupted image); the fields were still readable.
    """

    firmware_version: int
    stack_version: int
    p2p_protocol: int | None
    behaviours: frozenset[str]
    digest_ok: bool


def _uint(fields: dict[str, object], name: str, low: int, high: int, *, optional: bool = False) -> int | None:
    value = fields.get(name)
    if value is None and optional:
        return None
    if value is None:
        raise ManifestError(f"manifest has no {name}")
    # bool is an int in Python, but true is not a version number.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ManifestError(f"manifest {name} {value!r} is not an integer from {low} to {high}")
    return value


def parse_manifest(payload: bytes) -> FirmwareManifest | None:
    """Read the manifest at the start of a firmware payload.

    Returns None when the payload does not start with the magic line (no manifest: a vendor image).
    Raises :class:`ManifestError` when it does but the digest line or the JSON line cannot be read.
    A digest that does not match is not an error: ``digest_ok`` says so.
    """
    payload = bytes(payload)
    if not payload.startswith(MANIFEST_MAGIC):
        return None
    pos = len(MANIFEST_MAGIC)
    match = _DIGEST_LINE.fullmatch(payload[pos : pos + _DIGEST_LINE_LENGTH])
    if match is None:
        raise ManifestError(f"manifest digest line at payload offset {pos} is not sha256=<64 hex digits>")
    pos += _DIGEST_LINE_LENGTH
    end = payload.find(b"\n", pos, pos + _MAX_JSON_LINE)
    if end < 0:
        raise ManifestError(
            f"manifest JSON line at payload offset {pos} does not end within {_MAX_JSON_LINE} bytes"
        )
    try:
        fields = json.loads(payload[pos:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"manifest JSON line at payload offset {pos} is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ManifestError(f"manifest JSON line at payload offset {pos} is not a JSON object")
    version = _uint(fields, "firmware_version", 0, 0xFFFFFFFF)
    stack = _uint(fields, "stack_version", 0, 0xFFFF)
    protocol = _uint(fields, "p2p_protocol", 1, 255, optional=True)
    names = fields.get("behaviours", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in names):
        raise ManifestError(f"manifest behaviours {names!r} is not a list of behaviour names")
    assert version is not None and stack is not None
    digest_ok = hashlib.sha256(payload[pos:]).digest() == bytes.fromhex(match.group(1).decode("ascii"))
    return FirmwareManifest(version, stack, protocol, frozenset(names), digest_ok)


def firmware_payload(image: bytes) -> bytes:
    """The firmware inside a whole OTA file: the first upgrade-image (tag 0x0000) sub-element's data,
    or, when the content after the header is not a run of sub-elements, the whole opaque (GBCS) body.

    Raises :class:`OtaFileError` when the header cannot be read.
    """
    header = parse_header(image)
    end = min(header.total_image_size, len(image))
    pos = header.header_length
    # ZCL §11.4.3: tag id (uint16), length (uint32), data; they must fill the image exactly.
    elements: list[tuple[int, int, int]] = []
    while pos + 6 <= end:
        tag, length = struct.unpack_from("<HI", image, pos)
        if pos + 6 + length > end:
            break
        elements.append((tag, pos + 6, length))
        pos += 6 + length
    if pos == end:
        for tag, start, length in elements:
            if tag == 0x0000:
                return bytes(image[start : start + length])
        if elements:
            return b""
    return bytes(image[header.header_length : end])


def manifest_of_image(image: bytes) -> FirmwareManifest | None:
    """The manifest of a whole OTA file (None: no manifest, or the factory firmware's ``b""``).

    Raises :class:`ManifestError` for an unreadable manifest or header.
    """
    if not image:
        return None
    try:
        payload = firmware_payload(image)
    except OtaFileError as exc:
        raise ManifestError(f"image header unreadable: {exc}") from None
    return parse_manifest(payload)


def effective_defects(testbed: frozenset[str], manifest: FirmwareManifest | None) -> frozenset[str]:
    """The defects a device has while running an image with ``manifest`` (None: factory or vendor image).

    The testbed's defects describe the factory firmware; a manifest's behaviours replace them, except
    :data:`DEVICE_DEFECTS`, which stay from the testbed.
    """
    if manifest is None:
        return frozenset(testbed)
    return (frozenset(testbed) & DEVICE_DEFECTS) | manifest.behaviours
