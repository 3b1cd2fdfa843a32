"""Bad input gets one paragraph naming file, field and value, exit status 3, and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _harness(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _one_paragraph_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    error = proc.stderr.strip()
    assert error.startswith("error:"), error
    assert "\n\n" not in error
    return error


def test_bad_testbed_file_stops_run_before_anything_is_powered(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (
        (REPO / "testbeds" / "emulated.yaml")
        .read_text()
        .replace("manufacturer_code: 0x1234", "manufacturer_code: 0x12345", 1)
    )
    bad.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "0x12345" in row)
    out = tmp_path / "run"
    error = _one_paragraph_error(_harness("run", "--testbed", str(bad), "--out", str(out), "--no-progress"))
    assert f"{bad}:{line}:" in error
    assert "field 'devices.B1.manufacturer_code'" in error
    assert "0x0000 to 0xFFFF (got 74565)" in error
    assert not (out / "evidence").exists(), "nothing may run (or be recorded) on a bad testbed"


def test_unknown_device_name_in_a_suite_gives_exit_status_3(tmp_path: Path) -> None:
    suite = tmp_path / "typo.robot"
    suite.write_text(
        "*** Settings ***\nLibrary    harness.robot.OtaLibrary\nSuite Setup    Start Testbed\n"
        "Suite Teardown    Stop Testbed\n\n*** Test Cases ***\nTypo in device name\n"
        "    ${image}=    Build Firmware Image    B9    1.1.0.0    size=4KiB\n"
    )
    proc = _harness("run", str(suite), "--out", str(tmp_path / "run"), "--no-progress")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "unknown device 'B9'; this testbed has: CH, ESME, IHD, B1, B2, GSME" in proc.stdout + proc.stderr


def test_bad_image_file_in_a_suite_gives_exit_status_3(tmp_path: Path) -> None:
    image = tmp_path / "broken.ota"
    image.write_bytes(b"\x1e\xf1\xee\x0b" + b"\x00" * 20)
    suite = tmp_path / "broken.robot"
    suite.write_text(
        "*** Settings ***\nLibrary    harness.robot.OtaLibrary\nSuite Setup    Start Testbed\n"
        "Suite Teardown    Stop Testbed\n\n*** Test Cases ***\nVendor file is truncated\n"
        f"    ${{image}}=    Load Firmware Image    {image}\n"
    )
    proc = _harness("run", str(suite), "--out", str(tmp_path / "run"), "--no-progress")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "56-byte minimum OTA header" in proc.stdout + proc.stderr


def test_bad_image_file_on_the_command_line(tmp_path: Path) -> None:
    image = tmp_path / "broken.ota"
    image.write_bytes(b"\x00" * 80)
    error = _one_paragraph_error(_harness("ota", "inspect", str(image)))
    assert "bad magic number at offset 0" in error and str(image) in error


def test_missing_suite_is_bad_input(tmp_path: Path) -> None:
    error = _one_paragraph_error(
        _harness("run", str(tmp_path / "nope.robot"), "--out", str(tmp_path / "run"))
    )
    assert "nope.robot" in error


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["ota", "--help"], ["testbed", "--help"]])
def test_every_command_has_help(command: list[str]) -> None:
    proc = _harness(*command)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout
