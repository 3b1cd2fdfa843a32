"""``harness ota``: build, inspect, verify and damage ZigBee OTA files from the command line.

Exit status: 0 success, 1 ``verify`` found a mismatch, 3 bad input (missing or malformed file,
bad option value); bad input prints one paragraph starting with ``error:`` to stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperCommand

from harness.errors import BadInputError
from harness.ota import mutate as mutations
from harness.ota.image import (
    FORMS,
    OtaImage,
    ParsedImage,
    build_image,
    build_image_of_total_size,
    make_payload,
    parse_image,
)
from harness.ota.manifest import make_manifest
from harness.ota.signing import SIGNATURE_LENGTH, load_signing_key, sign_image

EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 3
DEFAULT_PAYLOAD_SIZE = 1024

_UINT8 = 0xFF
_UINT16 = 0xFFFF
_UINT32 = 0xFFFFFFFF

app = typer.Typer(
    help="Build, inspect, verify and damage ZigBee OTA upgrade files, in zigbee (sub-elements) "
    "or gbcs (opaque body) form.",
    no_args_is_help=True,
    add_completion=False,
)


class OptionValueError(BadInputError):
    """A command-line option has a value the command cannot use."""

    def __init__(self, option: str, value: str, reason: str) -> None:
        super().__init__(reason, field=option, value=value)
        self.args = (f"option {option} value {value!r} {reason}",)


def _fail(message: str) -> typer.Exit:
    # One paragraph, so scripts and people can grep the first line and see everything.
    typer.echo("error: " + " ".join(message.split()), err=True)
    return typer.Exit(EXIT_BAD_INPUT)


class _Command(TyperCommand):
    """Reports usage errors (missing option, unknown option) as bad input: ``error:`` and status 3."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            hint = f"see '{ctx.command_path} --help'"
            raise _fail(f"{exc.format_message()} ({hint})") from None


@contextlib.contextmanager
def _bad_input() -> Iterator[None]:
    try:
        yield
    except BadInputError as exc:
        raise _fail(str(exc)) from None


def parse_int(text: str, option: str, maximum: int) -> int:
    """Read an option's integer written in hex (``0x1234``) or decimal (``4660``), from 0 to ``maximum``."""
    cleaned = text.strip().replace("_", "")
    try:
        if cleaned.lower().startswith("0x"):
            value = int(cleaned[2:], 16)
        elif cleaned.isdigit():
            value = int(cleaned, 10)
        else:
            raise ValueError(cleaned)
    except ValueError:
        raise OptionValueError(
            option, text, "is not an integer: write hex as 0x1234 or decimal as 4660"
        ) from None
    if value > maximum:
        raise OptionValueError(
            option, text, f"is out of range: the largest allowed is 0x{maximum:X} ({maximum})"
        )
    return value


def _parse_optional_int(text: str | None, option: str, maximum: int) -> int | None:
    return None if text is None else parse_int(text, option, maximum)


def parse_ieee(text: str, option: str) -> bytes:
    """Read an IEEE address written most significant byte first (``00:0d:6f:...``) into its 8 file bytes."""
    digits = text.replace(":", "").replace("-", "").strip()
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise OptionValueError(
            option, text, "is not an IEEE address: write 16 hex digits, e.g. 00:0d:6f:00:0a:bc:de:f1"
        )
    return raw[::-1]


def _check_form_option(form: str | None, option: str = "--form") -> str | None:
    if form is not None and form not in FORMS:
        raise OptionValueError(option, form, "is not a form: use zigbee or gbcs")
    return form


