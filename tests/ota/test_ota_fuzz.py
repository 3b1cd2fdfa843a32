"""Property tests: every image round-trips; no input makes the parser fail but with ImageFormatError."""

from __future__ import annotations

import struct

import zigpy.ota.image as zimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.ota import mutate
from harness.ota.image import (
    MAGIC,
    ImageFormatError,
    OtaHeader,
    OtaImage,
    SubElement,
    parse_image,
    required_header_length,
)

ROUND_TRIP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEVER_CRASHES = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

uint8 = st.integers(0, 0xFF)
uint16 = st.integers(0, 0xFFFF)
uint32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def headers(draw: st.DrawFn) -> OtaHeader:
    hardware = draw(st.none() | st.tuples(uint16, uint16))
    text = draw(st.text(max_size=32).filter(lambda s: len(s.encode("utf-8")) <= 32))
    return OtaHeader(
        manufacturer_code=draw(uint16),
        image_type=draw(uint16),
        file_version=draw(uint32),
        header_version=draw(st.just(0x0100) | uint16),
        field_control=draw(st.just(0) | uint16),
        stack_version=draw(uint16),
        header_string=text,
        security_credential_version=draw(st.none() | uint8),
        upgrade_file_destination=draw(st.none() | st.binary(min_size=8, max_size=8)),
        minimum_hardware_version=None if hardware is None else hardware[0],
        maximum_hardware_version=None if hardware is None else hardware[1],
        header_extension=draw(st.just(b"") | st.binary(max_size=8)),
    )


sub_elements = st.lists(
    st.builds(SubElement, tag=st.sampled_from([0, 1, 2, 3, 4, 5, 6]) | uint16, data=st.binary(max_size=300)),
    max_size=5,
)


@st.composite
def zigbee_images(draw: st.DrawFn) -> OtaImage:
    return OtaImage(header=draw(headers()), form="zigbee", sub_elements=draw(sub_elements))


@st.composite
def gbcs_images(draw: st.DrawFn) -> OtaImage:
    return OtaImage(header=draw(headers()), form="gbcs", body=draw(st.binary(max_size=600)))


images = zigbee_images() | gbcs_images()


@ROUND_TRIP
@given(zigbee_images())
def test_zigbee_images_round_trip_and_are_detected(image: OtaImage) -> None:
    data = image.serialize()
    for form in ("zigbee", None):
        parsed = parse_image(data, form=form)
        assert parsed.image == image
        assert parsed.image.serialize() == data
    assert len(data) == image.header.total_image_size


@ROUND_TRIP
@given(gbcs_images())
def test_gbcs_images_round_trip(image: OtaImage) -> None:
    data = image.serialize()
    parsed = parse_image(data, form="gbcs")
    assert parsed.image == image
    assert parsed.image.serialize() == data
    detected = parse_image(data).image
    # A body can happen to look like sub-elements; either way the bytes are the same.
    assert detected.serialize() == data
    assert detected.form == "gbcs" or image.body == b"".join(e.serialize() for e in detected.sub_elements)


@ROUND_TRIP
@given(images, st.binary(min_size=1, max_size=16))
def test_trailing_bytes_never_change_the_image(image: OtaImage, trailer: bytes) -> None:
    data = image.serialize()
    parsed = parse_image(data + trailer, form=image.form)
    assert parsed.image == image
    assert f"{len(trailer)} trailing bytes after the total image size (a vendor CRC?)" in parsed.warnings


