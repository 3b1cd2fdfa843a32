"""ZCL attribute data types and the profile-wide ("global") commands the emulated devices serve.

Written from the ZigBee Cluster Library (07-5123): clause 2.6.2 "Data types" (table 2-10) for the
value encodings, clause 2.5 "General command frames" for the command payloads, and clause 2.6.3
"Status enumerations" for the status codes. All multi-byte values are little-endian.

Python values per type: integers (data, bitmaps, unsigned, signed, enums, UTC time, cluster and
attribute ids) are ``int``; bool is ``bool`` (``None`` = the invalid value 0xFF); floats are ``float``;
octet strings are ``bytes`` and character strings ``str`` (``None`` = the invalid length 0xFF/0xFFFF);
IEEE address and 128-bit key are ``bytes`` in on-air (little-endian) order.

Decoders raise only :class:`~testbeds.emulator.frames.FrameError` (layer ``"ZCL"``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from testbeds.emulator.frames import FrameError

# ---------------------------------------------------------------------------------------------------
# Data type identifiers (ZCL table 2-10)
# ---------------------------------------------------------------------------------------------------
NO_DATA = 0x00
DATA8, DATA16, DATA24, DATA32, DATA40, DATA48, DATA56, DATA64 = range(0x08, 0x10)
BOOL = 0x10
MAP8, MAP16, MAP24, MAP32, MAP40, MAP48, MAP56, MAP64 = range(0x18, 0x20)
UINT8, UINT16, UINT24, UINT32, UINT40, UINT48, UINT56, UINT64 = range(0x20, 0x28)
INT8, INT16, INT24, INT32, INT40, INT48, INT56, INT64 = range(0x28, 0x30)
ENUM8, ENUM16 = 0x30, 0x31
SEMI_FLOAT, SINGLE_FLOAT, DOUBLE_FLOAT = 0x38, 0x39, 0x3A
OCTET_STRING, CHAR_STRING, LONG_OCTET_STRING, LONG_CHAR_STRING = 0x41, 0x42, 0x43, 0x44
UTC_TIME = 0xE2  # seconds since 2000-01-01 00:00:00 UTC, uint32
CLUSTER_ID, ATTRIBUTE_ID, BACNET_OID = 0xE8, 0xE9, 0xEA
IEEE_ADDRESS, SECURITY_KEY = 0xF0, 0xF1

#: Types whose reporting carries a "reportable change" field (ZCL 2.6.2: the analog class).
ANALOG_TYPES = frozenset(
    [*range(UINT8, UINT64 + 1), *range(INT8, INT64 + 1), SEMI_FLOAT, SINGLE_FLOAT, DOUBLE_FLOAT, UTC_TIME]
)

# ---------------------------------------------------------------------------------------------------
# Profile-wide command identifiers (ZCL table 2-3)
# ---------------------------------------------------------------------------------------------------
READ_ATTRIBUTES = 0x00
READ_ATTRIBUTES_RESPONSE = 0x01
WRITE_ATTRIBUTES = 0x02
WRITE_ATTRIBUTES_UNDIVIDED = 0x03
WRITE_ATTRIBUTES_RESPONSE = 0x04
WRITE_ATTRIBUTES_NO_RESPONSE = 0x05
CONFIGURE_REPORTING = 0x06
CONFIGURE_REPORTING_RESPONSE = 0x07
READ_REPORTING_CONFIGURATION = 0x08
READ_REPORTING_CONFIGURATION_RESPONSE = 0x09
REPORT_ATTRIBUTES = 0x0A
DEFAULT_RESPONSE = 0x0B
DISCOVER_ATTRIBUTES = 0x0C
DISCOVER_ATTRIBUTES_RESPONSE = 0x0D

# ---------------------------------------------------------------------------------------------------
# Status codes (ZCL table 2-12), including the OTA-related ones the OTA cluster uses
# ---------------------------------------------------------------------------------------------------
SUCCESS = 0x00
FAILURE = 0x01
NOT_AUTHORIZED = 0x7E
MALFORMED_COMMAND = 0x80
UNSUP_CLUSTER_COMMAND = 0x81
UNSUP_GENERAL_COMMAND = 0x82
UNSUP_MANUF_CLUSTER_COMMAND = 0x83
UNSUP_MANUF_GENERAL_COMMAND = 0x84
INVALID_FIELD = 0x85
UNSUPPORTED_ATTRIBUTE = 0x86
INVALID_VALUE = 0x87
READ_ONLY = 0x88
INSUFFICIENT_SPACE = 0x89
DUPLICATE_EXISTS = 0x8A
NOT_FOUND = 0x8B
UNREPORTABLE_ATTRIBUTE = 0x8C
INVALID_DATA_TYPE = 0x8D
INVALID_SELECTOR = 0x8E
ABORT = 0x95
INVALID_IMAGE = 0x96
WAIT_FOR_DATA = 0x97
NO_IMAGE_AVAILABLE = 0x98
REQUIRE_MORE_IMAGE = 0x99
UNSUPPORTED_CLUSTER = 0xC3

# Reporting directions (ZCL 2.5.7.1.1)
REPORT_SEND = 0x00  # the receiver sends reports of the attribute
REPORT_RECEIVE = 0x01  # the receiver expects reports (timeout period follows)

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_ATTR_STATUS = struct.Struct("<HB")  # attribute id, status
_ATTR_TYPE = struct.Struct("<HB")  # attribute id, data type
_STATUS_ATTR = struct.Struct("<BH")  # status, attribute id
_STATUS_DIR_ATTR = struct.Struct("<BBH")  # status, direction, attribute id
_DIR_ATTR = struct.Struct("<BH")  # direction, attribute id
_DIR_ATTR_TYPE_MIN_MAX = struct.Struct("<BHBHH")  # direction, attr id, type, min, max interval
_DIR_ATTR_TIMEOUT = struct.Struct("<BHH")  # direction, attr id, timeout period

Encoder = Callable[[object], bytes]
Decoder = Callable[[bytes, int], tuple[object, int]]


def _err(message: str, field: str, offset: int | None = None) -> FrameError:
    return FrameError(message, "ZCL", field, offset)


def _int_codec(size: int, signed: bool) -> tuple[Encoder, Decoder]:
    def enc(value: object) -> bytes:
        if type(value) is not int and type(value) is not bool:
            raise TypeError(f"expected int, got {type(value).__name__}")
        return value.to_bytes(size, "little", signed=signed)

    if size in (1, 2, 4, 8):
        # Sizes struct knows: one C call per value.
        fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
        unpack_from = struct.Struct("<" + (fmt if signed else fmt.upper())).unpack_from

        def dec(data: bytes, offset: int) -> tuple[object, int]:
            return unpack_from(data, offset)[0], offset + size

    else:

        def dec(data: bytes, offset: int) -> tuple[object, int]:
            end = offset + size
            if end > len(data):
                raise struct.error(f"needs {size} bytes")
            return int.from_bytes(data[offset:end], "little", signed=signed), end

    return enc, dec


def _float_codec(fmt: str) -> tuple[Encoder, Decoder]:
    st = struct.Struct(fmt)
    size = st.size

    def enc(value: object) -> bytes:
        if type(value) not in (float, int):
            raise TypeError(f"expected float, got {type(value).__name__}")
        return st.pack(value)

    def dec(data: bytes, offset: int) -> tuple[object, int]:
        return st.unpack_from(data, offset)[0], offset + size

    return enc, dec


def _bool_enc(value: object) -> bytes:
    if value is None:
        return b"\xff"
    if type(value) is not bool:
        raise TypeError(f"expected bool or None, got {type(value).__name__}")
    return b"\x01" if value else b"\x00"


def _bool_dec(data: bytes, offset: int) -> tuple[object, int]:
    b = data[offset]
    if b > 1:
        if b == 0xFF:
            return None, offset + 1
        raise _err(f"reserved boolean value 0x{b:02x}", "bool value", offset)
    return b == 1, offset + 1


def _string_codec(len_size: int, text: bool) -> tuple[Encoder, Decoder]:
    invalid = (1 << (8 * len_size)) - 1  # length 0xFF / 0xFFFF marks an invalid string
    len_st = _U8 if len_size == 1 else _U16

    def enc(value: object) -> bytes:
        if value is None:
            return len_st.pack(invalid)
        if text:
            if type(value) is not str:
                raise TypeError(f"expected str or None, got {type(value).__name__}")
            raw = value.encode("utf-8")
        else:
            if not isinstance(value, bytes):
                raise TypeError(f"expected bytes or None, got {type(value).__name__}")
            raw = value
        if len(raw) >= invalid:
            raise ValueError(f"string of {len(raw)} bytes is longer than {invalid - 1}")
        return len_st.pack(len(raw)) + raw

    def dec(data: bytes, offset: int) -> tuple[object, int]:
        (n,) = len_st.unpack_from(data, offset)
        start = offset + len_size
        if n == invalid:
            return None, start
        end = start + n
        if end > len(data):
            left = len(data) - start
            raise _err(f"string length {n} runs past the end ({left} bytes left)", "string", offset)
        raw = data[start:end]
        return (raw.decode("utf-8") if text else raw), end

    return enc, dec


def _fixed_bytes_codec(size: int) -> tuple[Encoder, Decoder]:
    def enc(value: object) -> bytes:
        if not isinstance(value, bytes) or len(value) != size:
            raise ValueError(f"expected {size} bytes, got {value!r}")
        return value

    def dec(data: bytes, offset: int) -> tuple[object, int]:
        end = offset + size
        if end > len(data):
            raise struct.error(f"needs {size} bytes")
        return data[offset:end], end

    return enc, dec


def _build_codecs() -> dict[int, tuple[Encoder, Decoder]]:
    codecs: dict[int, tuple[Encoder, Decoder]] = {}
    for i in range(8):
        size = i + 1
        codecs[DATA8 + i] = _int_codec(size, False)
        codecs[MAP8 + i] = _int_codec(size, False)
        codecs[UINT8 + i] = _int_codec(size, False)
        codecs[INT8 + i] = _int_codec(size, True)
    codecs[BOOL] = (_bool_enc, _bool_dec)
    codecs[ENUM8] = _int_codec(1, False)
    codecs[ENUM16] = _int_codec(2, False)
    codecs[SEMI_FLOAT] = _float_codec("<e")
    codecs[SINGLE_FLOAT] = _float_codec("<f")
    codecs[DOUBLE_FLOAT] = _float_codec("<d")
    codecs[OCTET_STRING] = _string_codec(1, False)
    codecs[CHAR_STRING] = _string_codec(1, True)
    codecs[LONG_OCTET_STRING] = _string_codec(2, False)
    codecs[LONG_CHAR_STRING] = _string_codec(2, True)
    codecs[UTC_TIME] = _int_codec(4, False)
    codecs[CLUSTER_ID] = _int_codec(2, False)
    codecs[ATTRIBUTE_ID] = _int_codec(2, False)
    codecs[BACNET_OID] = _int_codec(4, False)
    codecs[IEEE_ADDRESS] = _fixed_bytes_codec(8)
    codecs[SECURITY_KEY] = _fixed_bytes_codec(16)
    return codecs


_CODECS = _build_codecs()
_ENCODERS = {t: c[0] for t, c in _CODECS.items()}
_DECODERS = {t: c[1] for t, c in _CODECS.items()}

#: Every data type id this module can encode and decode.
SUPPORTED_TYPES = frozenset(_CODECS)


def _type_name(type_id: object) -> str:
    return f"0x{type_id:02x}" if type(type_id) is int else repr(type_id)


def encode_value(type_id: int, value: object) -> bytes:
    """Encode ``value`` as ZCL data type ``type_id``; raises FrameError if it does not fit the type."""
    enc = _ENCODERS.get(type_id)
    if enc is None:
        raise _err(f"unsupported data type {_type_name(type_id)}", "data type")
    try:
        return enc(value)
    except (OverflowError, TypeError, ValueError, UnicodeEncodeError, struct.error) as exc:
        raise _err(f"cannot encode {value!r} as type 0x{type_id:02x}: {exc}", "value") from None


def decode_value(type_id: int, data: bytes, offset: int = 0) -> tuple[object, int]:
    """Decode one value of ZCL data type ``type_id`` at ``offset``; return ``(value, new_offset)``."""
    dec = _DECODERS.get(type_id)
    if dec is None:
        raise _err(f"unsupported data type {_type_name(type_id)}", "data type", offset)
    if offset < 0 or offset >= len(data):
        raise _err(f"no value bytes for type 0x{type_id:02x}", "value", offset)
    try:
        return dec(data, offset)
    except (struct.error, IndexError) as exc:
        raise _err(f"truncated value of type 0x{type_id:02x}: {exc}", "value", offset) from None
    except UnicodeDecodeError as exc:
        raise _err(f"character string is not UTF-8: {exc}", "value", offset) from None


def _typed_records(payload: bytes, what: str) -> list[tuple[int, int, object]]:
    """Decode a list of (attribute id, data type, value) records (write attributes, report attributes)."""
    out: list[tuple[int, int, object]] = []
    off = 0
    n = len(payload)
    while off < n:
        if off + 3 > n:
            raise _err(f"truncated {what} record", "attribute record", off)
        attr, type_id = _ATTR_TYPE.unpack_from(payload, off)
        value, off = decode_value(type_id, payload, off + 3)
        out.append((attr, type_id, value))
    return out


def _encode_typed_records(records: Iterable[tuple[int, int, object]]) -> bytes:
    parts = []
    try:
        for attr, type_id, value in records:
            parts.append(_ATTR_TYPE.pack(attr, type_id))
            parts.append(encode_value(type_id, value))
    except FrameError:
        raise
    except (struct.error, TypeError, ValueError) as exc:
        raise _err(f"bad attribute record: {exc}", "attribute record") from None
    return b"".join(parts)


# --- Read Attributes (2.5.1) / Read Attributes Response (2.5.2) ---------------------------------


def encode_read_attributes(attr_ids: Sequence[int]) -> bytes:
    """Encode a Read Attributes payload: the attribute identifiers, uint16 each."""
    try:
        return b"".join([_U16.pack(a) for a in attr_ids])
    except (struct.error, TypeError) as exc:
        raise _err(f"bad attribute id: {exc}", "attribute id") from None


def decode_read_attributes(payload: bytes) -> list[int]:
    """Decode a Read Attributes payload into the list of requested attribute identifiers."""
    n = len(payload)
    if n & 1:
        raise _err(f"odd payload length {n}: attribute ids are 2 bytes each", "attribute id", n - 1)
    return [a for (a,) in _U16.iter_unpack(payload)]


def encode_read_attributes_response(records: Iterable[tuple[int, int, int | None, object]]) -> bytes:
    """Encode Read Attributes Response records ``(attr_id, status, type_id, value)``.

    Only SUCCESS records carry the data type and value (ZCL 2.5.2.1); for any other status
    (e.g. UNSUPPORTED_ATTRIBUTE) ``type_id`` and ``value`` are ignored.
    """
    parts = []
    try:
        for attr, status, type_id, value in records:
            parts.append(_ATTR_STATUS.pack(attr, status))
            if status == SUCCESS:
                if type_id is None:
                    raise _err(f"attribute 0x{attr:04x}: SUCCESS record needs a data type", "data type")
                parts.append(_U8.pack(type_id))
                parts.append(encode_value(type_id, value))
    except FrameError:
        raise
    except (struct.error, TypeError, ValueError) as exc:
        raise _err(f"bad read attributes record: {exc}", "attribute record") from None
    return b"".join(parts)


def decode_read_attributes_response(payload: bytes) -> list[tuple[int, int, int | None, object]]:
    """Decode Read Attributes Response records into ``(attr_id, status, type_id, value)`` tuples."""
    out: list[tuple[int, int, int | None, object]] = []
    off = 0
    n = len(payload)
    while off < n:
        if off + 3 > n:
            raise _err("truncated read attribute status record", "attribute record", off)
        attr, status = _ATTR_STATUS.unpack_from(payload, off)
        off += 3
        if status != SUCCESS:
            out.append((attr, status, None, None))
            continue
        if off >= n:
            raise _err("SUCCESS record without a data type", "data type", off)
        type_id = payload[off]
        value, off = decode_value(type_id, payload, off + 1)
        out.append((attr, status, type_id, value))
    return out


# --- Write Attributes (2.5.3) / Write Attributes Response (2.5.5) -----------------------------------


def encode_write_attributes(records: Iterable[tuple[int, int, object]]) -> bytes:
    """Encode Write Attributes records ``(attr_id, type_id, value)`` (also used by Report Attributes)."""
    return _encode_typed_records(records)


def decode_write_attributes(payload: bytes) -> list[tuple[int, int, object]]:
    """Decode Write Attributes (or Write Attributes Undivided / No Response) records.

    Returns ``(attr_id, type_id, value)`` tuples. An unknown data type makes the rest of the payload
    unparseable, so it raises FrameError (field ``"data type"``).
    """
    return _typed_records(payload, "write attribute")


def encode_write_attributes_response(statuses: Iterable[tuple[int, int]]) -> bytes:
    """Encode a Write Attributes Response from ``(status, attr_id)`` pairs, one per written attribute.

    Pairs are in on-air record order (status first). Per ZCL 2.5.5.1 only failed attributes get a
    record; when every status is SUCCESS (or the list is empty) the payload is the single byte
    SUCCESS with no attribute id.
    """
    try:
        parts = [_STATUS_ATTR.pack(status, attr) for status, attr in statuses if status != SUCCESS]
    except (struct.error, TypeError, ValueError) as exc:
        raise _err(f"bad write attribute status: {exc}", "attribute record") from None
    return b"".join(parts) if parts else b"\x00"


def decode_write_attributes_response(payload: bytes) -> list[tuple[int, int]]:
    """Decode a Write Attributes Response into ``(status, attr_id)`` pairs; ``[]`` means all succeeded."""
    n = len(payload)
    if n == 1:
        if payload[0] != SUCCESS:
            raise _err(f"single status 0x{payload[0]:02x} without attribute id", "status", 0)
        return []
    if n == 0 or n % 3:
        raise _err(f"payload length {n} is not a multiple of 3", "status record", 0)
    return [(status, attr) for status, attr in _STATUS_ATTR.iter_unpack(payload)]


# --- Report Attributes (2.5.11) ---------------------------------------------------------------


def encode_report_attributes(records: Iterable[tuple[int, int, object]]) -> bytes:
    """Encode Report Attributes records ``(attr_id, type_id, value)``."""
    return _encode_typed_records(records)


def decode_report_attributes(payload: bytes) -> list[tuple[int, int, object]]:
    """Decode Report Attributes records into ``(attr_id, type_id, value)`` tuples."""
    return _typed_records(payload, "attribute report")


# --- Configure Reporting (2.5.7) / Configure Reporting Response (2.5.8) -------------------------


@dataclass(slots=True)
class ReportingConfig:
    """One attribute reporting configuration record.

    Direction REPORT_SEND (0): the receiver shall report ``attr_id`` of ``type_id`` between
    ``min_interval`` and ``max_interval`` seconds, and on a change of ``reportable_change`` (analog
    types only, else ``None``). Direction REPORT_RECEIVE (1): the receiver expects reports at least
    every ``timeout`` seconds.
    """

    direction: int
    attr_id: int
    type_id: int | None = None
    min_interval: int | None = None
    max_interval: int | None = None
    reportable_change: object = None
    timeout: int | None = None


def encode_configure_reporting(records: Iterable[ReportingConfig]) -> bytes:
    """Encode a Configure Reporting payload."""
    parts = []
    try:
        for rec in records:
            if rec.direction == REPORT_SEND:
                if rec.type_id is None:
                    raise _err(f"attribute 0x{rec.attr_id:04x}: direction 0 needs a data type", "data type")
                parts.append(
                    _DIR_ATTR_TYPE_MIN_MAX.pack(
                        rec.direction, rec.attr_id, rec.type_id, rec.min_interval, rec.max_interval
                    )
                )
                if rec.type_id in ANALOG_TYPES:
                    parts.append(encode_value(rec.type_id, rec.reportable_change))
            elif rec.direction == REPORT_RECEIVE:
                parts.append(_DIR_ATTR_TIMEOUT.pack(rec.direction, rec.attr_id, rec.timeout))
            else:
                raise _err(f"direction {rec.direction!r} is neither 0 nor 1", "direction")
    except FrameError:
        raise
    except (struct.error, TypeError, ValueError) as exc:
        raise _err(f"bad reporting configuration: {exc}", "reporting record") from None
    return b"".join(parts)


def decode_configure_reporting(payload: bytes) -> list[ReportingConfig]:
    """Decode a Configure Reporting payload into :class:`ReportingConfig` records."""
    out: list[ReportingConfig] = []
    off = 0
    n = len(payload)
    while off < n:
        direction = payload[off]
        if direction == REPORT_SEND:
            if off + 8 > n:
                raise _err("truncated reporting configuration record", "reporting record", off)
            _, attr, type_id, min_i, max_i = _DIR_ATTR_TYPE_MIN_MAX.unpack_from(payload, off)
            off += 8
            change = None
            # Only analog types carry a reportable change; an unknown (discrete) type id still parses,
            # so the device can answer INVALID_DATA_TYPE for that record.
            if type_id in ANALOG_TYPES:
                change, off = decode_value(type_id, payload, off)
            out.append(ReportingConfig(direction, attr, type_id, min_i, max_i, change))
        elif direction == REPORT_RECEIVE:
            if off + 5 > n:
                raise _err("truncated reporting configuration record", "reporting record", off)
            _, attr, timeout = _DIR_ATTR_TIMEOUT.unpack_from(payload, off)
            off += 5
            out.append(ReportingConfig(direction, attr, timeout=timeout))
        else:
            raise _err(f"direction 0x{direction:02x} is neither 0 nor 1", "direction", off)
    return out


def encode_configure_reporting_response(records: Iterable[tuple[int, int, int]]) -> bytes:
    """Encode a Configure Reporting Response from ``(status, direction, attr_id)`` triples.

    Triples are in on-air record order. Per ZCL 2.5.8.1 only failed records are sent; when all
    succeeded the payload is the single byte SUCCESS.
    """
    try:
        parts = [
            _STATUS_DIR_ATTR.pack(status, direction, attr)
            for status, direction, attr in records
            if status != SUCCESS
        ]
    except (struct.error, TypeError, ValueError) as exc:
        raise _err(f"bad configure reporting status: {exc}", "status record") from None
    return b"".join(parts) if parts else b"\x00"


def decode_configure_reporting_response(payload: bytes) -> list[tuple[int, int, int]]:
    """Decode a Configure Reporting Response into ``(status, direction, attr_id)``; ``[]`` = all succeeded."""
    n = len(payload)
    if n == 1:
        if payload[0] != SUCCESS:
            raise _err(f"single status 0x{payload[0]:02x} without a record", "status", 0)
        return []
    if n == 0 or n % 4:
        raise _err(f"payload length {n} is not a multiple of 4", "status record", 0)
    return [(status, direction, attr) for status, direction, attr in _STATUS_DIR_ATTR.iter_unpack(payload)]


# --- Default Response (2.5.12) ---------------------------------------------------------------------


def encode_default_response(command_id: int, status: int) -> bytes:
    """Encode a Default Response payload: the command being answered and the status."""
    try:
        return bytes((command_id, status))
    except (ValueError, TypeError) as exc:
        raise _err(f"bad default response: {exc}", "default response") from None


def decode_default_response(payload: bytes) -> tuple[int, int]:
    """Decode a Default Response payload into ``(command_id, status)``."""
    if len(payload) < 2:
        raise _err(f"{len(payload)} bytes, needs 2", "default response", 0)
    return payload[0], payload[1]


# --- Discover Attributes (2.5.13) / Discover Attributes Response (2.5.14) --------------------------

_DISCOVER = struct.Struct("<HB")  # start attribute id, maximum attribute ids


def encode_discover_attributes(start_attr: int, max_count: int) -> bytes:
    """Encode a Discover Attributes payload."""
    try:
        return _DISCOVER.pack(start_attr, max_count)
    except struct.error as exc:
        raise _err(f"bad discover attributes: {exc}", "discover attributes") from None


def decode_discover_attributes(payload: bytes) -> tuple[int, int]:
    """Decode a Discover Attributes payload into ``(start_attr_id, max_count)``."""
    if len(payload) < 3:
        raise _err(f"{len(payload)} bytes, needs 3", "discover attributes", 0)
    start, count = _DISCOVER.unpack_from(payload)
    return start, count


def encode_discover_attributes_response(complete: bool, attrs: Iterable[tuple[int, int]]) -> bytes:
    """Encode a Discover Attributes Response: completion flag, then ``(attr_id, type_id)`` records."""
    try:
        return bytes((1 if complete else 0,)) + b"".join(_ATTR_TYPE.pack(a, t) for a, t in attrs)
    except (struct.error, TypeError) as exc:
        raise _err(f"bad attribute information: {exc}", "attribute record") from None


def decode_discover_attributes_response(payload: bytes) -> tuple[bool, list[tuple[int, int]]]:
    """Decode a Discover Attributes Response into ``(complete, [(attr_id, type_id), ...])``."""
    n = len(payload)
    if n == 0 or (n - 1) % 3:
        raise _err(f"payload length {n} is not 1 + 3k", "attribute record", 0)
    complete = payload[0]
    if complete > 1:
        raise _err(f"discovery complete flag 0x{complete:02x}", "discovery complete", 0)
    return bool(complete), [(a, t) for a, t in _ATTR_TYPE.iter_unpack(payload[1:])]
