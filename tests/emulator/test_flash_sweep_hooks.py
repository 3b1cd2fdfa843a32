"""The flash-sweep test hooks of an emulated device's control port (the emulator's side).

The harness's side, judging a whole sweep, is tested in tests/integration/test_flash_sweep.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import looptime
import pytest
from test_bootloader import NEW_IMAGE, OLD_IMAGE, _device_config, sha

from testbeds.emulator.control_port import ControlPortServer
from testbeds.emulator.flash_sweep import flash_sweep_commands
from testbeds.emulator.premises import Premises


@pytest.fixture
def port() -> Any:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    premises = Premises(loop=loop, devices=[_device_config(frozenset())], links=[], seed=7)
    device = premises.emulate("B1")
    device.power_on()
    loop.run_until_complete(asyncio.sleep(3.0))
    server = ControlPortServer(device, extra_commands=flash_sweep_commands(device))
    yield server, device
    premises.shutdown()
    loop.close()


def ask(server: ControlPortServer, **request: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(server.answer(json.dumps(request).encode()))
    return answer


def stage(server: ControlPortServer, name: str, image: bytes) -> dict[str, Any]:
    reply: dict[str, Any] = {}
    for offset in range(0, len(image), 1500):
        chunk = image[offset : offset + 1500].hex()
        reply = ask(server, cmd="flash_sweep_load", image=name, size=len(image), offset=offset, data=chunk)
        assert reply["ok"], reply
    return reply["result"]


def test_points_report_slots_and_flags_and_leave_the_live_flash_alone(port: Any) -> None:
    server, device = port
    assert "flash_sweep_point" in ask(server, cmd="hello")["result"]["commands"]
    live = (bytes(device.flash.primary), bytes(device.flash.secondary), bytes(device.flash.boot_area))
    assert stage(server, "old", OLD_IMAGE)["sha256"] == sha(OLD_IMAGE).hex()
    assert stage(server, "new", NEW_IMAGE)["sha256"] == sha(NEW_IMAGE).hex()
    plan = ask(server, cmd="flash_sweep_plan", path="upgrade")["result"]
    assert plan["steps"] == len(plan["trace"]) > 36
    assert plan["trace"][0].startswith("erase boot")
    point = ask(server, cmd="flash_sweep_point", path="upgrade", step=20, cut="torn")["result"]
    assert point["cuts"][0]["fired"] and point["cuts"][0]["at"] == plan["trace"][19]
    assert point["bricked"] is False and "resumed-swap" in point["boots"]
    assert point["running_sha256"] == point["primary_sha256"] == sha(NEW_IMAGE).hex()
    assert point["secondary_sha256"] == sha(OLD_IMAGE).hex()
    assert point["flags"]["swap_done"] and point["flags"]["image_ok"] and not point["flags"]["revert_done"]
    revert = ask(server, cmd="flash_sweep_point", path="revert", cuts=[{"step": 5, "mode": "after"}])[
        "result"
    ]
    assert revert["running_sha256"] == sha(OLD_IMAGE).hex() and revert["flags"]["revert_done"]
    beyond = ask(server, cmd="flash_sweep_point", path="download", cuts=[{"step": 10_000, "mode": "before"}])
    assert beyond["result"]["cuts"][0]["fired"] is False  # the download finished before that step
    assert (bytes(device.flash.primary), bytes(device.flash.secondary), bytes(device.flash.boot_area)) == live
    assert device.flash.running.file_version == 0x01000000


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"cmd": "flash_sweep_plan", "path": "upgrade"}, "not staged"),
        ({"cmd": "flash_sweep_plan", "path": "sideways"}, 'needs "path"'),
        ({"cmd": "flash_sweep_load", "image": "mid", "size": 10, "offset": 0, "data": ""}, '"old" or "new"'),
        ({"cmd": "flash_sweep_load", "image": "old", "size": 10, "offset": 0, "data": "zz"}, "not hex"),
        ({"cmd": "flash_sweep_load", "image": "old", "size": 10, "offset": 4, "data": "00"}, "offset 4"),
        (
            {"cmd": "flash_sweep_load", "image": "old", "size": 1, "offset": 0, "data": "0000"},
            "past the size",
        ),
        ({"cmd": "flash_sweep_point", "path": "upgrade", "cuts": []}, "1 to 16"),
        ({"cmd": "flash_sweep_point", "path": "upgrade", "cuts": [{"step": 0}]}, '"step"'),
        ({"cmd": "flash_sweep_point", "path": "upgrade", "cuts": [{"step": 1, "mode": "x"}]}, "mode"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(port: Any, request_: dict[str, Any], words: str) -> None:
    server, _ = port
    reply = ask(server, **request_)
    assert reply["ok"] is False and words in reply["error"], reply


def test_images_without_an_ota_header_are_refused(port: Any) -> None:
    server, _ = port
    stage(server, "old", b"\x00" * 600)
    stage(server, "new", NEW_IMAGE)
    reply = ask(server, cmd="flash_sweep_plan", path="upgrade")
    assert reply["ok"] is False and "no valid OTA header" in reply["error"]
