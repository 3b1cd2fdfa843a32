"""``harness testbed up``: an emulated testbed as a process, its control ports reached by pyserial."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import serial

REPO = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]


def _read_json_line(port: serial.SerialBase, want: str, value: object) -> dict[str, object]:
    for _ in range(200):
        line = port.readline()
        assert line, f"no line with {want}={value!r} before the timeout"
        message = json.loads(line)
        if message.get(want) == value:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"no line with {want}={value!r}")


def test_up_prints_ports_that_pyserial_reaches_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [*HARNESS, "testbed", "up", "testbeds/emulated.yaml", "--json", "--for", "60s"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        assert announced["testbed"] == "emulated"
        assert sorted(announced["ports"]) == ["B1", "B2", "ESME", "GSME", "IHD"]  # the hub plays CH
        url = announced["ports"]["B1"][0]
        assert url.startswith("socket://127.0.0.1:")
        with serial.serial_for_url(url, timeout=5) as port:
            port.write(b'{"id":1,"cmd":"status"}\n')
            status = _read_json_line(port, "id", 1)
            assert status["ok"] is True
            assert status["result"]["powered"] is True and status["result"]["device"] == "B1"  # type: ignore[index]
            port.write(b'{"id":2,"cmd":"power","on":false}\n')
            event = _read_json_line(port, "event", "power")
            assert event["on"] is False
            assert _read_json_line(port, "id", 2)["result"] == {"powered": False}
            port.write(b'{"id":3,"cmd":"power","on":true}\n')
            boot = _read_json_line(port, "event", "log")
            assert str(boot["text"]).startswith("boot #2")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_up_refuses_a_bad_testbed_or_duration(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*HARNESS, "testbed", "up", str(tmp_path / "none.yaml")], capture_output=True, text=True, cwd=REPO
    )
    assert missing.returncode == 3 and missing.stderr.startswith("error:")
    bad_for = subprocess.run(
        [*HARNESS, "testbed", "up", "testbeds/emulated.yaml", "--for", "soon"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad_for.returncode == 3
    assert "--for" in bad_for.stderr and "'soon'" in bad_for.stderr
    assert "Traceback" not in bad_for.stderr
