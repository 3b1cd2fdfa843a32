"""The OTA Upgrade cluster (0x0019) client of an emulated device: it asks for, downloads, checks and
installs firmware.

Written from the ZigBee Cluster Library specification (ZCL rev 8, chapter 11 "OTA Upgrade"; section
numbers below are ZCL 8's, which match rev 7 for this chapter), independently of the harness's OTA
server, so that neither can hide the other's mistakes. Nothing here imports the harness or zigpy.

The client pulls an image the way chapter 11 describes:

1. Query Next Image Request (§11.13.4) at boot, every ``query_interval`` and after an Image Notify
   (§11.13.3); the server answers with Query Next Image Response (§11.13.5).
2. Image Block Request (§11.13.6) / Image Block Response (§11.13.8), one block after the other, never
   faster than the MinimumBlockPeriod attribute (§11.10.10) allows; WAIT_FOR_DATA and ABORT honoured.
3. The complete file is checked (OTA header, §11.4.2, and, when the firmware carries a manifest,
   its integrity: :mod:`testbeds.emulator.firmware`), then Upgrade End Request (§11.13.9) tells the
   server the outcome; an Upgrade End Response (§11.13.9.6) gives the upgrade time.
4. At the upgrade time the image is installed from flash and the device restarts.

Everything runs on one asyncio event loop through timer handles only (``call_later``), so a virtual
clock drives it and a power cut (:meth:`OtaClient.stop`) cancels everything at once. Bytes received
are kept in :class:`~testbeds.emulator.flash.Flash`, so a download resumes after a power cut.
"""

from __future__ import annotations

import asyncio
import enum
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .defects import SLOW_BLOCK_DELAY_S
from .firmware import ManifestError, firmware_payload, parse_manifest
from .flash import DownloadMeta, Flash, FlashError
from .ota_file import OTA_HEADER_MIN_LENGTH, OtaFileError, parse_header
from .signature import signature_problem

__all__ = [
    "ATTR_CURRENT_FILE_VERSION",
    "ATTR_CURRENT_ZIGBEE_STACK_VERSION",
    "ATTR_DOWNLOADED_FILE_VERSION",
    "ATTR_DOWNLOADED_ZIGBEE_STACK_VERSION",
    "ATTR_FILE_OFFSET",
    "ATTR_IMAGE_STAMP",
    "ATTR_IMAGE_TYPE_ID",
    "ATTR_IMAGE_UPGRADE_STATUS",
    "ATTR_MANUFACTURER_ID",
    "ATTR_MINIMUM_BLOCK_PERIOD",
    "ATTR_UPGRADE_SERVER_ID",
    "CMD_IMAGE_BLOCK_REQUEST",
    "CMD_IMAGE_BLOCK_RESPONSE",
    "CMD_IMAGE_NOTIFY",
    "CMD_QUERY_NEXT_IMAGE_REQUEST",
    "CMD_QUERY_NEXT_IMAGE_RESPONSE",
    "CMD_UPGRADE_END_REQUEST",
    "CMD_UPGRADE_END_RESPONSE",
    "OTA_CLUSTER_ID",
    "ImageBlockRequest",
    "ImageBlockResponse",
    "ImageNotify",
    "ImageUpgradeStatus",
    "OtaClient",
    "OtaClientConfig",
    "OtaPayloadError",
    "QueryNextImageRequest",
    "QueryNextImageResponse",
    "UpgradeEndRequest",
    "UpgradeEndResponse",
    "decode_image_block_request",
    "decode_image_block_response",
    "decode_image_notify",
    "decode_query_next_image_request",
    "decode_query_next_image_response",
    "decode_upgrade_end_request",
    "decode_upgrade_end_response",
    "encode_image_block_request",
    "encode_image_block_response",
    "encode_image_notify",
    "encode_query_next_image_request",
    "encode_query_next_image_response",
    "encode_upgrade_end_request",
    "encode_upgrade_end_response",
]

OTA_CLUSTER_ID = 0x0019

# Cluster-specific command identifiers (§11.13, Table 11-16 of ZCL 8).
CMD_IMAGE_NOTIFY = 0x00  # server -> client
CMD_QUERY_NEXT_IMAGE_REQUEST = 0x01  # client -> server
CMD_QUERY_NEXT_IMAGE_RESPONSE = 0x02  # server -> client
CMD_IMAGE_BLOCK_REQUEST = 0x03  # client -> server
CMD_IMAGE_PAGE_REQUEST = 0x04  # client -> server (not used by this client)
CMD_IMAGE_BLOCK_RESPONSE = 0x05  # server -> client
CMD_UPGRADE_END_REQUEST = 0x06  # client -> server
CMD_UPGRADE_END_RESPONSE = 0x07  # server -> client

_COMMAND_NAMES = {
    CMD_IMAGE_NOTIFY: "Image Notify",
    CMD_QUERY_NEXT_IMAGE_REQUEST: "Query Next Image Request",
    CMD_QUERY_NEXT_IMAGE_RESPONSE: "Query Next Image Response",
    CMD_IMAGE_BLOCK_REQUEST: "Image Block Request",
    CMD_IMAGE_PAGE_REQUEST: "Image Page Request",
    CMD_IMAGE_BLOCK_RESPONSE: "Image Block Response",
    CMD_UPGRADE_END_REQUEST: "Upgrade End Request",
    CMD_UPGRADE_END_RESPONSE: "Upgrade End Response",
}

# ZCL status codes used by this cluster (ZCL 8 §2.6.3, Table 2-12).
STATUS_SUCCESS = 0x00
STATUS_NOT_AUTHORIZED = 0x7E
STATUS_MALFORMED_COMMAND = 0x80
STATUS_UNSUP_COMMAND = 0x81
STATUS_UNSUPPORTED_ATTRIBUTE = 0x86
STATUS_INVALID_VALUE = 0x87
STATUS_READ_ONLY = 0x88
STATUS_ABORT = 0x95
STATUS_INVALID_IMAGE = 0x96
STATUS_WAIT_FOR_DATA = 0x97
STATUS_NO_IMAGE_AVAILABLE = 0x98
STATUS_REQUIRE_MORE_IMAGE = 0x99

_STATUS_NAMES = {
    STATUS_SUCCESS: "SUCCESS",
    STATUS_NOT_AUTHORIZED: "NOT_AUTHORIZED",
    STATUS_MALFORMED_COMMAND: "MALFORMED_COMMAND",
    STATUS_UNSUP_COMMAND: "UNSUP_COMMAND",
    STATUS_ABORT: "ABORT",
    STATUS_INVALID_IMAGE: "INVALID_IMAGE",
    STATUS_WAIT_FOR_DATA: "WAIT_FOR_DATA",
    STATUS_NO_IMAGE_AVAILABLE: "NO_IMAGE_AVAILABLE",
    STATUS_REQUIRE_MORE_IMAGE: "REQUIRE_MORE_IMAGE",
}

