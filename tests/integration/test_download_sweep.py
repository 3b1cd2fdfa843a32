"""Download Power Fail Sweep: a power cut at every step of a download, each a fresh upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
from testbed_edits import edited_testbed

from harness.errors import BadInputError, DeviceFault
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict


def test_healthy_bridge_resumes_at_every_cut_point(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(edited_testbed(tmp_path, "B2", []))
    result = session.download_power_fail_sweep("B2", image_size="8KiB", every="2KiB")
    assert result.verdict is Verdict.PASS
    assert "each of 3 points of a 8192-byte download" in result.reason
    assert session.read_firmware_version("B2") == 0x01000300  # the third and last point's image
    assert len(session.power_cuts["B2"]) == 3


@pytest.mark.parametrize(
    ("defect", "words"),
    [
        ("restarts-download-after-power-cut", "first at offset 2048 of 8192: restarted at offset 0"),
        ("resumes-at-wrong-offset", "first at offset 2048 of 8192: resumed at offset 3072"),
    ],
)
def test_each_resume_defect_fails_the_sweep(
    session: OtaSession, tmp_path: Path, defect: str, words: str
) -> None:
    session.start_testbed(edited_testbed(tmp_path, "B2", [defect]))
    with pytest.raises(DeviceFault, match="download cut points failed") as caught:
        session.download_power_fail_sweep("B2", image_size="8KiB", every="2KiB")
    assert words in str(caught.value)


def test_sweep_arguments_are_checked(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(edited_testbed(tmp_path, "B2", []))
    with pytest.raises(BadInputError, match="less than the image size") as caught:
        session.download_power_fail_sweep("B2", image_size="4KiB", every="4KiB")
    assert caught.value.field == "every"
    with pytest.raises(BadInputError, match="at most 255"):
        session.download_power_fail_sweep("B2", image_size="64KiB", every="64")
