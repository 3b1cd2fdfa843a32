"""Signed images (docs/signing.md): the harness signs, and both readers (the harness's and the
emulator's own) accept exactly the images signed with the trusted key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from harness.errors import BadInputError
from harness.ota.cli import app
from harness.ota.image import build_image_of_total_size, load_image
from harness.ota.signing import (
    SIGNATURE_LENGTH,
    TAG_SIGNATURE,
    load_signing_key,
    sign_image,
    signature_problem,
    signer_id,
)
from testbeds.emulator.signature import signature_problem as device_check


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_private(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _image(form: str = "zigbee"):  # type: ignore[no-untyped-def]
    return build_image_of_total_size(
        2048, manufacturer_code=0x1234, image_type=0x0B02, file_version=0x01010000, form=form
    )


def test_a_signed_image_ends_in_the_signature_and_both_readers_accept_it() -> None:
    key = _key()
    data = sign_image(_image(), key).serialize()
    assert len(data) == 2048 + 6 + SIGNATURE_LENGTH
    assert data[-SIGNATURE_LENGTH - 6 : -SIGNATURE_LENGTH] == bytes(
        [TAG_SIGNATURE, 0, SIGNATURE_LENGTH, 0, 0, 0]
    )
    assert data[-SIGNATURE_LENGTH:][:8] == signer_id(key.public_key())
    assert signature_problem(data, key.public_key()) is None
    assert device_check(data, _pem(key.public_key())) is None
    parsed = load_image(_tmp_write(data))
    assert [e.tag for e in parsed.image.sub_elements] == [0x0000, TAG_SIGNATURE]


def _tmp_write(data: bytes) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "image.ota"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("damage", ["other-key", "flipped-bit", "unsigned", "signature-not-last"])
def test_both_readers_refuse_what_the_trusted_key_did_not_sign(damage: str) -> None:
    trusted, other = _key(), _key()
    image = _image()
    if damage == "other-key":
        data = sign_image(image, other).serialize()
    elif damage == "flipped-bit":
        data = bytearray(sign_image(image, trusted).serialize())
        data[700] ^= 0x01
        data = bytes(data)
    elif damage == "unsigned":
        data = image.serialize()
    else:
        signed = sign_image(image, trusted)
        signed.sub_elements.append(type(signed.sub_elements[0])(0x0003, b"x" * 4))
        data = signed.serialize()
    assert signature_problem(data, trusted.public_key()) is not None
    assert device_check(data, _pem(trusted.public_key())) is not None


def test_gbcs_images_cannot_be_signed() -> None:
    with pytest.raises(BadInputError) as caught:
        sign_image(_image("gbcs"), _key())
    assert caught.value.field == "form"


def test_signing_key_must_be_a_p256_private_key(tmp_path: Path) -> None:
    public = tmp_path / "pub.pem"
    public.write_bytes(_pem(_key().public_key()))
    with pytest.raises(BadInputError) as caught:
        load_signing_key(public)
    assert caught.value.field == "sign_key" and caught.value.value == str(public)
    other_curve = _write_private(ec.generate_private_key(ec.SECP384R1()), tmp_path / "p384.pem")
    with pytest.raises(BadInputError, match="P-256"):
        load_signing_key(other_curve)
    with pytest.raises(BadInputError, match="cannot be read"):
        load_signing_key(tmp_path / "missing.pem")


def test_cli_build_signs_with_sign_key_keeping_the_size(tmp_path: Path) -> None:
    key = _key()
    pem = _write_private(key, tmp_path / "vendor.key.pem")
    out = tmp_path / "signed.ota"
    runner = CliRunner()
    args = ["build", str(out), "--manufacturer-code", "0x1234", "--image-type", "0x0B02"]
    args += ["--file-version", "0x01010000", "--size", "4096", "--sign-key", str(pem)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert len(data) == 4096
    assert device_check(data, _pem(key.public_key())) is None
    shown = json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).stdout)
    assert [e["name"] for e in shown["sub_elements"]] == ["upgrade_image", "ecdsa_signature_suite_1"]
    gbcs = runner.invoke(app, [*args, "--form", "gbcs"])
    assert gbcs.exit_code == 3 and "--sign-key" in gbcs.stderr and "zigbee" in gbcs.stderr
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "nope.pem")])
    assert bad.exit_code == 3 and "--sign-key" in bad.stderr