# Client attributes (§11.10, Table 11-10) and ZCL data type identifiers (ZCL 8 §2.6.2, Table 2-10).
ATTR_UPGRADE_SERVER_ID = 0x0000
ATTR_FILE_OFFSET = 0x0001
ATTR_CURRENT_FILE_VERSION = 0x0002
ATTR_CURRENT_ZIGBEE_STACK_VERSION = 0x0003
ATTR_DOWNLOADED_FILE_VERSION = 0x0004
ATTR_DOWNLOADED_ZIGBEE_STACK_VERSION = 0x0005
ATTR_IMAGE_UPGRADE_STATUS = 0x0006
ATTR_MANUFACTURER_ID = 0x0007
ATTR_IMAGE_TYPE_ID = 0x0008
ATTR_MINIMUM_BLOCK_PERIOD = 0x0009
ATTR_IMAGE_STAMP = 0x000A

TYPE_UINT16 = 0x21
TYPE_UINT32 = 0x23
TYPE_ENUM8 = 0x30
TYPE_EUI64 = 0xF0

WILDCARD_MANUFACTURER = 0xFFFF  # §11.4.2.5
WILDCARD_IMAGE_TYPE = 0xFFFF  # §11.4.2.6
WILDCARD_FILE_VERSION = 0xFFFFFFFF
UPGRADE_TIME_WAIT = 0xFFFFFFFF  # §11.13.9.6: wait for the server to say when (no upgrade time yet)
UNKNOWN_EUI64 = 0xFFFFFFFFFFFFFFFF

_T = TypeVar("_T")
_U8_MAX = 0xFF
_U16_MAX = 0xFFFF


class ImageUpgradeStatus(enum.IntEnum):
    """Values of the ImageUpgradeStatus attribute (§11.10.7)."""

    NORMAL = 0
    DOWNLOAD_IN_PROGRESS = 1
    DOWNLOAD_COMPLETE = 2
    WAITING_TO_UPGRADE = 3
    COUNT_DOWN = 4
    WAIT_FOR_MORE = 5
    WAITING_TO_UPGRADE_VIA_EXTERNAL_EVENT = 6


class OtaPayloadError(ValueError):
    """An OTA command payload that cannot be read: too short, or a field out of its range."""


# ---------------------------------------------------------------------------------------------
# Payload codecs. All integers are little-endian (ZCL 8 §2.6.1). Payloads start after the ZCL
# header. Decoders accept extra bytes after the last field, which newer revisions may append.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageNotify:
    """Image Notify (0x00, server -> client, §11.13.3).

    Layout: payload type (uint8, 0..3), query jitter (uint8, 1..100), then, by payload type:
    >= 1 manufacturer code (uint16), >= 2 image type (uint16), == 3 new file version (uint32).
    """

    payload_type: int
    query_jitter: int
    manufacturer_code: int | None = None
    image_type: int | None = None
    file_version: int | None = None


def encode_image_notify(notify: ImageNotify) -> bytes:
    """Build an Image Notify payload (§11.13.3.1)."""
    out = struct.pack("<BB", notify.payload_type, notify.query_jitter)
    if notify.payload_type >= 1:
        out += struct.pack("<H", _given(notify.manufacturer_code, "manufacturer_code"))
    if notify.payload_type >= 2:
        out += struct.pack("<H", _given(notify.image_type, "image_type"))
    if notify.payload_type >= 3:
        out += struct.pack("<I", _given(notify.file_version, "file_version"))
    return out


def decode_image_notify(payload: bytes) -> ImageNotify:
    """Read an Image Notify payload (§11.13.3.1); raises :class:`OtaPayloadError` if malformed."""
    payload_type, jitter = _unpack("<BB", payload, 0, "Image Notify")
    if payload_type > 3:
        raise OtaPayloadError(f"Image Notify payload type {payload_type} is not 0..3")
    if jitter > 100:
        raise OtaPayloadError(f"Image Notify query jitter {jitter} is not 0..100")
    mfr = itype = version = None
    if payload_type >= 1:
        (mfr,) = _unpack("<H", payload, 2, "Image Notify")
    if payload_type >= 2:
        (itype,) = _unpack("<H", payload, 4, "Image Notify")
    if payload_type >= 3:
        (version,) = _unpack("<I", payload, 6, "Image Notify")
    return ImageNotify(payload_type, jitter, mfr, itype, version)


@dataclass(frozen=True)
class QueryNextImageRequest:
    """Query Next Image Request (0x01, client -> server, §11.13.4).

    Layout: field control (uint8; bit 0 = hardware version present), manufacturer code (uint16),
    image type (uint16), current file version (uint32), [hardware version (uint16)].
    """

    manufacturer_code: int
    image_type: int
    file_version: int
    hardware_version: int | None = None


def encode_query_next_image_request(req: QueryNextImageRequest) -> bytes:
    """Build a Query Next Image Request payload (§11.13.4.1)."""
    fc = 0x01 if req.hardware_version is not None else 0x00
    out = struct.pack("<BHHI", fc, req.manufacturer_code, req.image_type, req.file_version)
    if req.hardware_version is not None:
        out += struct.pack("<H", req.hardware_version)
    return out


def decode_query_next_image_request(payload: bytes) -> QueryNextImageRequest:
    """Read a Query Next Image Request payload (§11.13.4.1)."""
    fc, mfr, itype, version = _unpack("<BHHI", payload, 0, "Query Next Image Request")
    hw = None
    if fc & 0x01:
        (hw,) = _unpack("<H", payload, 9, "Query Next Image Request")
    return QueryNextImageRequest(mfr, itype, version, hw)


@dataclass(frozen=True)
class QueryNextImageResponse:
    """Query Next Image Response (0x02, server -> client, §11.13.5).

    Layout: status (uint8); only when SUCCESS: manufacturer code (uint16), image type (uint16),
    file version (uint32), image size (uint32, the whole OTA file).
    """

    status: int
    manufacturer_code: int | None = None
    image_type: int | None = None
    file_version: int | None = None
    image_size: int | None = None


def encode_query_next_image_response(resp: QueryNextImageResponse) -> bytes:
    """Build a Query Next Image Response payload (§11.13.5.1)."""
    if resp.status != STATUS_SUCCESS:
        return struct.pack("<B", resp.status)
    return struct.pack(
        "<BHHII",
        resp.status,
        _given(resp.manufacturer_code, "manufacturer_code"),
        _given(resp.image_type, "image_type"),
        _given(resp.file_version, "file_version"),
        _given(resp.image_size, "image_size"),
    )


def decode_query_next_image_response(payload: bytes) -> QueryNextImageResponse:
    """Read a Query Next Image Response payload (§11.13.5.1)."""
    (status,) = _unpack("<B", payload, 0, "Query Next Image Response")
    if status != STATUS_SUCCESS:
        return QueryNextImageResponse(status)
    mfr, itype, version, size = _unpack("<HHII", payload, 1, "Query Next Image Response")
    return QueryNextImageResponse(status, mfr, itype, version, size)


