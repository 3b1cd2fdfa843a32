"""The harness side of a control port: pyserial by URL, requests and replies, events, failures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import looptime
import pytest

from harness.errors import BadInputError, BenchError
from harness.ports.control import ControlPort, ControlPortError, PortEvent
from harness.power.control_port import ControlPortPower
from testbeds.emulator.control_port import ControlPortServer
from testbeds.emulator.device import DeviceConfig
from testbeds.emulator.premises import LinkConfig, Premises


def _config(name: str, nwk: int, role: str) -> DeviceConfig:
    return DeviceConfig(
        name=name,
        type="B1" if name.startswith("B") else "CH",
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0, 0, 0, 0, 1]),
        nwk=nwk,
        pan_id=0x1A62,
        role=role,
        manufacturer_code=0x1234,
        manufacturer_name="test",
        model=name,
        image_type=1,
        hardware_version=1,
        firmware_version=0x01000000,
        stack_version=2,
        power_source="mains",
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


@pytest.fixture
def premises(loop: asyncio.AbstractEventLoop) -> Iterator[Premises]:
    premises = Premises(
        loop=loop,
        devices=[_config("CH", 0, "coordinator"), _config("B1", 0x1001, "router")],
        links=[LinkConfig("CH", "B1")],
        seed=1,
    )
    yield premises
    premises.shutdown()


def _served(loop: asyncio.AbstractEventLoop, premises: Premises) -> tuple[ControlPortServer, str]:
    server = ControlPortServer(premises.emulate("B1"))
    return server, loop.run_until_complete(server.listen_tcp())


def test_power_log_and_transcript_through_the_port(
    loop: asyncio.AbstractEventLoop, premises: Premises
) -> None:
    server, url = _served(loop, premises)
    port = ControlPort("B1", url, loop=loop)
    assert port.hold_virtual_time  # a looptime loop: replies must not let the clock run
    hello = loop.run_until_complete(port.open())
    assert hello["device"] == "B1" and "power" in hello["commands"]
    events: list[PortEvent] = []
    transcript: list[tuple[str, str, float | None]] = []
    port.add_event_listener(events.append)
    port.add_transcript_listener(lambda d, line, t: transcript.append((d, line, t)))
    power = ControlPortPower(port)
    assert not power.is_on()
    loop.run_until_complete(power.restore())
    assert power.is_on() and premises.devices["B1"].powered
    loop.run_until_complete(asyncio.sleep(5))
    texts = [e.text for e in events if e.kind == "log"]
    assert texts[0].startswith("boot #1") and "device announce sent" in texts
    assert any(e.kind == "power" and e.fields["on"] is True for e in events)
    assert transcript[0][0] == ">" and '"cmd":"power"' in transcript[0][1]
    assert any(d == "<" and '"ok":true' in line for d, line, _ in transcript)
    announce = next(t for d, line, t in transcript if line == "device announce sent")
    assert announce == pytest.approx(2.0, abs=0.01)  # the device's own clock, not arrival time
    loop.run_until_complete(power.cut())
    assert not power.is_on() and not premises.devices["B1"].powered
    port.close()
    server.close()


def test_a_refused_command_is_a_bench_error_naming_the_reason(
    loop: asyncio.AbstractEventLoop, premises: Premises
) -> None:
    server, url = _served(loop, premises)
    port = ControlPort("B1", url, loop=loop)
    loop.run_until_complete(port.open())
    with pytest.raises(ControlPortError, match=r"refused 'ota'.*powered off"):
        loop.run_until_complete(port.request("ota"))
    with pytest.raises(ControlPortError, match="unknown command 'teleport'"):
        loop.run_until_complete(port.request("teleport"))
    port.close()
    server.close()


def test_a_port_answering_as_another_device_is_refused(
    loop: asyncio.AbstractEventLoop, premises: Premises
) -> None:
    server, url = _served(loop, premises)
    with pytest.raises(ControlPortError, match=r"answers as device 'B1'.*'B9'"):
        loop.run_until_complete(ControlPort("B9", url, loop=loop).open())
    server.close()


def test_a_port_that_goes_away_fails_requests_as_bench_errors(
    loop: asyncio.AbstractEventLoop, premises: Premises
) -> None:
    server, url = _served(loop, premises)
    port = ControlPort("B1", url, loop=loop)
    loop.run_until_complete(port.open())
    events: list[PortEvent] = []
    port.add_event_listener(events.append)
    server.close()
    loop.run_until_complete(asyncio.sleep(0.1))
    assert [e.kind for e in events] == ["port-lost"]
    with pytest.raises(BenchError, match="is gone"):
        loop.run_until_complete(port.request("status"))


def test_urls_that_cannot_be_opened(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="'rfc2217' scheme is not supported"):
        loop.run_until_complete(ControlPort("B1", "rfc2217://localhost:1", loop=loop).open())
    with pytest.raises(BenchError, match="cannot open control port"):
        loop.run_until_complete(ControlPort("B1", str(tmp_path / "ttyNOPE"), loop=loop).open())


# A console in another process that answers each request line after ``delay`` s of wall time
# (or never, if delay < 0): the reply really has to wait for the operating system.
_SLOW_CONSOLE = """
import json, socket, sys, time
delay = float(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept(); f = conn.makefile("rwb")
for line in f:
    req = json.loads(line)
    if delay < 0:
        continue
    time.sleep(delay)
    reply = {"id": req["id"], "ok": True, "result": {"device": "B1"}}
    f.write(json.dumps(reply).encode() + b"\\n"); f.flush()
"""


@pytest.fixture
def slow_console(request: pytest.FixtureRequest) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CONSOLE, str(request.param)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    yield f"socket://127.0.0.1:{port}"
    process.kill()
    process.wait()


@pytest.mark.parametrize("slow_console", [0.05], indirect=True)
@pytest.mark.parametrize("hold", [True, False])
def test_waiting_for_a_reply_holds_the_virtual_clock(
    loop: asyncio.AbstractEventLoop, slow_console: str, hold: bool
) -> None:
    port = ControlPort("B1", slow_console, loop=loop, hold_virtual_time=hold)
    fired: list[float] = []
    loop.call_later(1.0, lambda: fired.append(loop.time()))
    if hold:
        loop.run_until_complete(port.open())
        # 50 ms of wall time passed, and the testbed clock did not move: a timer 1 s away is pending.
        assert loop.time() == 0.0 and not fired
    else:
        # Without the hold the idle loop jumps from timer to timer while the reply is on its way:
        # the 5 s reply timeout passes in testbed time before 50 ms of wall time have.
        with pytest.raises(ControlPortError, match="did not answer"):
            loop.run_until_complete(port.open())
        assert fired and loop.time() >= 5.0
    port.close()


@pytest.mark.parametrize("slow_console", [-1], indirect=True)
def test_a_silent_port_is_a_bench_error_after_the_reply_timeout(
    loop: asyncio.AbstractEventLoop, slow_console: str
) -> None:
    port = ControlPort("B1", slow_console, loop=loop, reply_timeout=0.3)
    with pytest.raises(ControlPortError, match=r"did not answer 'hello' within 0\.3s"):
        loop.run_until_complete(port.open())
    port.close()
