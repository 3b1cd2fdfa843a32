"""The firmware manifest: what an emulated device's firmware image says about itself.

The manifest sits at the very start of the firmware payload (the data of the upgrade-image
sub-element 0x0000 in a ``zigbee`` image, the opaque body of a ``gbcs`` image) and is followed by
the rest of the firmware (filler bytes for the images the harness makes). It is the contract
between the harness's image builder and the emulator (``testbeds.emulator.firmware`` reads it with
its own parser); docs/firmware-manifest.md is the specification. In short::

    ALTHAN-FW1\\n                      magic line (11 bytes)
    sha256=<64 lowercase hex>\\n       SHA-256 of every payload byte after this line
    {"firmware_version": ...}\\n       one line of compact UTF-8 JSON (at most 4096 bytes with its \\n)
    <rest of the firmware>

A payload that does not start with the magic line has no manifest (a real vendor image). One that
starts with it but whose digest line or JSON line cannot be read, or whose digest does not match,
is reported as a problem, never as an exception: the OTA file itself is still well formed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import BadInputError

MAGIC = b"ALTHAN-FW1\n"
DIGEST_PREFIX = b"sha256="
DIGEST_LINE_LENGTH = len(DIGEST_PREFIX) + 64 + 1
MAX_JSON_LINE = 4096
MAX_BEHAVIOURS = 32
BEHAVIOUR_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_BEHAVIOUR_LENGTH = 64


class FirmwareManifest(BaseModel):
    """What a firmware image says about itself (see docs/firmware-manifest.md).

    ``firmware_version`` must equal the OTA header's file version. ``stack_version`` is the ZigBee
    stack version the firmware reports (the OTA cluster's CurrentZigBeeStackVersion, uint16).
    ``p2p_protocol`` is the P2P link protocol version of a bridge's firmware (None: the device
    keeps its factory protocol). ``behaviours`` are names of emulated behaviours (the emulator's
    defect names) the firmware has; empty means healthy.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    firmware_version: Annotated[int, Field(ge=0, le=0xFFFFFFFF)]
    stack_version: Annotated[int, Field(ge=0, le=0xFFFF)]
    p2p_protocol: Annotated[int, Field(ge=1, le=255)] | None = None
    behaviours: tuple[str, ...] = ()

    @field_validator("behaviours", mode="before")
    @classmethod
    def _as_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("behaviours")
    @classmethod
    def _check_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > MAX_BEHAVIOURS:
            raise ValueError(f"at most {MAX_BEHAVIOURS} behaviours, got {len(value)}")
        for name in value:
            if len(name) > MAX_BEHAVIOUR_LENGTH or not BEHAVIOUR_NAME.match(name):
                raise ValueError(
                    f"behaviour {name!r} is not a name of lowercase letters, digits and single hyphens"
                    f" (at most {MAX_BEHAVIOUR_LENGTH} characters)"
                )
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"behaviour {duplicates[0]!r} is named twice")
        return value

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON-ready values, in the order the file stores them."""
        return {
            "firmware_version": self.firmware_version,
            "stack_version": self.stack_version,
            "p2p_protocol": self.p2p_protocol,
            "behaviours": list(self.behaviours),
        }


def make_manifest(
    *,
    firmware_version: int,
    stack_version: int,
    p2p_protocol: int | None = None,
    behaviours: list[str] | tuple[str, ...] = (),
) -> FirmwareManifest:
    """A manifest from Python values; a bad value raises `BadInputError` naming the field."""
    try:
        return FirmwareManifest(
            firmware_version=firmware_version,
            stack_version=stack_version,
            p2p_protocol=p2p_protocol,
            behaviours=tuple(behaviours),
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "manifest"
        raise BadInputError(
            error["msg"].removeprefix("Value error, "), field=f"manifest.{field}", value=error.get("input")
        ) from None


def _json_line(manifest: FirmwareManifest) -> bytes:
    return json.dumps(manifest.to_json(), separators=(",", ":")).encode("utf-8") + b"\n"


def manifest_length(manifest: FirmwareManifest) -> int:
    """How many payload bytes the manifest takes before the rest of the firmware."""
    return len(MAGIC) + DIGEST_LINE_LENGTH + len(_json_line(manifest))


def encode_payload(manifest: FirmwareManifest, firmware: bytes) -> bytes:
    """The firmware payload: the manifest (magic, digest, JSON line) followed by ``firmware``."""
    line = _json_line(manifest)
    if len(line) > MAX_JSON_LINE:
        raise BadInputError(
            f"is {len(line)} bytes as JSON, more than the {MAX_JSON_LINE} a manifest line may have",
            field="manifest",
        )
    covered = line + bytes(firmware)
    digest = hashlib.sha256(covered).hexdigest().encode("ascii")
    return MAGIC + DIGEST_PREFIX + digest + b"\n" + covered


@dataclass(frozen=True)
class ManifestReading:
    """What `read_manifest` found at the start of a payload.

    ``present``: the payload starts with the magic line. ``manifest``: the manifest, if its JSON
    line could be read. ``problem``: why the manifest is unusable or the payload fails its digest
    (None when all is well). ``firmware_offset``: where the rest of the firmware starts in the payload.
    """

    present: bool
    manifest: FirmwareManifest | None = None
    problem: str | None = None
    firmware_offset: int = 0

    def to_json(self) -> dict[str, Any] | None:
        """JSON-ready description for ``harness ota inspect --json`` (None when there is no manifest)."""
        if not self.present:
            return None
        return {
            "valid": self.problem is None,
            "problem": self.problem,
            "length": self.firmware_offset,
            **(self.manifest.to_json() if self.manifest is not None else {}),
        }


def read_manifest(payload: bytes) -> ManifestReading:
    """Read the manifest at the start of a firmware payload; never raises on bad bytes.

    Offsets in problems count from the start of the payload.
    """
    payload = bytes(payload)
    if not payload.startswith(MAGIC):
        return ManifestReading(present=False)
    digest_at = len(MAGIC)
    digest_line = payload[digest_at : digest_at + DIGEST_LINE_LENGTH]
    hex_digits = digest_line[len(DIGEST_PREFIX) : -1]
    if (
        len(digest_line) != DIGEST_LINE_LENGTH
        or not digest_line.startswith(DIGEST_PREFIX)
        or not digest_line.endswith(b"\n")
        or re.fullmatch(rb"[0-9a-f]{64}", hex_digits) is None
    ):
        return ManifestReading(
            present=True,
            problem=f"digest line at payload offset {digest_at} is not 'sha256=' and 64 lowercase hex digits",
        )
    json_at = digest_at + DIGEST_LINE_LENGTH
    end = payload.find(b"\n", json_at, json_at + MAX_JSON_LINE)
    if end < 0:
        return ManifestReading(
            present=True,
            problem=f"JSON line at payload offset {json_at} has no end of line within {MAX_JSON_LINE} bytes",
        )
    firmware_offset = end + 1
    try:
        manifest = FirmwareManifest.model_validate_json(payload[json_at:end])
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        where = f"field '{field}' " if field else ""
        got = f" (got {error['input']!r})" if field and "input" in error else ""
        message = error["msg"].removeprefix("Value error, ")
        return ManifestReading(
            present=True,
            problem=f"JSON line at payload offset {json_at}: {where}{message}{got}",
            firmware_offset=firmware_offset,
        )
    actual = hashlib.sha256(payload[json_at:]).hexdigest()
    if actual != hex_digits.decode("ascii"):
        return ManifestReading(
            present=True,
            manifest=manifest,
            problem=f"payload digest mismatch: manifest says sha256 {hex_digits.decode('ascii')},"
            f" the {len(payload) - json_at} bytes after the digest line hash to {actual}",
            firmware_offset=firmware_offset,
        )
    return ManifestReading(present=True, manifest=manifest, firmware_offset=firmware_offset)