@dataclass(frozen=True)
class ImageBlockRequest:
    """Image Block Request (0x03, client -> server, §11.13.6).

    Layout: field control (uint8; bit 0 = request node address present, bit 1 = minimum block
    period present), manufacturer code (uint16), image type (uint16), file version (uint32),
    file offset (uint32), maximum data size (uint8), [request node address (EUI64)],
    [minimum block period (uint16, ms)].
    """

    manufacturer_code: int
    image_type: int
    file_version: int
    file_offset: int
    maximum_data_size: int
    request_node_address: int | None = None
    minimum_block_period: int | None = None


def encode_image_block_request(req: ImageBlockRequest) -> bytes:
    """Build an Image Block Request payload (§11.13.6.1)."""
    fc = (0x01 if req.request_node_address is not None else 0) | (
        0x02 if req.minimum_block_period is not None else 0
    )
    out = struct.pack(
        "<BHHIIB",
        fc,
        req.manufacturer_code,
        req.image_type,
        req.file_version,
        req.file_offset,
        req.maximum_data_size,
    )
    if req.request_node_address is not None:
        out += struct.pack("<Q", req.request_node_address)
    if req.minimum_block_period is not None:
        out += struct.pack("<H", req.minimum_block_period)
    return out


def decode_image_block_request(payload: bytes) -> ImageBlockRequest:
    """Read an Image Block Request payload (§11.13.6.1)."""
    fc, mfr, itype, version, offset, max_size = _unpack("<BHHIIB", payload, 0, "Image Block Request")
    pos = 14
    node = period = None
    if fc & 0x01:
        (node,) = _unpack("<Q", payload, pos, "Image Block Request")
        pos += 8
    if fc & 0x02:
        (period,) = _unpack("<H", payload, pos, "Image Block Request")
    return ImageBlockRequest(mfr, itype, version, offset, max_size, node, period)


@dataclass(frozen=True)
class ImageBlockResponse:
    """Image Block Response (0x05, server -> client, §11.13.8).

    Layout by status:

    - SUCCESS: status, manufacturer code (uint16), image type (uint16), file version (uint32),
      file offset (uint32), data size (uint8), image data (data size bytes).
    - WAIT_FOR_DATA: status, current time (uint32, UTC seconds), request time (uint32,
      UTC seconds), [minimum block period (uint16, ms; added in ZCL 6)].
    - ABORT: status only.
    """

    status: int
    manufacturer_code: int | None = None
    image_type: int | None = None
    file_version: int | None = None
    file_offset: int | None = None
    data: bytes | None = None
    current_time: int | None = None
    request_time: int | None = None
    minimum_block_period: int | None = None


def encode_image_block_response(resp: ImageBlockResponse) -> bytes:
    """Build an Image Block Response payload (§11.13.8.1)."""
    if resp.status == STATUS_SUCCESS:
        data = _given(resp.data, "data")
        return (
            struct.pack(
                "<BHHIIB",
                resp.status,
                _given(resp.manufacturer_code, "manufacturer_code"),
                _given(resp.image_type, "image_type"),
                _given(resp.file_version, "file_version"),
                _given(resp.file_offset, "file_offset"),
                len(data),
            )
            + data
        )
    if resp.status == STATUS_WAIT_FOR_DATA:
        out = struct.pack(
            "<BII",
            resp.status,
            _given(resp.current_time, "current_time"),
            _given(resp.request_time, "request_time"),
        )
        if resp.minimum_block_period is not None:
            out += struct.pack("<H", resp.minimum_block_period)
        return out
    return struct.pack("<B", resp.status)


def decode_image_block_response(payload: bytes) -> ImageBlockResponse:
    """Read an Image Block Response payload (§11.13.8.1); statuses other than SUCCESS,
    WAIT_FOR_DATA and ABORT are malformed."""
    (status,) = _unpack("<B", payload, 0, "Image Block Response")
    if status == STATUS_SUCCESS:
        mfr, itype, version, offset, size = _unpack("<HHIIB", payload, 1, "Image Block Response")
        data = bytes(payload[14 : 14 + size])
        if len(data) != size:
            raise OtaPayloadError(f"Image Block Response announces {size} data bytes but carries {len(data)}")
        return ImageBlockResponse(status, mfr, itype, version, offset, data)
    if status == STATUS_WAIT_FOR_DATA:
        current, request = _unpack("<II", payload, 1, "Image Block Response")
        period = None
        if len(payload) >= 11:
            (period,) = struct.unpack_from("<H", payload, 9)
        return ImageBlockResponse(
            status, current_time=current, request_time=request, minimum_block_period=period
        )
    if status == STATUS_ABORT:
        return ImageBlockResponse(status)
    raise OtaPayloadError(f"Image Block Response status 0x{status:02X} is not allowed")


@dataclass(frozen=True)
class UpgradeEndRequest:
    """Upgrade End Request (0x06, client -> server, §11.13.9).

    Layout: status (uint8: SUCCESS, INVALID_IMAGE, REQUIRE_MORE_IMAGE or ABORT), manufacturer code
    (uint16), image type (uint16), file version (uint32).
    """

    status: int
    manufacturer_code: int
    image_type: int
    file_version: int


def encode_upgrade_end_request(req: UpgradeEndRequest) -> bytes:
    """Build an Upgrade End Request payload (§11.13.9.1)."""
    return struct.pack("<BHHI", req.status, req.manufacturer_code, req.image_type, req.file_version)


def decode_upgrade_end_request(payload: bytes) -> UpgradeEndRequest:
    """Read an Upgrade End Request payload (§11.13.9.1)."""
    return UpgradeEndRequest(*_unpack("<BHHI", payload, 0, "Upgrade End Request"))


@dataclass(frozen=True)
class UpgradeEndResponse:
    """Upgrade End Response (0x07, server -> client, §11.13.9.6).

    Layout: manufacturer code (uint16), image type (uint16), file version (uint32), current time
    (uint32, UTC seconds), upgrade time (uint32, UTC seconds). Current time 0 makes the upgrade time
    an offset in seconds from now; upgrade time 0xFFFFFFFF means "wait until told".
    """

    manufacturer_code: int
    image_type: int
    file_version: int
    current_time: int
    upgrade_time: int


def encode_upgrade_end_response(resp: UpgradeEndResponse) -> bytes:
    """Build an Upgrade End Response payload (§11.13.9.6.1)."""
    return struct.pack(
        "<HHIII",
        resp.manufacturer_code,
        resp.image_type,
        resp.file_version,
        resp.current_time,
        resp.upgrade_time,
    )


def decode_upgrade_end_response(payload: bytes) -> UpgradeEndResponse:
    """Read an Upgrade End Response payload (§11.13.9.6.1)."""
    return UpgradeEndResponse(*_unpack("<HHIII", payload, 0, "Upgrade End Response"))


