"""ZigBee OTA Upgrade files (ZCL specification 11.4): build them, parse them, describe them.

An OTA file is a header (magic number 0x0BEEF11E, versions, manufacturer code, image type, sizes,
optional fields announced by the field control) followed by the image content, in one of two forms:

- ``"zigbee"``: tagged sub-elements (tag id uint16, length uint32, data), e.g. 0x0000 upgrade image,
  0x0001 ECDSA signature; this is what the ZCL specification describes.
- ``"gbcs"``: an opaque, manufacturer-defined body with no sub-elements, as GB smart-metering
  (GBCS) images carry.

Everything is little endian. The parser never fails in a generic way: each defect raises
`ImageFormatError` naming the field, the value and the byte offset, and oddities that a device
may still accept (trailing bytes after the total image size, reserved bits, unknown header
version) become warnings on the `ParsedImage`.

Form detection (``parse_image(..., form=None)``): the content after the header is read as
``"zigbee"`` when it parses as a sequence of sub-elements that ends exactly at the total image
size (an empty content counts as zero sub-elements); anything else is read as an opaque
``"gbcs"`` body. A GBCS body can by chance look like sub-elements, so pass ``form`` when you know it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from harness.errors import BadInputError
from harness.ota.manifest import (
    FirmwareManifest,
    ManifestReading,
    encode_payload,
    manifest_length,
    read_manifest,
)

ImageForm = Literal["zigbee", "gbcs"]
FORMS: tuple[ImageForm, ...] = ("zigbee", "gbcs")

MAGIC = 0x0BEEF11E
HEADER_VERSION = 0x0100
# magic, header version, header length, field control, manufacturer code, image type,
# file version, stack version, header string, total image size
_FIXED_HEADER = struct.Struct("<IHHHHHIH32sI")
MIN_HEADER_LENGTH = _FIXED_HEADER.size
HEADER_STRING_LENGTH = 32
SUB_ELEMENT_HEADER_LENGTH = 6

FIELD_CONTROL_SECURITY_CREDENTIAL_VERSION = 0x0001
FIELD_CONTROL_DEVICE_SPECIFIC_FILE = 0x0002
FIELD_CONTROL_HARDWARE_VERSIONS = 0x0004
_FIELD_CONTROL_KNOWN_BITS = 0x0007

TAG_UPGRADE_IMAGE = 0x0000
TAG_NAMES: dict[int, str] = {
    0x0000: "upgrade_image",
    0x0001: "ecdsa_signature_suite_1",
    0x0002: "ecdsa_signing_certificate_suite_1",
    0x0003: "image_integrity_code",
    0x0004: "picture_data",
    0x0005: "ecdsa_signature_suite_2",
    0x0006: "ecdsa_signing_certificate_suite_2",
}

# Byte offsets of the fixed header fields, for error messages and for harness.ota.mutate.
HEADER_FIELD_OFFSETS: dict[str, tuple[int, str]] = {
    "magic": (0, "<I"),
    "header_version": (4, "<H"),
    "header_length": (6, "<H"),
    "field_control": (8, "<H"),
    "manufacturer_code": (10, "<H"),
    "image_type": (12, "<H"),
    "file_version": (14, "<I"),
    "stack_version": (18, "<H"),
    "total_image_size": (52, "<I"),
}

_UINT8 = 0xFF
_UINT16 = 0xFFFF
_UINT32 = 0xFFFFFFFF


class ImageFormatError(BadInputError):
    """An OTA file is malformed; the message names the defect, the field, the value and the offset."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        field: str,
        value: object = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message, file=file, field=field, value=value)
        self.offset = offset
        # The message already names field, value and offset; BadInputError's generic
        # "field 'x' ... (got v)" decoration would only repeat them.
        self.args = (f"{file}: {message}",)


def tag_name(tag: int) -> str:
    """Name of a sub-element tag as the ZCL specification calls it (``unknown`` if it has none)."""
    if tag in TAG_NAMES:
        return TAG_NAMES[tag]
    if tag >= 0xF000:
        return "manufacturer_specific"
    return "unknown"


