"""``harness ota`` commands, run in-process with typer's CliRunner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from harness.ota.cli import app, parse_ieee, parse_int
from harness.ota.image import load_image, make_payload

runner = CliRunner()

BUILD = ["--manufacturer-code", "0x1234", "--image-type", "0x0001", "--file-version", "0x01020000"]


def _run(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _assert_bad_input(result: Result, *needles: str) -> None:
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, "one paragraph"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr


def _build(path: Path, *extra: str | Path) -> Result:
    result = _run("build", path, *BUILD, *extra)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("form", ["zigbee", "gbcs"])
def test_build_then_inspect_json_round_trip(tmp_path: Path, form: str) -> None:
    path = tmp_path / "fw.ota"
    built = _build(
        path, "--size", "4096", "--form", form, "--min-hw", "0x0101", "--max-hw", "515",
        "--header-string", "ALTHAN B2", "--stack-version", "2", "--seed", "9",
    )  # fmt: skip
    data = path.read_bytes()
    assert len(data) == 4096
    assert str(path) in built.stdout
    assert "4096 bytes" in built.stdout
    assert hashlib.sha256(data).hexdigest() in built.stdout

    result = _run("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["form"] == form
    assert described["file"] == {"path": str(path), "size": 4096, "sha256": hashlib.sha256(data).hexdigest()}
    assert described["sha256"] == hashlib.sha256(data).hexdigest()
    assert described["warnings"] == []
    header = described["header"]
    assert header["manufacturer_code"] == "0x1234"
    assert header["image_type"] == "0x0001"
    assert header["file_version"] == "0x01020000"
    assert header["minimum_hardware_version"] == "0x0101"
    assert header["maximum_hardware_version"] == "0x0203"
    assert header["header_string"] == "ALTHAN B2"
    assert header["total_image_size"] == 4096
    assert described == {"file": described["file"], **load_image(path).image.to_json(), "warnings": []}


def test_build_is_reproducible_per_seed(tmp_path: Path) -> None:
    _build(tmp_path / "a.ota", "--size", "1000", "--seed", "1")
    _build(tmp_path / "b.ota", "--size", "1000", "--seed", "1")
    _build(tmp_path / "c.ota", "--size", "1000", "--seed", "2")
    assert (tmp_path / "a.ota").read_bytes() == (tmp_path / "b.ota").read_bytes()
    assert (tmp_path / "a.ota").read_bytes() != (tmp_path / "c.ota").read_bytes()


def test_build_default_payload_and_decimal_values(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    result = _run(
        "build", path, "--manufacturer-code", "4660", "--image-type", "1", "--file-version", "16908288"
    )
    assert result.exit_code == 0, result.output
    image = load_image(path).image
    assert (image.header.manufacturer_code, image.header.file_version) == (0x1234, 0x01020000)
    # The generated firmware: a manifest, then the 1024 pseudo-random bytes.
    reading = image.manifest
    assert reading.manifest is not None and reading.problem is None
    assert image.payload[reading.firmware_offset :] == make_payload(1024, 0)


def test_build_default_payload_without_manifest(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path, "--no-manifest")
    image = load_image(path).image
    assert image.payload == make_payload(1024, 0)
    assert not image.manifest.present


def test_build_with_payload_file_and_device_specific_fields(tmp_path: Path) -> None:
    payload = tmp_path / "firmware.bin"
    payload.write_bytes(b"\x5a" * 777)
    path = tmp_path / "fw.ota"
    _build(
        path, "--payload", payload, "--destination", "00:0d:6f:00:0a:bc:de:f1",
        "--security-credential-version", "1",
    )  # fmt: skip
    image = load_image(path).image
    assert image.payload == b"\x5a" * 777  # a payload file is used as it is: no manifest
    assert image.header.upgrade_file_destination == bytes.fromhex("f1debc0a006f0d00")
    assert image.header.security_credential_version == 1
    assert image.header.field_control == 0x0003


def test_build_leaves_no_temporary_files(tmp_path: Path) -> None:
    _build(tmp_path / "fw.ota")
    _build(tmp_path / "fw.ota", "--size", "300")  # replaces the first
    assert [p.name for p in tmp_path.iterdir()] == ["fw.ota"]
    assert len((tmp_path / "fw.ota").read_bytes()) == 300


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--manufacturer-code", "0x12G4"], ["--manufacturer-code", "'0x12G4'", "not an integer"]),
        (["--manufacturer-code", "0x10000"], ["--manufacturer-code", "out of range", "0xFFFF"]),
        (["--file-version", "-1"], ["--file-version", "'-1'"]),
        (["--size", "10", "--no-manifest"], ["--size", "'10'", "smaller than the 62 bytes"]),
        (["--size", "100"], ["--size", "'100'", "header, framing and firmware manifest"]),
        (["--size", "lots"], ["--size", "'lots'"]),
        (["--form", "zigbe"], ["--form", "'zigbe'", "zigbee or gbcs"]),
        (["--min-hw", "1"], ["--min-hw", "--max-hw"]),
        (["--header-string", "x" * 33], ["--header-string", "32 bytes"]),
        (["--destination", "00:11"], ["--destination", "IEEE address"]),
        (["--seed", "x"], ["--seed"]),
        (["--size", "100", "--payload", "p.bin"], ["--size", "--payload"]),
        (["--payload", "/nonexistent/p.bin"], ["/nonexistent/p.bin", "cannot read"]),
        (["--bogus"], ["--bogus"]),
    ],
)
def test_build_bad_option_values_are_bad_input(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    result = _run("build", tmp_path / "fw.ota", *BUILD, *args)  # a repeated option: the last one counts
    _assert_bad_input(result, *needles)
    assert not (tmp_path / "fw.ota").exists()


def test_build_missing_required_option_is_bad_input(tmp_path: Path) -> None:
    result = _run("build", tmp_path / "fw.ota", "--image-type", "1", "--file-version", "1")
    _assert_bad_input(result, "--manufacturer-code")


def test_build_into_a_missing_directory_is_bad_input(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "fw.ota"
    _assert_bad_input(_run("build", target, *BUILD), str(target), "cannot write")


def test_inspect_human_summary(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path, "--form", "gbcs", "--size", "300")
    result = _run("inspect", path)
    assert result.exit_code == 0, result.output
    for needle in ("0x1234", "0x01020000", "gbcs", "opaque body: 244 bytes at offset 56"):
        assert needle in result.stdout


def test_inspect_reports_trailing_bytes_as_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path, "--size", "500")
    assert _run("mutate", path, path, "--append", "4").exit_code == 0
    warning = "4 trailing bytes after the total image size (a vendor CRC?)"

    described = json.loads(_run("inspect", path, "--json").stdout)
    assert described["warnings"] == [warning]
    assert described["file"]["size"] == 504
    assert described["size"] == 500

    human = _run("inspect", path)
    assert human.exit_code == 0
    assert "warning: " + warning in " ".join(human.stdout.split())


def test_inspect_missing_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "absent.ota"
    _assert_bad_input(_run("inspect", path), str(path), "cannot read")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x12\x34\x56\x78" + b"\x00" * 100, "bad magic number at offset 0"),
        (b"", "file shorter than the 56-byte minimum OTA header"),
    ],
)
def test_inspect_bad_file_is_bad_input(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.ota"
    path.write_bytes(content)
    commands: list[tuple[str | Path, ...]] = [
        ("inspect", path),
        ("inspect", path, "--json"),
        ("verify", path),
    ]
    for args in commands:
        _assert_bad_input(_run(*args), f"{path}: {needle}")


def test_inspect_truncated_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path, "--size", "204800")
    assert _run("mutate", path, path, "--truncate", "1024").exit_code == 0
    _assert_bad_input(
        _run("inspect", path),
        "file is truncated: header says total image size 204800 bytes, file has 1024 bytes",
    )


def test_inspect_with_a_form_hint(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path, "--no-manifest")
    described = json.loads(_run("inspect", path, "--json", "--form", "gbcs").stdout)
    assert described["form"] == "gbcs"
    assert described["body"]["length"] == 1024 + 6
    _assert_bad_input(_run("inspect", path, "--form", "zip"), "--form", "'zip'")


def test_verify_passes_when_expectations_hold(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    result = _run("verify", path, *BUILD, "--form", "zigbee", "--sha256", digest.upper())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ")
    assert _run("verify", path).exit_code == 0


def test_verify_mismatch_exits_1_with_a_line_per_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path)
    result = _run(
        "verify", path, "--manufacturer-code", "0x1235", "--image-type", "1", "--file-version", "0x01030000",
        "--form", "gbcs",
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"mismatch: {path}: manufacturer_code is 0x1234, expected 0x1235",
        f"mismatch: {path}: file_version is 0x01020000, expected 0x01030000",
        f"mismatch: {path}: form is zigbee, expected gbcs",
    ]


def test_verify_bad_expectation_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path)
    _assert_bad_input(_run("verify", path, "--image-type", "one"), "--image-type", "'one'")
    _assert_bad_input(_run("verify", path, "--sha256", "abc"), "--sha256")


def test_mutate_then_verify_catches_the_change(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    bad = tmp_path / "bad.ota"
    _build(path)
    result = _run("mutate", path, bad, "--set", "manufacturer_code=0x4321", "--flip-bit", "800")
    assert result.exit_code == 0, result.output
    assert "manufacturer_code=0x4321" in result.stdout
    data, original = bad.read_bytes(), path.read_bytes()
    assert data[100] == original[100] ^ 1
    verdict = _run("verify", bad, "--manufacturer-code", "0x1234")
    assert verdict.exit_code == 1
    assert "manufacturer_code is 0x4321, expected 0x1234" in verdict.stdout


def test_mutate_bad_values_are_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    _build(path)
    _assert_bad_input(_run("mutate", path, tmp_path / "x.ota", "--set", "colour=1"), "--set", "colour=1")
    _assert_bad_input(_run("mutate", path, tmp_path / "x.ota", "--truncate", "99999"), "truncate", "99999")
    _assert_bad_input(_run("mutate", tmp_path / "absent.ota", tmp_path / "x.ota"), "absent.ota")


def test_integer_and_address_parsers() -> None:
    assert parse_int("0x1234", "--x", 0xFFFF) == 0x1234
    assert parse_int("0X00ff", "--x", 0xFFFF) == 0xFF
    assert parse_int("4660", "--x", 0xFFFF) == 4660
    assert parse_int("1_000", "--x", 0xFFFF) == 1000
    assert parse_ieee("00:0d:6f:00:0a:bc:de:f1", "--d") == bytes.fromhex("f1debc0a006f0d00")
    assert parse_ieee("000d6f000abcdef1", "--d") == bytes.fromhex("f1debc0a006f0d00")


def test_every_command_and_option_has_help() -> None:
    group = typer.main.get_command(app)
    assert group.help
    commands = group.commands  # type: ignore[attr-defined]
    assert set(commands) == {"build", "inspect", "verify", "mutate"}
    for name, command in commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name}"
        assert _run(name, "--help").exit_code == 0


def test_bad_input_is_reported_the_same_when_mounted_under_the_root_command(tmp_path: Path) -> None:
    root = typer.Typer()

    @root.command()
    def other() -> None:
        """A second command, so that "ota" stays a sub-command as in harness/cli.py."""

    root.add_typer(app, name="ota")
    missing = runner.invoke(root, ["ota", "build", str(tmp_path / "fw.ota"), "--image-type", "1"])
    _assert_bad_input(missing, "--manufacturer-code", "ota build --help")
    absent = runner.invoke(root, ["ota", "inspect", str(tmp_path / "absent.ota")])
    _assert_bad_input(absent, "absent.ota")
