"""The CH as a device under test: GBCS's two-stage update through the emulated CH, checked from outside.

The harness has no hub of its own here (``radio: {type: none}``): it drives the emulated CH over its
control port and judges what the CH reports (alerts, responses, versions). Each check is shown to
catch a defective device (or CH) and to pass a healthy one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from testbed_edits import edited_testbed

from harness.errors import BadInputError, DeviceFault, Inconclusive
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict
from harness.testbed.loader import load_testbed
from harness.testbed.starter import serve_testbed

REPO = Path(__file__).resolve().parents[2]
CH_TESTBED = REPO / "testbeds" / "emulated-ch.yaml"
IMAGE_SIZE = "4KiB"


def _testbed_with(tmp_path: Path, device: str, defects: list[str]) -> Path:
    return edited_testbed(tmp_path, device, defects, source=CH_TESTBED)


def _verdicts(session: OtaSession) -> list[str]:
    assert session._test is not None
    return [f"{v.verdict}: {v.reason}" for v in session._test.verdicts]


def test_healthy_two_stage_update_through_the_ch(session: OtaSession) -> None:
    session.begin_test("two-stage", "ch")
    session.start_testbed(CH_TESTBED)
    assert session.hub is None
    image = session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE, form="gbcs")
    session.ch_update_firmware("B2", image)
    verified = session.wait_for_ch_alert("0x8F72", "B2", "2h")
    assert (verified["outcome"], verified["device"]) == (0, "B2")
    assert session.ch_read_firmware_version("B2") == 0x01000000  # verified, not yet active
    assert session.ch_activate_firmware("B2") == 0
    changed = session.wait_for_ch_alert("0x8F43", "B2", "30min")
    assert (changed["from_text"], changed["to_text"]) == ("1.0.0.0", "1.4.0.0")
    assert session.ch_read_firmware_version("B2") == 0x01040000
    assert session.ch_read_firmware_version("GSME") == 0x01000000  # from the GPF's cache
    assert session.end_test(True) is Verdict.PASS
    # Evidence: the CH's transcript (commands, replies, alerts) and the alerts in the timeline.
    transcript = (session.run_dir / "evidence" / "serial" / "CH.log").read_text()
    assert '"cmd":"update_firmware"' in transcript and "[alert] code=0x8F72" in transcript
    assert "[alert] code=0x8F43" in transcript and '"source":"gpf-cache"' in transcript
    timeline = (session.run_dir / "evidence" / "timeline.jsonl").read_text()
    assert timeline.count("ch-alert") == 2
    # The run record (and so index.html's table and plot) has the transfer the CH served.
    (transfer,) = session.record.transfers
    assert (transfer.device, transfer.from_version, transfer.to_version) == ("B2", 0x01000000, 0x01040000)
    assert transfer.verdict == "PASS" and transfer.last_offset == transfer.image_size
    assert "0x8F72" in transfer.reason and "activated: 0x8F43" in transfer.reason
    assert transfer.block_size == 48 and transfer.ended_virtual_s is not None


def test_verification_failure_fails_the_wait_for_8f72(session: OtaSession, tmp_path: Path) -> None:
    session.begin_test("rejects", "ch")
    session.start_testbed(_testbed_with(tmp_path, "B2", ["rejects-valid-image"]))
    session.ch_update_firmware("B2", session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE))
    with pytest.raises(
        DeviceFault, match=r"0x8F1C \(firmware verification failed, outcome 1: image discarded\)"
    ):
        session.wait_for_ch_alert("0x8F72", "B2")
    assert "expected 0x8F72 (firmware verification successful)" in _verdicts(session)[-1]
    assert session.ch_activate_firmware("B2", expect="no image held") == 1
    (transfer,) = session.record.transfers
    assert transfer.verdict == "FAIL" and "0x8F1C" in transfer.reason


def test_activation_without_waiting_is_caught_before_activate(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["activates-without-waiting"]))
    session.ch_update_firmware("B2", session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE))
    session.wait_for_ch_alert("0x8F72", "B2")  # it did verify the image ...
    with pytest.raises(DeviceFault, match=r"0x8F43 \(firmware version changed: 1\.0\.0\.0 .* -> 1\.4\.0\.0"):
        session.ch_activate_firmware("B2")  # ... but switched to it without being told


def test_stalled_transfer_raises_8f1b(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["stalls-at-half"]))
    session.ch_update_firmware("B2", session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE))
    with pytest.raises(
        DeviceFault, match=r"0x8F1B \(firmware transfer failed, outcome 3: transfer failure\)"
    ):
        session.wait_for_ch_alert("0x8F72", "B2", "2h")


def test_budget_spent_while_progressing_is_inconclusive(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["slow-block-requests"]))
    session.ch_update_firmware("B2", session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE))
    with pytest.raises(
        Inconclusive, match=r"no alert 0x8F72 .* within 600s; .* downloading .* still progressing"
    ):
        session.wait_for_ch_alert("0x8F72", "B2", "10min")


@pytest.mark.parametrize(("ch_defects", "fails"), [([], False), (["ch-ignores-image-hash"], True)])
def test_activate_with_another_images_hash_gets_hash_mismatch(
    session: OtaSession, tmp_path: Path, ch_defects: list[str], fails: bool
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "CH", ch_defects))
    session.ch_update_firmware("B2", session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE))
    session.wait_for_ch_alert("0x8F72", "B2")
    other = session.build_firmware_image("B2", "1.5.0.0", size=IMAGE_SIZE)
    if fails:
        with pytest.raises(DeviceFault, match=r"answered Activate Firmware with 0 \(success\), expected 2"):
            session.ch_activate_firmware("B2", other, expect="hash mismatch")
    else:
        assert session.ch_activate_firmware("B2", other, expect="hash mismatch") == 2
        assert session.ch_read_firmware_version("B2") == 0x01000000


def test_hub_keywords_refuse_a_ch_under_test_and_the_other_way_round(session: OtaSession) -> None:
    session.start_testbed(CH_TESTBED)
    image = session.build_firmware_image("B2", "1.4.0.0", size=IMAGE_SIZE)
    for step in (
        lambda: session.offer_firmware_image("B2", image),
        lambda: session.firmware_version_should_be("B2", "1.0.0.0"),
        lambda: session.activate_firmware("B2"),
        lambda: session.wait_until_upgrade_completes("B2"),
    ):
        with pytest.raises(BadInputError, match=r"field 'radio.type' is none, .* use CH Update Firmware"):
            step()
    with pytest.raises(BadInputError, match=r"field 'image' is for manufacturer 0x1235 image type 0x0300"):
        session.ch_update_firmware("B2", session.build_firmware_image("GSME", "1.4.0.0", size=IMAGE_SIZE))
    with pytest.raises(BadInputError, match=r"field 'code' must be a GBCS alert code"):
        session.wait_for_ch_alert("verified")
    with pytest.raises(BadInputError, match=r"field 'expect' must be an Activate Firmware response"):
        session.ch_activate_firmware("B2", image, expect="maybe")
    session.start_testbed(REPO / "testbeds" / "emulated.yaml")
    with pytest.raises(
        BadInputError, match=r"field 'radio.type' must be none for the CH keywords: .* hub plays CH"
    ):
        session.ch_update_firmware("B2", image)


@pytest.mark.parametrize(
    ("radio", "words"),
    [
        ("radio:\n  type: none\n  plays: CH\n", "radio.plays' is not allowed with radio type none"),
        ("radio:\n  type: virtual\n", "radio.plays' is required"),
        ("radio:\n  type: none\n  url: /dev/ttyUSB0\n", "radio.url' is not allowed with radio type none"),
    ],
)
def test_radio_type_none_is_validated(tmp_path: Path, radio: str, words: str) -> None:
    text = CH_TESTBED.read_text()
    start = text.index("radio:\n")
    end = text.index("\ndevices:")
    path = tmp_path / "bad.yaml"
    path.write_text(text[:start] + radio + text[end:])
    with pytest.raises(BadInputError, match=words):
        load_testbed(path)
    assert load_testbed(CH_TESTBED).ch_under_test


def test_testbed_up_serves_the_ch_with_its_commands() -> None:
    spec = load_testbed(CH_TESTBED)

    async def serve() -> dict[str, object]:
        served = await serve_testbed(spec, asyncio.get_running_loop())
        try:
            assert next(iter(served.urls)) == "CH"
            hello = json.loads(served.servers["CH"].answer(b'{"cmd": "hello"}'))
            assert isinstance(hello, dict)
            return hello
        finally:
            served.close()

    hello = asyncio.run(serve())
    commands = hello["result"]["commands"]  # type: ignore[index]
    assert {"update_firmware", "activate_firmware", "read_firmware_version", "devices"} <= set(commands)


@pytest.mark.parametrize("defect", [None, "never-rejoins-after-reboot"])
def test_power_cycle_on_a_ch_testbed_waits_for_the_ch_to_hear_the_announce(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    if defect is None:
        session.power_cycle_device("B2")
        assert session.ch_read_firmware_version("B2") == 0x01000000
        return
    with pytest.raises(DeviceFault, match="did not announce itself"):
        session.power_cycle_device("B2")
