"""OTA image codec: round trips, exact bytes, every parse error and warning, zigpy as an oracle."""

from __future__ import annotations

import hashlib
import itertools
import struct
from pathlib import Path
from typing import Any

import pytest
import zigpy.ota.image as zimage
import zigpy.types as zt

from harness.errors import BadInputError
from harness.ota import mutate
from harness.ota.image import (
    MAGIC,
    ImageFormatError,
    OtaHeader,
    OtaImage,
    SubElement,
    build_image,
    build_image_of_total_size,
    load_image,
    make_payload,
    parse_image,
    required_header_length,
    tag_name,
)

DESTINATION = bytes.fromhex("f1debc0a006f0d00")  # 00:0d:6f:00:0a:bc:de:f1 on the wire


def _image(form: str = "zigbee", payload: bytes = b"firmware", **kwargs: Any) -> OtaImage:
    return build_image(
        manufacturer_code=0x1234,
        image_type=0x0001,
        file_version=0x01020000,
        payload=payload,
        form=form,
        **kwargs,
    )


OPTIONAL_COMBINATIONS = [
    dict(zip(("security", "destination", "hardware"), flags, strict=True))
    for flags in itertools.product((False, True), repeat=3)
]


def _optional_kwargs(security: bool, destination: bool, hardware: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if security:
        kwargs["security_credential_version"] = 0x02
    if destination:
        kwargs["upgrade_file_destination"] = DESTINATION
    if hardware:
        kwargs["minimum_hardware_version"] = 0x0101
        kwargs["maximum_hardware_version"] = 0x0203
    return kwargs


# --- building and round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["zigbee", "gbcs"])
@pytest.mark.parametrize(
    "optional", OPTIONAL_COMBINATIONS, ids=lambda o: "-".join(k for k, v in o.items() if v)
)
def test_round_trip_with_every_optional_field_combination(form: str, optional: dict[str, bool]) -> None:
    image = _image(
        form, make_payload(300, seed=7), header_string="GB bridge B2", **_optional_kwargs(**optional)
    )
    data = image.serialize()

    parsed = parse_image(data, form=form)

    assert parsed.warnings == []
    assert parsed.image == image
    assert parsed.image.serialize() == data
    assert parsed.image.payload == make_payload(300, seed=7)
    assert len(data) == image.header.total_image_size
    expected_fc = (1 if optional["security"] else 0) | (2 if optional["destination"] else 0)
    expected_fc |= 4 if optional["hardware"] else 0
    assert image.header.field_control == expected_fc
    assert image.header.header_length == required_header_length(expected_fc)


def test_zigbee_image_has_exact_bytes() -> None:
    image = _image(
        payload=b"\xaa\xbb", header_string="hi", minimum_hardware_version=1, maximum_hardware_version=2
    )
    expected = (
        struct.pack("<IHHHHHIH", MAGIC, 0x0100, 60, 0x0004, 0x1234, 0x0001, 0x01020000, 2)
        + b"hi".ljust(32, b"\x00")
        + struct.pack("<I", 60 + 6 + 2)
        + struct.pack("<HH", 1, 2)
        + struct.pack("<HI", 0x0000, 2)
        + b"\xaa\xbb"
    )
    assert image.serialize() == expected


def test_gbcs_image_is_header_then_opaque_body() -> None:
    image = _image("gbcs", payload=b"\x00\x01opaque")
    data = image.serialize()
    assert data[56:] == b"\x00\x01opaque"
    assert struct.unpack_from("<I", data, 52)[0] == 56 + 8
    assert image.sub_elements == []
    assert image.payload == b"\x00\x01opaque"


def test_gbcs_body_is_detected_when_it_does_not_parse_as_sub_elements() -> None:
    data = _image("gbcs", payload=make_payload(500, seed=3)).serialize()
    parsed = parse_image(data)
    assert parsed.image.form == "gbcs"
    assert parsed.image.body == make_payload(500, seed=3)
    assert parsed.warnings == []


def test_zigbee_image_is_detected_without_a_form_hint() -> None:
    image = OtaImage(
        header=_image().header,
        form="zigbee",
        sub_elements=[SubElement(0x0000, b"fw"), SubElement(0x0003, b"\x11" * 16), SubElement(0xF0A1, b"x")],
    )
    parsed = parse_image(image.serialize())
    assert parsed.image.form == "zigbee"
    assert parsed.image.sub_elements == image.sub_elements


def test_unknown_and_manufacturer_tags_are_kept_as_they_are() -> None:
    elements = [SubElement(0x0042, b"reserved tag"), SubElement(0xFFFF, b""), SubElement(0x0000, b"fw")]
    image = OtaImage(header=_image().header, sub_elements=elements)
    parsed = parse_image(image.serialize(), form="zigbee").image
    assert parsed.sub_elements == elements
    assert parsed.payload == b"fw"
    assert [e.name for e in parsed.sub_elements] == ["unknown", "manufacturer_specific", "upgrade_image"]
    assert tag_name(0x0001) == "ecdsa_signature_suite_1"
    assert tag_name(0x0006) == "ecdsa_signing_certificate_suite_2"


def test_zigbee_image_without_upgrade_image_element_has_empty_payload() -> None:
    image = OtaImage(header=_image().header, sub_elements=[SubElement(0x0004, b"picture")])
    assert image.payload == b""


def test_empty_content_counts_as_zero_sub_elements() -> None:
    data = OtaImage(header=_image().header, sub_elements=[]).serialize()
    assert len(data) == 56
    assert parse_image(data).image.form == "zigbee"
    assert parse_image(data, form="gbcs").image.body == b""


def test_make_payload_is_deterministic_per_seed() -> None:
    assert make_payload(64, seed=1) == make_payload(64, seed=1)
    assert make_payload(64, seed=1) != make_payload(64, seed=2)
    assert len(make_payload(0, seed=1)) == 0
    with pytest.raises(BadInputError, match="size"):
        make_payload(-1, seed=1)


@pytest.mark.parametrize("form", ["zigbee", "gbcs"])
@pytest.mark.parametrize("total", [204800, 1000])
def test_build_image_of_total_size_is_exact(form: str, total: int) -> None:
    image = build_image_of_total_size(
        total, manufacturer_code=0x1234, image_type=1, file_version=2, form=form, seed=5,
        minimum_hardware_version=1, maximum_hardware_version=3,
    )  # fmt: skip
    assert len(image.serialize()) == total
    assert image.header.total_image_size == total


@pytest.mark.parametrize(("form", "smallest"), [("zigbee", 62), ("gbcs", 56)])
def test_build_image_of_total_size_refuses_sizes_below_the_framing(form: str, smallest: int) -> None:
    image = build_image_of_total_size(smallest, manufacturer_code=1, image_type=1, file_version=1, form=form)
    assert image.payload == b""
    with pytest.raises(BadInputError, match=f"smaller than the {smallest} bytes") as caught:
        build_image_of_total_size(smallest - 1, manufacturer_code=1, image_type=1, file_version=1, form=form)
    assert caught.value.field == "size"
    assert caught.value.value == smallest - 1


def test_to_json_describes_header_hashes_and_sub_elements() -> None:
    image = _image(payload=b"abc", upgrade_file_destination=DESTINATION, security_credential_version=1)
    data = image.serialize()
    described = image.to_json()
    assert described["form"] == "zigbee"
    assert described["size"] == len(data)
    assert described["sha256"] == hashlib.sha256(data).hexdigest()
    header = described["header"]
    assert header["manufacturer_code"] == "0x1234"
    assert header["image_type"] == "0x0001"
    assert header["file_version"] == "0x01020000"
    assert header["field_control"] == "0x0003"
    assert header["header_length"] == 65
    assert header["total_image_size"] == len(data)
    assert header["upgrade_file_destination"] == "00:0d:6f:00:0a:bc:de:f1"
    assert header["security_credential_version"] == "0x01"
    assert header["minimum_hardware_version"] is None
    assert described["sub_elements"] == [
        {
            "tag": "0x0000",
            "name": "upgrade_image",
            "offset": 65,
            "length": 3,
            "sha256": hashlib.sha256(b"abc").hexdigest(),
        }
    ]
    assert described["payload_sha256"] == hashlib.sha256(b"abc").hexdigest()


def test_to_json_of_gbcs_image_describes_the_body() -> None:
    described = _image("gbcs", payload=b"body").to_json()
    assert described["sub_elements"] == []
    assert described["body"] == {"offset": 56, "length": 4, "sha256": hashlib.sha256(b"body").hexdigest()}


def test_header_field_control_and_sizes_follow_the_fields() -> None:
    header = OtaHeader(manufacturer_code=1, image_type=2, file_version=3, field_control=0x0007)
    assert header.field_control == 0  # presence bits say what is really there
    with_hw = OtaHeader(
        manufacturer_code=1, image_type=2, file_version=3, field_control=0x8000,
        minimum_hardware_version=1, maximum_hardware_version=1,
    )  # fmt: skip
    assert with_hw.field_control == 0x8004  # reserved bits are kept
    assert with_hw.header_length == 60
    image = OtaImage(header=with_hw, sub_elements=[SubElement(0, b"12345")])
    assert image.header.total_image_size == 60 + 6 + 5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"manufacturer_code": 0x10000}, "manufacturer_code"),
        ({"image_type": -1}, "image_type"),
        ({"file_version": 1 << 32}, "file_version"),
        ({"stack_version": 0x10000}, "stack_version"),
        ({"header_string": "x" * 33}, "header_string"),
        ({"header_string": "é" * 17}, "header_string"),
        ({"minimum_hardware_version": 1}, "maximum_hardware_version"),
        ({"maximum_hardware_version": 1}, "minimum_hardware_version"),
        ({"upgrade_file_destination": b"\x01" * 7}, "upgrade_file_destination"),
        ({"security_credential_version": 256}, "security_credential_version"),
        ({"form": "zigbe"}, "form"),
    ],
)
def test_build_image_rejects_bad_values_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, Any] = {"manufacturer_code": 1, "image_type": 1, "file_version": 1, "payload": b""}
    arguments.update(kwargs)
    with pytest.raises(BadInputError) as caught:
        build_image(**arguments)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_image_form_and_content_must_agree() -> None:
    header = _image().header
    with pytest.raises(BadInputError, match="no sub-elements"):
        OtaImage(header=header, form="gbcs", sub_elements=[SubElement(0, b"")])
    with pytest.raises(BadInputError, match="not a body"):
        OtaImage(header=header, form="zigbee", body=b"x")


