"""Every rule of a testbed file, broken once: the error names file, exact line, field and value.

Each case edits one line of a small, valid testbed (the default premises) and marks the line the
error must point at with ``# <-`` (or names it with ``at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import BadInputError
from harness.testbed import load_testbed

BASE = """\
name: rules
pan_id: 0x1A62
extended_pan_id: "00:0d:6f:ff:fe:1a:62:00"
radio:
  plays: CH
devices:
  CH:
    type: CH
    ieee: "00:0d:6f:ff:fe:00:00:01"
    nwk: 0x0000
    manufacturer_code: 0x1236
    image_type: 0x0100
    firmware_version: 0x01000000
    power_source: mains
    role: coordinator
  ESME:
    type: ESME
    ieee: "00:0d:6f:ff:fe:00:00:02"
    nwk: 0x3F21
    manufacturer_code: 0x1235
    image_type: 0x0200
    firmware_version: 0x01000000
    power_source: mains
    role: router
  IHD:
    type: IHD
    ieee: "00:0d:6f:ff:fe:00:00:03"
    nwk: 0x5B10
    manufacturer_code: 0x1237
    image_type: 0x0400
    firmware_version: 0x01000000
    power_source: mains
    role: end_device
    parent: CH
  B1:
    type: B1
    ieee: "00:0d:6f:ff:fe:00:b1:01"
    nwk: 0x7C02
    manufacturer_code: 0x1234
    image_type: 0x0B01
    firmware_version: 0x01000000
    power_source: mains
    role: router
    bridge:
      end: near
      p2p_peer: B2
      extends_to: [GSME]
  B2:
    type: B2
    ieee: "00:0d:6f:ff:fe:00:b2:01"
    nwk: 0x8E44
    manufacturer_code: 0x1234
    image_type: 0x0B02
    firmware_version: 0x01000000
    power_source: mains
    role: router
    bridge:
      end: far
      p2p_peer: B1
      extends_to: [GSME]
  GSME:
    type: GSME
    ieee: "00:0d:6f:ff:fe:00:00:04"
    nwk: 0x9A73
    manufacturer_code: 0x1235
    image_type: 0x0300
    firmware_version: 0x01000000
    power_source: battery
    role: sleepy_end_device
    parent: B2
    poll_interval: 7.5s
links:
  - between: [CH, ESME]
  - between: [CH, IHD]
  - between: [CH, B1]
  - between: [ESME, B1]
  - between: [B2, GSME]
  - between: [B1, B2]
    medium: p2p
    latency: 15ms
"""

# A third bridge, by the IHD, to break the rules about P2P peers.
B3 = """\
  B3:
    type: B3
    ieee: "00:0d:6f:ff:fe:00:b3:01"
    nwk: 0x8E45
    manufacturer_code: 0x1234
    image_type: 0x0B03
    firmware_version: 0x01000000
    power_source: mains
    role: router
    bridge:
      end: far
      p2p_peer: B1
links:
"""


@dataclass
class Case:
    """One broken rule: replace ``old`` by ``new`` in BASE, expect the error at the ``# <-`` line."""

    old: str
    new: str
    field: str | None
    value: object
    says: str
    at: str = "# <-"