def _read_input(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read the {what}: {exc.strerror or exc}", file=str(path)) from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BadInputError(f"cannot write the file: {exc.strerror or exc}", file=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o644)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise BadInputError(f"cannot write the file: {exc.strerror or exc}", file=str(path)) from None


def _report_written(path: Path, data: bytes, what: str) -> None:
    typer.echo(f"wrote {path} ({what})")
    typer.echo(f"size    {len(data)} bytes")
    typer.echo(f"sha256  {hashlib.sha256(data).hexdigest()}")


@app.command(cls=_Command)
def build(
    output: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUT", help="Where to write the OTA file (written atomically).", show_default=False
        ),
    ],
    manufacturer_code: Annotated[
        str,
        typer.Option(
            "--manufacturer-code",
            metavar="INT",
            help="Manufacturer code, hex (0x1234) or decimal.",
            show_default=False,
        ),
    ],
    image_type: Annotated[
        str,
        typer.Option(
            "--image-type", metavar="INT", help="Image type, hex (0x0001) or decimal.", show_default=False
        ),
    ],
    file_version: Annotated[
        str,
        typer.Option(
            "--file-version",
            metavar="INT",
            help="File version, hex (0x01020000) or decimal.",
            show_default=False,
        ),
    ],
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            metavar="BYTES",
            help="Total file size in bytes; a pseudo-random payload (see --seed) fills it exactly.",
            show_default=False,
        ),
    ] = None,
    payload: Annotated[
        Path | None,
        typer.Option(
            "--payload",
            metavar="FILE",
            help=f"File whose bytes are the firmware payload. Without --size or --payload, "
            f"a {DEFAULT_PAYLOAD_SIZE}-byte pseudo-random payload is used.",
            show_default=False,
        ),
    ] = None,
    stack_version: Annotated[
        str,
        typer.Option(
            "--stack-version",
            metavar="INT",
            help="ZigBee stack version: the header field, and the firmware manifest's stack_version.",
        ),
    ] = "2",
    p2p_protocol: Annotated[
        str | None,
        typer.Option(
            "--p2p-protocol",
            metavar="INT",
            help="Firmware manifest: P2P link protocol version (1-255) of a bridge's firmware.",
            show_default=False,
        ),
    ] = None,
    behaviour: Annotated[
        list[str] | None,
        typer.Option(
            "--behaviour",
            metavar="NAME",
            help="Firmware manifest: an emulated behaviour (defect name, see docs/testbed.md) the "
            "firmware has; repeatable. None: healthy firmware.",
            show_default=False,
        ),
    ] = None,
    no_manifest: Annotated[
        bool,
        typer.Option(
            "--no-manifest",
            help="Write no firmware manifest (docs/firmware-manifest.md) before the generated payload. "
            "A --payload FILE never gets one.",
        ),
    ] = False,
    header_string: Annotated[
        str, typer.Option("--header-string", metavar="TEXT", help="Header string, up to 32 bytes of UTF-8.")
    ] = "",
    form: Annotated[
        str,
        typer.Option(
            "--form",
            metavar="zigbee|gbcs",
            help="zigbee: payload in an upgrade-image sub-element; gbcs: opaque body.",
        ),
    ] = "zigbee",
    min_hw: Annotated[
        str | None,
        typer.Option(
            "--min-hw", metavar="INT", help="Minimum hardware version (needs --max-hw).", show_default=False
        ),
    ] = None,
    max_hw: Annotated[
        str | None,
        typer.Option(
            "--max-hw", metavar="INT", help="Maximum hardware version (needs --min-hw).", show_default=False
        ),
    ] = None,
    security_credential_version: Annotated[
        str | None,
        typer.Option(
            "--security-credential-version",
            metavar="INT",
            help="Security credential version field.",
            show_default=False,
        ),
    ] = None,
    destination: Annotated[
        str | None,
        typer.Option(
            "--destination",
            metavar="IEEE",
            help="IEEE address of the one device this file is for, e.g. 00:0d:6f:00:0a:bc:de:f1.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        str,
        typer.Option("--seed", metavar="INT", help="Seed of the generated payload: same seed, same bytes."),
    ] = "0",
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            metavar="PEM",
            help="Sign with this ECDSA P-256 private key (unencrypted PEM): a signature sub-element "
            "(tag 0x0001) ends the file (docs/signing.md); zigbee form only. --size counts it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build an OTA file and print its path, size and SHA-256."""
    with _bad_input():
        if size is not None and payload is not None:
            raise OptionValueError("--size", size, "cannot be combined with --payload: give one of them")
        if (min_hw is None) != (max_hw is None):
            option, value = ("--min-hw", min_hw) if min_hw is not None else ("--max-hw", max_hw)
            raise OptionValueError(option, value or "", "needs its partner: give both --min-hw and --max-hw")
        checked_form = _check_form_option(form) or "zigbee"
        fields: dict[str, Any] = {
            "manufacturer_code": parse_int(manufacturer_code, "--manufacturer-code", _UINT16),
            "image_type": parse_int(image_type, "--image-type", _UINT16),
            "file_version": parse_int(file_version, "--file-version", _UINT32),
            "stack_version": parse_int(stack_version, "--stack-version", _UINT16),
            "header_string": header_string,
            "form": checked_form,
            "minimum_hardware_version": _parse_optional_int(min_hw, "--min-hw", _UINT16),
            "maximum_hardware_version": _parse_optional_int(max_hw, "--max-hw", _UINT16),
            "security_credential_version": _parse_optional_int(
                security_credential_version, "--security-credential-version", _UINT8
            ),
            "upgrade_file_destination": None
            if destination is None
            else parse_ieee(destination, "--destination"),
        }
        seed_value = parse_int(seed, "--seed", _UINT32)
        if len(header_string.encode("utf-8", "surrogateescape")) > 32:
            raise OptionValueError("--header-string", header_string, "is longer than 32 bytes in UTF-8")
        manifest_options = [("--p2p-protocol", p2p_protocol)] if p2p_protocol is not None else []
        manifest_options += [("--behaviour", name) for name in behaviour or []]
        if manifest_options and (no_manifest or payload is not None):
            option, value = manifest_options[0]
            clash = "--no-manifest" if no_manifest else "--payload (its bytes are used as they are)"
            raise OptionValueError(option, value, f"sets the firmware manifest, which {clash} leaves out")
        if not no_manifest and payload is None:
            protocol = _parse_optional_int(p2p_protocol, "--p2p-protocol", _UINT8)
            if protocol == 0:
                raise OptionValueError("--p2p-protocol", p2p_protocol or "", "must be from 1 to 255")
            try:
                fields["manifest"] = make_manifest(
                    firmware_version=fields["file_version"],
                    stack_version=fields["stack_version"],
                    p2p_protocol=protocol,
                    behaviours=list(behaviour or []),
                )
            except BadInputError as exc:
                bad = exc.value if isinstance(exc.value, str) else ", ".join(behaviour or [])
                raise OptionValueError("--behaviour", bad, exc.reason) from None
        key = None
        if sign_key is not None:
            if checked_form != "zigbee":
                raise OptionValueError(
                    "--sign-key", str(sign_key), "needs --form zigbee: a gbcs body has no sub-elements"
                )
            try:
                key = load_signing_key(sign_key)
            except BadInputError as exc:
                raise OptionValueError("--sign-key", str(sign_key), exc.reason) from None
        if size is not None:
            total = parse_int(size, "--size", _UINT32)
            if key is not None:
                total -= SIGNATURE_LENGTH + 6
            try:
                image = build_image_of_total_size(total, seed=seed_value, **fields)
            except BadInputError as exc:
                if exc.field != "size":
                    raise
                raise OptionValueError("--size", size, exc.reason) from None
        else:
            body = (
                make_payload(DEFAULT_PAYLOAD_SIZE, seed_value)
                if payload is None
                else _read_input(payload, "payload file")
            )
            image = build_image(payload=body, **fields)
        if key is not None:
            image = sign_image(image, key)
        data = image.serialize()
        write_atomically(output, data)
    _report_written(output, data, f"{image.form} form{_manifest_note(image)}")


def _manifest_note(image: OtaImage) -> str:
    manifest = image.manifest.manifest
    if manifest is None:
        return ""
    behaviours = ", ".join(manifest.behaviours) or "none"
    protocol = "" if manifest.p2p_protocol is None else f", p2p protocol {manifest.p2p_protocol}"
    return f", firmware manifest: stack {manifest.stack_version}{protocol}, behaviours {behaviours}"


def _load(file: Path, form: str | None) -> tuple[ParsedImage, bytes]:
    data = _read_input(file, "OTA file")
    return parse_image(data, source=str(file), form=_check_form_option(form)), data


def _describe(file: Path, parsed: ParsedImage, raw: bytes) -> dict[str, Any]:
    # "file" is what is on disk; "size" and "sha256" are the OTA image itself, which leaves out
    # any trailing bytes past the total image size.
    return {
        "file": {"path": str(file), "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()},
        **parsed.image.to_json(),
        "warnings": list(parsed.warnings),
    }


def _print_summary(description: dict[str, Any]) -> None:
    console = Console(highlight=False)
    on_disk = description["file"]
    table = Table(title=Text(f"OTA file {on_disk['path']}"), show_header=True)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, object]] = [
        ("form", description["form"]),
        ("file size", f"{on_disk['size']} bytes"),
        ("file sha256", on_disk["sha256"]),
    ]
    if description["sha256"] != on_disk["sha256"]:
        rows += [("image size", f"{description['size']} bytes"), ("image sha256", description["sha256"])]
    rows += [(name, value) for name, value in description["header"].items() if value is not None]
    rows += [
        ("payload size", f"{description['payload_size']} bytes"),
        ("payload sha256", description["payload_sha256"]),
    ]
    manifest = description.get("manifest")
    if manifest is not None:
        rows.append(("manifest", "valid" if manifest["valid"] else f"INVALID: {manifest['problem']}"))
        for key in ("firmware_version", "stack_version", "p2p_protocol", "behaviours"):
            if key in manifest:
                value = manifest[key]
                if key == "firmware_version":
                    value = f"0x{value:08X}"
                elif key == "behaviours":
                    value = ", ".join(value) or "none (healthy)"
                rows.append((f"manifest {key}", value))
    for name, value in rows:
        table.add_row(Text(name), Text(str(value)))
    console.print(table)
    if description["sub_elements"]:
        elements = Table(title=Text("sub-elements"))
        for column in ("tag", "name", "offset", "length", "sha256"):
            elements.add_column(column, overflow="fold")
        for element in description["sub_elements"]:
            elements.add_row(
                *(Text(str(element[key])) for key in ("tag", "name", "offset", "length", "sha256"))
            )
        console.print(elements)
    elif "body" in description:
        body = description["body"]
        console.print(
            Text(f"opaque body: {body['length']} bytes at offset {body['offset']}, sha256 {body['sha256']}")
        )
    for warning in description["warnings"]:
        console.print(Text(f"warning: {warning}", style="yellow"))


