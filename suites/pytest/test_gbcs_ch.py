"""GBCS two-stage update through the CH under test (the pytest twin of suites/robot/gbcs_ch.robot)."""

from __future__ import annotations

from importlib import resources

CH_TESTBED = str(resources.files("testbeds") / "emulated-ch.yaml")


def test_far_end_bridge_takes_a_two_stage_update_from_the_ch(
    start_testbed,
    build_firmware_image,
    ch_update_firmware,
    wait_for_ch_alert,
    ch_activate_firmware,
    ch_read_firmware_version,
):
    start_testbed(CH_TESTBED)
    image = build_firmware_image("B2", "1.4.0.0", size="16KiB", form="gbcs")
    ch_update_firmware("B2", image)
    assert wait_for_ch_alert("0x8F72", "B2", budget="2h")["outcome"] == 0
    assert ch_read_firmware_version("B2") == 0x01000000
    ch_activate_firmware("B2")
    assert wait_for_ch_alert("0x8F43", "B2", budget="30min")["to_text"] == "1.4.0.0"
    assert ch_read_firmware_version("B2") == 0x01040000
    assert ch_read_firmware_version("GSME") == 0x01000000  # the Gas Proxy Function's cache
