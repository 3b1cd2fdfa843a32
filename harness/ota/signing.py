"""Signing OTA images: an ECDSA P-256 / SHA-256 signature in a ZigBee OTA signature sub-element.

Real ZigBee Smart Energy images are signed with ECQV implicit certificates on sect163k1 or
sect283k1 (crypto suites 1 and 2), which this harness does not emulate. It uses the same file
layout with a plain key pair instead (``docs/signing.md``):

- the signature is a sub-element with tag 0x0001 (``ecdsa_signature_suite_1``), the **last** one in
  the file: 8 bytes of signer id, then the signature as r and s, 32 bytes each, big-endian (72 bytes);
- the signer id is the first 8 bytes of the SHA-256 of the signer's public key (DER
  SubjectPublicKeyInfo), standing in for suite 1's signer IEEE address;
- the signature covers every byte of the file before the signature sub-element: the OTA header
  (whose total image size already counts the signature) and every other sub-element.

Only ZigBee-form images can be signed: a GBCS-form image has no sub-elements.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from harness.errors import BadInputError
from harness.ota.image import OtaImage, SubElement

__all__ = [
    "SIGNATURE_LENGTH",
    "TAG_SIGNATURE",
    "load_signing_key",
    "load_verifying_key",
    "sign_image",
    "signature_problem",
    "signer_id",
]

TAG_SIGNATURE = 0x0001
SIGNER_ID_LENGTH = 8
SIGNATURE_LENGTH = SIGNER_ID_LENGTH + 64
_SUB_ELEMENT_HEADER = 6


def signer_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 8-byte id of a signer: the start of the SHA-256 of its public key (DER SubjectPublicKeyInfo)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:SIGNER_ID_LENGTH]


def load_signing_key(path: Path | str, *, field: str = "sign_key") -> ec.EllipticCurvePrivateKey:
    """Read an unencrypted PEM private key for ECDSA P-256; anything else is `BadInputError`."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise BadInputError(f"cannot be read: {exc.strerror}", field=field, value=str(path)) from None
    except (ValueError, TypeError) as exc:
        raise BadInputError(
            f"is not an unencrypted PEM private key: {exc}", field=field, value=str(path)
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInputError("must be an ECDSA P-256 (secp256r1) private key", field=field, value=str(path))
    return key


def load_verifying_key(data: bytes, *, field: str, value: object) -> ec.EllipticCurvePublicKey:
    """Read a PEM public key for ECDSA P-256 from ``data``; anything else is `BadInputError`."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"is not a PEM public key: {exc}", field=field, value=value) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInputError("must be an ECDSA P-256 (secp256r1) public key", field=field, value=value)
    return key


def sign_image(image: OtaImage, key: ec.EllipticCurvePrivateKey) -> OtaImage:
    """A copy of ``image`` ending in a signature sub-element by ``key`` (an old signature is replaced)."""
    if image.form != "zigbee":
        raise BadInputError(
            "only a zigbee-form image can carry a signature sub-element", field="form", value=image.form
        )
    elements = [e for e in image.sub_elements if e.tag != TAG_SIGNATURE]
    placeholder = OtaImage(
        header=image.header,
        form="zigbee",
        sub_elements=[*elements, SubElement(TAG_SIGNATURE, bytes(SIGNATURE_LENGTH))],
    )
    data = placeholder.serialize()
    covered = data[: len(data) - _SUB_ELEMENT_HEADER - SIGNATURE_LENGTH]
    r, s = decode_dss_signature(key.sign(covered, ec.ECDSA(hashes.SHA256())))
    signature = signer_id(key.public_key()) + r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return OtaImage(
        header=image.header, form="zigbee", sub_elements=[*elements, SubElement(TAG_SIGNATURE, signature)]
    )


def signature_problem(data: bytes, key: ec.EllipticCurvePublicKey) -> str | None:
    """Why the OTA file ``data`` is not validly signed by ``key`` (None: it is)."""
    header_length = struct.unpack_from("<H", data, 6)[0] if len(data) >= 8 else 0
    pos, found = header_length, None
    while pos + _SUB_ELEMENT_HEADER <= len(data):
        tag, length = struct.unpack_from("<HI", data, pos)
        if tag == TAG_SIGNATURE:
            found = (pos, length)
        pos += _SUB_ELEMENT_HEADER + length
    if found is None:
        return "the image carries no signature sub-element (tag 0x0001)"
    start, length = found
    if start + _SUB_ELEMENT_HEADER + length != len(data):
        return "the signature sub-element is not the last one in the file"
    if length != SIGNATURE_LENGTH:
        return f"the signature sub-element has {length} bytes, not {SIGNATURE_LENGTH}"
    body = data[start + _SUB_ELEMENT_HEADER :]
    if body[:SIGNER_ID_LENGTH] != signer_id(key):
        return f"signed by signer {body[:SIGNER_ID_LENGTH].hex()}, not by the key {signer_id(key).hex()}"
    r = int.from_bytes(body[SIGNER_ID_LENGTH : SIGNER_ID_LENGTH + 32], "big")
    s = int.from_bytes(body[SIGNER_ID_LENGTH + 32 :], "big")
    try:
        key.verify(encode_dss_signature(r, s), data[:start], ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the signature does not match the image's bytes"
    return None
