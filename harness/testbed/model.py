"""What a testbed file says exists: the devices of one premises, how they reach each other, and the radio.

A testbed file describes one premises: a Communications Hub (CH), meters, displays and P2P Alt HAN
bridges (B1-B4), the radio and P2P links between them, and the radio the harness's own ZigBee side
uses. This module holds the validated model of such a file (pydantic); :mod:`harness.testbed.loader`
reads the YAML and turns every mistake into a :class:`~harness.errors.BadInputError` naming the file,
line, field and value. No bridge type's meaning is hard-coded: each bridge's type, power source,
ZigBee role and P2P peers come from the file.

Every field is described in ``docs/testbed.md``.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import zigpy.util
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from harness.errors import BadInputError

DeviceType = Literal["CH", "ESME", "GSME", "IHD", "PPMID", "HCALCS", "B1", "B2", "B3", "B4"]
Role = Literal["coordinator", "router", "end_device", "sleepy_end_device"]
PowerSource = Literal["mains", "battery"]
Medium = Literal["radio", "p2p"]
RadioType = Literal["virtual", "znp", "ezsp", "deconz", "none"]

BRIDGE_TYPES: frozenset[str] = frozenset({"B1", "B2", "B3", "B4"})
"""Device types that are P2P Alt HAN bridges (they need a ``bridge:`` section)."""

ROUTING_ROLES: frozenset[str] = frozenset({"coordinator", "router"})
"""ZigBee roles that relay frames for others and can be an end device's parent."""

END_DEVICE_ROLES: frozenset[str] = frozenset({"end_device", "sleepy_end_device"})
"""ZigBee roles that talk only through their parent."""

DEFAULT_POLL_INTERVAL = 7.5
"""Seconds between a sleepy end device's polls of its parent when the file gives none."""

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_TESTBED_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION_PART_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|min|h|m|s)\s*")
_DURATION_UNITS = {"h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_ORDER = {"h": 0, "min": 1, "m": 1, "s": 2, "ms": 3}
_DURATION_HELP = "write a number with a unit, e.g. 250ms, 7.5s, 2min, 2h or 1h30m (a bare number is seconds)"


class SpecError(ValueError):
    """A rule about the testbed is broken; ``loc`` says which field, relative to the model that raised it.

    Raised inside the model's validators; the loader turns it into a ``BadInputError`` with the file
    and line of that field.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str, value: object = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.value = value


# --- durations -------------------------------------------------------------------------------


def parse_duration(text: str | float) -> float:
    """Turn a duration such as ``250ms``, ``7.5s``, ``2min``, ``2h`` or ``1h30m`` into seconds.

    A bare number (``7.5`` or ``"7.5"``) is seconds. Units: ``ms``, ``s``, ``m`` or ``min``, ``h``;
    several may be combined, largest first (``1h30m``, ``2m30s``). Raises ``ValueError`` saying what
    is allowed when the text is not a duration or is negative.
    """
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise ValueError(f"must be a duration; {_DURATION_HELP}")
    seconds = float(text) if isinstance(text, (int, float)) else _parse_duration_text(text)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"must be a finite duration; {_DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative (got {text!r}); {_DURATION_HELP}")
    return seconds


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"must be a duration, not empty text; {_DURATION_HELP}")
    try:
        return float(stripped)
    except ValueError:
        pass
    if stripped.startswith("-"):
        raise ValueError(f"a duration must not be negative (got {text!r}); {_DURATION_HELP}")
    total = 0.0
    position = 0
    last_rank = -1
    while position < len(stripped):
        match = _DURATION_PART_RE.match(stripped, position)
        if match is None:
            raise ValueError(f"'{text}' is not a duration; {_DURATION_HELP}")
        number, unit = match.groups()
        rank = _DURATION_ORDER[unit]
        if rank <= last_rank:
            raise ValueError(
                f"'{text}' is not a duration: give each unit once, largest first; {_DURATION_HELP}"
            )
        last_rank = rank
        total += float(number) * _DURATION_UNITS[unit]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Write a duration in seconds the way a testbed file would: ``15ms``, ``7.5s``, ``2min``, ``1h30m``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds as a float; a file may write ``250ms``, ``7.5s``, ``2min``, ``2h``, ``1h30m`` or a bare number."""


# --- small value types -----------------------------------------------------------------------


def _integer(low: int, high: int, what: str, hex_digits: int = 0) -> Callable[[object], int]:
    def show(number: int) -> str:
        return f"0x{number:0{hex_digits}X}" if hex_digits else str(number)

    allowed = f"{what}: an integer from {show(low)} to {show(high)}"

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"must be {allowed}")
        if isinstance(value, str):
            try:
                value = int(value.strip(), 0)
            except ValueError:
                raise ValueError(f"must be {allowed} (decimal, or hex such as 0x1A62)") from None
        if not low <= value <= high:
            raise ValueError(f"must be {allowed}")
        return value

    return check


