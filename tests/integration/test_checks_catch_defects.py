"""Every check the harness makes, shown to catch a defective device (and to pass a healthy one).

Each case gives the far-end bridge B2 one firmware defect in a copy of the default testbed, offers
it an image through B1 and the P2P link, and asserts the verdict and its reason. The healthy case
runs the same steps with no defect, so a check that failed everything would be caught too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from testbed_edits import edited_testbed as _testbed_with

from harness.errors import BadInputError, DeviceFault
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = "4KiB"


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


def _hardware_mismatch_image(tmp_path: Path) -> Path:
    from harness.ota.image import build_image_of_total_size

    image = build_image_of_total_size(
        4096,
        manufacturer_code=0x1234,
        image_type=0x0B02,
        file_version=0x01010000,
        minimum_hardware_version=5,
        maximum_hardware_version=9,
    )
    path = tmp_path / "b2-for-hw-5-to-9.ota"
    path.write_bytes(image.serialize())
    return path


@pytest.mark.parametrize("defect", [None, "accepts-foreign-image"])
@pytest.mark.parametrize("kind", ["other-manufacturer", "other-hardware"])
def test_device_must_refuse_an_image_not_meant_for_it(
    session: OtaSession, tmp_path: Path, defect: str | None, kind: str
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    if kind == "other-manufacturer":
        image = session.build_firmware_image("ESME", "1.1.0.0", size=IMAGE_SIZE)  # ESME's maker and type
    else:
        image = session.load_firmware_image(_hardware_mismatch_image(tmp_path))
    result = session.device_should_refuse_image("B2", image, "30min")
    if defect is None:
        assert result.verdict is Verdict.PASS, result.reason
        expected = "requested 0 blocks" if kind == "other-manufacturer" else "status 0x96"
        assert expected in result.reason
        session.firmware_version_should_be("B2", "1.0.0.0")
    else:
        assert result.verdict is Verdict.FAIL
        assert "accepted an image it must refuse" in result.reason


def test_refusal_check_is_inconclusive_when_the_device_never_asks(
    session: OtaSession, tmp_path: Path
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["ignores-image-notify"]))
    session.wait_testbed_time("1min")  # past its first query after boot; the next is an hour away
    image = session.build_firmware_image("ESME", "1.1.0.0", size=IMAGE_SIZE)
    result = session.device_should_refuse_image("B2", image, "10min")
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "never asked" in result.reason


def test_device_that_ignores_image_notify_is_inconclusive_not_failed(
    session: OtaSession, tmp_path: Path
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", ["ignores-image-notify"]))
    session.wait_testbed_time("1min")  # past its first query after boot; the next is an hour away
    session.offer_firmware_image("B2", session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE))
    # Within 5 minutes it neither asks nor progresses, and the stall limit (600 s) has not passed yet.
    result = session.wait_until_upgrade_completes("B2", "5min")
    assert result.verdict is Verdict.INCONCLUSIVE, result.reason
    # ... and its own hourly query, when it comes, still gets the image.
    assert session.wait_until_upgrade_completes("B2", "2h").verdict is Verdict.PASS


RESUME_CASES = [
    (None, Verdict.PASS, "resumed at offset"),
    ("restarts-download-after-power-cut", Verdict.FAIL, "restarted at offset 0"),
    ("resumes-at-wrong-offset", Verdict.FAIL, "never arrived"),
]


@pytest.mark.parametrize(
    ("defect", "verdict", "reason"), RESUME_CASES, ids=[c[0] or "healthy" for c in RESUME_CASES]
)
def test_resume_check_after_a_power_cut(
    session: OtaSession, tmp_path: Path, defect: str | None, verdict: Verdict, reason: str
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    session.offer_firmware_image("B2", session.build_firmware_image("B2", "1.1.0.0", size="32KiB"))
    session.wait_until_transfer_reaches("B2", "50%")
    session.power_cycle_device("B2", "1min")
    # Each of these firmwares still ends up reporting the new version: only the resume check tells.
    assert session.wait_until_upgrade_completes("B2", "2h").verdict is Verdict.PASS
    if verdict is Verdict.PASS:
        assert reason in session.transfer_should_have_resumed("B2").reason
    else:
        with pytest.raises(AssertionError, match=reason):
            session.transfer_should_have_resumed("B2")


@pytest.mark.parametrize("defect", [None, "accepts-downgrade"])
def test_device_must_refuse_a_downgrade(session: OtaSession, tmp_path: Path, defect: str | None) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    older = session.build_firmware_image("B2", "0.9.0.0", size=IMAGE_SIZE)
    result = session.device_should_refuse_image("B2", older, "30min")
    if defect is None:
        assert result.verdict is Verdict.PASS, result.reason
        session.firmware_version_should_be("B2", "1.0.0.0")
    else:
        assert result.verdict is Verdict.FAIL and "accepted" in result.reason


def test_sleepy_meter_that_stops_polling_fails_the_read_back(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_testbed_with(tmp_path, "GSME", ["stops-polling-after-upgrade"]))
    session.offer_firmware_image("GSME", session.build_firmware_image("GSME", "1.1.0.0", size=IMAGE_SIZE))
    result = session.wait_until_upgrade_completes("GSME", "2h")
    assert result.verdict is Verdict.FAIL
    assert "did not answer a read of Ota.current_file_version" in result.reason
    transfer = session.record.transfers[-1]
    assert (transfer.verdict, transfer.reason) == ("FAIL", result.reason), "the transfer record is concluded"


@pytest.mark.parametrize(
    "defect", [None, "activates-without-waiting", "activates-before-upgrade-end-response"]
)
def test_two_stage_update_waits_for_activate_firmware(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    image = session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE)
    session.offer_firmware_image("B2", image, activation="on-command")
    result = session.wait_until_upgrade_completes("B2", "2h")
    if defect is not None:
        assert result.verdict is Verdict.FAIL
        assert "activated although told to wait" in result.reason
        return
    assert result.verdict is Verdict.PASS, result.reason
    session.firmware_version_should_be("B2", "1.0.0.0")
    session.wait_testbed_time("2h")  # it keeps asking hourly, and keeps waiting
    session.firmware_version_should_be("B2", "1.0.0.0")
    assert "activated 1.1.0.0" in session.activate_firmware("B2").reason
    session.firmware_version_should_be("B2", "1.1.0.0")
    session.device_should_be_reachable("GSME")


@pytest.mark.parametrize("defect", [None, "loses-bindings-on-upgrade"])
def test_device_should_keep_reporting_catches_lost_bindings(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "ESME", [defect] if defect else []))
    session.configure_reporting("ESME", interval="60s")
    session.device_should_keep_reporting("ESME")  # reports before the upgrade, whatever the firmware
    # A power cut is not an upgrade: the tables are in flash, so both firmwares keep reporting.
    session.power_cycle_device("ESME")
    session.device_should_keep_reporting("ESME")
    image = session.build_firmware_image("ESME", "1.1.0.0", size=IMAGE_SIZE)
    session.offer_firmware_image("ESME", image)
    assert session.wait_until_upgrade_completes("ESME", "2h").verdict is Verdict.PASS
    if defect is None:
        session.device_should_keep_reporting("ESME")
    else:
        with pytest.raises(DeviceFault, match=r"binding table has 0 entries.*binding to the hub is gone"):
            session.device_should_keep_reporting("ESME")


@pytest.mark.parametrize("defect", [None, "skips-image-verification"])
def test_device_must_refuse_a_corrupted_image(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    from harness.ota import mutate

    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    good = session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE)
    corrupt = tmp_path / "b2-corrupt.ota"
    corrupt.write_bytes(mutate.flip_bit(good.read_bytes(), 3000 * 8))  # one bit of the firmware body
    result = session.device_should_refuse_image("B2", session.load_firmware_image(corrupt), "30min")
    if defect is None:
        assert result.verdict is Verdict.PASS, result.reason
        assert "status 0x96" in result.reason
        session.firmware_version_should_be("B2", "1.0.0.0")
    else:
        assert result.verdict is Verdict.FAIL
        assert "accepted an image it must refuse" in result.reason


@pytest.mark.parametrize("defect", [None, "p2p-protocol-skew"])
def test_upgrading_the_near_bridge_alone_to_a_new_p2p_protocol(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(REPO / "testbeds" / "emulated.yaml")
    session.device_should_be_reachable("GSME")
    image = session.build_firmware_image(
        "B1", "1.1.0.0", size=IMAGE_SIZE, p2p_protocol=2, behaviours=[defect] if defect else None
    )
    session.offer_firmware_image("B1", image)
    assert session.wait_until_upgrade_completes("B1", "2h").verdict is Verdict.PASS
    session.firmware_version_should_be("B1", "1.1.0.0")
    if defect is None:
        # The new B1 speaks protocol 1 to the old B2: the meter behind them still answers.
        session.device_should_be_reachable("GSME")
        return
    with pytest.raises(AssertionError, match="did not answer a read"):
        session.device_should_be_reachable("GSME")
    b2_log = (session.run_dir / "evidence" / "serial" / "B2.log").read_text()
    assert "P2P frame from B1 in protocol version 2 not understood" in b2_log


def test_unknown_behaviour_in_an_image_is_bad_input(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(REPO / "testbeds" / "emulated.yaml")
    with pytest.raises(BadInputError, match="unknown behaviour 'forgets-its-keys'") as caught:
        session.build_firmware_image("B1", "1.1.0.0", behaviours="forgets-its-keys")
    assert caught.value.field == "behaviours"


@pytest.mark.parametrize("defect", [None, "never-rejoins-after-reboot"])
def test_power_cycle_catches_a_device_that_never_rejoins(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "GSME", [defect] if defect else []))
    if defect is None:
        session.power_cycle_device("GSME")
        session.device_should_be_reachable("GSME")
        return
    with pytest.raises(AssertionError, match="did not announce itself"):
        session.power_cycle_device("GSME")
    with pytest.raises(AssertionError, match="did not answer a read"):
        session.device_should_be_reachable("GSME")


@pytest.mark.parametrize("defect", [None, "children-do-not-rejoin"])
def test_sleepy_child_is_unreachable_when_its_parent_forgets_it(
    session: OtaSession, tmp_path: Path, defect: str | None
) -> None:
    session.start_testbed(_testbed_with(tmp_path, "B2", [defect] if defect else []))
    session.power_cycle_device("B2")
    session.device_should_be_reachable("B2")
    if defect is None:
        session.device_should_be_reachable("GSME")
        return
    with pytest.raises(AssertionError, match="did not answer a read"):
        session.device_should_be_reachable("GSME")


INSTALL_CODE = "83:FE:D3:40:7A:93:97:23:A5:C6:39:B2:69:16:D5:05:C3:B5"


@pytest.mark.parametrize(
    ("defect", "allow_tc_rejoin", "verdict", "reason"),
    [
        (None, True, Verdict.PASS, "upgraded from 1.0.0.0"),
        ("loses-network-key-on-stack-upgrade", True, Verdict.FAIL, "came back by a trust-centre rejoin"),
        ("loses-network-key-on-stack-upgrade", False, Verdict.FAIL, "which the Trust Centre refused"),
    ],
)
def test_stack_upgrade_must_keep_the_network_key(
    session: OtaSession,
    tmp_path: Path,
    defect: str | None,
    allow_tc_rejoin: bool,
    verdict: Verdict,
    reason: str,
) -> None:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    data["devices"]["B2"]["install_code"] = INSTALL_CODE
    data["allow_trust_centre_rejoin"] = allow_tc_rejoin
    if defect:
        data["devices"]["B2"]["defects"] = [defect]
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    session.start_testbed(path)
    # A ZigBee stack upgrade: the new image says it runs stack version 3.
    image = session.build_firmware_image("B2", "1.1.0.0", size=IMAGE_SIZE, stack_version=3)
    session.offer_firmware_image("B2", image)
    result = session.wait_until_upgrade_completes("B2", "2h")
    assert result.verdict is verdict, result.reason
    assert reason in result.reason
    if verdict is Verdict.PASS:
        session.device_should_be_reachable("GSME")