def test_header_string_keeps_32_bytes_of_utf8() -> None:
    image = _image(header_string="é" * 16)
    assert parse_image(image.serialize()).image.header.header_string == "é" * 16


# --- parse errors ---------------------------------------------------------------------------------


def _error(data: bytes, form: str | None = None) -> ImageFormatError:
    with pytest.raises(ImageFormatError) as caught:
        parse_image(data, source="fw.ota", form=form)
    assert str(caught.value).startswith("fw.ota: ")
    assert caught.value.file == "fw.ota"
    return caught.value


def test_bad_magic_number() -> None:
    data = bytearray(_image().serialize())
    struct.pack_into("<I", data, 0, 0x12345678)
    error = _error(bytes(data))
    assert "bad magic number at offset 0: expected 0x0BEEF11E, found 0x12345678" in str(error)
    assert (error.field, error.offset, error.value) == ("magic", 0, "0x12345678")


@pytest.mark.parametrize("size", [0, 3, 4, 55])
def test_file_shorter_than_minimum_header(size: int) -> None:
    error = _error(_image().serialize()[:size])
    assert f"file shorter than the 56-byte minimum OTA header: file has {size} bytes" in str(error)
    assert error.offset == 0


def test_header_length_shorter_than_field_control_requires() -> None:
    data = mutate.set_header_field(_image().serialize(), "header_length", 40)
    error = _error(data)
    assert (
        "header length 40 at offset 6 is shorter than the 56 bytes the field control 0x0000 requires"
        in str(error)
    )
    assert (error.field, error.offset, error.value) == ("header_length", 6, 40)