@ROUND_TRIP
@given(headers())
def test_zigpy_reads_every_header_the_way_we_write_it(header: OtaHeader) -> None:
    data = OtaImage(header=header, form="gbcs", body=b"").serialize()
    theirs, _ = zimage.OTAImageHeader.deserialize(data)
    assert theirs.manufacturer_id == header.manufacturer_code
    assert theirs.image_type == header.image_type
    assert theirs.file_version == header.file_version
    assert theirs.header_version == header.header_version
    assert theirs.header_length == header.header_length
    assert int(theirs.field_control) == header.field_control
    assert theirs.stack_version == header.stack_version
    assert bytes(theirs.header_string).rstrip(b"\x00") == header.header_string.encode("utf-8")
    assert theirs.image_size == len(data)
    assert theirs.security_credential_version == header.security_credential_version
    assert theirs.minimum_hardware_version == header.minimum_hardware_version
    assert theirs.maximum_hardware_version == header.maximum_hardware_version
    destination = theirs.upgrade_file_destination
    assert (None if destination is None else destination.serialize()) == header.upgrade_file_destination


def _parse_or_reject(data: bytes, form: str | None = None) -> None:
    try:
        parsed = parse_image(data, source="fuzz.ota", form=form)
    except ImageFormatError as exc:
        assert str(exc).startswith("fuzz.ota: ")
        assert exc.offset is not None
        return
    # Whatever was accepted must be consistent: re-serialising gives the file minus trailing bytes.
    again = parsed.image.serialize()
    assert data.startswith(again)
    assert parse_image(again, form=parsed.image.form).image == parsed.image


@NEVER_CRASHES
@given(st.binary(max_size=200), st.sampled_from([None, "zigbee", "gbcs"]))
def test_arbitrary_bytes_only_raise_image_format_error(data: bytes, form: str | None) -> None:
    _parse_or_reject(data, form)


@st.composite
def plausible_files(draw: st.DrawFn) -> bytes:
    # Random bytes rarely get past the magic number; these have nearly consistent lengths, so they
    # reach the optional fields, the size checks and the sub-element walk.
    field_control = draw(st.integers(0, 7) | uint16)
    header_length = draw(
        st.integers(-2, 6).map(lambda d: max(0, required_header_length(field_control) + d)) | uint16
    )
    rest = draw(st.binary(max_size=60)) + b"".join(
        e.serialize()
        for e in draw(st.lists(st.builds(SubElement, uint16, st.binary(max_size=20)), max_size=3))
    )
    extra = min(max(0, header_length - 56), 64)
    total = draw(st.integers(-8, 2).map(lambda d: max(0, header_length + len(rest) + d)) | uint32)
    header = struct.pack(
        "<IHHHHHIH32sI",
        MAGIC,
        draw(st.just(0x0100) | uint16),
        header_length,
        field_control,
        draw(uint16),
        draw(uint16),
        draw(uint32),
        draw(uint16),
        draw(st.binary(min_size=32, max_size=32)),
        total,
    )
    return header + draw(st.binary(min_size=extra, max_size=extra)) + rest + draw(st.binary(max_size=4))


@NEVER_CRASHES
@given(plausible_files(), st.sampled_from([None, "zigbee", "gbcs"]))
def test_plausible_headers_only_raise_image_format_error(data: bytes, form: str | None) -> None:
    _parse_or_reject(data, form)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "extend", "set"]),
        st.integers(0, 10**6),
        st.binary(min_size=1, max_size=20),
        st.sampled_from(mutate.HEADER_FIELDS),
    ),
    min_size=1,
    max_size=4,
)


@NEVER_CRASHES
@given(images, mutations, st.sampled_from([None, "zigbee", "gbcs"]))
def test_mutated_images_only_raise_image_format_error(
    image: OtaImage, steps: list[tuple[str, int, bytes, str]], form: str | None
) -> None:
    data = image.serialize()
    for kind, number, extra, field in steps:
        if kind == "flip" and data:
            data = mutate.flip_bit(data, number % (len(data) * 8))
        elif kind == "truncate":
            data = mutate.truncate(data, number % (len(data) + 1))
        elif kind == "extend":
            data = mutate.append(data, extra)
        elif kind == "set" and len(data) >= 56:
            width = struct.calcsize(mutate.HEADER_FIELD_OFFSETS[field][1])
            data = mutate.set_header_field(data, field, number % (1 << (8 * width)))
    _parse_or_reject(data, form)