def _unpack(fmt: str, payload: bytes, offset: int, what: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if len(payload) < offset + size:
        raise OtaPayloadError(f"{what} is too short: {len(payload)} bytes, needs {offset + size}")
    return struct.unpack_from(fmt, payload, offset)


def _given(value: _T | None, name: str) -> _T:
    if value is None:
        raise ValueError(f"{name} is required for this payload")
    return value


# ---------------------------------------------------------------------------------------------
# The client state machine
# ---------------------------------------------------------------------------------------------


@dataclass
class OtaClientConfig:
    """How an emulated device's OTA client behaves.

    ``hardware_version`` is sent in Query Next Image Request and checked against the image's
    hardware range; ``None`` means the device does not know it (nothing sent, nothing checked).
    Times are in seconds of loop time except ``minimum_block_period_ms``.
    """

    manufacturer_code: int
    image_type: int
    hardware_version: int | None
    max_data_size: int = 64
    """Largest block asked for in Image Block Request (the server may send less)."""
    query_interval: float = 3600.0
    """Seconds between periodic Query Next Image Requests (field devices: hours)."""
    query_jitter: float = 30.0
    """The first query after start comes at a random time in [0, query_jitter] seconds."""
    response_timeout: float = 10.0
    """Seconds to wait for the answer to a request before sending it again."""
    max_retries: int = 3
    """Resends of one request before the attempt is given up (the downloaded part is kept)."""
    minimum_block_period_ms: int = 0
    """Initial MinimumBlockPeriod attribute (§11.10.10); the server may change it."""
    upgrade_end_poll_interval: float = 3600.0
    """While told to wait (upgrade time 0xFFFFFFFF), ask again with Upgrade End Request this often."""
    wait_for_data_default: float = 1.0
    """Delay used when WAIT_FOR_DATA gives a request time not after the current time."""
    notify_max_delay: float = 5.0
    """After an Image Notify with query jitter 100, query within this many seconds."""
    allow_downgrade: bool = True
    """Whether an offered file version lower than the running one is downloaded."""
    ieee: int | None = None
    """The device's IEEE address, to check a device-specific file's destination (§11.4.2.12)."""
    defects: frozenset[str] = frozenset()
    """Firmware defects switched on (see ``testbeds.emulator.defects``); empty for healthy firmware."""
    trusted_key: bytes | None = None
    """PEM public key an image must be signed with (``docs/signing.md``); None: no signature check."""


class _State(enum.Enum):
    STOPPED = "stopped"
    IDLE = "idle"
    QUERYING = "querying"  # Query Next Image Request sent, waiting for the response
    DOWNLOADING = "downloading"  # Image Block Requests in progress
    WAITING_END = "waiting-end"  # Upgrade End Request (SUCCESS) sent, waiting for the response
    COUNT_DOWN = "count-down"  # upgrade time known, waiting for it
    WAITING_EXTERNAL = "waiting-external"  # told to wait (upgrade time 0xFFFFFFFF)


class OtaClient:
    """The OTA Upgrade client of one emulated device.

    ``send(command_id, payload)`` hands a client-to-server OTA command to the device's node, which
    addresses it to the OTA server and adds the ZCL header. ``reboot()`` restarts the device into
    ``flash.running`` after an image was installed. ``log`` receives one line per meaningful step.
    All randomness comes from ``rng``; all timing from ``loop`` timers.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        flash: Flash,
        config: OtaClientConfig,
        send: Callable[[int, bytes], None],
        reboot: Callable[[], None],
        log: Callable[[str], None],
        rng: random.Random,
    ) -> None:
        if not 1 <= config.max_data_size <= _U8_MAX:
            raise ValueError(f"max_data_size must be 1..255, got {config.max_data_size}")
        if config.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {config.max_retries}")
        self._loop = loop
        self._flash = flash
        self._config = config
        self._send = send
        self._reboot = reboot
        self._log = log
        self._rng = rng
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._state = _State.STOPPED
        self._reset_ram()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin after boot: schedule the first query; resume a partial download or a pending upgrade.

        RAM state is what the constructor or :meth:`stop` left: fresh. What survives is in flash.
        If flash holds an image waiting for
        activation, the first step re-sends Upgrade End Request to learn the upgrade time
        (§11.13.9.6: the client may ask again); otherwise it sends Query Next Image Request and, if
        the server offers the image partly held in flash, continues at ``flash.download_offset``.
        """
        if self._state is not _State.STOPPED:
            self._log("start ignored: already running")
            return
        self._state = _State.IDLE
        meta = self._flash.download_meta
        if self._flash.pending_activation and meta is not None:
            self._log(f"boot: image 0x{meta.file_version:08X} downloaded, waiting for its upgrade time")
        elif meta is not None and "restarts-download-after-power-cut" in self._config.defects:
            self._log("defect restarts-download-after-power-cut: partial download thrown away")
            self._flash.discard_download()
        elif meta is not None:
            if "resumes-at-wrong-offset" in self._config.defects and self._flash.download_offset:
                skipped = min(meta.image_size, self._flash.download_offset + 1024)
                self._log(
                    f"defect resumes-at-wrong-offset: resume pointer moved from "
                    f"{self._flash.download_offset} to {skipped} (bytes in between never arrive)"
                )
                self._flash.download_offset = skipped
            self._log(
                f"boot: partial download of 0x{meta.file_version:08X} "
                f"({self._flash.download_offset}/{meta.image_size} bytes) kept for resume"
            )
        first = self._rng.uniform(0.0, self._config.query_jitter)
        self._log(f"first query in {first:.1f}s")
        self._schedule("periodic", first, self._on_periodic)

    def stop(self) -> None:
        """Power cut: cancel every timer and forget everything held in RAM (flash is kept)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._state is not _State.STOPPED:
            self._log("stopped")
        self._state = _State.STOPPED
        self._reset_ram()

    def _reset_ram(self) -> None:
        self._retries = 0
        self._outstanding: tuple[int, bytes] | None = None  # last request awaiting its response
        self._requested: tuple[int, int] | None = None  # (offset, size) of the block asked for
        self._last_block_request_at: float | None = None
        self.minimum_block_period_ms = self._config.minimum_block_period_ms
        self.upgrade_server_id: int | None = None

    # -- public controls -----------------------------------------------------------------------

    def query_now(self) -> None:
        """Send Query Next Image Request now, unless a transfer or upgrade is already under way."""
        if self._state is _State.STOPPED:
            self._log("query ignored: client stopped")
        elif self._state is not _State.IDLE:
            self._log(f"query ignored: busy ({self._state.value})")
        else:
            self._query()

    @property
    def busy(self) -> bool:
        """True while the client waits for an answer, downloads, or waits for its upgrade time."""
        return self._state not in (_State.STOPPED, _State.IDLE)

    @property
    def state(self) -> str:
        """The state machine's state, in words (for logs and tests)."""
        return self._state.value

    # -- incoming commands ---------------------------------------------------------------------

    def handle_command(self, command_id: int, payload: bytes, *, source_ieee: int | None = None) -> None:
        """Act on a server-to-client OTA command. Malformed or unexpected ones are logged and dropped.

        ``source_ieee`` (if the node knows it) becomes the UpgradeServerID attribute (§11.10.1).
        """
        if self._state is _State.STOPPED:
            self._log(f"{_command_name(command_id)} dropped: client stopped")
            return
        if source_ieee is not None:
            self.upgrade_server_id = source_ieee
        try:
            if command_id == CMD_IMAGE_NOTIFY:
                self._on_image_notify(decode_image_notify(payload))
            elif command_id == CMD_QUERY_NEXT_IMAGE_RESPONSE:
                self._on_query_next_image_response(decode_query_next_image_response(payload))
            elif command_id == CMD_IMAGE_BLOCK_RESPONSE:
                self._on_image_block_response(decode_image_block_response(payload))
            elif command_id == CMD_UPGRADE_END_RESPONSE:
                self._on_upgrade_end_response(decode_upgrade_end_response(payload))
            else:
                self._log(f"command 0x{command_id:02X} not supported by this client; dropped")
        except OtaPayloadError as exc:
            self._log(f"malformed {_command_name(command_id)}: {exc}; dropped")

    def handle_default_response(self, command_id: int, status: int) -> None:
        """Act on a ZCL Default Response from the server to one of this client's requests.

        An Upgrade End Request answered with INVALID_IMAGE or ABORT makes the client throw the image
        away (§11.13.9); an error for a query or a block request ends that attempt.
        """
        if self._state is _State.STOPPED or status == STATUS_SUCCESS:
            return
        what = f"Default Response {_status_name(status)} to {_command_name(command_id)}"
        if command_id == CMD_UPGRADE_END_REQUEST and self._state in (
            _State.WAITING_END,
            _State.WAITING_EXTERNAL,
        ):
            if status in (STATUS_INVALID_IMAGE, STATUS_ABORT):
                self._cancel("response")
                self._cancel("action")
                self._flash.discard_download()
                self._state = _State.IDLE
                self._log(f"{what}: image discarded; idle")
            else:
                self._log(f"{what}: ignored")
        elif command_id == CMD_QUERY_NEXT_IMAGE_REQUEST and self._state is _State.QUERYING:
            self._cancel("response")
            self._state = _State.IDLE
            self._log(f"{what}: idle until next query")
        elif command_id == CMD_IMAGE_BLOCK_REQUEST and self._state is _State.DOWNLOADING:
            self._cancel("response")
            self._cancel("action")
            self._requested = None
            if status == STATUS_ABORT:
                self._flash.discard_download()
                self._log(f"{what}: download discarded; idle")
            else:
                self._log(f"{what}: download stopped at offset {self._flash.download_offset}; idle")
            self._state = _State.IDLE
        else:
            self._log(f"{what}: ignored ({self._state.value})")

    # -- attributes ----------------------------------------------------------------------------

    def read_attribute(self, attr_id: int) -> tuple[int, object] | None:
        """The (ZCL type id, value) of a client attribute (§11.10), or None if not supported."""
        flash = self._flash
        meta = flash.download_meta
        if attr_id == ATTR_UPGRADE_SERVER_ID:
            server = self.upgrade_server_id
            return TYPE_EUI64, UNKNOWN_EUI64 if server is None else server
        if attr_id == ATTR_FILE_OFFSET:
            return TYPE_UINT32, flash.download_offset if meta is not None else 0xFFFFFFFF
        if attr_id == ATTR_CURRENT_FILE_VERSION:
            return TYPE_UINT32, flash.running.file_version
        if attr_id == ATTR_CURRENT_ZIGBEE_STACK_VERSION:
            return TYPE_UINT16, flash.running.stack_version
        if attr_id == ATTR_DOWNLOADED_FILE_VERSION:
            return TYPE_UINT32, meta.file_version if meta is not None else 0xFFFFFFFF
        if attr_id == ATTR_DOWNLOADED_ZIGBEE_STACK_VERSION:
            # The stack version sits at bytes 18..19 of the OTA header (§11.4.2.8).
            if meta is not None and flash.download_offset >= 20:
                (stack,) = struct.unpack_from("<H", flash.download_area, 18)
                return TYPE_UINT16, stack
            return TYPE_UINT16, 0xFFFF
        if attr_id == ATTR_IMAGE_UPGRADE_STATUS:
            return TYPE_ENUM8, int(self.image_upgrade_status)
        if attr_id == ATTR_MANUFACTURER_ID:
            return TYPE_UINT16, self._config.manufacturer_code
        if attr_id == ATTR_IMAGE_TYPE_ID:
            return TYPE_UINT16, self._config.image_type
        if attr_id == ATTR_MINIMUM_BLOCK_PERIOD:
            return TYPE_UINT16, self.minimum_block_period_ms
        if attr_id == ATTR_IMAGE_STAMP:
            return TYPE_UINT32, 0
        return None

    def write_attribute(self, attr_id: int, value: int) -> int:
        """Write a client attribute; returns the ZCL status. Only MinimumBlockPeriod is writable."""
        if attr_id == ATTR_MINIMUM_BLOCK_PERIOD:
            if not isinstance(value, int) or not 0 <= value <= _U16_MAX:
                return STATUS_INVALID_VALUE
            self.minimum_block_period_ms = value
            self._log(f"MinimumBlockPeriod set to {value} ms")
            return STATUS_SUCCESS
        if self.read_attribute(attr_id) is None:
            return STATUS_UNSUPPORTED_ATTRIBUTE
        return STATUS_READ_ONLY

    @property
    def image_upgrade_status(self) -> ImageUpgradeStatus:
        """The ImageUpgradeStatus attribute (§11.10.7) for the current state."""
        state = self._state
        if state is _State.DOWNLOADING:
            return ImageUpgradeStatus.DOWNLOAD_IN_PROGRESS
        if state is _State.WAITING_END:
            return ImageUpgradeStatus.DOWNLOAD_COMPLETE
        if state is _State.COUNT_DOWN:
            return ImageUpgradeStatus.COUNT_DOWN
        if state is _State.WAITING_EXTERNAL:
            return ImageUpgradeStatus.WAITING_TO_UPGRADE_VIA_EXTERNAL_EVENT
        if self._flash.pending_activation:
            return ImageUpgradeStatus.DOWNLOAD_COMPLETE
        return ImageUpgradeStatus.NORMAL

    # -- timers --------------------------------------------------------------------------------
    # Three named timers: "periodic" (next Query Next Image), "action" (next block request,
    # notify delay, upgrade countdown, Upgrade End poll) and "response" (request timeout).

    def _schedule(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self._loop.call_later(max(0.0, delay), self._fire, name, callback)

    def _fire(self, name: str, callback: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        callback()

    def _cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _issue(self, command_id: int, payload: bytes) -> None:
        """Send a request that expects an answer, and arm its response timeout."""
        self._outstanding = (command_id, payload)
        self._send(command_id, payload)
        if self._state is _State.STOPPED:  # the send itself cut the power (or stopped the client)
            return
        self._schedule("response", self._config.response_timeout, self._on_response_timeout)

    # -- periodic query (§11.13.4) ---------------------------------------------------------------

    def _on_periodic(self) -> None:
        self._schedule("periodic", self._config.query_interval, self._on_periodic)
        if self._state is not _State.IDLE:
            self._log(f"periodic query skipped: busy ({self._state.value})")
            return
        if self._flash.pending_activation:
            self._state = _State.WAITING_END
            self._retries = 0
            self._send_upgrade_end_success()
        else:
            self._query()

    def _query(self) -> None:
        cfg = self._config
        self._state = _State.QUERYING
        self._retries = 0
        req = QueryNextImageRequest(
            cfg.manufacturer_code, cfg.image_type, self._flash.running.file_version, cfg.hardware_version
        )
        self._log(f"QNI -> server (current version 0x{req.file_version:08X})")
        self._issue(CMD_QUERY_NEXT_IMAGE_REQUEST, encode_query_next_image_request(req))

    # -- Image Notify (§11.13.3, effect on receipt) -----------------------------------------------

    def _on_image_notify(self, notify: ImageNotify) -> None:
        cfg = self._config
        self._log(
            f"Image Notify type={notify.payload_type} jitter={notify.query_jitter}"
            + (f" version=0x{notify.file_version:08X}" if notify.file_version is not None else "")
        )
        if "ignores-image-notify" in cfg.defects:
            self._log("defect ignores-image-notify: waiting for the next periodic query instead")
            return
        if self._state is not _State.IDLE:
            self._log(f"Image Notify ignored: busy ({self._state.value})")
            return
        if notify.manufacturer_code not in (None, cfg.manufacturer_code, WILDCARD_MANUFACTURER):
            self._log(f"Image Notify ignored: manufacturer 0x{notify.manufacturer_code:04X} is not ours")
            return
        if notify.image_type not in (None, cfg.image_type, WILDCARD_IMAGE_TYPE):
            self._log(f"Image Notify ignored: image type 0x{notify.image_type:04X} is not ours")
            return
        if notify.file_version == self._flash.running.file_version:
            self._log("Image Notify ignored: that version is already running")
            return
        # The query jitter is the chance, in percent, that this client answers (spreads the load
        # of a broadcast notify): draw 1..100 and answer when the draw is within the jitter.
        draw = self._rng.randint(1, 100)
        if draw > notify.query_jitter:
            self._log(f"Image Notify not answered: draw {draw} > jitter {notify.query_jitter}")
            return
        delay = self._rng.uniform(0.0, cfg.notify_max_delay * notify.query_jitter / 100.0)
        self._log(f"QNI in {delay:.1f}s (after Image Notify)")
        self._schedule("action", delay, self._on_notify_delay)

    def _on_notify_delay(self) -> None:
        if self._state is _State.IDLE:
            self._query()

    # -- Query Next Image Response (§11.13.5, effect on receipt) -----------------------------------

    def _on_query_next_image_response(self, resp: QueryNextImageResponse) -> None:
        if self._state is not _State.QUERYING:
            self._log(f"unexpected QNI response ({self._state.value}); dropped")
            return
        self._cancel("response")
        self._outstanding = None
        self._retries = 0
        self._state = _State.IDLE
        if resp.status != STATUS_SUCCESS:
            self._log(f"QNI response {_status_name(resp.status)}: no image; idle until next query")
            return
        mfr = _given(resp.manufacturer_code, "manufacturer_code")
        itype = _given(resp.image_type, "image_type")
        version = _given(resp.file_version, "file_version")
        size = _given(resp.image_size, "image_size")
        self._log(
            f"QNI response SUCCESS: manufacturer=0x{mfr:04X} type=0x{itype:04X} "
            f"version=0x{version:08X} size={size}"
        )
        cfg = self._config
        running = self._flash.running.file_version
        foreign = mfr != cfg.manufacturer_code or itype != cfg.image_type
        if foreign and "accepts-foreign-image" in cfg.defects:
            self._log("defect accepts-foreign-image: downloading an image made for another device")
        elif foreign:
            self._log(
                f"offered image is for manufacturer 0x{mfr:04X} type 0x{itype:04X}, this device is "
                f"0x{cfg.manufacturer_code:04X}/0x{cfg.image_type:04X}: not downloaded"
            )
            return
        if version == running:
            self._log("offered version is the running version: not downloaded")
            return
        if version < running and not cfg.allow_downgrade:
            self._log(f"offered version 0x{version:08X} is older than 0x{running:08X}: downgrade refused")
            return
        if size < OTA_HEADER_MIN_LENGTH or size > self._flash.slot_size:
            self._log(
                f"offered image size {size} cannot be an OTA file in a {self._flash.slot_size}-byte slot"
            )
            return
        offer = DownloadMeta(manufacturer_code=mfr, image_type=itype, file_version=version, image_size=size)
        flash = self._flash
        if flash.pending_activation and flash.download_meta == offer:
            self._log("offered image is already downloaded: asking for the upgrade time")
            self._state = _State.WAITING_END
            self._send_upgrade_end_success()
            return
        if flash.download_meta == offer and not flash.pending_activation and flash.download_offset > 0:
            self._log(f"resume download at offset {flash.download_offset}/{size}")
        else:
            if flash.pending_activation:
                self._log("a different image replaces the one waiting for activation")
            flash.begin_download(
                manufacturer_code=mfr, image_type=itype, file_version=version, image_size=size
            )
            self._log(f"begin download of 0x{version:08X} ({size} bytes)")
        self._state = _State.DOWNLOADING
        self._last_block_request_at = None
        if flash.download_offset >= size:
            self._finish_download()
        else:
            self._request_block()

    # -- Image Block Request / Response (§11.13.6, §11.13.8) -------------------------------------

    def _request_block(self) -> None:
        if self._state is not _State.DOWNLOADING:
            return
        meta = self._flash.download_meta
        if meta is None:  # cannot happen while downloading; be safe rather than crash
            self._state = _State.IDLE
            return
        offset = self._flash.download_offset
        if "stalls-at-half" in self._config.defects and offset >= meta.image_size // 2:
            self._log(f"defect stalls-at-half: no more block requests at offset {offset}")
            return
        size = min(self._config.max_data_size, meta.image_size - offset)
        req = ImageBlockRequest(meta.manufacturer_code, meta.image_type, meta.file_version, offset, size)
        self._requested = (offset, size)
        self._last_block_request_at = self._loop.time()
        self._log(f"block request offset={offset} size={size}")
        self._issue(CMD_IMAGE_BLOCK_REQUEST, encode_image_block_request(req))

    def _schedule_next_block(self, at_least: float = 0.0) -> None:
        """Next block request after ``at_least`` seconds, and no sooner than MinimumBlockPeriod
        (§11.10.10) after the previous request was sent."""
        delay = at_least
        if "slow-block-requests" in self._config.defects:
            delay = max(delay, SLOW_BLOCK_DELAY_S)
        if self._last_block_request_at is not None:
            since = self._loop.time() - self._last_block_request_at
            delay = max(delay, self.minimum_block_period_ms / 1000.0 - since)
        self._schedule("action", delay, self._request_block)

    def _on_image_block_response(self, resp: ImageBlockResponse) -> None:
        if self._state is not _State.DOWNLOADING or self._requested is None:
            self._log(f"unexpected Image Block Response ({self._state.value}); dropped")
            return
        meta = self._flash.download_meta
        if meta is None:
            self._log("Image Block Response without a download; dropped")
            return
        if resp.status == STATUS_ABORT:
            # §11.13.8, effect on receipt: ABORT makes the client abandon the download.
            self._cancel("response")
            self._cancel("action")
            self._flash.discard_download()
            self._requested = None
            self._state = _State.IDLE
            self._log("server aborted the download: image discarded; idle")
            return
        if resp.status == STATUS_WAIT_FOR_DATA:
            # §11.13.8, effect on receipt: retry at request time; a minimum block period in the
            # payload updates the MinimumBlockPeriod attribute.
            self._cancel("response")
            self._requested = None
            self._retries = 0
            if resp.minimum_block_period is not None:
                self.minimum_block_period_ms = resp.minimum_block_period
            current = _given(resp.current_time, "current_time")
            request = _given(resp.request_time, "request_time")
            delay = float(request - current)
            if delay <= 0:
                delay = self._config.wait_for_data_default
            self._log(
                f"WAIT_FOR_DATA: retry in {delay:.1f}s"
                + (
                    f", MinimumBlockPeriod {resp.minimum_block_period} ms"
                    if resp.minimum_block_period is not None
                    else ""
                )
            )
            self._schedule_next_block(at_least=delay)
            return

        # SUCCESS: the block must belong to this download and start where it was asked for.
        offset = _given(resp.file_offset, "file_offset")
        data = _given(resp.data, "data")
        req_offset, req_size = self._requested
        same_image = (resp.manufacturer_code, resp.image_type, resp.file_version) == (
            meta.manufacturer_code,
            meta.image_type,
            meta.file_version,
        )
        if same_image and offset < req_offset and offset + len(data) <= req_offset:
            # A late answer to an earlier (retried) request: already stored. The outstanding
            # request keeps its timeout.
            self._log(f"stale block offset={offset} (waiting for {req_offset}); dropped")
            return
        if not same_image:
            self._bad_block(
                f"block is for 0x{resp.manufacturer_code or 0:04X}/0x{resp.image_type or 0:04X}/"
                f"0x{resp.file_version or 0:08X}, not the image being downloaded"
            )
            return
        if offset != req_offset:
            self._bad_block(f"block offset {offset} is not the requested {req_offset}")
            return
        if not 0 < len(data) <= req_size:
            self._bad_block(f"block of {len(data)} bytes for a request of {req_size}")
            return
        self._cancel("response")
        self._outstanding = None
        self._requested = None
        try:
            self._flash.write_block(offset, data)
        except FlashError as exc:  # the checks above should make this impossible
            self._log(f"flash write failed: {exc}; download stopped; idle")
            self._state = _State.IDLE
            return
        self._retries = 0
        self._log(f"block offset={offset} size={len(data)}")
        if self._flash.download_offset >= meta.image_size:
            self._finish_download()
        else:
            self._schedule_next_block()

    def _bad_block(self, reason: str) -> None:
        """A block that cannot be used: count it as a failed attempt and ask again."""
        self._cancel("response")
        self._requested = None
        self._retries += 1
        if self._retries > self._config.max_retries:
            self._log(f"{reason}; giving up after {self._config.max_retries} retries")
            self._give_up_download()
            return
        self._log(f"{reason}; dropped, asking again ({self._retries}/{self._config.max_retries})")
        self._schedule_next_block()

    def _give_up_download(self) -> None:
        self._cancel("response")
        self._cancel("action")
        self._requested = None
        self._outstanding = None
        self._state = _State.IDLE
        self._log(f"download stopped at offset {self._flash.download_offset}, kept for resume; idle")

    # -- verification (§11.4.2) and Upgrade End (§11.13.9) -------------------------------------

    def _finish_download(self) -> None:
        meta = self._flash.download_meta
        if meta is None:
            self._state = _State.IDLE
            return
        image = self._flash.downloaded_image()
        problem = self._verify(image, meta)
        if problem is not None:
            # §11.13.9: report INVALID_IMAGE, throw the image away, keep running the old firmware.
            # No answer is awaited: the server acknowledges with a Default Response.
            self._log(f"verify FAILED: {problem}")
            self._flash.discard_download()
            self._state = _State.IDLE
            self._log("UER INVALID_IMAGE -> server; image discarded; idle")
            self._send(
                CMD_UPGRADE_END_REQUEST,
                encode_upgrade_end_request(
                    UpgradeEndRequest(
                        STATUS_INVALID_IMAGE, meta.manufacturer_code, meta.image_type, meta.file_version
                    )
                ),
            )
            return
        self._log("verify OK")
        self._flash.mark_pending_activation()
        self._state = _State.WAITING_END
        self._retries = 0
        self._send_upgrade_end_success()

    def _verify(self, image: bytes, meta: DownloadMeta) -> str | None:
        """Why the downloaded file must not be installed, or None if it may be (§11.4.2).

        Besides the header, the firmware's own integrity is checked when it carries a manifest: the
        manifest must be readable, name the header's file version, and its SHA-256 must match.
        """
        if "rejects-valid-image" in self._config.defects:
            return "defect rejects-valid-image: verification fails whatever the image"
        if "skips-image-verification" in self._config.defects:
            self._log("defect skips-image-verification: the download is not checked")
            return None
        try:
            header = parse_header(image)
        except OtaFileError as exc:
            return str(exc)
        if header.manufacturer_code != meta.manufacturer_code:
            return (
                f"header manufacturer 0x{header.manufacturer_code:04X} "
                f"!= offered 0x{meta.manufacturer_code:04X}"
            )
        if header.image_type != meta.image_type:
            return f"header image type 0x{header.image_type:04X} != offered 0x{meta.image_type:04X}"
        if header.file_version != meta.file_version:
            return f"header file version 0x{header.file_version:08X} != offered 0x{meta.file_version:08X}"
        if header.total_image_size != len(image) or len(image) != meta.image_size:
            return (
                f"header total image size {header.total_image_size}, offered {meta.image_size}, "
                f"received {len(image)}"
            )
        hw = self._config.hardware_version
        if (
            hw is not None
            and not header.fits_hardware(hw)
            and "accepts-foreign-image" not in self._config.defects
        ):
            return (
                f"hardware version {hw} outside "
                f"{header.minimum_hardware_version}..{header.maximum_hardware_version}"
            )
        ieee = self._config.ieee
        if ieee is not None and header.upgrade_file_destination not in (None, ieee):
            return f"file is for device {header.upgrade_file_destination:016X}, not {ieee:016X}"
        key = self._config.trusted_key
        if key is not None and "skips-signature-check" not in self._config.defects:
            problem = signature_problem(image, key)
            if problem is not None:
                return f"signature check failed: {problem}"
        elif key is not None:
            self._log("defect skips-signature-check: the image's signature is not checked")
        if "resumes-at-wrong-offset" in self._config.defects:
            # The firmware that drifts its resume offset has no integrity check: that is why the
            # hole it leaves goes unnoticed.
            return None
        return self._verify_integrity(image, header.file_version)

    def _verify_integrity(self, image: bytes, file_version: int) -> str | None:
        """Why the firmware fails its own integrity check (None: it passes, or has no manifest)."""
        try:
            manifest = parse_manifest(firmware_payload(image))
        except (ManifestError, OtaFileError) as exc:
            return f"firmware manifest unreadable: {exc}"
        if manifest is None:
            return None  # a vendor image: nothing more to check it against
        if not manifest.digest_ok:
            return "image integrity check failed: the firmware does not match its manifest's SHA-256"
        if manifest.firmware_version != file_version:
            return (
                f"firmware manifest says version 0x{manifest.firmware_version:08X}, "
                f"header 0x{file_version:08X}"
            )
        return None

    def _send_upgrade_end_success(self) -> None:
        meta = self._flash.download_meta
        if meta is None:
            self._state = _State.IDLE
            return
        self._log(f"UER SUCCESS -> server (version 0x{meta.file_version:08X})")
        self._issue(
            CMD_UPGRADE_END_REQUEST,
            encode_upgrade_end_request(
                UpgradeEndRequest(STATUS_SUCCESS, meta.manufacturer_code, meta.image_type, meta.file_version)
            ),
        )
        if "activates-before-upgrade-end-response" in self._config.defects and self._state not in (
            _State.STOPPED,
            _State.COUNT_DOWN,
        ):
            # §11.13.9.6 says the client waits for the server's upgrade time; this one resets at once.
            self._log(
                "defect activates-before-upgrade-end-response: activating without waiting for the "
                "Upgrade End Response"
            )
            self._state = _State.COUNT_DOWN
            self._schedule("action", 0.0, self._activate)

    def _on_upgrade_end_response(self, resp: UpgradeEndResponse) -> None:
        meta = self._flash.download_meta
        if not self._flash.pending_activation or meta is None:
            self._log("unexpected Upgrade End Response (no image waiting); dropped")
            return
        if self._state not in (
            _State.IDLE,
            _State.WAITING_END,
            _State.WAITING_EXTERNAL,
            _State.COUNT_DOWN,
        ):
            self._log(f"unexpected Upgrade End Response ({self._state.value}); dropped")
            return
        # §11.13.9.6: the server may use wildcards (e.g. in an unsolicited response that upgrades
        # many clients at once).
        if (
            resp.manufacturer_code not in (meta.manufacturer_code, WILDCARD_MANUFACTURER)
            or resp.image_type not in (meta.image_type, WILDCARD_IMAGE_TYPE)
            or resp.file_version not in (meta.file_version, WILDCARD_FILE_VERSION)
        ):
            self._log(
                f"Upgrade End Response for 0x{resp.manufacturer_code:04X}/0x{resp.image_type:04X}/"
                f"0x{resp.file_version:08X} is not for the image waiting; dropped"
            )
            return
        self._cancel("response")
        self._cancel("action")
        self._outstanding = None
        self._retries = 0
        if resp.upgrade_time == UPGRADE_TIME_WAIT and "activates-without-waiting" in self._config.defects:
            self._log("defect activates-without-waiting: upgrade time 0xFFFFFFFF ignored, activating now")
            self._state = _State.COUNT_DOWN
            self._schedule("action", 0.0, self._activate)
            return
        if resp.upgrade_time == UPGRADE_TIME_WAIT:
            self._state = _State.WAITING_EXTERNAL
            poll = self._config.upgrade_end_poll_interval
            self._log(f"upgrade time 0xFFFFFFFF: waiting to be told; asking again in {poll:.0f}s")
            self._schedule("action", poll, self._poll_upgrade_end)
            return
        if resp.current_time == 0:
            delay = float(resp.upgrade_time)  # an offset in seconds from now
        else:
            delay = float(resp.upgrade_time) - float(resp.current_time)
        delay = max(0.0, delay)
        self._state = _State.COUNT_DOWN
        self._log(f"activate at +{delay:.1f}s")
        self._schedule("action", delay, self._activate)

    def _poll_upgrade_end(self) -> None:
        if self._state is _State.WAITING_EXTERNAL:
            self._retries = 0
            self._send_upgrade_end_success()

    def _activate(self) -> None:
        if not self._flash.pending_activation:
            self._log("activation time reached but no image is waiting; idle")
            self._state = _State.IDLE
            return
        old = self._flash.running.file_version
        if "never-reboots" in self._config.defects:
            self._log("defect never-reboots: upgrade time reached, the device hangs")
            self.stop()
            return
        if "no-version-change" in self._config.defects:
            self._log("defect no-version-change: rebooting without installing the new image")
            self._flash.discard_download()
            self.stop()
            self._reboot()
            return
        try:
            # Checks the image and asks the bootloader to swap it in at the next boot.
            self._flash.activate()
        except FlashError as exc:
            self._log(f"activation failed: {exc}; image discarded")
            self._flash.discard_download()
            self._state = _State.IDLE
            return
        self._log(
            f"activated 0x{self._flash.running.file_version:08X} (was 0x{old:08X}): "
            "install requested from the bootloader; reboot"
        )
        self.stop()
        self._reboot()

    # -- timeouts --------------------------------------------------------------------------------

    def _on_response_timeout(self) -> None:
        outstanding = self._outstanding
        if outstanding is None:
            return
        command_id, payload = outstanding
        name = _command_name(command_id)
        self._retries += 1
        if self._retries > self._config.max_retries:
            self._outstanding = None
            self._log(f"no response to {name} after {self._config.max_retries} retries")
            if self._state is _State.DOWNLOADING:
                self._give_up_download()
            elif self._state is _State.WAITING_EXTERNAL:
                poll = self._config.upgrade_end_poll_interval
                self._log(f"still waiting to be told; asking again in {poll:.0f}s")
                self._schedule("action", poll, self._poll_upgrade_end)
            else:
                if self._state is _State.WAITING_END:
                    self._log("image kept; asking again at the next query time")
                else:
                    self._log("idle until next query")
                self._state = _State.IDLE
            return
        self._log(f"no response to {name}: retry {self._retries}/{self._config.max_retries}")
        if command_id == CMD_IMAGE_BLOCK_REQUEST:
            self._request_block()
        else:
            self._issue(command_id, payload)


def _command_name(command_id: int) -> str:
    return _COMMAND_NAMES.get(command_id, f"command 0x{command_id:02X}")


def _status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, f"0x{status:02X}")
