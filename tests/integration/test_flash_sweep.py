"""The flash power-fail sweep (G1) through control ports, judged by the harness.

Each bootloader defect of the emulator is given to B2 in a copy of the default testbed; the sweep,
driven only through B2's control port, must FAIL it naming a step, and PASS the healthy firmware.
A small image (4 KiB: one sector per slot, a few dozen flash steps per path) keeps each run short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testbed_edits import edited_testbed

from harness.errors import BadInputError, DeviceFault
from harness.scenarios.flash_sweep import judge_point
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict

REPO = Path(__file__).resolve().parents[2]
SIZE = "6KiB"  # two sectors: the swap has a sector to resume after


def _testbed_with(tmp_path: Path, defects: list[str]) -> Path:
    return edited_testbed(tmp_path, "B2", defects)


def _sweep_events(run_dir: Path) -> list[str]:
    rows = [json.loads(line) for line in (run_dir / "evidence" / "timeline.jsonl").read_text().splitlines()]
    return [r["detail"] for r in rows if r["kind"] == "event" and r["detail"].startswith("flash-sweep ")]


def test_healthy_bridge_recovers_at_every_cut(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, []))
    result = session.flash_power_fail_sweep("B2", SIZE, random_sequences=30, paths="upgrade,revert,download")
    assert result.verdict is Verdict.PASS
    assert "all " in result.reason and "recovered" in result.reason
    [event] = _sweep_events(session.run_dir)
    assert "failed=0" in event and "bricked=0" in event and "random_sequences=30" in event
    steps = json.loads(event.split("steps=")[1].split(" points=")[0])
    assert set(steps) == {"upgrade", "revert", "download"} and min(steps.values()) > 10
    points = int(event.split(" points=")[1].split()[0])
    assert points == 3 * sum(steps.values()) + 30
    # The sweep ran on a scratch copy: the bridge itself still runs its factory firmware, on air.
    session.firmware_version_should_be("B2", "1.0.0.0")
    session.device_should_be_reachable("GSME")


@pytest.mark.parametrize(
    ("defect", "words"),
    [
        ("bricks-on-cut-during-swap", "bricked"),
        ("torn-boot-flags", "cut torn step"),
        ("no-boot-try-counter", "revert path"),
        ("confirms-before-self-test", "revert path"),
    ],
)
def test_each_bootloader_defect_fails_naming_the_first_bad_step(
    session: OtaSession, tmp_path: Path, defect: str, words: str
) -> None:
    session.start_testbed(_testbed_with(tmp_path, [defect]))
    with pytest.raises(DeviceFault, match=r"B2: flash power-fail sweep: \d+ of \d+ points") as caught:
        session.flash_power_fail_sweep("B2", SIZE, random_sequences=10)
    assert words in str(caught.value)
    assert "first: " in str(caught.value)
    [event] = _sweep_events(session.run_dir)
    assert "failed=0" not in event and '"problems"' in event


def test_torn_boot_flags_is_missed_by_cuts_between_steps_only(session: OtaSession, tmp_path: Path) -> None:
    """Why the sweep also tears steps: before/after cuts alone pass the torn-boot-flags defect
    (MCUboot #1966); the first failure the full sweep names is a torn one."""
    session.start_testbed(_testbed_with(tmp_path, ["torn-boot-flags"]))
    with pytest.raises(DeviceFault) as caught:
        session.flash_power_fail_sweep("B2", SIZE, random_sequences=0)
    message = str(caught.value)
    assert "cut torn step" in message and "bricked" in message
    assert "cut before" not in message.split("first: ")[1] and "cut after" not in message.split("first: ")[1]


def test_bad_sweep_arguments_are_bad_input(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, []))
    with pytest.raises(BadInputError) as caught:
        session.flash_power_fail_sweep("B2", SIZE, paths="upgrade,sideways")
    assert caught.value.field == "paths" and caught.value.value == "sideways"
    with pytest.raises(BadInputError) as caught:
        session.flash_power_fail_sweep("B2", "100")
    assert caught.value.field == "image_size"
    with pytest.raises(BadInputError) as caught:
        session.flash_power_fail_sweep("CH", SIZE)
    assert caught.value.field == "device"
    with pytest.raises(BadInputError) as caught:
        session.flash_power_fail_sweep("B2", SIZE, random_sequences="many")
    assert caught.value.field == "random_sequences"


OLD, NEW = "a" * 64, "b" * 64
GOOD_UPGRADE = {
    "bricked": False,
    "running_sha256": NEW,
    "primary_sha256": NEW,
    "secondary_sha256": OLD,
    "flags": {"swap_done": True, "revert_done": False, "image_ok": True, "download_pending": False},
}


def test_judge_passes_the_expected_outcome_and_names_each_deviation() -> None:
    assert judge_point("upgrade", GOOD_UPGRADE, OLD, NEW) == []
    assert judge_point("download", GOOD_UPGRADE, OLD, NEW) == []
    reverted = {
        **GOOD_UPGRADE,
        "running_sha256": OLD,
        "primary_sha256": OLD,
        "secondary_sha256": NEW,
        "flags": {"swap_done": True, "revert_done": True, "image_ok": False, "download_pending": False},
    }
    assert judge_point("revert", reverted, OLD, NEW) == []
    assert judge_point("upgrade", reverted, OLD, NEW) == [
        "runs the old image, expected the new image",
        "primary slot holds the old image, expected the new image",
        "secondary slot holds the new image, expected the old image",
        "flag revert_done is True, expected False",
        "flag image_ok is False, expected True",
    ]
    assert judge_point("upgrade", {**GOOD_UPGRADE, "bricked": True, "detail": "no image"}, OLD, NEW) == [
        "bricked: no image"
    ]
    mixed = {**GOOD_UPGRADE, "secondary_sha256": "c" * 64}
    assert judge_point("upgrade", mixed, OLD, NEW) == [
        "secondary slot holds SHA-256 cccccccccccccccc..., expected the old image"
    ]
    pending = {**GOOD_UPGRADE, "flags": {**GOOD_UPGRADE["flags"], "download_pending": True}}  # type: ignore[dict-item]
    assert judge_point("upgrade", pending, OLD, NEW) == ["flag download_pending is True, expected False"]