CASES: dict[str, Case] = {
    # -- keys and YAML --
    "unknown key, with a suggestion": Case(
        "    manufacturer_code: 0x1234\n    image_type: 0x0B02",
        "    manufacturer_cod: 0x1234  # <-\n    image_type: 0x0B02",
        "devices.B2.manufacturer_cod",
        "manufacturer_cod",
        "unknown field 'manufacturer_cod' in devices.B2; did you mean 'manufacturer_code'?",
    ),
    "unknown top-level key": Case(
        "pan_id: 0x1A62", "pan_id: 0x1A62\nchanel: 15  # <-", "chanel", "chanel", "did you mean 'channel'?"
    ),
    "duplicate key": Case(
        "    nwk: 0x3F21",
        "    nwk: 0x3F21\n    nwk: 0x3F22  # <-",
        "devices.ESME.nwk",
        "nwk",
        "appears twice",
    ),
    "YAML syntax error": Case(
        "    role: router\n  IHD:", "    role: router: yes  # <-\n  IHD:", None, None, "not valid YAML"
    ),
    "missing required field": Case(
        '    ieee: "00:0d:6f:ff:fe:00:00:02"\n',
        "",
        "devices.ESME.ieee",
        None,
        "is required: the device's EUI-64",
        at="  ESME:",
    ),
    # -- values of one field --
    "device type not allowed": Case(
        "    type: ESME", "    type: EMSE  # <-", "devices.ESME.type", "EMSE", "must be one of 'CH', 'ESME'"
    ),
    "malformed EUI-64": Case(
        '    ieee: "00:0d:6f:ff:fe:00:00:02"',
        '    ieee: "00:0d:6f:ff:fe:00:02"  # <-',
        "devices.ESME.ieee",
        "00:0d:6f:ff:fe:00:02",
        "must be an EUI-64 address",
    ),
    "EUI-64 that YAML reads as a number": Case(
        '    ieee: "00:0d:6f:ff:fe:00:00:02"',
        "    ieee: 10:20:30:40:50:01:02:03  # <-",
        "devices.ESME.ieee",
        28950577203723,
        "in quotes",
    ),
    "NWK address out of range": Case(
        "    nwk: 0x3F21", "    nwk: 0xFFFF  # <-", "devices.ESME.nwk", 0xFFFF, "from 0x0000 to 0xFFF7"
    ),
    "manufacturer code out of range": Case(
        "    manufacturer_code: 0x1236",
        "    manufacturer_code: 0x10000  # <-",
        "devices.CH.manufacturer_code",
        0x10000,
        "16-bit",
    ),
    "firmware version out of range": Case(
        "    firmware_version: 0x01000000\n    power_source: battery",
        "    firmware_version: 0x100000000  # <-\n    power_source: battery",
        "devices.GSME.firmware_version",
        0x100000000,
        "from 0x00000000 to 0xFFFFFFFF",
    ),
    "boolean where a number belongs": Case(
        "    image_type: 0x0200", "    image_type: yes  # <-", "devices.ESME.image_type", True, "an integer"
    ),
    "channel out of range": Case(
        "pan_id: 0x1A62", "pan_id: 0x1A62\nchannel: 27  # <-", "channel", 27, "11 to 26"
    ),
    "bad duration": Case(
        "    poll_interval: 7.5s",
        "    poll_interval: 2 hours  # <-",
        "devices.GSME.poll_interval",
        "2 hours",
        "250ms, 7.5s, 2min, 2h or 1h30m",
    ),
    "link loss of 1 or more": Case(
        "    latency: 15ms",
        "    latency: 15ms\n    loss: 1.0  # <-",
        "links[5].loss",
        1.0,
        "up to but not including 1",
    ),
    "link medium not allowed": Case(
        "    medium: p2p",
        "    medium: wifi  # <-",
        "links[5].medium",
        "wifi",
        "must be one of 'radio' or 'p2p'",
    ),
    "bridge given as text, not a mapping": Case(
        "    bridge:\n      end: far\n      p2p_peer: B1\n      extends_to: [GSME]\n",
        "    bridge: B1  # <-\n",
        "devices.B2.bridge",
        "B1",
        "must be a mapping with fields end, p2p_peer, p2p_peers, extends_to",
    ),
    "invalid device name": Case(
        "  ESME:\n", "  ESME meter:  # <-\n", "devices.ESME meter.name", "ESME meter", "must be a device name"
    ),
    "device name that YAML reads as a number": Case(
        "  ESME:\n",
        "  1:  # <-\n",
        "devices.1",
        1,
        "YAML read this key as a number or true/false, so quote it",
    ),
    # -- identities --
    "name differs from its key": Case(
        "  GSME:\n    type: GSME",
        "  GSME:\n    name: GAS  # <-\n    type: GSME",
        "devices.GSME.name",
        "GAS",
        "must match the key 'GSME'",
    ),
    "duplicate IEEE address": Case(
        '    ieee: "00:0d:6f:ff:fe:00:b2:01"',
        '    ieee: "00:0D:6F:FF:FE:00:B1:01"  # <-',
        "devices.B2.ieee",
        "00:0d:6f:ff:fe:00:b1:01",
        "is already the address of B1",
    ),
    "duplicate NWK address": Case(
        "    nwk: 0x8E44",
        "    nwk: 0x7C02  # <-",
        "devices.B2.nwk",
        0x7C02,
        "0x7C02 is already the address of B1",
    ),
    "coordinator NWK address not 0x0000": Case(
        "    nwk: 0x0000", "    nwk: 0x0001  # <-", "devices.CH.nwk", 1, "must be 0x0000 for the coordinator"
    ),
    "NWK 0x0000 on another device": Case(
        "    nwk: 0x3F21",
        "    nwk: 0x0000  # <-",
        "devices.ESME.nwk",
        0,
        "0x0000 is the coordinator's address",
    ),
    # -- roles and power --
    "no coordinator": Case(
        BASE[BASE.index("  CH:\n") : BASE.index("  ESME:\n")],
        "",
        "devices",
        None,
        "has no coordinator",
        at="devices:",
    ),
    "two coordinators": Case(
        "  ESME:\n    type: ESME",
        '  CH2:\n    type: CH\n    ieee: "00:0d:6f:ff:fe:00:00:09"\n    nwk: 0x0000\n'
        "    manufacturer_code: 0x1236\n    image_type: 0x0100\n    firmware_version: 0x01000000\n"
        "    power_source: mains\n    role: coordinator  # <-\n  ESME:\n    type: ESME",
        "devices.CH2.role",
        "coordinator",
        "coordinator is taken by CH",
    ),
    "CH that is not the coordinator": Case(
        "    role: coordinator", "    role: router  # <-", "devices.CH.role", "router", "must be coordinator"
    ),
    "coordinator that is not the CH": Case(
        "    role: router\n  IHD:",
        "    role: coordinator  # <-\n  IHD:",
        "devices.ESME.role",
        "coordinator",
        "coordinator is only for the CH",
    ),
    "battery-powered router": Case(
        "    power_source: mains\n    role: router\n  IHD:",
        "    power_source: battery\n    role: router  # <-\n  IHD:",
        "devices.ESME.role",
        "router",
        "cannot be router on battery power",
    ),
    # -- radio --
    "radio plays a device that is not the coordinator": Case(
        "  plays: CH", "  plays: ESME  # <-", "radio.plays", "ESME", "must name the coordinator (CH)"
    ),
    "radio plays an unknown device": Case(
        "  plays: CH", "  plays: HUB  # <-", "radio.plays", "HUB", "there is no such device"
    ),
    "hardware radio without url": Case(
        "  plays: CH",
        "  plays: CH\n  type: znp",
        "radio.url",
        None,
        "is required for a znp radio",
        at="radio:",
    ),
    "virtual radio with url": Case(
        "  plays: CH",
        "  plays: CH\n  url: /dev/ttyUSB0  # <-",
        "radio.url",
        "/dev/ttyUSB0",
        "only for hardware radios",
    ),
    "bench testbed with the virtual radio": Case(
        "radio:\n  plays: CH",
        "kind: bench\nradio:\n  plays: CH\n  type: virtual  # <-",
        "radio.type",
        "virtual",
        "must be znp, ezsp or deconz on a testbed of kind bench",
    ),
    # -- links --
    "link to an unknown device": Case(
        "  - between: [B2, GSME]",
        "  - between: [B2, GSM]  # <-",
        "links[4].between[1]",
        "GSM",
        "names no device",
    ),
    "link from a device to itself": Case(
        "  - between: [B2, GSME]",
        "  - between: [B2, B2]  # <-",
        "links[4].between",
        ["B2", "B2"],
        "to itself",
    ),
    "the same link twice": Case(
        "  - between: [B2, GSME]",
        "  - between: [B2, GSME]\n  - between: [GSME, B2]  # <-",
        "links[5].between",
        ["GSME", "B2"],
        "repeats the link between GSME and B2 (links[4])",
    ),
    "link naming one device": Case(
        "  - between: [B2, GSME]",
        "  - between: [B2]  # <-",
        "links[4].between[1]",
        None,
        "exactly two devices",
    ),
    "p2p link to a device that is not a bridge": Case(
        "  - between: [ESME, B1]",
        "  - between: [ESME, IHD]\n    medium: p2p  # dummy\n  - between: [ESME, B1]",
        "links[3].between[0]",
        "ESME",
        "is not a bridge (type ESME); p2p links join two bridges",
        at="  - between: [ESME, IHD]",
    ),
    "p2p link between bridges that do not name each other": Case(
        "links:\n",
        B3 + "  - between: [B1, B3]  # <-\n    medium: p2p\n",
        "links[0].between[0]",
        "B1",
        "has a p2p link to B3, but B1's bridge.p2p_peer does not name B3",
    ),
    # -- bridges --
    "bridge without its bridge section": Case(
        "    bridge:\n      end: far\n      p2p_peer: B1\n      extends_to: [GSME]\n",
        "",
        "devices.B2.bridge",
        None,
        "is required for bridge type B2",
        at="  B2:",
    ),
    "bridge section on a meter": Case(
        "    role: router\n  IHD:",
        "    role: router\n    bridge: {end: near, p2p_peer: B2}  # <-\n  IHD:",
        "devices.ESME.bridge",
        {"end": "near", "p2p_peer": "B2", "p2p_peers": ["B2"], "extends_to": []},
        "is only for bridges B1..B4, not for type ESME",
    ),
    "bridge with no peer": Case(
        "      p2p_peer: B1\n",
        "",
        "devices.B2.bridge.p2p_peer",
        None,
        "is required: name the bridge",
        at="    bridge:\n      end: far",
    ),
    "p2p_peer and p2p_peers disagree": Case(
        "      p2p_peer: B1\n",
        "      p2p_peer: B1\n      p2p_peers: [B3]  # <-\n",
        "devices.B2.bridge.p2p_peers",
        ["B3"],
        "disagrees with p2p_peer",
    ),
    "peer at the same end": Case(
        "      end: far",
        "      end: near",
        "devices.B1.bridge.p2p_peer",
        "B2",
        "also a near-end bridge",
        at="      p2p_peer: B2",
    ),
    "peer that is not a bridge": Case(
        "      p2p_peer: B1\n",
        "      p2p_peer: ESME  # <-\n",
        "devices.B2.bridge.p2p_peer",
        "ESME",
        "a p2p peer must be a bridge",
    ),
    "peer that does not exist": Case(
        "      p2p_peer: B1\n",
        "      p2p_peer: B7  # <-\n",
        "devices.B2.bridge.p2p_peer",
        "B7",
        "names no device",
    ),
    "peer that is the bridge itself": Case(
        "      p2p_peer: B1\n",
        "      p2p_peer: B2  # <-\n",
        "devices.B2.bridge.p2p_peer",
        "B2",
        "cannot be the bridge itself",
    ),
    "peer without a p2p link": Case(
        "  - between: [B1, B2]\n    medium: p2p\n    latency: 15ms\n",
        "",
        "devices.B1.bridge.p2p_peer",
        "B2",
        "links has no p2p link between B1 and B2",
        at="      p2p_peer: B2",
    ),
    "several peers, one of them wrong": Case(
        "      p2p_peer: B2\n",
        "      p2p_peers: [B2, ESME]  # <-\n",
        "devices.B1.bridge.p2p_peers[1]",
        "ESME",
        "a p2p peer must be a bridge",
    ),
    "bridge extends to an unknown device": Case(
        "      extends_to: [GSME]\n  GSME:",
        "      extends_to: [GMSE]  # <-\n  GSME:",
        "devices.B2.bridge.extends_to[0]",
        "GMSE",
        "names no device",
    ),
    "bridge extends to another bridge": Case(
        "      extends_to: [GSME]\n  GSME:",
        "      extends_to: [B1]  # <-\n  GSME:",
        "devices.B2.bridge.extends_to[0]",
        "B1",
        "not a bridge",
    ),
    "bridge extends to a device it does not carry": Case(
        "      extends_to: [GSME]\n  GSME:",
        "      extends_to: [IHD]  # <-\n  GSME:",
        "devices.B2.bridge.extends_to[0]",
        "IHD",
        "frames reach it without B2 (route: CH -> IHD)",
    ),
    # -- parents and polling --
    "end device without a parent": Case(
        "    parent: B2\n",
        "",
        "devices.GSME.parent",
        None,
        "is required for role sleepy_end_device",
        at="  GSME:",
    ),
    "parent on a router": Case(
        "    role: router\n  IHD:",
        "    role: router\n    parent: CH  # <-\n  IHD:",
        "devices.ESME.parent",
        "CH",
        "is only for end devices",
    ),
    "parent that does not exist": Case(
        "    parent: B2\n", "    parent: B9  # <-\n", "devices.GSME.parent", "B9", "names no device"
    ),
    "parent that is an end device": Case(
        "    parent: B2\n",
        "    parent: IHD  # <-\n",
        "devices.GSME.parent",
        "IHD",
        "a parent must be a router or the coordinator",
    ),
    "parent without a radio link": Case(
        "    parent: B2\n",
        "    parent: B1  # <-\n",
        "devices.GSME.parent",
        "B1",
        "links has no radio link between GSME and B1",
    ),
    "parent that is the device itself": Case(
        "    parent: B2\n",
        "    parent: GSME  # <-\n",
        "devices.GSME.parent",
        "GSME",
        "cannot be the device itself",
    ),
    "poll interval on a device that does not sleep": Case(
        "    parent: CH\n",
        "    parent: CH\n    poll_interval: 7.5s  # <-\n",
        "devices.IHD.poll_interval",
        7.5,
        "is only for sleepy_end_device",
    ),
    "fast poll slower than the poll": Case(
        "    poll_interval: 7.5s",
        "    poll_interval: 7.5s\n    fast_poll_interval: 10s  # <-",
        "devices.GSME.fast_poll_interval",
        10.0,
        "must not be longer than poll_interval (7.5s)",
    ),
    # -- reachability --
    "device that cannot be reached from the coordinator": Case(
        "  ESME:\n",
        '  PPMID:  # <-\n    type: PPMID\n    ieee: "00:0d:6f:ff:fe:00:00:05"\n    nwk: 0x4411\n'
        "    manufacturer_code: 0x1237\n    image_type: 0x0500\n    firmware_version: 0x01000000\n"
        "    power_source: mains\n    role: router\n  ESME:\n",
        "devices.PPMID",
        "PPMID",
        "cannot be reached from the coordinator CH",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_broken_rule_names_file_line_field_and_value(tmp_path: Path, case: Case) -> None:
    assert BASE.count(case.old) == 1, f"test setup: {case.old!r} must occur once in BASE"
    text = BASE.replace(case.old, case.new)
    path = tmp_path / "premises.yaml"
    path.write_text(text)
    with pytest.raises(BadInputError) as caught:
        load_testbed(path)
    error = caught.value
    assert (error.file, error.line, error.field, error.value) == (
        str(path),
        _line(text, case.at),
        case.field,
        case.value,
    )
    message = str(error)
    assert case.says in message
    assert message.startswith(f"{path}:{error.line}: ")
    assert "\n" not in message, "the message must be one paragraph"


def test_base_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "premises.yaml"
    path.write_text(BASE)
    spec = load_testbed(path)
    assert spec.route("CH", "GSME") == ["CH", "B1", "B2", "GSME"]


def test_several_peers_accepted(tmp_path: Path) -> None:
    text = BASE.replace("      p2p_peer: B2\n", "      p2p_peers: [B2, B3]\n").replace("links:\n", B3, 1)
    text = text.replace(
        "  - between: [B2, GSME]", "  - between: [B2, GSME]\n  - between: [B1, B3]\n    medium: p2p"
    )
    path = tmp_path / "premises.yaml"
    path.write_text(text)
    spec = load_testbed(path)
    bridge = spec.device("B1").bridge
    assert bridge is not None and bridge.p2p_peers == ["B2", "B3"] and bridge.p2p_peer is None
    assert spec.route("CH", "B3") == ["CH", "B1", "B3"]


def test_hex_text_and_compact_eui64_are_accepted(tmp_path: Path) -> None:
    text = BASE.replace("    nwk: 0x3F21", '    nwk: "0x3F21"').replace(
        '    ieee: "00:0d:6f:ff:fe:00:00:02"', '    ieee: "000D6FFFFE000002"'
    )
    path = tmp_path / "premises.yaml"
    path.write_text(text)
    esme = load_testbed(path).device("ESME")
    assert esme.nwk == 0x3F21 and esme.ieee == "00:0d:6f:ff:fe:00:00:02"


@pytest.mark.parametrize(
    ("content", "line", "says"),
    [
        (b"", None, "is empty"),
        (b"# nothing but a comment\n", None, "is empty"),
        (b"- CH\n- ESME\n", 1, "must hold a mapping of fields"),
        (b"name: caf\xe9\n", 1, "is not UTF-8 text"),
        (b"name: x\n  bad: indent\n", 2, "is not valid YAML"),
        (
            b'name: x\npan_id: 1\nextended_pan_id: "000d6ffffe000000"\n'
            b"radio: {plays: CH}\ndevices:\nlinks: []\n",
            5,
            "must be a mapping of device names to their fields",
        ),
    ],
)
def test_unusable_files(tmp_path: Path, content: bytes, line: int | None, says: str) -> None:
    path = tmp_path / "premises.yaml"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as caught:
        load_testbed(path)
    assert caught.value.file == str(path) and caught.value.line == line
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(BadInputError, match="no such testbed file") as caught:
        load_testbed(path)
    assert caught.value.file == str(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="is a directory"):
        load_testbed(tmp_path)


def _line(text: str, fragment: str) -> int:
    """The line where ``fragment`` (which occurs once, and may span lines) starts."""
    assert text.count(fragment) == 1, f"test setup: {fragment!r} must occur exactly once"
    return text[: text.index(fragment)].count("\n") + 1
