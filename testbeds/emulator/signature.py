"""Image signature check of an emulated device: its own reader of the signature sub-element.

Written apart from the harness's signing code (``harness/ota/signing.py``), from the layout in
``docs/signing.md``, so a mistake in one cannot hide a mistake in the other. A device whose testbed
entry names a ``signing_key`` (a PEM ECDSA P-256 public key) trusts that key only: its OTA client
answers an image that is not signed by it with INVALID_IMAGE, and its bootloader checks again before
it swaps an image in. The ``skips-signature-check`` defect does neither.

The signature is the last sub-element of a ZigBee-form OTA file, tag 0x0001, 72 bytes: an 8-byte
signer id (the first 8 bytes of SHA-256 of the signer's DER SubjectPublicKeyInfo), then r and s of
an ECDSA P-256 / SHA-256 signature, 32 bytes each, big-endian. It covers every file byte before the
signature sub-element.
"""

from __future__ import annotations

import functools
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .ota_file import OtaFileError, parse_header

__all__ = ["signature_problem"]

_TAG = 0x0001
_LENGTH = 72


@functools.lru_cache(maxsize=16)
def _trusted(pem: bytes) -> tuple[ec.EllipticCurvePublicKey, bytes] | None:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, hashlib.sha256(der).digest()[:8]


def signature_problem(image: bytes, trusted_pem: bytes) -> str | None:
    """Why ``image`` (a whole OTA file) is not signed by the trusted key, or None if it is."""
    trusted = _trusted(bytes(trusted_pem))
    if trusted is None:
        return "the trusted key is not an ECDSA P-256 public key: nothing can be verified"
    key, key_id = trusted
    try:
        header = parse_header(image)
    except OtaFileError as exc:
        return f"no OTA header: {exc}"
    end = min(header.total_image_size, len(image))
    pos = header.header_length
    last: tuple[int, int, int] | None = None
    while pos + 6 <= end:
        tag, length = struct.unpack_from("<HI", image, pos)
        if pos + 6 + length > end:
            break
        last = (tag, pos, length)
        pos += 6 + length
    if last is None or pos != end or last[0] != _TAG:
        return "unsigned: the image does not end in a signature sub-element (tag 0x0001)"
    _tag, start, length = last
    if length != _LENGTH:
        return f"signature sub-element of {length} bytes, not {_LENGTH}"
    signature = image[start + 6 : start + 6 + length]
    if signature[:8] != key_id:
        return f"signed by {signature[:8].hex()}, not by the trusted key {key_id.hex()}"
    r = int.from_bytes(signature[8:40], "big")
    s = int.from_bytes(signature[40:72], "big")
    try:
        key.verify(encode_dss_signature(r, s), bytes(image[:start]), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the signature does not match the image"
    return None
