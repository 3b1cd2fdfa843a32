"""Signature checks on an emulated bridge that trusts a signing key (testbed field signing_key).

The healthy firmware refuses an image signed with another key (and an unsigned one) and installs
one signed with its trusted key; the skips-signature-check defect installs the wrongly signed image,
which Device Should Refuse Image catches.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.errors import BadInputError
from harness.scenarios.session import OtaSession
from harness.scenarios.verdicts import Verdict

REPO = Path(__file__).resolve().parents[2]
SIZE = "4KiB"


def _keys(folder: Path) -> tuple[Path, Path]:
    """(trusted private key, another private key); the trusted public key goes to trusted.pub.pem."""
    paths = []
    for name in ("trusted", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        private = folder / f"{name}.key.pem"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (folder / f"{name}.pub.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        paths.append(private)
    return paths[0], paths[1]


def _testbed(tmp_path: Path, defects: list[str], signing_key: str = "trusted.pub.pem") -> Path:
    data = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    data["devices"]["B2"]["signing_key"] = signing_key
    if defects:
        data["devices"]["B2"]["defects"] = defects
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("defect", "verdict", "words"),
    [(None, Verdict.PASS, "status 0x96"), ("skips-signature-check", Verdict.FAIL, "accepted an image")],
)
def test_image_signed_with_another_key_is_refused_unless_the_check_is_skipped(
    session: OtaSession, tmp_path: Path, defect: str | None, verdict: Verdict, words: str
) -> None:
    _trusted, other = _keys(tmp_path)
    session.start_testbed(_testbed(tmp_path, [defect] if defect else []))
    image = session.build_firmware_image("B2", "1.1.0.0", size=SIZE, sign_key=str(other))
    result = session.device_should_refuse_image("B2", image, "30min")
    assert result.verdict is verdict, result.reason
    assert words in result.reason
    log = (session.run_dir / "evidence" / "serial" / "B2.log").read_text()
    if defect is None:
        assert "verify FAILED: signature check failed: signed by" in log
        session.firmware_version_should_be("B2", "1.0.0.0")
    else:
        assert "defect skips-signature-check" in log


def test_unsigned_image_is_refused_and_a_trusted_one_installs(session: OtaSession, tmp_path: Path) -> None:
    trusted, _other = _keys(tmp_path)
    session.start_testbed(_testbed(tmp_path, []))
    unsigned = session.build_firmware_image("B2", "1.1.0.0", size=SIZE)
    assert session.device_should_refuse_image("B2", unsigned, "30min").verdict is Verdict.PASS
    signed = session.build_firmware_image("B2", "1.2.0.0", size=SIZE, sign_key=str(trusted))
    session.offer_firmware_image("B2", signed)
    result = session.wait_until_upgrade_completes("B2", "2h")
    assert result.verdict is Verdict.PASS, result.reason
    session.firmware_version_should_be("B2", "1.2.0.0")


@pytest.mark.parametrize("key_file", ["missing.pem", "trusted.key.pem"], ids=["missing", "private-key"])
def test_a_bad_signing_key_is_bad_input_naming_the_field(
    session: OtaSession, tmp_path: Path, key_file: str
) -> None:
    _keys(tmp_path)
    with pytest.raises(BadInputError) as caught:
        session.start_testbed(_testbed(tmp_path, [], signing_key=key_file))
    assert caught.value.field == "devices.B2.signing_key" and caught.value.value == key_file
