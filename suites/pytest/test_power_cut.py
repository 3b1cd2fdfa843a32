"""A power cut half way through a bridge's download: the bridge resumes where it stopped and upgrades."""

from __future__ import annotations

from harness.evidence.timeline import read_timeline


def test_far_end_bridge_resumes_after_a_power_cut_mid_download(
    ota_session,
    start_testbed,
    build_firmware_image,
    offer_firmware_image,
    wait_until_transfer_reaches,
    cut_power,
    wait_testbed_time,
    restore_power,
    wait_until_upgrade_completes,
    firmware_version_should_be,
    device_should_be_reachable,
    transfer_should_have_resumed,
):
    start_testbed()
    image = build_firmware_image("B2", "1.1.0.0", size="32KiB")
    offer_firmware_image("B2", image)
    reached = wait_until_transfer_reaches("B2", "50%")
    cut_power("B2")
    wait_testbed_time("2min")
    restore_power("B2")
    verdict = wait_until_upgrade_completes("B2", budget="2h")
    assert verdict.verdict.value == "PASS", verdict.reason
    assert transfer_should_have_resumed("B2").verdict.value == "PASS"
    firmware_version_should_be("B2", "1.1.0.0")
    device_should_be_reachable("GSME")

    # The journal is flushed row by row, so the evidence can be read while the run goes on.
    timeline = read_timeline(ota_session.run_dir / "evidence" / "timeline.jsonl")
    restored_at = timeline[timeline["detail"].str.startswith("power-restore device=B2", na=False)][
        "virtual_time_s"
    ].iloc[0]
    requests = timeline[
        (timeline["zcl_command"] == "Image Block Request")
        & (timeline["source"] == "B2")
        & (timeline["virtual_time_s"] > restored_at)
    ]
    first_offset = int(requests["file_offset"].iloc[0])
    # Resumed, not restarted: it continues from what its flash kept (at most one block before the cut).
    assert 0 < first_offset <= reached
    assert reached - first_offset <= 64