def test_header_length_missing_the_hardware_versions() -> None:
    data = mutate.set_header_field(_image().serialize(), "field_control", 0x0004)
    error = _error(data)
    assert (
        "header length 56 at offset 6 is shorter than the 60 bytes the field control 0x0004 requires"
        in str(error)
    )


def test_truncated_file() -> None:
    data = build_image_of_total_size(204800, manufacturer_code=1, image_type=1, file_version=1).serialize()
    error = _error(data[:1024])
    assert "file is truncated: header says total image size 204800 bytes, file has 1024 bytes" in str(error)
    assert (error.field, error.offset, error.value) == ("total_image_size", 52, 204800)


def test_total_size_smaller_than_header() -> None:
    data = mutate.set_header_field(_image().serialize(), "total_image_size", 10)
    error = _error(data)
    assert "total image size 10 at offset 52 is smaller than the header length 56 at offset 6" in str(error)


def test_sub_element_claiming_more_than_remains() -> None:
    data = bytearray(_image(payload=b"\x00" * 100).serialize())
    struct.pack_into("<I", data, 58, 5000)
    error = _error(bytes(data), form="zigbee")
    assert "sub-element 0x0000 at offset 56 claims 5000 bytes but only 100 remain" in str(error)
    assert (error.field, error.offset, error.value) == ("sub_element", 56, 5000)


def test_sub_element_with_a_cut_tag_and_length() -> None:
    data = _image(payload=b"").serialize() + b"\x01\x00\x02"
    data = mutate.set_header_field(data, "total_image_size", len(data))
    error = _error(data, form="zigbee")
    assert "sub-element at offset 62 needs a 6-byte tag and length but only 3 bytes remain" in str(error)


