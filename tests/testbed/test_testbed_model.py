"""The shipped testbeds load, and the model answers the questions scenarios ask."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness.errors import BadInputError
from harness.testbed import (
    BridgeSpec,
    DeviceSpec,
    LinkSpec,
    RadioSpec,
    TestbedSpec,
    default_testbed_path,
    format_duration,
    load_testbed,
    parse_duration,
    testbed_summary,
)

TESTBEDS = Path(__file__).resolve().parents[2] / "testbeds"
SHIPPED = ["emulated.yaml", "ihd-out-of-range.yaml", "both-out-of-range.yaml"]


@pytest.fixture(scope="module")
def emulated() -> TestbedSpec:
    return load_testbed(TESTBEDS / "emulated.yaml")


@pytest.mark.parametrize("file", SHIPPED)
def test_shipped_testbeds_load(file: str) -> None:
    spec = load_testbed(TESTBEDS / file)
    assert spec.source == TESTBEDS / file
    assert spec.sha256 == hashlib.sha256((TESTBEDS / file).read_bytes()).hexdigest()
    assert spec.kind == "emulated" and spec.radio.type == "virtual"
    assert spec.radio.plays == spec.coordinator.name == "CH"
    for device in spec.devices.values():  # every device is reachable from the CH
        assert spec.route("CH", device.name)[-1] == device.name


def test_default_testbed_is_the_emulated_premises() -> None:
    assert default_testbed_path() == TESTBEDS / "emulated.yaml"


def test_default_testbed_devices(emulated: TestbedSpec) -> None:
    assert list(emulated.devices) == ["CH", "ESME", "IHD", "B1", "B2", "GSME"]
    gsme = emulated.device("GSME")
    assert gsme.name == "GSME" and gsme.is_sleepy and gsme.is_end_device and not gsme.is_bridge
    assert gsme.parent == "B2" and gsme.power_source == "battery"
    assert gsme.poll_interval == 7.5 and gsme.fast_poll_interval == 0.25
    assert gsme.ieee == "00:0d:6f:ff:fe:00:00:04"
    assert gsme.ieee_bytes == bytes([0x04, 0x00, 0x00, 0xFE, 0xFF, 0x6F, 0x0D, 0x00])
    ihd = emulated.device("IHD")
    assert ihd.role == "end_device" and not ihd.is_sleepy and ihd.poll_interval is None
    assert ihd.model == "IHD"  # defaults to the type
    b1 = emulated.device("B1")
    assert b1.bridge == BridgeSpec(end="near", p2p_peer="B2", extends_to=["GSME"])
    assert b1.bridge.p2p_peers == ["B2"]
    assert emulated.coordinator.nwk == 0x0000
    assert emulated.pan_id == 0x1A62 and emulated.channel == 15 and emulated.seed == 1


def test_route_through_both_bridges(emulated: TestbedSpec) -> None:
    assert emulated.route("CH", "GSME") == ["CH", "B1", "B2", "GSME"]
    assert emulated.route("GSME", "CH") == ["GSME", "B2", "B1", "CH"]
    assert emulated.route("ESME", "GSME") == ["ESME", "B1", "B2", "GSME"]
    assert emulated.route("CH", "CH") == ["CH"]
    assert emulated.hops_to("GSME") == 3
    assert emulated.hops_to("CH") == 0


def test_end_devices_relay_nothing(emulated: TestbedSpec) -> None:
    # IHD hears only the CH; a frame from the IHD to the GSME goes back through the CH.
    assert emulated.route("IHD", "GSME") == ["IHD", "CH", "B1", "B2", "GSME"]


def test_route_ties_are_broken_by_name() -> None:
    spec = TestbedSpec.model_validate(_diamond())
    # CH -> R2 -> Z and CH -> R1 -> Z have the same length: R1 comes first by name.
    assert spec.route("CH", "Z") == ["CH", "R1", "Z"]


def test_neighbours(emulated: TestbedSpec) -> None:
    assert emulated.neighbours("B1") == ["B2", "CH", "ESME"]
    assert emulated.neighbours("B1", medium="p2p") == ["B2"]
    assert emulated.neighbours("B1", medium="radio") == ["CH", "ESME"]
    assert emulated.neighbours("GSME") == ["B2"]


def test_unknown_device_lists_known_names(emulated: TestbedSpec) -> None:
    with pytest.raises(BadInputError) as caught:
        emulated.device("B9")
    assert "unknown device 'B9'; this testbed has: CH, ESME, IHD, B1, B2, GSME" in str(caught.value)
    assert caught.value.value == "B9"
    with pytest.raises(BadInputError):
        emulated.route("CH", "B9")


def test_three_bridge_premises_has_a_near_bridge_with_two_peers() -> None:
    spec = load_testbed(TESTBEDS / "both-out-of-range.yaml")
    near = spec.device("B1").bridge
    assert near is not None and near.p2p_peer is None and near.p2p_peers == ["B2", "B4"]
    assert spec.route("CH", "GSME") == ["CH", "B1", "B2", "GSME"]
    assert spec.route("CH", "IHD") == ["CH", "B1", "B4", "IHD"]
    assert spec.route("GSME", "IHD") == ["GSME", "B2", "B1", "B4", "IHD"]


def test_ihd_out_of_range_premises() -> None:
    spec = load_testbed(TESTBEDS / "ihd-out-of-range.yaml")
    assert spec.route("CH", "IHD") == ["CH", "B3", "B4", "IHD"]
    assert spec.route("CH", "GSME") == ["CH", "GSME"]


def test_summary_rows(emulated: TestbedSpec) -> None:
    rows = {row["name"]: row for row in testbed_summary(emulated)}
    assert rows["GSME"] == {
        "name": "GSME",
        "type": "GSME",
        "role": "sleepy_end_device",
        "power": "battery",
        "nwk": "0x9A73",
        "ieee": "00:0d:6f:ff:fe:00:00:04",
        "parent": "B2",
        "p2p_peers": "",
        "firmware": "0x01000000",
        "hops": "3",
    }
    assert rows["B1"]["p2p_peers"] == "B2" and rows["CH"]["hops"] == "0"


def test_models_are_frozen(emulated: TestbedSpec) -> None:
    with pytest.raises(ValueError):
        emulated.device("GSME").nwk = 1


def test_built_in_code_without_a_file() -> None:
    spec = TestbedSpec(
        name="tiny",
        pan_id=0x1234,
        extended_pan_id="000D6FFFFE000000",
        radio=RadioSpec(plays="CH"),
        devices={
            "CH": DeviceSpec.model_validate(_device("CH", "CH", 1, 0x0000, role="coordinator")),
            "GSME": DeviceSpec.model_validate(
                _device(
                    "GSME", "GSME", 2, 0x0002, role="sleepy_end_device", power_source="battery", parent="CH"
                )
            ),
        },
        links=[LinkSpec(between=("CH", "GSME"))],
    )
    assert spec.source is None and spec.sha256 is None
    assert spec.extended_pan_id == "00:0d:6f:ff:fe:00:00:00"
    assert spec.device("GSME").poll_interval == 7.5  # the default for sleepy end devices
    assert spec.links[0].latency == 0.002 and spec.links[0].loss == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("7.5s", 7.5),
        ("2min", 120.0),
        ("2m", 120.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2m30s", 150.0),
        ("7.5", 7.5),
        (" 3 ", 3.0),
        (7.5, 7.5),
        (2, 2.0),
        (0, 0.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "", "30m1h", "1h1h", "1h30", "-1s", "h", "nan", "inf"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"250ms, 7\.5s, 2min, 2h or 1h30m"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, -0.5, True, None, [1]])
def test_parse_duration_refuses_negative_and_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.015, "15ms"), (0.25, "250ms"), (7.5, "7.5s"), (120, "2min"), (5400, "1h30m"), (7200, "2h")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# --- helpers ---------------------------------------------------------------------------------


def _device(name: str, type_: str, ieee_last: int, nwk: int, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "type": type_,
        "ieee": f"00:0d:6f:ff:fe:00:00:{ieee_last:02x}",
        "nwk": nwk,
        "manufacturer_code": 0x1235,
        "image_type": 0x0100,
        "firmware_version": 0x01000000,
        "power_source": "mains",
        **fields,
    }


def _diamond() -> dict[str, object]:
    devices = {
        "CH": _device("CH", "CH", 1, 0x0000, role="coordinator"),
        "R2": _device("R2", "ESME", 2, 0x0002, role="router"),
        "R1": _device("R1", "HCALCS", 3, 0x0003, role="router"),
        "Z": _device("Z", "PPMID", 4, 0x0004, role="router"),
    }
    links = [{"between": pair} for pair in (["CH", "R2"], ["CH", "R1"], ["R2", "Z"], ["R1", "Z"])]
    return {
        "name": "diamond",
        "pan_id": 1,
        "extended_pan_id": "00:0d:6f:ff:fe:00:00:00",
        "radio": {"plays": "CH"},
        "devices": devices,
        "links": links,
    }