def _eui64(value: object) -> str:
    example = "'00:0d:6f:ff:fe:00:00:01' or '000d6ffffe000001'"
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"must be an EUI-64 written as text in quotes, e.g. {example} (YAML read a number)")
    if not isinstance(value, str):
        raise ValueError(f"must be an EUI-64 address, e.g. {example}")
    digits = value.strip().lower().replace(":", "").replace("-", "")
    if len(digits) != 16 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"must be an EUI-64 address: 8 bytes in hex, e.g. {example}")
    if digits in ("0" * 16, "f" * 16):
        raise ValueError("must be a real EUI-64 address; all zeros and all FF are reserved")
    return ":".join(digits[i : i + 2] for i in range(0, 16, 2))


def _loss(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number from 0 (no loss) up to but not including 1")
    if not 0 <= value < 1:
        raise ValueError("must be a number from 0 (no loss) up to but not including 1")
    return float(value)


def _device_name(value: object) -> object:
    if isinstance(value, str) and not _NAME_RE.fullmatch(value):
        raise ValueError(
            "must be a device name: a letter, then up to 31 letters, digits, '_' or '-' (e.g. GSME, B2)"
        )
    return value


def _testbed_name(value: object) -> object:
    if isinstance(value, str) and not _TESTBED_NAME_RE.fullmatch(value):
        raise ValueError("must be a letter or digit, then up to 63 letters, digits, '.', '_' or '-'")
    return value


UInt16 = Annotated[int, BeforeValidator(_integer(0, 0xFFFF, "a 16-bit unsigned value", 4))]
UInt32 = Annotated[int, BeforeValidator(_integer(0, 0xFFFFFFFF, "a 32-bit unsigned value", 8))]


def _network_key(value: object) -> str:
    # The message never repeats the value: a network key is a secret, even a mistyped one.
    if not isinstance(value, str):
        raise ValueError(
            "must be 16 bytes in hex as text in quotes, e.g. '01:03:05:07:09:0b:0d:0f:00:02:...'"
        )
    digits = value.strip().lower().replace(":", "").replace("-", "").replace(" ", "")
    if len(digits) != 32 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("must be a 128-bit network key: 16 bytes in hex (32 hex digits)")
    return ":".join(digits[i : i + 2] for i in range(0, 32, 2))


def _install_code(value: object) -> str:
    # Like the network key, the install code is a secret: the message never repeats it.
    if not isinstance(value, str):
        raise ValueError("must be the install code in hex as text in quotes, with its 2-byte CRC")
    digits = value.strip().lower().replace(":", "").replace("-", "").replace(" ", "")
    if any(c not in "0123456789abcdef" for c in digits) or len(digits) % 2:
        raise ValueError("must be hex digits: the install code followed by its CRC")
    code = bytes.fromhex(digits)
    try:
        zigpy.util.convert_install_code(code)
    except ValueError as exc:
        reason = "wrong length" if "length" in str(exc) else "its CRC-16 does not match"
        raise ValueError(
            f"is not a valid install code ({reason}): 6, 8, 12 or 16 bytes followed by their "
            "CRC-16/X-25, least significant byte first, as printed on the device's label"
        ) from None
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


Eui64 = Annotated[str, BeforeValidator(_eui64)]
InstallCodeHex = Annotated[str, BeforeValidator(_install_code)]
NetworkKeyHex = Annotated[str, BeforeValidator(_network_key)]
NwkAddress = Annotated[int, BeforeValidator(_integer(0, 0xFFF7, "a 16-bit NWK short address", 4))]
PanId = Annotated[int, BeforeValidator(_integer(0, 0xFFFE, "a 16-bit PAN ID", 4))]
Channel = Annotated[int, BeforeValidator(_integer(11, 26, "a 2.4 GHz ZigBee channel"))]
Seed = Annotated[int, BeforeValidator(_integer(0, 2**63 - 1, "a non-negative seed"))]
Loss = Annotated[float, BeforeValidator(_loss)]
DeviceName = Annotated[str, BeforeValidator(_device_name)]
TestbedName = Annotated[str, BeforeValidator(_testbed_name)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the models ------------------------------------------------------------------------------


class BridgeSpec(_Spec):
    """What makes a device a P2P Alt HAN bridge: which end it sits at and which bridges it tunnels to.

    Write ``p2p_peer: B2`` for a bridge with one peer, or ``p2p_peers: [B2, B3]`` for a bridge
    with several (e.g. a near-end bridge serving a far-end bridge by the GSME and another by the
    IHD). After loading, ``p2p_peers`` always lists every peer and ``p2p_peer`` is that peer when
    there is exactly one, else ``None``.
    """

    end: Literal["near", "far"] = Field(
        description="'near' for the bridge by the CH, 'far' for the bridge by the out-of-range device"
    )
    p2p_peer: str | None = Field(default=None, description="the one bridge at the other end of the P2P link")
    p2p_peers: list[str] = Field(
        default_factory=list, description="every bridge at the other end of this bridge's P2P links"
    )
    extends_to: list[str] = Field(
        default_factory=list, description="devices this bridge brings into range, e.g. [GSME]"
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_peers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        peer, peers = data.get("p2p_peer"), data.get("p2p_peers")
        if peer is None and not peers:
            raise SpecError(("p2p_peer",), "is required: name the bridge at the other end of the P2P link")
        if peers is None:
            data["p2p_peers"] = [peer]
        elif peer is None:
            if isinstance(peers, list) and len(peers) == 1:
                data["p2p_peer"] = peers[0]
        elif peers != [peer]:
            raise SpecError(
                ("p2p_peers",),
                "disagrees with p2p_peer; give p2p_peer for one peer or p2p_peers for several, not both",
                peers,
            )
        return data

    @model_validator(mode="after")
    def _check_lists(self) -> BridgeSpec:
        for field, names in (("p2p_peers", self.p2p_peers), ("extends_to", self.extends_to)):
            for index, name in enumerate(names):
                if name in names[:index]:
                    raise SpecError((field, index), "names the same device twice", name)
        return self


class DeviceSpec(_Spec):
    """One device of the premises: identity on air, firmware identity for OTA, power and ZigBee role.

    ``name`` comes from the key of the ``devices:`` mapping. ``bridge`` is required for bridge
    types B1-B4 and not allowed otherwise.
    """

    name: DeviceName = Field(description="the device's name, taken from its key under devices:")
    type: DeviceType = Field(description="the kind of device: CH, ESME, GSME, IHD, PPMID, HCALCS, B1..B4")
    ieee: Eui64 = Field(description="the device's EUI-64 address, e.g. '00:0d:6f:ff:fe:00:00:01'")
    nwk: NwkAddress = Field(description="the 16-bit NWK short address (0x0000 is the coordinator's)")
    manufacturer_code: UInt16 = Field(description="the ZigBee manufacturer code in the OTA header")
    manufacturer_name: str = Field(default="althan-emulated", description="the manufacturer's name")
    model: str = Field(description="the model identifier; defaults to the device type")
    image_type: UInt16 = Field(description="the OTA image type the device accepts")
    hardware_version: UInt16 = Field(default=1, description="the hardware version")
    firmware_version: UInt32 = Field(description="the OTA file version currently running, e.g. 0x01000000")
    stack_version: UInt16 = Field(default=2, description="the ZigBee stack version (2 = ZigBee PRO)")
    power_source: PowerSource = Field(description="'mains' or 'battery'")
    role: Role = Field(description="the ZigBee role: coordinator, router, end_device or sleepy_end_device")
    parent: str | None = Field(
        default=None, description="for end devices: the router or coordinator they talk through"
    )
    poll_interval: Duration | None = Field(
        default=None, description="for sleepy end devices: time between polls of the parent (default 7.5s)"
    )
    fast_poll_interval: Duration = Field(
        default=0.25, description="for sleepy end devices: time between polls during an OTA transfer"
    )
    bridge: BridgeSpec | None = Field(default=None, description="bridge settings; required for B1..B4")
    defects: tuple[str, ...] = Field(
        default=(),
        description="emulated testbeds only: firmware defects to switch on (see docs/testbed.md), "
        "so a test can show a check catches them; empty for healthy firmware",
    )
    install_code: InstallCodeHex | None = Field(
        default=None,
        repr=False,
        description="the install code printed on the device, with its CRC; the Trust Centre derives the "
        "device's link key from it (ZigBee 3.0 MMO hash) to send it the network key when it joins or "
        "does a trust-centre rejoin. Never printed in reports",
    )
    commissioned: bool = Field(
        default=True,
        description="emulated testbeds: true if the device starts on the network holding the network "
        "key; false if it starts factory-new and joins by association (needs install_code and a "
        "Permit Joining With Install Code)",
    )
    signing_key: str | None = Field(
        default=None,
        description="a PEM file (relative to the testbed file) holding the ECDSA P-256 public key the "
        "device trusts: it then installs only images signed with the matching private key "
        "(docs/signing.md); none: the device checks no signatures",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "model" not in data and isinstance(data.get("type"), str):
            data["model"] = data["type"]
        if data.get("role") == "sleepy_end_device" and data.get("poll_interval") is None:
            data["poll_interval"] = DEFAULT_POLL_INTERVAL
        return data

    @model_validator(mode="after")
    def _check_device(self) -> DeviceSpec:
        if self.role == "coordinator" and self.type != "CH":
            raise SpecError(("role",), f"coordinator is only for the CH, not for type {self.type}", self.role)
        if self.type == "CH" and self.role != "coordinator":
            raise SpecError(("role",), "must be coordinator: the CH is the ZigBee coordinator", self.role)
        if self.role == "coordinator" and self.nwk != 0:
            raise SpecError(("nwk",), "must be 0x0000 for the coordinator", self.nwk)
        if self.role != "coordinator" and self.nwk == 0:
            raise SpecError(("nwk",), "0x0000 is the coordinator's address; pick 0x0001..0xFFF7", self.nwk)
        if self.power_source == "battery" and self.role in ROUTING_ROLES:
            raise SpecError(
                ("role",),
                f"cannot be {self.role} on battery power; a battery device must be an end_device "
                "or sleepy_end_device (or make power_source mains)",
                self.role,
            )
        if not self.commissioned and self.install_code is None:
            raise SpecError(
                ("commissioned",),
                "a device that starts factory-new needs an install_code: the Trust Centre only sends "
                "the network key under the link key derived from it",
                self.commissioned,
            )
        if not self.commissioned and self.role == "coordinator":
            raise SpecError(("commissioned",), "the coordinator forms the network; it cannot join one", False)
        self._check_bridge_section()
        self._check_parent_and_polls()
        return self

    def _check_bridge_section(self) -> None:
        if self.type in BRIDGE_TYPES and self.bridge is None:
            raise SpecError(
                ("bridge",), f"is required for bridge type {self.type}: give end, p2p_peer and extends_to"
            )
        if self.type not in BRIDGE_TYPES and self.bridge is not None:
            raise SpecError(
                ("bridge",), f"is only for bridges B1..B4, not for type {self.type}", self.bridge.model_dump()
            )

    def _check_parent_and_polls(self) -> None:
        if self.role in END_DEVICE_ROLES and self.parent is None:
            raise SpecError(
                ("parent",), f"is required for role {self.role}: name the router or CH it talks through"
            )
        if self.role in ROUTING_ROLES and self.parent is not None:
            raise SpecError(
                ("parent",), f"is only for end devices; role {self.role} routes for itself", self.parent
            )
        if self.parent == self.name:
            raise SpecError(("parent",), "cannot be the device itself", self.parent)
        if self.role != "sleepy_end_device":
            if self.poll_interval is not None:
                raise SpecError(
                    ("poll_interval",), f"is only for sleepy_end_device, not {self.role}", self.poll_interval
                )
            return
        if self.poll_interval is not None and self.poll_interval <= 0:
            raise SpecError(("poll_interval",), "must be longer than 0s", self.poll_interval)
        if self.fast_poll_interval <= 0:
            raise SpecError(("fast_poll_interval",), "must be longer than 0s", self.fast_poll_interval)
        if self.poll_interval is not None and self.fast_poll_interval > self.poll_interval:
            raise SpecError(
                ("fast_poll_interval",),
                f"must not be longer than poll_interval ({format_duration(self.poll_interval)})",
                self.fast_poll_interval,
            )

    @property
    def ieee_bytes(self) -> bytes:
        """The EUI-64 as the 8 bytes sent on air (little-endian: last written byte first)."""
        return bytes.fromhex(self.ieee.replace(":", ""))[::-1]

    @property
    def install_code_bytes(self) -> bytes | None:
        """The install code with its CRC, as bytes, or None."""
        return bytes.fromhex(self.install_code.replace(":", "")) if self.install_code else None

    @property
    def is_sleepy(self) -> bool:
        """True for a sleepy end device, which hears frames only when it polls its parent."""
        return self.role == "sleepy_end_device"

    @property
    def is_end_device(self) -> bool:
        """True for end devices (sleepy or not): they talk only through their parent."""
        return self.role in END_DEVICE_ROLES

    @property
    def is_bridge(self) -> bool:
        """True for P2P Alt HAN bridges (types B1..B4)."""
        return self.bridge is not None


class LinkSpec(_Spec):
    """Two devices that can hear each other: over ZigBee radio, or over a bridge pair's P2P link."""

    between: tuple[str, str] = Field(description="the two devices, e.g. [CH, ESME]")
    medium: Medium = Field(default="radio", description="'radio' (ZigBee) or 'p2p' (between two bridges)")
    latency: Duration = Field(default=0.002, description="one-way delay of a frame, e.g. 2ms")
    loss: Loss = Field(default=0.0, description="chance that a frame is lost, from 0 up to (not including) 1")


class RadioSpec(_Spec):
    """The radio the harness's own ZigBee side (its zigpy hub) uses, and which device it plays."""

    type: RadioType = Field(
        default="virtual",
        description="virtual, znp, ezsp or deconz; none: the harness has no ZigBee side and the CH is a "
        "device under test, driven over its control port",
    )
    plays: str | None = Field(
        default=None,
        description="the CH device the harness's hub plays; must be the coordinator (not with type none)",
    )
    url: str | None = Field(default=None, description="serial URL of a hardware radio, e.g. /dev/ttyUSB0")

    @model_validator(mode="after")
    def _check_url(self) -> RadioSpec:
        if self.type == "none":
            if self.plays is not None:
                raise SpecError(
                    ("plays",),
                    "is not allowed with radio type none: there the CH is a device under test, "
                    "not played by the harness (remove plays, or use type virtual)",
                    self.plays,
                )
            if self.url is not None:
                raise SpecError(("url",), "is not allowed with radio type none: there is no radio", self.url)
            return self
        if self.plays is None:
            raise SpecError(
                ("plays",),
                "is required: name the CH the harness's hub plays (or give type none to test an "
                "emulated CH instead)",
            )
        if self.type == "virtual" and self.url is not None:
            raise SpecError(("url",), "is only for hardware radios; the virtual radio needs none", self.url)
        if self.type != "virtual" and not self.url:
            raise SpecError(
                ("url",), f"is required for a {self.type} radio, e.g. /dev/ttyUSB0 or socket://host:port"
            )
        return self


class TestbedSpec(_Spec):
    """A whole testbed: one premises' devices, the links between them and the harness's radio.

    ``source`` and ``sha256`` say which file it was loaded from (``None`` when built in code).
    The helper methods answer the questions scenarios ask: which device is called X, who can hear
    whom, and which path a frame takes.
    """

    __test__ = False  # not a pytest test class, despite the name

    name: TestbedName = Field(description="the testbed's name, shown in reports")
    description: str = Field(default="", description="free text for people reading reports")
    kind: Literal["emulated", "bench"] = Field(
        default="emulated", description="'emulated' (devices run in the emulator) or 'bench' (real devices)"
    )
    seed: Seed = Field(default=1, description="seed of the emulator's random choices (loss, timing)")
    channel: Channel = Field(default=15, description="the 2.4 GHz ZigBee channel, 11..26")
    pan_id: PanId = Field(description="the 16-bit PAN ID of the HAN")
    extended_pan_id: Eui64 = Field(description="the 64-bit extended PAN ID, in EUI-64 form")
    radio: RadioSpec = Field(description="the harness's radio and which device it plays")
    network_key: NetworkKeyHex | None = Field(
        default=None,
        repr=False,
        description="the 128-bit NWK key every device holds (emulated testbeds: devices are commissioned "
        "with it); frames are then secured with AES-CCM* (security level 5). None: no NWK security",
    )
    network_key_sequence: int = Field(default=0, ge=0, le=255, description="the key's sequence number")
    allow_trust_centre_rejoin: bool = Field(
        default=True,
        description="the Trust Centre's policy: whether a device that lost the network key may get it "
        "again by a trust-centre rejoin (only if its install code is known). Some CHs refuse",
    )
    devices: dict[str, DeviceSpec] = Field(description="every device, keyed by name")
    links: list[LinkSpec] = Field(description="which devices can hear each other")

    @property
    def network_key_bytes(self) -> bytes | None:
        """The network key as the 16 bytes AES uses, or None without NWK security."""
        return bytes.fromhex(self.network_key.replace(":", "")) if self.network_key else None

    _source: Path | None = PrivateAttr(default=None)
    _sha256: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _fill_names(cls, data: Any) -> Any:
        return _name_devices(data)

    @model_validator(mode="after")
    def _check_testbed(self) -> TestbedSpec:
        _check_identities(self)
        _check_links(self)
        _check_bridges(self)
        _check_p2p_links(self)
        _check_parents(self)
        _check_reachability(self)
        return self

    # -- where it came from --

    @property
    def source(self) -> Path | None:
        """The file this testbed was loaded from, or ``None`` when it was built in code."""
        return self._source

    @property
    def sha256(self) -> str | None:
        """SHA-256 (hex) of the file's bytes as loaded, or ``None`` when it was built in code."""
        return self._sha256

    # -- questions scenarios ask --

    @property
    def ch_under_test(self) -> bool:
        """True when the CH is a device under test (``radio.type: none``): no harness hub plays it."""
        return self.radio.type == "none"

    @property
    def coordinator(self) -> DeviceSpec:
        """The coordinator (the CH)."""
        return next(d for d in self.devices.values() if d.role == "coordinator")

    def device(self, name: str) -> DeviceSpec:
        """The device called ``name``; raises ``BadInputError`` listing the known names if there is none."""
        try:
            return self.devices[name]
        except KeyError:
            known = ", ".join(self.devices)
            error = BadInputError(
                f"unknown device '{name}'; this testbed has: {known}",
                file=str(self.source) if self.source else None,
            )
            error.field, error.value = "device", name
            raise error from None

    def neighbours(self, name: str, medium: Medium | None = None) -> list[str]:
        """Devices sharing a link with ``name`` (only over ``medium`` if given), sorted by name."""
        self.device(name)
        found = set()
        for link in self.links:
            if medium is not None and link.medium != medium:
                continue
            if name in link.between:
                found.add(link.between[1] if link.between[0] == name else link.between[0])
        return sorted(found)

    def route(self, src: str, dst: str) -> list[str]:
        """The path a frame takes from ``src`` to ``dst``, both included: fewest hops, ties by name.

        Frames are relayed only by routers and the coordinator (P2P links included); an end device
        uses only the link to its parent.
        """
        self.device(src)
        self.device(dst)
        path = _shortest_path(_routing_graph(self), src, dst)
        if path is None:
            raise BadInputError(f"no route from {src} to {dst} in testbed '{self.name}'")
        return path

    def hops_to(self, name: str) -> int:
        """How many hops a frame from the coordinator takes to reach ``name`` (0 for the coordinator)."""
        return len(self.route(self.coordinator.name, name)) - 1


# --- cross-field rules -----------------------------------------------------------------------


def _name_devices(data: Any) -> Any:
    """Fill each device's ``name`` from its key under ``devices:``."""
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        return data
    devices = {}
    for key, device in data["devices"].items():
        if isinstance(device, dict) and "name" not in device:
            device = {"name": key, **device}
        devices[key] = device
    return {**data, "devices": devices}


def _check_identities(spec: TestbedSpec) -> None:
    for key, device in spec.devices.items():
        if device.name != key:
            raise SpecError(
                ("devices", key, "name"), f"must match the key '{key}' it is listed under", device.name
            )
    coordinators = [d.name for d in spec.devices.values() if d.role == "coordinator"]
    if not coordinators:
        raise SpecError(
            ("devices",), "has no coordinator; exactly one device (the CH) must have role coordinator"
        )
    if len(coordinators) > 1:
        raise SpecError(
            ("devices", coordinators[1], "role"),
            f"coordinator is taken by {coordinators[0]}; a premises has exactly one coordinator",
            "coordinator",
        )
    seen_ieee: dict[str, str] = {}
    seen_nwk: dict[int, str] = {}
    for key, device in spec.devices.items():
        if device.ieee in seen_ieee:
            raise SpecError(
                ("devices", key, "ieee"), f"is already the address of {seen_ieee[device.ieee]}", device.ieee
            )
        seen_ieee[device.ieee] = key
        if device.nwk in seen_nwk:
            raise SpecError(
                ("devices", key, "nwk"),
                f"0x{device.nwk:04X} is already the address of {seen_nwk[device.nwk]}",
                device.nwk,
            )
        seen_nwk[device.nwk] = key
    _check_radio(spec, coordinators[0])


def _check_radio(spec: TestbedSpec, coordinator: str) -> None:
    plays = spec.radio.plays
    if spec.ch_under_test:
        return  # no radio to check: the CH itself is under test, on either kind of testbed
    if plays != coordinator:
        known = "" if plays in spec.devices else "; there is no such device"
        raise SpecError(
            ("radio", "plays"),
            f"must name the coordinator ({coordinator}), the CH the harness's hub plays{known}",
            plays,
        )
    if (spec.kind == "emulated") != (spec.radio.type == "virtual"):
        wanted = "virtual" if spec.kind == "emulated" else "znp, ezsp or deconz"
        raise SpecError(
            ("radio", "type"), f"must be {wanted} on a testbed of kind {spec.kind}", spec.radio.type
        )


def _check_links(spec: TestbedSpec) -> None:
    seen: dict[frozenset[str], int] = {}
    for index, link in enumerate(spec.links):
        for side, name in enumerate(link.between):
            if name not in spec.devices:
                raise SpecError(
                    ("links", index, "between", side),
                    f"names no device; known devices: {', '.join(spec.devices)}",
                    name,
                )
        a, b = link.between
        if a == b:
            raise SpecError(
                ("links", index, "between"), f"links {a} to itself; a link joins two devices", [a, b]
            )
        pair = frozenset(link.between)
        if pair in seen:
            raise SpecError(
                ("links", index, "between"),
                f"repeats the link between {a} and {b} (links[{seen[pair]}]); list each pair once",
                [a, b],
            )
        seen[pair] = index


def _check_p2p_links(spec: TestbedSpec) -> None:
    for index, link in enumerate(spec.links):
        if link.medium == "p2p":
            for side, name in enumerate(link.between):
                other = link.between[1 - side]
                bridge = spec.devices[name].bridge
                if bridge is None:
                    raise SpecError(
                        ("links", index, "between", side),
                        f"is not a bridge (type {spec.devices[name].type}); p2p links join two bridges",
                        name,
                    )
                if other not in bridge.p2p_peers:
                    raise SpecError(
                        ("links", index, "between", side),
                        f"has a p2p link to {other}, but {name}'s bridge.p2p_peer does not name {other}",
                        name,
                    )


def _peer_loc(device: DeviceSpec, index: int) -> tuple[str | int, ...]:
    assert device.bridge is not None
    if device.bridge.p2p_peer is not None:
        return ("devices", device.name, "bridge", "p2p_peer")
    return ("devices", device.name, "bridge", "p2p_peers", index)


def _check_bridges(spec: TestbedSpec) -> None:
    p2p_pairs = {frozenset(link.between) for link in spec.links if link.medium == "p2p"}
    for device in spec.devices.values():
        bridge = device.bridge
        if bridge is None:
            continue
        for index, peer in enumerate(bridge.p2p_peers):
            loc = _peer_loc(device, index)
            other = spec.devices.get(peer)
            if peer == device.name:
                raise SpecError(loc, "cannot be the bridge itself", peer)
            if other is None:
                raise SpecError(loc, f"names no device; known devices: {', '.join(spec.devices)}", peer)
            if other.bridge is None:
                raise SpecError(
                    loc, f"names {peer} of type {other.type}; a p2p peer must be a bridge (B1..B4)", peer
                )
            if other.bridge.end == bridge.end:
                raise SpecError(
                    loc,
                    f"names {peer}, also a {bridge.end}-end bridge; a p2p peer must be at the other end "
                    "(near by the CH, far by the out-of-range device)",
                    peer,
                )
            if frozenset((device.name, peer)) not in p2p_pairs:
                raise SpecError(
                    loc, f"names {peer}, but links has no p2p link between {device.name} and {peer}", peer
                )
        for index, target in enumerate(bridge.extends_to):
            loc = ("devices", device.name, "bridge", "extends_to", index)
            if target not in spec.devices:
                raise SpecError(loc, f"names no device; known devices: {', '.join(spec.devices)}", target)
            if spec.devices[target].is_bridge or target == device.name:
                raise SpecError(
                    loc, "must name a device the bridge serves (a meter or display), not a bridge", target
                )


def _check_parents(spec: TestbedSpec) -> None:
    radio_pairs = {frozenset(link.between) for link in spec.links if link.medium == "radio"}
    for device in spec.devices.values():
        if device.parent is None:
            continue
        loc = ("devices", device.name, "parent")
        parent = spec.devices.get(device.parent)
        if parent is None:
            raise SpecError(loc, f"names no device; known devices: {', '.join(spec.devices)}", device.parent)
        if parent.role not in ROUTING_ROLES:
            raise SpecError(
                loc,
                f"names {parent.name} (role {parent.role}); a parent must be a router or the coordinator",
                device.parent,
            )
        if frozenset((device.name, parent.name)) not in radio_pairs:
            raise SpecError(
                loc,
                f"names {parent.name}, but links has no radio link between {device.name} and {parent.name}",
                device.parent,
            )


def _check_reachability(spec: TestbedSpec) -> None:
    graph = _routing_graph(spec)
    start = spec.coordinator.name
    reached = _distances(graph, start)
    for name in spec.devices:
        if name not in reached:
            raise SpecError(
                ("devices", name),
                f"cannot be reached from the coordinator {start}: add a link to a router, the CH or a bridge "
                "(end devices are reached only through their parent)",
                name,
            )
    for device in spec.devices.values():
        if device.bridge is None:
            continue
        for index, target in enumerate(device.bridge.extends_to):
            path = _shortest_path(graph, start, target) or []
            if device.name not in path:
                raise SpecError(
                    ("devices", device.name, "bridge", "extends_to", index),
                    f"names {target}, but frames reach it without {device.name} (route: {' -> '.join(path)})",
                    target,
                )


# --- graph helpers ---------------------------------------------------------------------------


def _routing_graph(spec: TestbedSpec) -> dict[str, list[str]]:
    """Links a frame can use: between routers, or between an end device and its parent."""

    def usable(a: DeviceSpec, b: DeviceSpec) -> bool:
        return a.role in ROUTING_ROLES or a.parent == b.name

    graph: dict[str, list[str]] = {name: [] for name in spec.devices}
    for link in spec.links:
        a, b = (spec.devices.get(name) for name in link.between)
        if a is None or b is None or a.name == b.name:
            continue
        if usable(a, b) and usable(b, a):
            graph[a.name].append(b.name)
            graph[b.name].append(a.name)
    return {name: sorted(set(neighbours)) for name, neighbours in graph.items()}


def _distances(graph: dict[str, list[str]], start: str) -> dict[str, int]:
    distance = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for neighbour in graph[node]:
            if neighbour not in distance:
                distance[neighbour] = distance[node] + 1
                queue.append(neighbour)
    return distance


def _shortest_path(graph: dict[str, list[str]], src: str, dst: str) -> list[str] | None:
    """Breadth-first search over name-sorted neighbours: fewest hops, then the path first by name."""
    previous: dict[str, str | None] = {src: None}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if node == dst:
            break
        for neighbour in graph[node]:
            if neighbour not in previous:
                previous[neighbour] = node
                queue.append(neighbour)
    if dst not in previous:
        return None
    path: list[str] = []
    cursor: str | None = dst
    while cursor is not None:
        path.append(cursor)
        cursor = previous[cursor]
    return path[::-1]