def test_damaged_zigbee_image_without_form_hint_is_read_as_gbcs_with_a_warning() -> None:
    data = bytearray(_image(payload=b"\x00" * 100).serialize())
    struct.pack_into("<I", data, 58, 5000)
    parsed = parse_image(bytes(data))
    assert parsed.image.form == "gbcs"
    assert len(parsed.warnings) == 1
    assert "starts like sub-elements" in parsed.warnings[0]
    assert "sub-element 0x0000 at offset 56 claims 5000 bytes" in parsed.warnings[0]


def test_wrong_form_argument_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="form"):
        parse_image(_image().serialize(), form="zip")


def test_errors_are_bad_input_errors() -> None:
    assert issubclass(ImageFormatError, BadInputError)
    assert issubclass(ImageFormatError, ValueError)


# --- warnings -------------------------------------------------------------------------------------


def test_trailing_bytes_are_a_warning_and_left_out() -> None:
    image = _image(payload=make_payload(64, seed=1))
    data = image.serialize()
    parsed = parse_image(data + b"\xde\xad\xbe\xef")
    assert parsed.warnings == ["4 trailing bytes after the total image size (a vendor CRC?)"]
    assert parsed.image == image
    assert parsed.image.serialize() == data


def test_longer_header_is_kept_with_a_warning() -> None:
    base = _image(payload=b"fw")
    header = OtaHeader(
        manufacturer_code=0x1234, image_type=1, file_version=0x01020000, header_extension=b"\x01\x02\x03"
    )
    image = OtaImage(header=header, sub_elements=base.sub_elements)
    data = image.serialize()
    assert struct.unpack_from("<H", data, 6)[0] == 59
    parsed = parse_image(data)
    assert parsed.image.serialize() == data
    assert parsed.image.header.header_extension == b"\x01\x02\x03"
    assert parsed.image.payload == b"fw"
    assert parsed.warnings == [
        "header length 59 at offset 6 is 3 bytes longer than the 56 bytes the field control 0x0000"
        " requires; the extra bytes are kept"
    ]


def test_reserved_field_control_bits_and_header_version_are_warnings() -> None:
    data = mutate.set_header_field(_image().serialize(), "field_control", 0x0100)
    data = mutate.set_header_field(data, "header_version", 0x0200)
    parsed = parse_image(data)
    assert parsed.image.header.field_control == 0x0100
    assert parsed.image.header.header_version == 0x0200
    assert parsed.image.serialize() == data
    assert any("reserved bits 0x0100" in w for w in parsed.warnings)
    assert any("header version 0x0200 at offset 4" in w for w in parsed.warnings)


def test_header_string_that_is_not_utf8_round_trips_with_a_warning() -> None:
    data = bytearray(_image().serialize())
    data[20:24] = b"ab\xff\xfe"
    parsed = parse_image(bytes(data))
    assert parsed.image.serialize() == bytes(data)
    assert any("not valid UTF-8" in w for w in parsed.warnings)
    assert parsed.image.to_json()["header"]["header_string"] == "ab\\xff\\xfe"


def test_inverted_hardware_versions_are_a_warning() -> None:
    parsed = parse_image(_image(minimum_hardware_version=5, maximum_hardware_version=2).serialize())
    assert parsed.warnings == [
        "minimum hardware version 0x0005 at offset 56 is above the maximum 0x0002:"
        " no hardware can take this image"
    ]


# --- files ----------------------------------------------------------------------------------------


def test_load_image_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fw.ota"
    image = _image("gbcs", payload=b"gb body")
    path.write_bytes(image.serialize())
    assert load_image(path).image == image
    assert load_image(str(path), form="gbcs").image == image


def test_load_image_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.ota"
    with pytest.raises(BadInputError) as caught:
        load_image(path)
    assert str(path) in str(caught.value)
    assert "cannot read" in str(caught.value)


def test_load_image_names_the_file_in_format_errors(tmp_path: Path) -> None:
    path = tmp_path / "junk.ota"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ImageFormatError, match=f"^{path}: bad magic number"):
        load_image(path)


# --- mutations ------------------------------------------------------------------------------------


