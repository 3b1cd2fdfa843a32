"""The scenarios of suites/robot/ota_basic.robot as a pytest test, with the same fixture names."""

from __future__ import annotations

NEW_VERSION = "1.1.0.0"
IMAGE_SIZE = "200KiB"


def test_bridge_pair_and_gas_meter_upgrade(
    start_testbed,
    build_firmware_image,
    offer_firmware_image,
    wait_until_upgrade_completes,
    firmware_version_should_be,
    device_should_be_reachable,
    configure_reporting,
    device_should_keep_reporting,
):
    """B2 through B1, then B1, then the sleepy GSME through both; each version read back over ZigBee.

    The GSME's meter readings must keep coming after its upgrade (bindings survive it).
    """
    start_testbed()
    configure_reporting("GSME", interval="5min")
    for device, form, budget in (("B2", "zigbee", "2h"), ("B1", "zigbee", "2h"), ("GSME", "gbcs", "6h")):
        image = build_firmware_image(device, NEW_VERSION, size=IMAGE_SIZE, form=form)
        offer_firmware_image(device, image)
        verdict = wait_until_upgrade_completes(device, budget=budget)
        assert verdict.verdict.value == "PASS", verdict.reason
        firmware_version_should_be(device, NEW_VERSION)
        device_should_be_reachable("GSME")
    device_should_keep_reporting("GSME")
