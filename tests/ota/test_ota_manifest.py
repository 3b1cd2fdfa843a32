"""The firmware manifest (docs/firmware-manifest.md): written by the harness, read back, damaged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from harness.errors import BadInputError
from harness.ota import mutate
from harness.ota.cli import app
from harness.ota.image import build_image, build_image_of_total_size, load_image, parse_image
from harness.ota.manifest import (
    DIGEST_LINE_LENGTH,
    MAGIC,
    FirmwareManifest,
    encode_payload,
    make_manifest,
    manifest_length,
    read_manifest,
)

VERSION = 0x01020000
IDENTITY = {"manufacturer_code": 0x1234, "image_type": 0x0B01, "file_version": VERSION}
MANIFEST = make_manifest(
    firmware_version=VERSION, stack_version=3, p2p_protocol=2, behaviours=["p2p-protocol-skew"]
)
runner = CliRunner()

FUZZ = settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=300, deadline=None, database=None)


def test_payload_layout_is_magic_digest_json_then_firmware() -> None:
    payload = encode_payload(MANIFEST, b"\xaa" * 10)
    assert payload.startswith(MAGIC + b"sha256=")
    json_at = len(MAGIC) + DIGEST_LINE_LENGTH
    digest = payload[len(MAGIC) + 7 : json_at - 1].decode()
    assert digest == hashlib.sha256(payload[json_at:]).hexdigest()
    line_end = payload.index(b"\n", json_at)
    assert json.loads(payload[json_at:line_end]) == {
        "firmware_version": VERSION,
        "stack_version": 3,
        "p2p_protocol": 2,
        "behaviours": ["p2p-protocol-skew"],
    }
    assert payload[line_end + 1 :] == b"\xaa" * 10
    assert manifest_length(MANIFEST) == line_end + 1


@pytest.mark.parametrize("form", ["zigbee", "gbcs"])
@pytest.mark.parametrize("size", [4096, 200 * 1024])
def test_requested_total_size_still_holds_with_a_manifest(form: str, size: int) -> None:
    image = build_image_of_total_size(size, form=form, manifest=MANIFEST, **IDENTITY)
    data = image.serialize()
    assert len(data) == size
    reading = parse_image(data).image.manifest
    assert (reading.present, reading.problem, reading.manifest) == (True, None, MANIFEST)
    assert parse_image(data).warnings == []


def test_size_too_small_for_the_manifest_names_the_size() -> None:
    smallest = 56 + 6 + manifest_length(MANIFEST)
    assert len(build_image_of_total_size(smallest, manifest=MANIFEST, **IDENTITY).serialize()) == smallest
    with pytest.raises(BadInputError, match="firmware manifest") as caught:
        build_image_of_total_size(smallest - 1, manifest=MANIFEST, **IDENTITY)
    assert caught.value.field == "size"


def test_manifest_must_name_the_image_version() -> None:
    with pytest.raises(BadInputError) as caught:
        build_image(payload=b"", manifest=MANIFEST, **{**IDENTITY, "file_version": VERSION + 1})
    assert caught.value.field == "manifest.firmware_version"


def test_image_without_manifest_has_none() -> None:
    image = build_image(payload=b"vendor firmware", **IDENTITY)
    assert not image.manifest.present
    assert image.to_json()["manifest"] is None


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"behaviours": ["Bad Name"]}, "manifest.behaviours"),
        ({"behaviours": ["x", "x"]}, "manifest.behaviours"),
        ({"p2p_protocol": 0}, "manifest.p2p_protocol"),
        ({"stack_version": 0x10000}, "manifest.stack_version"),
        ({"firmware_version": -1}, "manifest.firmware_version"),
    ],
)
def test_bad_manifest_values_name_the_field(values: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"firmware_version": VERSION, "stack_version": 2, **values}
    with pytest.raises(BadInputError) as caught:
        make_manifest(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def _file_with_manifest(form: str = "zigbee") -> bytes:
    return build_image_of_total_size(2048, form=form, manifest=MANIFEST, **IDENTITY).serialize()


@pytest.mark.parametrize("form", ["zigbee", "gbcs"])
def test_a_flipped_bit_anywhere_after_the_magic_is_a_problem(form: str) -> None:
    data = _file_with_manifest(form)
    start = 56 + (6 if form == "zigbee" else 0)
    for offset in range(start + len(MAGIC), len(data), 37):
        damaged = mutate.flip_bit(data, offset * 8 + offset % 8)
        parsed = parse_image(damaged, form=form)
        problem = parsed.image.manifest.problem
        assert problem is not None, f"flip at byte {offset} not noticed"
        assert any(w.startswith("firmware manifest: ") for w in parsed.warnings)


def test_manifest_naming_another_version_than_the_header_is_a_problem() -> None:
    data = mutate.set_header_field(_file_with_manifest(), "file_version", VERSION + 1)
    problem = parse_image(data).image.manifest.problem
    assert problem is not None and "is not the header's file version 0x01020001" in problem


@pytest.mark.parametrize(
    ("json_line", "needle"),
    [
        (b"not json", "JSON line at payload offset 83"),
        (b'{"firmware_version": 1}', "field 'stack_version'"),
        (b'{"firmware_version": "1", "stack_version": 2}', "field 'firmware_version'"),
        (b'{"firmware_version": true, "stack_version": 2}', "field 'firmware_version'"),
        (b'{"firmware_version": 1, "stack_version": 2, "behaviours": "x"}', "field 'behaviours'"),
        (b"[]", "JSON line at payload offset 83"),
    ],
)
def test_malformed_json_line_is_described(json_line: bytes, needle: str) -> None:
    covered = json_line + b"\nfirmware"
    payload = MAGIC + b"sha256=" + hashlib.sha256(covered).hexdigest().encode() + b"\n" + covered
    reading = read_manifest(payload)
    assert reading.present and reading.manifest is None
    assert reading.problem is not None and needle in reading.problem


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    covered = b'{"firmware_version":1,"stack_version":2,"signed_by":"lab"}\n'
    payload = MAGIC + b"sha256=" + hashlib.sha256(covered).hexdigest().encode() + b"\n" + covered
    reading = read_manifest(payload)
    assert reading.problem is None
    assert reading.manifest == FirmwareManifest(firmware_version=1, stack_version=2)


@FUZZ
@given(st.binary(max_size=300))
def test_reading_never_raises_on_arbitrary_bytes_after_the_magic(tail: bytes) -> None:
    reading = read_manifest(MAGIC + tail)
    assert reading.present
    assert reading.problem is not None or reading.manifest is not None


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 8 * 400 - 1))
def test_reading_never_raises_on_damaged_manifests(firmware: bytes, bit: int) -> None:
    payload = encode_payload(MANIFEST, firmware)
    damaged = mutate.flip_bit(payload, bit % (len(payload) * 8))
    reading = read_manifest(damaged)
    if damaged.startswith(MAGIC):
        assert reading.problem is not None
    else:
        assert not reading.present


behaviour_names = st.from_regex(r"\A[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}\Z")


@ROUND_TRIP
@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFF),
    st.none() | st.integers(1, 255),
    st.lists(behaviour_names, unique=True, max_size=6),
    st.binary(max_size=200),
)
def test_every_manifest_round_trips(
    version: int, stack: int, protocol: int | None, behaviours: list[str], firmware: bytes
) -> None:
    manifest = make_manifest(
        firmware_version=version, stack_version=stack, p2p_protocol=protocol, behaviours=behaviours
    )
    payload = encode_payload(manifest, firmware)
    reading = read_manifest(payload)
    assert (reading.manifest, reading.problem) == (manifest, None)
    assert payload[reading.firmware_offset :] == firmware


# -- the command line ---------------------------------------------------------------------------

BUILD = ["--manufacturer-code", "0x1234", "--image-type", "0x0B01", "--file-version", "0x01020000"]


def _run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_build_writes_the_manifest_and_inspect_shows_it(tmp_path: Path) -> None:
    path = tmp_path / "b1.ota"
    code, out, _ = _run(
        "build", path, *BUILD, "--size", "4096", "--stack-version", "3", "--p2p-protocol", "2",
        "--behaviour", "p2p-protocol-skew", "--behaviour", "slow-block-requests",
    )  # fmt: skip
    assert code == 0, out
    assert "firmware manifest: stack 3, p2p protocol 2" in out
    assert len(path.read_bytes()) == 4096
    code, out, _ = _run("inspect", path, "--json")
    assert code == 0
    assert json.loads(out)["manifest"] == {
        "valid": True,
        "problem": None,
        "length": manifest_length(load_image(path).image.manifest.manifest),  # type: ignore[arg-type]
        "firmware_version": 0x01020000,
        "stack_version": 3,
        "p2p_protocol": 2,
        "behaviours": ["p2p-protocol-skew", "slow-block-requests"],
    }
    code, out, _ = _run("inspect", path)
    assert code == 0
    assert "p2p-protocol-skew, slow-block-requests" in out
    assert "manifest p2p_protocol" in out


def test_cli_build_default_manifest_is_healthy_and_no_manifest_leaves_it_out(tmp_path: Path) -> None:
    _run("build", tmp_path / "a.ota", *BUILD)
    _run("build", tmp_path / "b.ota", *BUILD, "--no-manifest")
    healthy = load_image(tmp_path / "a.ota").image.manifest.manifest
    assert healthy == FirmwareManifest(firmware_version=0x01020000, stack_version=2)
    assert not load_image(tmp_path / "b.ota").image.manifest.present
    assert json.loads(_run("inspect", tmp_path / "b.ota", "--json")[1])["manifest"] is None


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--behaviour", "Not A Name"], ["--behaviour", "'Not A Name'", "lowercase"]),
        (["--p2p-protocol", "0"], ["--p2p-protocol", "1 to 255"]),
        (["--p2p-protocol", "256"], ["--p2p-protocol", "out of range"]),
        (["--behaviour", "x", "--no-manifest"], ["--behaviour", "--no-manifest"]),
        (["--p2p-protocol", "2", "--payload", "fw.bin"], ["--p2p-protocol", "--payload"]),
    ],
)
def test_cli_bad_manifest_options_are_bad_input(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    code, _, err = _run("build", tmp_path / "x.ota", *BUILD, *args)
    assert code == 3
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "x.ota").exists()


def test_cli_verify_fails_a_corrupted_body(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.ota", tmp_path / "bad.ota"
    _run("build", good, *BUILD, "--size", "4096")
    assert _run("verify", good)[0] == 0
    assert _run("mutate", good, bad, "--flip-bit", str(3000 * 8))[0] == 0
    code, out, _ = _run("verify", bad)
    assert code == 1
    assert f"mismatch: {bad}: firmware manifest: payload digest mismatch" in out
