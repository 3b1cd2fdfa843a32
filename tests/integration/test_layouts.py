"""Every shipped premises layout carries an OTA to the out-of-range device through its bridges."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from harness.evidence.timeline import read_timeline
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict
from harness.testbed.loader import load_testbed

REPO = Path(__file__).resolve().parents[2]
LAYOUTS = [
    ("emulated.yaml", "GSME"),
    ("ihd-out-of-range.yaml", "IHD"),
    ("both-out-of-range.yaml", "IHD"),
    ("both-out-of-range.yaml", "GSME"),
]


@pytest.mark.parametrize(("testbed", "device"), LAYOUTS, ids=[f"{t}-{d}" for t, d in LAYOUTS])
def test_out_of_range_device_upgrades_through_its_bridges(tmp_path: Path, testbed: str, device: str) -> None:
    path = REPO / "testbeds" / testbed
    spec = load_testbed(path)
    route = spec.route(spec.radio.plays, device)
    assert any(spec.device(hop).is_bridge for hop in route), (
        "the layout must reach the device through a bridge"
    )
    session = OtaSession(tmp_path / "run")
    try:
        session.start_testbed(path)
        session.offer_firmware_image(device, session.build_firmware_image(device, "1.1.0.0", size="8KiB"))
        result = session.wait_until_upgrade_completes(device, "2h")
        assert result.verdict is Verdict.PASS, result.reason
        session.firmware_version_should_be(device, "1.1.0.0")
    finally:
        session.close()
    timeline = read_timeline(tmp_path / "run" / "timeline.parquet")
    blocks = timeline[
        (timeline["zcl_command"] == "Image Block Response") & (timeline["destination"] == device)
    ]
    hops = set(blocks["hop"])
    expected = {f"{a}→{b}" for a, b in itertools.pairwise(route)}
    assert hops == expected, f"blocks took {sorted(hops)}, the testbed's route is {route}"
