"""ZigBee network keys for reading an encrypted capture, kept out of every report.

Once the devices encrypt their NWK frames (ZigBee PRO 2015 §4.3, security level 5), neither the
harness's own decoder nor Wireshark can see the OTA commands inside without the network key.
A :class:`NetworkKey` carries the key together with a label and its key sequence number; it
prints as its label and a short SHA-256 fingerprint, never as the key, so a key that ends up in a
log line, an exception or the timeline gives nothing away.

:func:`write_wireshark_keys` writes the key file Wireshark and tshark read
(``zigbee_pc_keys``, the "Pre-configured Keys" table of the ZigBee protocol preferences), and
:func:`tshark_decode_command` prints the command that decodes a run's capture with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import BadInputError

__all__ = [
    "DEFAULT_TSHARK_FIELDS",
    "OTA_DISPLAY_FILTER",
    "WIRESHARK_KEY_FILE",
    "NetworkKey",
    "tshark_decode_command",
    "wireshark_key_line",
    "write_wireshark_keys",
]

WIRESHARK_KEY_FILE = "zigbee_pc_keys"
"""The name Wireshark gives its table of pre-configured ZigBee keys, in its profile folder."""

_HEX_SEPARATORS = re.compile(r"[\s:.-]")
# Wireshark's UAT files quote every field; inside the quotes it reads \xHH escapes (uat_load.l),
# so anything that is not plain printable ASCII, and the quote and backslash themselves, are escaped.
_UAT_PLAIN = re.compile(r'[^\x20-\x7e]|["\\]')


@dataclass(frozen=True, slots=True)
class NetworkKey:
    """A ZigBee network key (16 bytes) with a label and its key sequence number.

    ``key`` is in the order AES uses it, which is the order a testbed file or a Trust Centre
    configuration writes it (``01:03:05:...`` means the first key byte is 0x01). ``label`` names
    it in logs and in Wireshark (e.g. ``"CH network key"``); ``sequence_number`` (0–255) is the
    key sequence number the Trust Centre gave it, the one that secured frames carry
    (ZigBee PRO 2015 §4.5.1, auxiliary frame header).

    Printing one shows ``NetworkKey('CH network key', seq=0, sha256=1a2b3c4d…)``: the label, the
    sequence number and the first bytes of the key's SHA-256, enough to tell two keys apart and
    to check which key was used, and nothing that gives the key away.
    """

    key: bytes = field(repr=False)
    label: str
    sequence_number: int = 0

    def __post_init__(self) -> None:
        # Never put the key itself into an error message: say what is wrong with it instead.
        if not isinstance(self.key, bytes | bytearray | memoryview):
            raise BadInputError(f"a network key must be 16 bytes, not {type(self.key).__name__}", field="key")
        key = bytes(self.key)
        if len(key) != 16:
            raise BadInputError(f"a network key must be 16 bytes, this one has {len(key)}", field="key")
        object.__setattr__(self, "key", key)
        if not isinstance(self.label, str) or not self.label.strip():
            raise BadInputError("a network key needs a label (a name for logs and Wireshark)", field="label")
        if (
            isinstance(self.sequence_number, bool)
            or not isinstance(self.sequence_number, int)
            or not 0 <= self.sequence_number <= 255
        ):
            raise BadInputError(
                "the key sequence number must be a whole number from 0 to 255",
                field="sequence_number",
                value=self.sequence_number,
            )

    @classmethod
    def from_hex(cls, text: str, label: str, sequence_number: int = 0) -> NetworkKey:
        """A key written as 32 hex digits, with or without ``:``, spaces, dots or dashes between
        bytes, e.g. ``"01:03:05:07:09:0B:0D:0F:00:02:04:06:08:0A:0C:0D"``.

        A malformed key is refused with a message that names the label, never the digits.
        """
        digits = _HEX_SEPARATORS.sub("", text) if isinstance(text, str) else ""
        try:
            key = bytes.fromhex(digits)
        except ValueError:
            raise BadInputError(
                f"network key {label!r} is not written as hex digits (value not shown: it is a secret)",
                field="key",
            ) from None
        if len(key) != 16:
            raise BadInputError(
                f"network key {label!r} has {len(key)} bytes, a network key has 16 "
                "(value not shown: it is a secret)",
                field="key",
            )
        return cls(key, label, sequence_number)

    @property
    def fingerprint(self) -> str:
        """The first 8 hex digits of the key's SHA-256: tells keys apart without revealing them."""
        return hashlib.sha256(self.key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"NetworkKey({self.label!r}, seq={self.sequence_number}, sha256={self.fingerprint}…)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)


def _uat_quote(text: str) -> str:
    return '"' + _UAT_PLAIN.sub(lambda m: "".join(f"\\x{b:02x}" for b in m.group().encode()), text) + '"'


def wireshark_key_line(key: NetworkKey) -> str:
    """One line of ``zigbee_pc_keys`` for ``key``: the key as colon-separated upper-case hex in
    AES order (Wireshark's "Normal" byte order) and the label."""
    return f'"{key.key.hex(":").upper()}","Normal",{_uat_quote(key.label)}\n'


def write_wireshark_keys(path: str | os.PathLike[str], keys: Iterable[NetworkKey]) -> Path:
    """Write Wireshark's key table ``zigbee_pc_keys`` at ``path``, one line per key; returns the path.

    The file is readable by its owner only (mode 0600) and written under a temporary name, then
    renamed, so tshark never reads half a table and an older table is replaced only by a complete
    new one. Wireshark finds it when ``path`` is ``<profile folder>/zigbee_pc_keys``, e.g. with
    ``WIRESHARK_CONFIG_DIR=<folder>`` or ``XDG_CONFIG_HOME=<dir>`` and the file in
    ``<dir>/wireshark/``.
    """
    target = Path(path)
    lines = []
    for key in keys:
        if not isinstance(key, NetworkKey):
            raise BadInputError(
                f"expected NetworkKey objects, got {type(key).__name__}", field="keys", file=str(target)
            )
        lines.append(wireshark_key_line(key))
    text = (
        "# ZigBee pre-configured keys for Wireshark/tshark (written by the harness; keep secret)\n"
        + "".join(lines)
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600, so the key is never readable by others, not even
    # for the moment between writing and renaming.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


DEFAULT_TSHARK_FIELDS: tuple[str, ...] = (
    "frame.time_relative",
    "zbee_nwk.src",
    "zbee_nwk.dst",
    "zbee_zcl_general.ota.file.offset",
    "zbee_zcl_general.ota.data_size",
)
"""The fields :func:`tshark_decode_command` prints unless told otherwise."""

OTA_DISPLAY_FILTER = "zbee_zcl && zbee_aps.cluster == 0x0019"
"""A display filter for ZCL frames of the OTA Upgrade cluster. (tshark 4.0's OTA dissector adds no
protocol item of its own, so the filter ``zbee_zcl_general.ota`` matches no frame at all.)"""


def tshark_decode_command(
    pcap: str = "evidence/air.pcap",
    key_folder: str = "evidence",
    fields: Sequence[str] = DEFAULT_TSHARK_FIELDS,
    display_filter: str | None = OTA_DISPLAY_FILTER,
) -> str:
    """The shell command that decodes an encrypted capture with the run's key file, for docs and
    reports, e.g. (run in the run folder)::

        WIRESHARK_CONFIG_DIR=evidence tshark -r evidence/air.pcap \\
            -Y 'zbee_zcl && zbee_aps.cluster == 0x0019' -T fields -e ...

    ``key_folder`` is the folder holding ``zigbee_pc_keys`` (the recorder writes it into
    ``evidence/``). ``WIRESHARK_CONFIG_DIR`` makes that folder tshark's profile for this one
    command, so the user's own Wireshark settings are neither used nor changed. The command names
    the key file's folder only: the key never appears on a command line or in shell history.
    """
    parts = [f"WIRESHARK_CONFIG_DIR={shlex.quote(key_folder)}", "tshark", "-r", shlex.quote(pcap)]
    if display_filter:
        parts += ["-Y", shlex.quote(display_filter)]
    parts += ["-T", "fields"]
    for name in fields:
        parts += ["-e", shlex.quote(name)]
    return " ".join(parts)
