"""`harness testbed check`: tables and "testbed OK" for a good file; one error line, exit 3 for a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.testbed.cli import app

TESTBEDS = Path(__file__).resolve().parents[2] / "testbeds"


@pytest.mark.parametrize(
    "file", ["emulated.yaml", "ihd-out-of-range.yaml", "both-out-of-range.yaml", "full-premises.yaml"]
)
def test_check_good_file(file: str) -> None:
    result = CliRunner().invoke(app, ["check", str(TESTBEDS / file)])
    assert result.exit_code == 0, result.output
    assert "GSME" in result.stdout and "IHD" in result.stdout  # the devices table
    assert "p2p" in result.stdout  # the links table
    ok = [line for line in result.stdout.splitlines() if line.startswith("testbed OK: ")]
    assert len(ok) == 1 and "sha256 " in ok[0]


def test_check_default_summary_line() -> None:
    result = CliRunner().invoke(app, ["check", str(TESTBEDS / "emulated.yaml")])
    assert "testbed OK: emulated (6 devices, 6 links), sha256 " in result.stdout


def test_check_bad_file_exits_3_with_one_line(tmp_path: Path) -> None:
    text = (TESTBEDS / "emulated.yaml").read_text().replace("    nwk: 0x8E44", "    nwk: 0x18E44", 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}:")
    assert "field 'devices.B2.nwk'" in result.stderr and "0xFFF7" in result.stderr
    assert result.stderr.count("\n") == 1, "one paragraph"
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", ["", "- just\n- a list\n", "name: [unclosed\n"])
def test_check_unusable_file_exits_3(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 3
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_check_missing_file_exits_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 3
    assert "error:" in result.output and "no such testbed file" in result.stderr
    assert "Traceback" not in result.output


def test_help_is_honest_about_ports() -> None:
    result = CliRunner().invoke(app, ["check", "--help"])
    assert result.exit_code == 0
    assert "ports are not probed yet" in " ".join(result.stdout.split())
