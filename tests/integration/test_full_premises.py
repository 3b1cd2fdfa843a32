"""The full-premises bench (testbeds/full-premises.yaml): every device type joins, and the PPMID and
the HCALCS take an OTA image like any other device."""

from __future__ import annotations

from pathlib import Path

import pytest
import zigpy.types as t

from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict
from harness.testbed.loader import load_testbed

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "testbeds" / "full-premises.yaml"


def test_the_bench_has_every_device_type() -> None:
    spec = load_testbed(TESTBED)
    types = {device.type for device in spec.devices.values()}
    assert types == {"CH", "ESME", "GSME", "IHD", "PPMID", "HCALCS", "B1", "B2", "B3", "B4"}
    assert spec.device("PPMID").power_source == spec.device("HCALCS").power_source == "mains"
    assert spec.device("HCALCS").role == "router" and spec.device("PPMID").parent == "CH"
    assert spec.route("CH", "IHD") == ["CH", "B3", "B4", "IHD"]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    ota = OtaSession(tmp_path_factory.mktemp("full-premises") / "run")
    ota.start_testbed(TESTBED)
    yield ota
    ota.close()


@pytest.mark.parametrize(
    ("device", "device_id", "extra_cluster"),
    [("PPMID", 0x0506, None), ("HCALCS", 0x0504, 0x0006)],
)
def test_ppmid_and_hcalcs_describe_themselves_and_upgrade(
    session: OtaSession, device: str, device_id: int, extra_cluster: int | None
) -> None:
    assert session.hub is not None
    zdev = session.hub.device(t.EUI64(session._device_spec(device).ieee_bytes))
    assert zdev is not None
    endpoint = zdev.endpoints[1]
    assert endpoint.device_type == device_id  # Smart Energy: prepayment terminal, load control device
    assert 0x0019 in endpoint.out_clusters  # an OTA client
    if extra_cluster is not None:
        assert extra_cluster in endpoint.in_clusters
        cluster = endpoint.in_clusters[extra_cluster]
        values, _failed = session.run(cluster.read_attributes(["on_off"]))
        assert values == {"on_off": True}  # the load is switched on
    image = session.build_firmware_image(device, "1.1.0.0", size="4KiB")
    session.offer_firmware_image(device, image)
    result = session.wait_until_upgrade_completes(device, "2h")
    assert result.verdict is Verdict.PASS, result.reason
    session.firmware_version_should_be(device, "1.1.0.0")
    session.device_should_be_reachable(device)


def test_the_far_bridge_of_the_second_pair_is_swept(session: OtaSession) -> None:
    result = session.flash_power_fail_sweep("B4", "6KiB", random_sequences=10)
    assert result.verdict is Verdict.PASS


def test_a_load_switch_that_keeps_its_old_image_fails(tmp_path: Path) -> None:
    """The same upgrade check on the HCALCS fails a firmware that reboots without installing."""
    import yaml

    data = yaml.safe_load(TESTBED.read_text())
    data["devices"]["HCALCS"]["defects"] = ["no-version-change"]
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ota = OtaSession(tmp_path / "run")
    try:
        ota.start_testbed(path)
        ota.offer_firmware_image("HCALCS", ota.build_firmware_image("HCALCS", "1.1.0.0", size="4KiB"))
        result = ota.wait_until_upgrade_completes("HCALCS", "2h")
        assert result.verdict is Verdict.FAIL and "runs 1.0.0.0" in result.reason
    finally:
        ota.close()