def test_mutations() -> None:
    data = _image().serialize()
    assert mutate.truncate(data, 10) == data[:10]
    assert mutate.append(data, b"xy") == data + b"xy"
    flipped = mutate.flip_bit(data, 9)
    assert flipped[1] == data[1] ^ 0x02
    assert mutate.flip_bit(flipped, 9) == data
    changed = mutate.set_header_field(data, "manufacturer_code", 0x4321)
    assert parse_image(changed).image.header.manufacturer_code == 0x4321
    for call in (
        lambda: mutate.truncate(data, len(data) + 1),
        lambda: mutate.flip_bit(data, len(data) * 8),
        lambda: mutate.set_header_field(data, "colour", 1),
        lambda: mutate.set_header_field(data, "manufacturer_code", 0x10000),
        lambda: mutate.set_header_field(data[:10], "total_image_size", 1),
    ):
        with pytest.raises(BadInputError):
            call()


# --- zigpy as an independent oracle ---------------------------------------------------------------


@pytest.mark.parametrize(
    "optional", OPTIONAL_COMBINATIONS, ids=lambda o: "-".join(k for k, v in o.items() if v)
)
def test_zigpy_reads_our_header_the_same_way(optional: dict[str, bool]) -> None:
    image = _image(payload=b"fw" * 50, header_string="ALTHAN B1", **_optional_kwargs(**optional))
    ours = image.header
    theirs, rest = zimage.OTAImageHeader.deserialize(image.serialize())
    assert len(rest) == len(image.serialize()) - ours.header_length
    assert theirs.header_version == ours.header_version
    assert theirs.header_length == ours.header_length
    assert int(theirs.field_control) == ours.field_control
    assert theirs.manufacturer_id == ours.manufacturer_code
    assert theirs.image_type == ours.image_type
    assert theirs.file_version == ours.file_version
    assert theirs.stack_version == ours.stack_version
    assert bytes(theirs.header_string).rstrip(b"\x00").decode() == ours.header_string
    assert theirs.image_size == ours.total_image_size
    assert theirs.security_credential_version == ours.security_credential_version
    if optional["destination"]:
        assert theirs.upgrade_file_destination.serialize() == DESTINATION
        assert str(theirs.upgrade_file_destination) == image.to_json()["header"]["upgrade_file_destination"]
    else:
        assert theirs.upgrade_file_destination is None
    assert theirs.minimum_hardware_version == ours.minimum_hardware_version
    assert theirs.maximum_hardware_version == ours.maximum_hardware_version
    assert theirs.serialize() == ours.serialize()


def test_we_read_a_zigpy_built_image_the_same_way() -> None:
    header = zimage.OTAImageHeader(
        upgrade_file_id=zimage.OTAImageHeader.MAGIC_VALUE,
        header_version=0x0100,
        header_length=60,
        field_control=zimage.FieldControl.HARDWARE_VERSIONS_PRESENT,
        manufacturer_id=0x1037,
        image_type=0x0203,
        file_version=0x00000105,
        stack_version=2,
        header_string=zimage.HeaderString("zigpy built"),
        image_size=60 + 6 + 4 + 6 + 3,
        minimum_hardware_version=1,
        maximum_hardware_version=9,
    )
    theirs = zimage.OTAImage(
        header=header,
        subelements=[
            zimage.SubElement(tag_id=zimage.ElementTagId.UPGRADE_IMAGE, data=b"\x01\x02\x03\x04"),
            zimage.SubElement(tag_id=zimage.ElementTagId.IMAGE_INTEGRITY_CODE, data=b"abc"),
        ],
    )
    data = theirs.serialize()
    parsed = parse_image(data)
    assert parsed.warnings == []
    image = parsed.image
    assert image.form == "zigbee"
    assert image.header.manufacturer_code == 0x1037
    assert image.header.image_type == 0x0203
    assert image.header.file_version == 0x00000105
    assert image.header.header_string == "zigpy built"
    assert (image.header.minimum_hardware_version, image.header.maximum_hardware_version) == (1, 9)
    assert [(e.tag, e.data) for e in image.sub_elements] == [(0, b"\x01\x02\x03\x04"), (3, b"abc")]
    assert image.serialize() == data


def test_zigpy_parses_our_zigbee_image_but_not_our_gbcs_image() -> None:
    zigbee = _image(payload=make_payload(200, seed=1)).serialize()
    theirs, rest = zimage.OTAImage.deserialize(zigbee)
    assert rest == b""
    assert [(int(e.tag_id), bytes(e.data)) for e in theirs.subelements] == [(0, make_payload(200, seed=1))]
    # The reason the harness has its own codec (DESIGN.md): zigpy rejects GBCS-style images.
    gbcs = _image("gbcs", payload=make_payload(200, seed=1)).serialize()
    with pytest.raises(ValueError):
        zimage.OTAImage.deserialize(gbcs)


def test_zigpy_eui64_display_matches_ours() -> None:
    assert str(zt.EUI64.deserialize(DESTINATION)[0]) == "00:0d:6f:00:0a:bc:de:f1"