@app.command(cls=_Command)
def inspect(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The OTA file to read.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the header, sub-elements and warnings as JSON.")
    ] = False,
    form: Annotated[
        str | None,
        typer.Option(
            "--form",
            metavar="zigbee|gbcs",
            help="Read as zigbee or gbcs instead of detecting the form.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show an OTA file's header, sub-elements or body, hashes and warnings."""
    with _bad_input():
        parsed, raw = _load(file, form)
    description = _describe(file, parsed, raw)
    if as_json:
        typer.echo(json.dumps(description, indent=2))
    else:
        _print_summary(description)


@app.command(cls=_Command)
def verify(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The OTA file to check.", show_default=False)],
    manufacturer_code: Annotated[
        str | None,
        typer.Option(
            "--manufacturer-code",
            metavar="INT",
            help="Expected manufacturer code (hex or decimal).",
            show_default=False,
        ),
    ] = None,
    image_type: Annotated[
        str | None,
        typer.Option(
            "--image-type", metavar="INT", help="Expected image type (hex or decimal).", show_default=False
        ),
    ] = None,
    file_version: Annotated[
        str | None,
        typer.Option(
            "--file-version",
            metavar="INT",
            help="Expected file version (hex or decimal).",
            show_default=False,
        ),
    ] = None,
    form: Annotated[
        str | None,
        typer.Option(
            "--form", metavar="zigbee|gbcs", help="Expected form: zigbee or gbcs.", show_default=False
        ),
    ] = None,
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256",
            metavar="HEX",
            help="Expected SHA-256 of the whole file (64 hex digits).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check that an OTA file parses and matches the expected values; exit 1 on any mismatch.

    A firmware manifest (docs/firmware-manifest.md) that is unreadable, names another version or
    fails its digest is a mismatch too.
    """
    with _bad_input():
        expected: list[tuple[str, str]] = []
        for name, text, maximum, width in (
            ("manufacturer_code", manufacturer_code, _UINT16, 4),
            ("image_type", image_type, _UINT16, 4),
            ("file_version", file_version, _UINT32, 8),
        ):
            if text is not None:
                value = parse_int(text, "--" + name.replace("_", "-"), maximum)
                expected.append((name, f"0x{value:0{width}X}"))
        _check_form_option(form)
        if sha256 is not None and (
            len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)
        ):
            raise OptionValueError("--sha256", sha256, "is not a SHA-256: write 64 hex digits")
        parsed, raw = _load(file, None)
    description = _describe(file, parsed, raw)
    mismatches = [
        f"{file}: {name} is {description['header'][name]}, expected {want}"
        for name, want in expected
        if description["header"][name] != want
    ]
    if form is not None and description["form"] != form:
        mismatches.append(f"{file}: form is {description['form']}, expected {form}")
    manifest = description["manifest"]
    if manifest is not None and not manifest["valid"]:
        mismatches.append(f"{file}: firmware manifest: {manifest['problem']}")
    actual_sha256 = description["file"]["sha256"]
    if sha256 is not None and actual_sha256 != sha256.lower():
        mismatches.append(f"{file}: sha256 is {actual_sha256}, expected {sha256.lower()}")
    for warning in parsed.warnings:
        if not warning.startswith("firmware manifest: "):  # reported as a mismatch below
            typer.echo(f"warning: {warning}")
    for line in mismatches:
        typer.echo(f"mismatch: {line}")
    if mismatches:
        raise typer.Exit(EXIT_MISMATCH)
    header = description["header"]
    typer.echo(
        f"ok: {file} ({description['form']} form, manufacturer_code {header['manufacturer_code']},"
        f" image_type {header['image_type']}, file_version {header['file_version']})"
    )


def _parse_assignment(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or name not in mutations.HEADER_FIELDS:
        raise OptionValueError(
            "--set", text, f"is not FIELD=VALUE with FIELD one of {', '.join(mutations.HEADER_FIELDS)}"
        )
    return name, parse_int(value, "--set", _UINT32)


@app.command(cls=_Command)
def mutate(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE", help="The OTA file to start from (need not be valid).", show_default=False
        ),
    ],
    output: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="Where to write the damaged file.", show_default=False)
    ],
    set_field: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="Overwrite a header field, e.g. --set manufacturer_code=0x1235; repeatable.",
            show_default=False,
        ),
    ] = None,
    flip_bit: Annotated[
        list[str] | None,
        typer.Option(
            "--flip-bit",
            metavar="BIT",
            help="Invert the bit at this bit offset (byte * 8 + bit); repeatable.",
            show_default=False,
        ),
    ] = None,
    truncate: Annotated[
        str | None,
        typer.Option(
            "--truncate", metavar="BYTES", help="Keep only this many leading bytes.", show_default=False
        ),
    ] = None,
    append: Annotated[
        str | None,
        typer.Option(
            "--append",
            metavar="BYTES",
            help="Add this many pseudo-random bytes at the end (see --seed).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[str, typer.Option("--seed", metavar="INT", help="Seed of the appended bytes.")] = "0",
) -> None:
    """Write a damaged copy of an OTA file: applies --set, then --flip-bit, then --truncate, then --append."""
    with _bad_input():
        assignments = [_parse_assignment(text) for text in set_field or []]
        bits = [parse_int(text, "--flip-bit", _UINT32 * 8) for text in flip_bit or []]
        keep = _parse_optional_int(truncate, "--truncate", _UINT32)
        extra = _parse_optional_int(append, "--append", _UINT32)
        seed_value = parse_int(seed, "--seed", _UINT32)
        data = _read_input(source, "OTA file")
        done: list[str] = []
        for name, value in assignments:
            data = mutations.set_header_field(data, name, value)
            done.append(f"{name}=0x{value:X}")
        for bit in bits:
            data = mutations.flip_bit(data, bit)
            done.append(f"bit {bit} flipped")
        if keep is not None:
            data = mutations.truncate(data, keep)
            done.append(f"truncated to {keep} bytes")
        if extra is not None:
            data = mutations.append(data, make_payload(extra, seed_value))
            done.append(f"{extra} bytes appended")
        write_atomically(output, data)
    _report_written(output, data, ", ".join(done) or "unchanged copy")