def _check_uint(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise BadInputError(f"must be an integer from 0 to 0x{maximum:X}", field=name, value=value)


def _encode_header_string(text: str) -> bytes:
    # surrogateescape turns bytes that were not UTF-8 in a parsed file back into the same bytes.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise BadInputError("cannot be encoded as UTF-8", field="header_string", value=text) from exc


@dataclass(frozen=True, kw_only=True)
class OtaHeader:
    """The OTA file header, with the ZCL specification's field names in snake_case.

    ``header_length`` is always computed from the fields present, and the three presence bits of
    ``field_control`` (security credential version, device-specific file, hardware versions)
    always follow which optional fields are set, so a header cannot contradict itself. Other
    field-control bits are kept as given. ``upgrade_file_destination`` is the 8-byte IEEE
    address as it sits in the file (least significant byte first). ``header_extension`` holds
    header bytes past the known fields (from a later header version), kept so files round-trip.
    ``total_image_size`` is set by `OtaImage` from the content it carries.
    """

    manufacturer_code: int
    image_type: int
    file_version: int
    header_version: int = HEADER_VERSION
    field_control: int = 0
    stack_version: int = 2
    header_string: str = ""
    total_image_size: int = 0
    security_credential_version: int | None = None
    upgrade_file_destination: bytes | None = None
    minimum_hardware_version: int | None = None
    maximum_hardware_version: int | None = None
    header_extension: bytes = b""
    header_length: int = field(init=False)

    def __post_init__(self) -> None:
        for name, maximum in (
            ("manufacturer_code", _UINT16),
            ("image_type", _UINT16),
            ("file_version", _UINT32),
            ("header_version", _UINT16),
            ("field_control", _UINT16),
            ("stack_version", _UINT16),
            ("total_image_size", _UINT32),
        ):
            _check_uint(name, getattr(self, name), maximum)
        if self.security_credential_version is not None:
            _check_uint("security_credential_version", self.security_credential_version, _UINT8)
        if self.upgrade_file_destination is not None and len(self.upgrade_file_destination) != 8:
            raise BadInputError(
                "must be 8 bytes (an IEEE address)",
                field="upgrade_file_destination",
                value=bytes(self.upgrade_file_destination).hex(),
            )
        if (self.minimum_hardware_version is None) != (self.maximum_hardware_version is None):
            raise BadInputError(
                "minimum and maximum hardware versions go together: give both or neither",
                field="minimum_hardware_version"
                if self.minimum_hardware_version is None
                else "maximum_hardware_version",
            )
        if self.minimum_hardware_version is not None and self.maximum_hardware_version is not None:
            _check_uint("minimum_hardware_version", self.minimum_hardware_version, _UINT16)
            _check_uint("maximum_hardware_version", self.maximum_hardware_version, _UINT16)
        # Trailing NULs are padding in the file; dropping them here keeps parse(build(x)) == x.
        text = self.header_string.rstrip("\x00")
        if len(_encode_header_string(text)) > HEADER_STRING_LENGTH:
            raise BadInputError(
                f"is longer than {HEADER_STRING_LENGTH} bytes in UTF-8", field="header_string", value=text
            )
        object.__setattr__(self, "header_string", text)
        object.__setattr__(self, "header_extension", bytes(self.header_extension))

        presence = 0
        if self.security_credential_version is not None:
            presence |= FIELD_CONTROL_SECURITY_CREDENTIAL_VERSION
        if self.upgrade_file_destination is not None:
            presence |= FIELD_CONTROL_DEVICE_SPECIFIC_FILE
            object.__setattr__(self, "upgrade_file_destination", bytes(self.upgrade_file_destination))
        if self.minimum_hardware_version is not None:
            presence |= FIELD_CONTROL_HARDWARE_VERSIONS
        object.__setattr__(
            self, "field_control", (self.field_control & ~_FIELD_CONTROL_KNOWN_BITS) | presence
        )
        length = required_header_length(self.field_control) + len(self.header_extension)
        _check_uint("header_length", length, _UINT16)
        object.__setattr__(self, "header_length", length)

    def serialize(self) -> bytes:
        """The header's bytes exactly as they appear at the start of the OTA file."""
        out = bytearray(
            _FIXED_HEADER.pack(
                MAGIC,
                self.header_version,
                self.header_length,
                self.field_control,
                self.manufacturer_code,
                self.image_type,
                self.file_version,
                self.stack_version,
                _encode_header_string(self.header_string).ljust(HEADER_STRING_LENGTH, b"\x00"),
                self.total_image_size,
            )
        )
        if self.security_credential_version is not None:
            out += struct.pack("<B", self.security_credential_version)
        if self.upgrade_file_destination is not None:
            out += self.upgrade_file_destination
        if self.minimum_hardware_version is not None and self.maximum_hardware_version is not None:
            out += struct.pack("<HH", self.minimum_hardware_version, self.maximum_hardware_version)
        out += self.header_extension
        return bytes(out)

    def to_json(self) -> dict[str, Any]:
        """The header as JSON-ready values: codes as hex strings, lengths as numbers."""
        destination = self.upgrade_file_destination
        return {
            "header_version": f"0x{self.header_version:04X}",
            "header_length": self.header_length,
            "field_control": f"0x{self.field_control:04X}",
            "manufacturer_code": f"0x{self.manufacturer_code:04X}",
            "image_type": f"0x{self.image_type:04X}",
            "file_version": f"0x{self.file_version:08X}",
            "stack_version": f"0x{self.stack_version:04X}",
            "header_string": self.header_string.encode("utf-8", "surrogateescape").decode(
                "utf-8", "backslashreplace"
            ),
            "total_image_size": self.total_image_size,
            "security_credential_version": None
            if self.security_credential_version is None
            else f"0x{self.security_credential_version:02X}",
            "upgrade_file_destination": None if destination is None else format_ieee(destination),
            "minimum_hardware_version": None
            if self.minimum_hardware_version is None
            else f"0x{self.minimum_hardware_version:04X}",
            "maximum_hardware_version": None
            if self.maximum_hardware_version is None
            else f"0x{self.maximum_hardware_version:04X}",
            "header_extension_length": len(self.header_extension),
        }


def required_header_length(field_control: int) -> int:
    """How many header bytes the optional fields announced by ``field_control`` need (56 to 69)."""
    length = MIN_HEADER_LENGTH
    if field_control & FIELD_CONTROL_SECURITY_CREDENTIAL_VERSION:
        length += 1
    if field_control & FIELD_CONTROL_DEVICE_SPECIFIC_FILE:
        length += 8
    if field_control & FIELD_CONTROL_HARDWARE_VERSIONS:
        length += 4
    return length


def format_ieee(wire: bytes) -> str:
    """An IEEE address stored least significant byte first, written the usual way (``00:0d:6f:...``)."""
    return ":".join(f"{b:02x}" for b in reversed(wire))


@dataclass(frozen=True)
class SubElement:
    """One tagged sub-element of a ZigBee-form image: a tag id (e.g. 0x0000 upgrade image) and its data."""

    tag: int
    data: bytes

    def __post_init__(self) -> None:
        _check_uint("tag", self.tag, _UINT16)
        if len(self.data) > _UINT32:
            raise BadInputError("sub-element data is larger than 4 GiB", field="data", value=len(self.data))
        object.__setattr__(self, "data", bytes(self.data))

    @property
    def name(self) -> str:
        """The tag's name, e.g. ``upgrade_image``."""
        return tag_name(self.tag)

    def serialize(self) -> bytes:
        """The sub-element's bytes as they appear in the file: tag, length, data."""
        return struct.pack("<HI", self.tag, len(self.data)) + self.data


@dataclass
class OtaImage:
    """A whole OTA file: its header and its content, either sub-elements (``zigbee``) or a body (``gbcs``).

    On creation the header's ``total_image_size`` is set to match the content; `serialize`
    recomputes it every time, so the bytes written are always consistent.
    """

    header: OtaHeader
    form: ImageForm = "zigbee"
    sub_elements: list[SubElement] = field(default_factory=list)
    body: bytes = b""

    def __post_init__(self) -> None:
        self.form = _check_form(self.form)
        if self.form == "gbcs" and self.sub_elements:
            raise BadInputError("a gbcs image has an opaque body and no sub-elements", field="sub_elements")
        if self.form == "zigbee" and self.body:
            raise BadInputError(
                "a zigbee image carries its content in sub-elements, not a body", field="body"
            )
        self.body = bytes(self.body)
        self.header = dataclasses.replace(self.header, total_image_size=self._total_size())

    def _content(self) -> bytes:
        if self.form == "gbcs":
            return self.body
        return b"".join(element.serialize() for element in self.sub_elements)

    def _total_size(self) -> int:
        return self.header.header_length + len(self._content())

    def serialize(self) -> bytes:
        """The complete OTA file, with header length and total image size matching the content."""
        content = self._content()
        header = dataclasses.replace(self.header, total_image_size=self.header.header_length + len(content))
        return header.serialize() + content

    @property
    def payload(self) -> bytes:
        """The firmware itself: the first upgrade-image (0x0000) sub-element's data, or the gbcs body.

        A zigbee image without an upgrade-image sub-element has an empty payload.
        """
        if self.form == "gbcs":
            return self.body
        for element in self.sub_elements:
            if element.tag == TAG_UPGRADE_IMAGE:
                return element.data
        return b""

    @property
    def manifest(self) -> ManifestReading:
        """The firmware manifest at the start of the payload (docs/firmware-manifest.md), if any.

        Besides what `read_manifest` checks, a manifest whose firmware version is not the header's
        file version is reported as a problem.
        """
        reading = read_manifest(self.payload)
        manifest = reading.manifest
        if (
            reading.problem is None
            and manifest is not None
            and manifest.firmware_version != self.header.file_version
        ):
            return dataclasses.replace(
                reading,
                problem=f"manifest firmware_version 0x{manifest.firmware_version:08X} is not the"
                f" header's file version 0x{self.header.file_version:08X}",
            )
        return reading

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description: header fields, sizes, SHA-256 of the file, payload and each part."""
        data = self.serialize()
        result: dict[str, Any] = {
            "form": self.form,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "header": self.header.to_json() | {"total_image_size": len(data)},
            "payload_size": len(self.payload),
            "payload_sha256": hashlib.sha256(self.payload).hexdigest(),
            "manifest": self.manifest.to_json(),
        }
        if self.form == "gbcs":
            result["body"] = {
                "offset": self.header.header_length,
                "length": len(self.body),
                "sha256": hashlib.sha256(self.body).hexdigest(),
            }
            result["sub_elements"] = []
            return result
        offset = self.header.header_length
        elements = []
        for element in self.sub_elements:
            elements.append(
                {
                    "tag": f"0x{element.tag:04X}",
                    "name": element.name,
                    "offset": offset,
                    "length": len(element.data),
                    "sha256": hashlib.sha256(element.data).hexdigest(),
                }
            )
            offset += SUB_ELEMENT_HEADER_LENGTH + len(element.data)
        result["sub_elements"] = elements
        return result


@dataclass
class ParsedImage:
    """What `parse_image` read: the image, and warnings about oddities a device might still accept."""

    image: OtaImage
    warnings: list[str] = field(default_factory=list)


def _check_form(form: str) -> ImageForm:
    if form not in FORMS:
        raise BadInputError("must be 'zigbee' or 'gbcs'", field="form", value=form)
    return cast(ImageForm, form)


def make_payload(size: int, seed: int) -> bytes:
    """Deterministic pseudo-random firmware filler: the same size and seed always give the same bytes."""
    if not isinstance(size, int) or size < 0:
        raise BadInputError("must be a non-negative number of bytes", field="size", value=size)
    return random.Random(seed).randbytes(size)


def build_image(
    *,
    manufacturer_code: int,
    image_type: int,
    file_version: int,
    payload: bytes,
    stack_version: int = 2,
    header_string: str = "",
    form: str = "zigbee",
    minimum_hardware_version: int | None = None,
    maximum_hardware_version: int | None = None,
    security_credential_version: int | None = None,
    upgrade_file_destination: bytes | None = None,
    manifest: FirmwareManifest | None = None,
) -> OtaImage:
    """Build an OTA image carrying ``payload``.

    In ``zigbee`` form the payload is one upgrade-image (0x0000) sub-element; in ``gbcs`` form it
    is the opaque body. With a ``manifest`` the payload becomes the manifest followed by
    ``payload`` (docs/firmware-manifest.md); its firmware version must be ``file_version``.

    Bad values raise `BadInputError` naming the field.
    """
    checked_form = _check_form(form)
    if manifest is not None:
        if manifest.firmware_version != file_version:
            raise BadInputError(
                f"must be the image's file version 0x{file_version:08X}",
                field="manifest.firmware_version",
                value=f"0x{manifest.firmware_version:08X}",
            )
        payload = encode_payload(manifest, payload)
    header = OtaHeader(
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        stack_version=stack_version,
        header_string=header_string,
        security_credential_version=security_credential_version,
        upgrade_file_destination=upgrade_file_destination,
        minimum_hardware_version=minimum_hardware_version,
        maximum_hardware_version=maximum_hardware_version,
    )
    if checked_form == "gbcs":
        return OtaImage(header=header, form="gbcs", body=payload)
    return OtaImage(header=header, form="zigbee", sub_elements=[SubElement(TAG_UPGRADE_IMAGE, payload)])


def build_image_of_total_size(
    total_size: int,
    *,
    manufacturer_code: int,
    image_type: int,
    file_version: int,
    seed: int = 0,
    stack_version: int = 2,
    header_string: str = "",
    form: str = "zigbee",
    minimum_hardware_version: int | None = None,
    maximum_hardware_version: int | None = None,
    security_credential_version: int | None = None,
    upgrade_file_destination: bytes | None = None,
    manifest: FirmwareManifest | None = None,
) -> OtaImage:
    """Build an image whose file is exactly ``total_size`` bytes, filled with `make_payload` (``seed``).

    With a ``manifest`` the payload starts with it and the filler makes up the rest of the size.
    Raises `BadInputError` when ``total_size`` cannot even hold the header (and, for zigbee, the
    upgrade-image sub-element's 6-byte tag and length, and the manifest).
    """
    empty = build_image(
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        payload=b"",
        stack_version=stack_version,
        header_string=header_string,
        form=form,
        minimum_hardware_version=minimum_hardware_version,
        maximum_hardware_version=maximum_hardware_version,
        security_credential_version=security_credential_version,
        upgrade_file_destination=upgrade_file_destination,
    )
    overhead = empty.header.total_image_size
    what = "header and framing"
    if manifest is not None:
        overhead += manifest_length(manifest)
        what = "header, framing and firmware manifest"
    if not isinstance(total_size, int) or total_size < overhead:
        raise BadInputError(
            f"is smaller than the {overhead} bytes of {what} a {empty.form} image needs",
            field="size",
            value=total_size,
        )
    if total_size > _UINT32:
        raise BadInputError(
            f"is larger than the 0x{_UINT32:X} bytes an OTA file can have", field="size", value=total_size
        )
    return build_image(
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        payload=make_payload(total_size - overhead, seed),
        stack_version=stack_version,
        header_string=header_string,
        form=form,
        minimum_hardware_version=minimum_hardware_version,
        maximum_hardware_version=maximum_hardware_version,
        security_credential_version=security_credential_version,
        upgrade_file_destination=upgrade_file_destination,
        manifest=manifest,
    )


def _parse_header(data: bytes, source: str, warnings: list[str]) -> OtaHeader:
    if len(data) >= 4:
        (magic,) = struct.unpack_from("<I", data, 0)
        if magic != MAGIC:
            raise ImageFormatError(
                f"bad magic number at offset 0: expected 0x{MAGIC:08X}, found 0x{magic:08X}",
                file=source,
                field="magic",
                value=f"0x{magic:08X}",
                offset=0,
            )
    if len(data) < MIN_HEADER_LENGTH:
        raise ImageFormatError(
            f"file shorter than the {MIN_HEADER_LENGTH}-byte minimum OTA header: file has {len(data)} bytes",
            file=source,
            field="header",
            value=len(data),
            offset=0,
        )
    (
        _magic,
        header_version,
        header_length,
        field_control,
        manufacturer_code,
        image_type,
        file_version,
        stack_version,
        raw_string,
        total_image_size,
    ) = _FIXED_HEADER.unpack_from(data, 0)

    if header_version != HEADER_VERSION:
        warnings.append(
            f"header version 0x{header_version:04X} at offset 4 is not the 0x{HEADER_VERSION:04X}"
            " this harness knows; read as 0x0100"
        )
    reserved = field_control & ~_FIELD_CONTROL_KNOWN_BITS
    if reserved:
        warnings.append(
            f"field control 0x{field_control:04X} at offset 8 sets reserved bits 0x{reserved:04X};"
            " kept as they are"
        )
    required = required_header_length(field_control)
    if header_length < required:
        raise ImageFormatError(
            f"header length {header_length} at offset 6 is shorter than the {required} bytes"
            f" the field control 0x{field_control:04X} requires",
            file=source,
            field="header_length",
            value=header_length,
            offset=6,
        )
    if total_image_size < header_length:
        raise ImageFormatError(
            f"total image size {total_image_size} at offset 52 is smaller than the header length"
            f" {header_length} at offset 6",
            file=source,
            field="total_image_size",
            value=total_image_size,
            offset=52,
        )
    if len(data) < total_image_size:
        raise ImageFormatError(
            f"file is truncated: header says total image size {total_image_size} bytes,"
            f" file has {len(data)} bytes",
            file=source,
            field="total_image_size",
            value=total_image_size,
            offset=52,
        )

    text = raw_string.rstrip(b"\x00")
    try:
        header_string = text.decode("utf-8")
    except UnicodeDecodeError:
        header_string = text.decode("utf-8", "surrogateescape")
        warnings.append("header string at offset 20 is not valid UTF-8; undecodable bytes are shown escaped")

    offset = MIN_HEADER_LENGTH
    security_credential_version: int | None = None
    upgrade_file_destination: bytes | None = None
    minimum_hardware_version: int | None = None
    maximum_hardware_version: int | None = None
    if field_control & FIELD_CONTROL_SECURITY_CREDENTIAL_VERSION:
        security_credential_version = data[offset]
        offset += 1
    if field_control & FIELD_CONTROL_DEVICE_SPECIFIC_FILE:
        upgrade_file_destination = bytes(data[offset : offset + 8])
        offset += 8
    if field_control & FIELD_CONTROL_HARDWARE_VERSIONS:
        minimum_hardware_version, maximum_hardware_version = struct.unpack_from("<HH", data, offset)
        offset += 4
        if minimum_hardware_version > maximum_hardware_version:
            warnings.append(
                f"minimum hardware version 0x{minimum_hardware_version:04X} at offset {offset - 4} is above"
                f" the maximum 0x{maximum_hardware_version:04X}: no hardware can take this image"
            )
    extension = bytes(data[offset:header_length])
    if extension:
        warnings.append(
            f"header length {header_length} at offset 6 is {len(extension)} bytes longer than the"
            f" {required} bytes the field control 0x{field_control:04X} requires; the extra bytes are kept"
        )
    return OtaHeader(
        header_version=header_version,
        field_control=field_control,
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        stack_version=stack_version,
        header_string=header_string,
        total_image_size=total_image_size,
        security_credential_version=security_credential_version,
        upgrade_file_destination=upgrade_file_destination,
        minimum_hardware_version=minimum_hardware_version,
        maximum_hardware_version=maximum_hardware_version,
        header_extension=extension,
    )


def _parse_sub_elements(data: bytes, start: int, end: int, source: str) -> list[SubElement]:
    elements: list[SubElement] = []
    offset = start
    while offset < end:
        if end - offset < SUB_ELEMENT_HEADER_LENGTH:
            raise ImageFormatError(
                f"sub-element at offset {offset} needs a {SUB_ELEMENT_HEADER_LENGTH}-byte tag and length"
                f" but only {end - offset} bytes remain before the total image size",
                file=source,
                field="sub_element",
                value=end - offset,
                offset=offset,
            )
        tag, length = struct.unpack_from("<HI", data, offset)
        remaining = end - offset - SUB_ELEMENT_HEADER_LENGTH
        if length > remaining:
            raise ImageFormatError(
                f"sub-element 0x{tag:04X} at offset {offset} claims {length} bytes"
                f" but only {remaining} remain",
                file=source,
                field="sub_element",
                value=length,
                offset=offset,
            )
        data_start = offset + SUB_ELEMENT_HEADER_LENGTH
        elements.append(SubElement(tag, bytes(data[data_start : data_start + length])))
        offset = data_start + length
    return elements


def parse_image(data: bytes, *, source: str = "<bytes>", form: str | None = None) -> ParsedImage:
    """Read an OTA file from its bytes; ``form`` is ``"zigbee"``, ``"gbcs"`` or None to detect it.

    ``source`` names the file in messages. Raises `ImageFormatError` (and nothing else) when the
    bytes are not a valid OTA file; a wrong ``form`` argument raises `BadInputError`.
    Bytes past the total image size are reported as a warning and left out of the image.
    """
    wanted = None if form is None else _check_form(form)
    data = bytes(data)
    warnings: list[str] = []
    header = _parse_header(data, source, warnings)
    total = header.total_image_size
    if len(data) > total:
        warnings.append(f"{len(data) - total} trailing bytes after the total image size (a vendor CRC?)")
    parsed = _parse_content(data, header, source, wanted, warnings)
    problem = parsed.image.manifest.problem
    if problem is not None:
        parsed.warnings.append(f"firmware manifest: {problem}")
    return parsed


def _parse_content(
    data: bytes, header: OtaHeader, source: str, wanted: ImageForm | None, warnings: list[str]
) -> ParsedImage:
    total = header.total_image_size
    start = header.header_length
    if wanted == "gbcs":
        return ParsedImage(OtaImage(header=header, form="gbcs", body=data[start:total]), warnings)
    try:
        elements = _parse_sub_elements(data, start, total, source)
    except ImageFormatError as exc:
        if wanted == "zigbee":
            raise
        # A GBCS body rarely starts with a known tag; when it does, the file is more likely a
        # zigbee image with a wrong size or a damaged sub-element, so say so.
        if total - start >= 2 and struct.unpack_from("<H", data, start)[0] in TAG_NAMES:
            warnings.append(f"read as an opaque gbcs body, but it starts like sub-elements and {exc.reason}")
        return ParsedImage(OtaImage(header=header, form="gbcs", body=data[start:total]), warnings)
    return ParsedImage(OtaImage(header=header, form="zigbee", sub_elements=elements), warnings)


def load_image(path: str | Path, *, form: str | None = None) -> ParsedImage:
    """Read and parse the OTA file at ``path`` (see `parse_image`).

    An unreadable file raises `BadInputError` naming it; a malformed one `ImageFormatError`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise BadInputError(f"cannot read the OTA file: {reason}", file=str(path)) from exc
    return parse_image(data, source=str(path), form=form)
