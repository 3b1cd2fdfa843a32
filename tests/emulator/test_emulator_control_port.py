"""The emulated device's control port: the JSON-lines protocol of docs/control-port.md, on TCP and pty."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import looptime
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from test_network import DEVICES, LINKS

from testbeds.emulator.control_port import MAX_LINE, ControlPortServer, version_text
from testbeds.emulator.premises import LinkConfig, Premises


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


def _premises(loop: asyncio.AbstractEventLoop, links: list[LinkConfig] = LINKS) -> Premises:
    return Premises(loop=loop, devices=DEVICES, links=links, seed=3)


def _ask(server: ControlPortServer, request: object) -> dict[str, object]:
    line = request if isinstance(request, bytes) else json.dumps(request).encode()
    reply = server.answer(line)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    decoded = json.loads(reply)
    assert isinstance(decoded, dict)
    return decoded


def test_status_version_power_and_reset(loop: asyncio.AbstractEventLoop) -> None:
    premises = _premises(loop)
    server = ControlPortServer(premises.emulate("B2"))
    off = _ask(server, {"id": 1, "cmd": "status"})
    assert off["id"] == 1 and off["ok"] is True
    assert off["result"]["powered"] is False and off["result"]["on_network"] is False  # type: ignore[index]
    on = _ask(server, {"id": "x", "cmd": "power", "on": True})
    assert on == {"id": "x", "ok": True, "result": {"powered": True}}
    loop.run_until_complete(asyncio.sleep(3))
    status = _ask(server, {"cmd": "status"})["result"]
    assert status["on_network"] is True and status["boots"] == 1  # type: ignore[index]
    assert status["firmware_version_text"] == "1.0.0.0"  # type: ignore[index]
    version = _ask(server, {"cmd": "version"})["result"]
    assert version["firmware_version"] == 0x01000000 and version["image_confirmed"] is True  # type: ignore[index]
    ota = _ask(server, {"cmd": "ota"})["result"]
    assert ota["current_file_version"] == 0x01000000 and ota["file_offset"] == 0xFFFFFFFF  # type: ignore[index]
    reset = _ask(server, {"cmd": "reset"})["result"]
    assert reset == {"powered": True, "boots": 2}
    cut = _ask(server, {"cmd": "power", "on": False})["result"]
    assert cut == {"powered": False}
    refused = _ask(server, {"cmd": "ota"})
    assert refused["ok"] is False and "powered off" in str(refused["error"])
    refused = _ask(server, {"cmd": "reset"})
    assert refused["ok"] is False and "powered off" in str(refused["error"])
    server.close()
    # Let the tasks the reset started and the power cut cancelled unwind before the loop closes.
    loop.run_until_complete(asyncio.sleep(0))


def test_log_tail_keeps_only_this_device(loop: asyncio.AbstractEventLoop) -> None:
    premises = _premises(loop)
    b2 = ControlPortServer(premises.emulate("B2"))
    ControlPortServer(premises.emulate("B1"))
    logged: list[tuple[str, str]] = []
    premises.add_log_listener(lambda t, name, text: logged.append((name, text)))
    premises.power_on("B1")
    premises.power_on("B2")
    loop.run_until_complete(asyncio.sleep(3))
    lines = _ask(b2, {"cmd": "log", "lines": 2})["result"]["lines"]  # type: ignore[index]
    assert len(lines) == 2
    everything = _ask(b2, {"cmd": "log", "lines": 1000})["result"]["lines"]  # type: ignore[index]
    assert everything[0]["text"].startswith("boot #1")
    assert [line["text"] for line in everything] == [text for name, text in logged if name == "B2"]
    assert any(name == "B1" for name, _ in logged)
    assert [line["t"] for line in everything] == sorted(line["t"] for line in everything)
    assert _ask(b2, {"cmd": "log", "lines": -1})["ok"] is False


@pytest.mark.parametrize(
    ("request_line", "error"),
    [
        (b"not json", "not a JSON line"),
        (b"[1, 2]", "JSON object"),
        (b'{"cmd": "fly"}', "unknown command 'fly'"),
        (b'{"id": 4}', "unknown command None"),
        (b'{"cmd": "power"}', 'power needs "on"'),
        (b'{"cmd": "power", "on": "yes"}', 'power needs "on"'),
        (b"\xff\xfe", "not a JSON line"),
    ],
)
def test_bad_requests_are_answered_not_raised(
    loop: asyncio.AbstractEventLoop, request_line: bytes, error: str
) -> None:
    server = ControlPortServer(_premises(loop).emulate("B2"))
    reply = _ask(server, request_line)
    assert reply["ok"] is False and error in str(reply["error"])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_line_gets_exactly_one_json_reply(data: bytes) -> None:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    try:
        server = ControlPortServer(_premises(loop).emulate("B2"))
        replies: list[bytes] = []
        buffer = bytearray()
        server._feed(buffer, data.replace(b"\n", b" ") + b"\n", replies.append)
        assert len(replies) <= 1
        for reply in replies:
            assert isinstance(json.loads(reply), dict)
    finally:
        loop.close()


def test_an_endless_line_is_dropped_with_an_error(loop: asyncio.AbstractEventLoop) -> None:
    server = ControlPortServer(_premises(loop).emulate("B2"))
    replies: list[bytes] = []
    buffer = bytearray()
    server._feed(buffer, b"x" * (MAX_LINE + 1), replies.append)
    assert len(replies) == 1 and b"longer than" in replies[0]
    assert not buffer
    server._feed(buffer, b'{"id":9,"cmd":"hello"}\n', replies.append)
    assert json.loads(replies[1])["result"]["device"] == "B2"


def test_version_text() -> None:
    assert version_text(0x01020304) == "1.2.3.4"
    assert version_text(0xFFFFFFFF) == "255.255.255.255"


def test_tcp_clients_get_replies_and_the_log_stream() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        premises = _premises(loop)
        server = ControlPortServer(premises.emulate("B2"), clock_origin=loop.time())
        url = await server.listen_tcp()
        assert url.startswith("socket://127.0.0.1:")
        host, port = url.removeprefix("socket://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        second_reader, second_writer = await asyncio.open_connection(host, int(port))
        writer.write(b'{"id":1,"cmd":"power","on":true}\n')
        seen: list[dict[str, object]] = []
        while not any(m.get("id") == 1 for m in seen) or not any(m.get("event") == "log" for m in seen):
            seen.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
        power_events = [m for m in seen if m.get("event") == "power"]
        assert power_events and power_events[0]["on"] is True
        assert 0 <= float(power_events[0]["t"]) < 1.0  # type: ignore[arg-type]
        # Every client sees the device's log, not only the one that asked.
        other = json.loads(await asyncio.wait_for(second_reader.readline(), 5))
        assert other["event"] in ("power", "log")
        for w in (writer, second_writer):
            w.close()
        server.close()
        premises.shutdown()

    asyncio.run(scenario())


def test_pty_is_reached_through_pyserial() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        premises = _premises(loop)
        server = ControlPortServer(premises.emulate("GSME"))
        path = server.open_pty()
        assert path.startswith("/dev/")
        port = serial.serial_for_url(path, timeout=0)
        port.write(b'{"id":7,"cmd":"hello"}\n')
        received = b""
        for _ in range(500):
            await asyncio.sleep(0.002)
            received += port.read(4096)
            if b"\n" in received:
                break
        reply = json.loads(received.split(b"\n")[0])
        assert reply["id"] == 7 and reply["result"]["device"] == "GSME"
        assert reply["result"]["type"] == "GSME" and reply["result"]["protocol"] == 1
        port.close()
        server.close()

    asyncio.run(scenario())
