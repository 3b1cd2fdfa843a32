"""The emulated bootloader's signature check (docs/signing.md) and the skips-signature-check defect.

Images are built and signed with the harness's toolkit; the device checks them with its own reader
(testbeds/emulator/signature.py).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_bootloader import FACTORY, ITYPE, MFR, SECTOR, SLOT, download

from harness.ota.image import build_image_of_total_size
from harness.ota.signing import sign_image
from testbeds.emulator.bootloader import boot, power_up
from testbeds.emulator.flash import Flash

TRUSTED = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
TRUSTED_PEM = TRUSTED.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
NEW = 0x01000200


def _image(signer: ec.EllipticCurvePrivateKey | None) -> bytes:
    image = build_image_of_total_size(3 * SECTOR, manufacturer_code=MFR, image_type=ITYPE, file_version=NEW)
    return (sign_image(image, signer) if signer is not None else image).serialize()


def _install(image: bytes, *, trusted: bytes | None, defects: frozenset[str] = frozenset()) -> Flash:
    flash = Flash(factory_version=FACTORY, factory_stack_version=2, slot_size=SLOT, sector_size=SECTOR)
    flash.defects = defects
    flash.trusted_key = trusted
    download(flash, image)
    flash.activate()
    return flash


def test_image_signed_with_the_trusted_key_is_swapped_in() -> None:
    flash = _install(_image(TRUSTED), trusted=TRUSTED_PEM)
    assert power_up(flash)[0].action == "swapped"
    assert flash.running.file_version == NEW


@pytest.mark.parametrize("signer", [OTHER, None], ids=["other-key", "unsigned"])
def test_bootloader_refuses_and_discards_an_image_the_trusted_key_did_not_sign(
    signer: ec.EllipticCurvePrivateKey | None,
) -> None:
    flash = _install(_image(signer), trusted=TRUSTED_PEM)
    result = boot(flash)
    assert (result.action, result.slot_version) == ("normal", FACTORY)
    assert "install refused: signature check failed" in result.detail
    assert flash.download_meta is None and not flash.pending_activation  # image thrown away
    assert bytes(flash.secondary[: 3 * SECTOR]) == b"\xff" * (3 * SECTOR)
    assert boot(flash).detail == "install called off"  # not asked for again


@pytest.mark.parametrize("signer", [OTHER, None], ids=["other-key", "unsigned"])
def test_skips_signature_check_swaps_in_whatever_it_is_given(
    signer: ec.EllipticCurvePrivateKey | None,
) -> None:
    flash = _install(_image(signer), trusted=TRUSTED_PEM, defects=frozenset({"skips-signature-check"}))
    assert boot(flash).action == "swapped"
    assert flash.running.file_version == NEW


@pytest.mark.parametrize("signer", [OTHER, None], ids=["other-key", "unsigned"])
def test_a_device_without_a_trusted_key_checks_no_signature(
    signer: ec.EllipticCurvePrivateKey | None,
) -> None:
    flash = _install(_image(signer), trusted=None)
    assert boot(flash).action == "swapped"
