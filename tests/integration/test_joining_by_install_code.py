"""Factory-new devices join only when the harness permits them, under their install code's link key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from zigpy.util import CrcX25

from harness.errors import BadInputError, DeviceFault
from harness.scenarios.session import OtaSession

REPO = Path(__file__).resolve().parents[2]


def _install_code(seed: int) -> str:
    code = bytes((seed * 37 + i * 11) & 0xFF for i in range(16))
    crc = CrcX25()
    crc.process(code)
    return (code + crc.finalbytes(byteorder="little")).hex(":")


def _factory_new_testbed(tmp_path: Path, codes: dict[str, str]) -> Path:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    for name, code in codes.items():
        data["devices"][name]["install_code"] = code
        data["devices"][name]["commissioned"] = False
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_only_the_permitted_device_joins(session: OtaSession, tmp_path: Path) -> None:
    session.start_testbed(_factory_new_testbed(tmp_path, {"IHD": _install_code(1), "ESME": _install_code(2)}))
    with pytest.raises(DeviceFault, match="not on the network"):
        session.device_should_be_reachable("IHD")
    session.permit_joining_with_install_code("IHD", "2min")
    session.wait_until_joined("IHD", "3min")
    session.device_should_be_reachable("IHD")
    # The ESME asked too, during the same window, but the Trust Centre had no permit for it.
    with pytest.raises(DeviceFault, match="did not join"):
        session.wait_until_joined("ESME", "3min")
    session.permit_joining_with_install_code("ESME", "2min")
    session.wait_until_joined("ESME", "3min")
    session.device_should_be_reachable("ESME")
    serial = (session.run_dir / "evidence" / "serial").glob("*.log")
    assert all(_install_code(1).replace(":", "") not in p.read_text().lower() for p in serial)


def test_a_wrong_install_code_on_file_keeps_the_device_out(session: OtaSession, tmp_path: Path) -> None:
    path = _factory_new_testbed(tmp_path, {"IHD": _install_code(3)})
    session.start_testbed(path)
    # The device's label says one code; the file now says another: the key it gets cannot be decrypted.
    assert session.spec is not None
    ihd = session.spec.devices["IHD"]
    session.spec.devices["IHD"] = ihd.model_copy(update={"install_code": _install_code(4)})
    session.permit_joining_with_install_code("IHD", "2min")
    with pytest.raises(DeviceFault, match="did not join"):
        session.wait_until_joined("IHD", "3min")


def test_factory_new_needs_an_install_code(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    data["devices"]["IHD"]["commissioned"] = False
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from harness.testbed.loader import load_testbed

    with pytest.raises(BadInputError, match="needs an install_code") as caught:
        load_testbed(path)
    assert caught.value.field == "devices.IHD.commissioned"


def test_a_bad_install_code_crc_is_named_without_echoing_the_code(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    code = _install_code(5)
    data["devices"]["IHD"]["install_code"] = code[:-2] + ("00" if code[-2:] != "00" else "01")
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from harness.testbed.loader import load_testbed

    with pytest.raises(BadInputError, match="CRC-16 does not match") as caught:
        load_testbed(path)
    assert code[:20] not in str(caught.value)


def test_a_mistyped_network_key_is_not_echoed(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    data["network_key"] = "01:03:05:07:09:0b:0d:0f:00:02:04:06:08:0a:0c"  # one byte short
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from harness.testbed.loader import load_testbed

    with pytest.raises(BadInputError, match="128-bit network key") as caught:
        load_testbed(path)
    assert "0b:0d:0f" not in str(caught.value)
