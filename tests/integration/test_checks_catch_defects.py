"""Every check the harness makes, shown to catch a defective device (and to pass a healthy one).

Each case gives the far-end bridge B2 one firmware defect in a copy of the default testbed, offers
it an image through B1 and the P2P link, and asserts the verdict and its reason. The healthy case
runs the same steps with no defect, so a check that failed everything would be caught too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import BadInputError
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = "4KiB"


def _testbed_with(tmp_path: Path, device: str, defects: list[str]) -> Path:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    if defects:
        data["devices"][device]["defects"] = defects
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    ota = OtaSession(tmp_path / "run")
    yield ota
    ota.close()


CASES = [
    # (defect, budget, expected verdict, words the reason must contain)
    (None, "2h", Verdict.PASS, "upgraded from 1.0.0.0"),
    ("no-version-change", "2h", Verdict.FAIL, "rebooted but runs 1.0.0.0"),
    ("rejects-valid-image", "2h", Verdict.FAIL, "INVALID_IMAGE"),
    ("stalls-at-half", "2h", Verdict.FAIL, "no request from the device for 600s (last offset 2048"),
    ("never-reboots", "2h", Verdict.FAIL, "did not reboot and announce itself"),
    ("drops-off-after-upgrade", "2h", Verdict.FAIL, "did not reboot and announce itself"),
    ("resets-frame-counter-on-upgrade", "2h", Verdict.FAIL, "did not reboot and announce itself"),
    ("slow-block-requests", "10min", Verdict.INCONCLUSIVE, "still progressing"),
    ("slow-block-requests", "2h", Verdict.PASS, "upgraded from 1.0.0.0"),
]


@pytest.mark.parametrize(
    ("defect", "budget", "verdict", "reason"), CASES, ids=[f"{c[0] or 'healthy'}-{c[1]}" for c in CASES]
)
def test_verdict_for_each_firmware(
    session: OtaSession, tmp_path: Path, defect: str | None, budget: str, verdict: Verdict, reason: str
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    image = session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE)
    session.offer_firmware_image("B2", image)
    result = session.wait_until_upgrade_completes("B2", budget)
    assert result.verdict is verdict, result.reason
    assert reason in result.reason
    transfer = session.record.transfers[-1]
    assert transfer.verdict == verdict.value
    if verdict is Verdict.PASS:
        session.firmware_version_should_be("B2", "1.1.0.0")
        session.device_should_be_reachable("GSME")


def test_version_check_fails_a_device_that_did_not_change(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["no-version-change"]))
    session.offer_firmware_image("B2", session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE))
    session.wait_until_upgrade_completes("B2", "2h")
    with pytest.raises(AssertionError, match=r"B2 runs 1\.0\.0\.0 \(0x01000000\), expected 1\.1\.0\.0"):
        session.firmware_version_should_be("B2", "1.1.0.0")


def test_silent_device_fails_reachability(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["drops-off-after-upgrade"]))
    session.offer_firmware_image("B2", session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE))
    session.wait_until_upgrade_completes("B2", "2h")
    # B2 relays for the GSME: with B2 silent the meter is cut off too (the recall scenario).
    with pytest.raises(AssertionError, match="did not answer a read"):
        session.device_should_be_reachable("GSME")


@pytest.mark.parametrize("defect", [None, "resets-frame-counter-on-upgrade"])
def test_frame_counter_reset_makes_the_device_unheard_by_its_neighbours(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    session.offer_firmware_image("B2", session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE))
    session.wait_until_upgrade_completes("B2", "2h")
    b1_log = (session.run_dir / "evidence" / "serial" / "B1.log").read_text()
    dropped = "dropped frame from B2: frame counter" in b1_log
    if defect is None:
        assert not dropped
        session.device_should_be_reachable("B2")
        return
    # B1 remembers B2's counter from before the upgrade and drops everything B2 now sends.
    assert dropped
    with pytest.raises(AssertionError, match="did not answer a read"):
        session.device_should_be_reachable("B2")


def test_unknown_defect_is_bad_input_naming_the_field(session: OtaSession, tmp_path: Path) -> None:
    path = _testbed_with(tmp_path, "B2", ["forgets-its-keys"])
    with pytest.raises(BadInputError, match="unknown defect 'forgets-its-keys'") as caught:
        session.start_testbed(path)
    assert caught.value.field == "devices.B2.defects"


def test_same_seed_gives_the_same_timeline(tmp_path: Path) -> None:
    from harness.evidence.timeline import read_timeline

    timelines = []
    for n in range(2):
        ota = OtaSession(tmp_path / f"run{n}", seed=42)
        try:
            ota.start_testbed(REPO / "testbeds" / "emulated.yaml")
            ota.offer_firmware_image("B2", ota.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE))
            assert ota.wait_until_upgrade_completes("B2", "2h").verdict is Verdict.PASS
        finally:
            ota.close()
        frame = read_timeline(tmp_path / f"run{n}" / "timeline.parquet")
        frame = frame[frame["kind"] == "frame"]
        timelines.append(frame[["virtual_time_s", "hop", "medium", "layers"]].reset_index(drop=True))
    assert len(timelines[0]) > 500
    assert timelines[0].equals(timelines[1])
