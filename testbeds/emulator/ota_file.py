"""Reading the header of a ZigBee OTA upgrade file, as an emulated device does before installing it.

This is the device's own reader, written from the ZigBee Cluster Library specification (ZCL rev 8,
chapter 11 "OTA Upgrade", §11.4 "OTA File Format") and kept apart from the harness's image toolkit,
so that a mistake in one cannot hide a mistake in the other.

Layout of the header (§11.4.2, Table 11-2; all integers little-endian):

====== ====== ==================================================================
offset length field
====== ====== ==================================================================
0      4      OTA upgrade file identifier, always 0x0BEEF11E (§11.4.2.1)
4      2      OTA header version (0x0100 in ZCL 6 to 8, §11.4.2.2)
6      2      OTA header length, in bytes, including optional fields (§11.4.2.3)
8      2      OTA header field control (§11.4.2.4, Table 11-3):
              bit 0 security credential version present,
              bit 1 device specific file (upgrade file destination present),
              bit 2 hardware versions present
10     2      manufacturer code (§11.4.2.5)
12     2      image type (§11.4.2.6)
14     4      file version (§11.4.2.7)
18     2      ZigBee stack version (§11.4.2.8)
20     32     OTA header string (§11.4.2.9)
52     4      total image size, header included (§11.4.2.10)
56     (1)    security credential version, if bit 0 (§11.4.2.11)
..     (8)    upgrade file destination (an IEEE address), if bit 1 (§11.4.2.12)
..     (2+2)  minimum and maximum hardware version, if bit 2 (§11.4.2.13, §11.4.2.14)
====== ====== ==================================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FC_DEVICE_SPECIFIC_FILE",
    "FC_HARDWARE_VERSIONS",
    "FC_SECURITY_CREDENTIAL_VERSION",
    "OTA_FILE_MAGIC",
    "OTA_HEADER_MIN_LENGTH",
    "OtaFileError",
    "OtaFileHeader",
    "parse_header",
]

OTA_FILE_MAGIC = 0x0BEEF11E
"""The OTA upgrade file identifier every OTA file starts with (§11.4.2.1)."""

OTA_HEADER_MIN_LENGTH = 56
"""Length of the header without any optional field (§11.4.2, Table 11-2)."""

FC_SECURITY_CREDENTIAL_VERSION = 0x0001
FC_DEVICE_SPECIFIC_FILE = 0x0002
FC_HARDWARE_VERSIONS = 0x0004

_FIXED = struct.Struct("<IHHHHHIH32sI")  # the 56 bytes every header has
assert _FIXED.size == OTA_HEADER_MIN_LENGTH


class OtaFileError(ValueError):
    """The bytes are not a usable OTA file header; the message says which field is wrong."""


@dataclass(frozen=True)
class OtaFileHeader:
    """The fields of an OTA file header, as found in the file.

    Optional fields are ``None`` when the field control says they are absent.
    ``upgrade_file_destination`` is the IEEE address as an integer (read little-endian, as on air).
    """

    header_version: int
    header_length: int
    field_control: int
    manufacturer_code: int
    image_type: int
    file_version: int
    stack_version: int
    header_string: bytes
    total_image_size: int
    security_credential_version: int | None = None
    upgrade_file_destination: int | None = None
    minimum_hardware_version: int | None = None
    maximum_hardware_version: int | None = None

    @property
    def header_text(self) -> str:
        """The header string as text (trailing NUL padding removed, undecodable bytes replaced)."""
        return self.header_string.rstrip(b"\x00").decode("utf-8", errors="replace")

    def fits_hardware(self, hardware_version: int) -> bool:
        """Whether a device of this hardware version may install the image (§11.4.2.13-14).

        A header without hardware versions fits every device.
        """
        if self.minimum_hardware_version is None or self.maximum_hardware_version is None:
            return True
        return self.minimum_hardware_version <= hardware_version <= self.maximum_hardware_version


def parse_header(data: bytes) -> OtaFileHeader:
    """Read the OTA header at the start of ``data`` (a whole file, or at least its header).

    Raises :class:`OtaFileError` naming the first field that is wrong: too few bytes, a wrong
    identifier, a header length that does not hold the fields the field control announces, or a
    total image size smaller than the header.
    """
    data = bytes(data)
    if len(data) < OTA_HEADER_MIN_LENGTH:
        raise OtaFileError(f"OTA header needs at least {OTA_HEADER_MIN_LENGTH} bytes, got {len(data)}")
    (
        magic,
        header_version,
        header_length,
        field_control,
        manufacturer_code,
        image_type,
        file_version,
        stack_version,
        header_string,
        total_image_size,
    ) = _FIXED.unpack_from(data, 0)
    if magic != OTA_FILE_MAGIC:
        raise OtaFileError(f"OTA upgrade file identifier is 0x{magic:08X}, expected 0x{OTA_FILE_MAGIC:08X}")

    # Optional fields follow in this order, each present when its field control bit is set.
    needed = OTA_HEADER_MIN_LENGTH
    if field_control & FC_SECURITY_CREDENTIAL_VERSION:
        needed += 1
    if field_control & FC_DEVICE_SPECIFIC_FILE:
        needed += 8
    if field_control & FC_HARDWARE_VERSIONS:
        needed += 4
    if header_length < needed:
        raise OtaFileError(
            f"OTA header length is {header_length}, but field control 0x{field_control:04X} "
            f"needs at least {needed}"
        )
    if len(data) < header_length:
        raise OtaFileError(f"OTA header length is {header_length}, but only {len(data)} bytes are present")
    if total_image_size < header_length:
        raise OtaFileError(
            f"total image size {total_image_size} is smaller than the header length {header_length}"
        )

    pos = OTA_HEADER_MIN_LENGTH
    credential: int | None = None
    destination: int | None = None
    hw_min: int | None = None
    hw_max: int | None = None
    if field_control & FC_SECURITY_CREDENTIAL_VERSION:
        credential = data[pos]
        pos += 1
    if field_control & FC_DEVICE_SPECIFIC_FILE:
        destination = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8
    if field_control & FC_HARDWARE_VERSIONS:
        hw_min, hw_max = struct.unpack_from("<HH", data, pos)
        pos += 4

    return OtaFileHeader(
        header_version=header_version,
        header_length=header_length,
        field_control=field_control,
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        stack_version=stack_version,
        header_string=header_string,
        total_image_size=total_image_size,
        security_credential_version=credential,
        upgrade_file_destination=destination,
        minimum_hardware_version=hw_min,
        maximum_hardware_version=hw_max,
    )
