"""The evidence recorder: writes every frame, event and serial line of a run as it happens.

Layout it creates in the run folder::

    evidence/air.pcap         radio frames (pcap link type 195, 802.15.4 with FCS)
    evidence/<medium>.pcap    frames seen on any other medium (e.g. p2p), same format
    evidence/timeline.jsonl   one JSON row per frame or event, flushed as written
                              (gzipped to timeline.jsonl.gz once timeline.parquet is written)
    evidence/images/          firmware images offered during the run
    evidence/serial/<port>.log  serial transcripts, one timestamped line per line received
    evidence/zigbee_pc_keys   the network keys, for Wireshark/tshark (only when keys are given)
    timeline.parquet          written by close() from timeline.jsonl

When the devices encrypt their NWK frames, give the recorder the network key(s): it decrypts
every frame for the timeline and writes ``evidence/zigbee_pc_keys`` (owner-readable only), so
that tshark decodes the capture too, run from the run folder::

    WIRESHARK_CONFIG_DIR=evidence tshark -r evidence/air.pcap -Y 'zbee_zcl && zbee_aps.cluster == 0x0019'

That file is the only place a key is written: the timeline, the serial transcripts and
everything built from them show a key as its label and fingerprint, and any key text that a
device prints on its console is replaced with «redacted» in its transcript.

Everything is appended and flushed as it happens, so a crash or a kill keeps all evidence up to
that moment; ``finalize_timeline`` can still turn the JSON lines of a killed run into Parquet.
The recorder knows nothing of the emulator: a lab bench feeds it frames from a real sniffer.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from harness.errors import BadInputError
from harness.evidence.decode import FrameSummary, summarize
from harness.evidence.keys import WIRESHARK_KEY_FILE, NetworkKey, write_wireshark_keys
from harness.evidence.pcap import PcapWriter
from harness.evidence.timeline import TimelineStats, TimelineWriter, iso_utc

__all__ = ["FrameListener", "Recorder"]

FrameListener = Callable[[FrameSummary, float], None]
"""Called with each captured frame's summary and its virtual time (testbed seconds)."""

_SECRET_KEY = re.compile(r"key|secret|password|passwd|token|credential", re.IGNORECASE)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
REDACTED = "«redacted»"


def _clean_name(name: str) -> str:
    return _SAFE_NAME.sub("_", name).strip("._") or "port"


def _key_text_pattern(keys: Iterable[NetworkKey]) -> re.Pattern[str] | None:
    """A pattern matching any key of ``keys`` written out as hex: upper or lower case, with or
    without ``:``, ``-`` or spaces between bytes, in either byte order (some stacks print keys
    least significant byte first)."""
    forms = []
    for k in keys:
        for order in (k.key, k.key[::-1]):
            forms.append(r"[:\-\s]?".join(f"{b:02x}" for b in order))
    return re.compile("|".join(forms), re.IGNORECASE) if forms else None


def _learn_pair(known: dict[str, str], table: dict[int, bytes], short: str, ieee: str) -> None:
    # The decoder wants 8 bytes in over-the-air order; the summary prints them the other way round.
    if known.get(short) != ieee and len(short) == 6 and short.startswith("0x"):
        known[short] = ieee
        table[int(short, 16)] = bytes.fromhex(ieee.replace(":", ""))[::-1]


class Recorder:
    """Records one run's evidence under ``run_dir``.

    Args:
        run_dir: the run folder; ``evidence/`` is created inside it. A folder that already holds
            a capture or a timeline is refused (``BadInputError``), so earlier evidence is never
            overwritten.
        wall_clock: real time as a Unix timestamp (``time.time`` unless a test fixes it).
        virtual_clock: testbed time in seconds (the event loop's clock: virtual on the emulated
            testbed, real on a bench).
        addresses: optional names for addresses, e.g. ``{"0x1234": "B2"}``. The recorder also
            learns them by itself: the MAC source of a radio frame is the address of the device
            that sent it (``hop_src``).
        network_keys: the ZigBee network key(s) that secure NWK frames, current key first. With
            keys, secured frames are decrypted for the timeline (down to the OTA command and
            file offset) and ``evidence/zigbee_pc_keys`` is written for Wireshark/tshark. A key
            rotated in during the run is added with :meth:`add_network_key`.

    Pcap timestamps are the wall time when the recorder started plus the testbed time elapsed
    since, so Wireshark's relative times are testbed times.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        wall_clock: Callable[[], float] = time.time,
        virtual_clock: Callable[[], float],
        addresses: Mapping[str, str] | None = None,
        network_keys: Sequence[NetworkKey] = (),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.evidence_dir = self.run_dir / "evidence"
        self.images_dir = self.evidence_dir / "images"
        self.serial_dir = self.evidence_dir / "serial"
        self.pcap_path = self.evidence_dir / "air.pcap"
        self.timeline_jsonl = self.evidence_dir / "timeline.jsonl"
        self.timeline_parquet = self.run_dir / "timeline.parquet"
        self.key_file = self.evidence_dir / WIRESHARK_KEY_FILE
        keys = list(network_keys)
        for i, key in enumerate(keys):
            if not isinstance(key, NetworkKey):
                # Name the position and the type only: the value may well be the key itself.
                raise BadInputError(
                    f"network key {i + 1} must be a NetworkKey, not {type(key).__name__}",
                    field="network_keys",
                )
        for existing in (self.pcap_path, self.timeline_jsonl, self.timeline_parquet):
            if existing.exists():
                raise BadInputError(
                    "run folder already holds evidence; choose a new output folder",
                    file=str(existing),
                )
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.serial_dir.mkdir(parents=True, exist_ok=True)
        self._wall_clock = wall_clock
        self._virtual_clock = virtual_clock
        self._wall0 = wall_clock()
        self._virtual0 = virtual_clock()
        self._pcaps: dict[str, PcapWriter] = {"radio": PcapWriter(self.pcap_path)}
        self._timeline = TimelineWriter(self.timeline_jsonl)
        self._serial: dict[str, IO[str]] = {}
        self._listeners: list[FrameListener] = []
        self._names: dict[str, str] = dict(addresses or {})
        self._seq = 0
        self._stats: TimelineStats | None = None
        self._closed = False
        self._network_keys: list[NetworkKey] = []
        self._raw_keys: tuple[bytes, ...] = ()
        self._key_text: re.Pattern[str] | None = None
        self._ieee_by_nwk: dict[int, bytes] = {}
        self._ieee_seen: dict[str, str] = {}
        for key in keys:
            self._use_key(key, first=False)
        if keys:
            write_wireshark_keys(self.key_file, self._network_keys)
            for key in self._network_keys:
                self.event("harness", f"decrypting NWK frames with {key}")

    # --- recording ----------------------------------------------------------------------
    def frame(self, raw: bytes, *, hop_src: str, hop_dst: str, medium: str = "radio") -> FrameSummary:
        """Record one frame seen on ``medium`` going from device ``hop_src`` to ``hop_dst``.

        Writes it to the medium's pcap, decodes it, appends a timeline row and tells the frame
        listeners. Returns the decoded summary.
        """
        if self._closed:
            raise ValueError(f"recorder for {self.run_dir} is closed; frame from {hop_src} not recorded")
        now_v = self._virtual_clock()
        pcap = self._pcaps.get(medium)
        if pcap is None:
            pcap = self._pcaps[medium] = PcapWriter(self.evidence_dir / f"{_clean_name(medium)}.pcap")
        pcap.write(raw, self._wall0 + (now_v - self._virtual0))
        keys = self._raw_keys
        detail = None
        if keys:
            s = summarize(raw, keys, self._ieee_by_nwk)
            if s.nwk_secured:
                detail = self._learn_and_explain(s)
        else:
            s = summarize(raw)
        if s.zdo_ieee is not None and s.zdo_nwk_addr is not None and s.fcs_ok:
            _learn_pair(self._ieee_seen, self._ieee_by_nwk, s.zdo_nwk_addr, s.zdo_ieee)
        names = self._names
        if medium == "radio" and s.mac_src is not None and s.fcs_ok:
            names[s.mac_src] = hop_src
        src = s.nwk_src or s.mac_src
        dst = s.nwk_dst or s.mac_dst
        self._seq += 1
        self._timeline.append_row(
            self._seq,
            now_v,
            iso_utc(self._wall_clock()),
            "frame",
            names.get(src, src) if src else hop_src,
            names.get(dst, dst) if dst else hop_dst,
            f"{hop_src}→{hop_dst}",
            medium,
            s.layers,
            s.zcl_command,
            s.file_offset,
            s.data_size,
            s.error if detail is None else detail,
        )
        for listener in self._listeners:
            try:
                listener(s, now_v)
            except Exception as e:
                # The frame is already on disk; note the harness fault there too, then let it
                # surface so the run ends in ERROR rather than silently losing progress data.
                self.event(
                    "harness", f"frame listener {getattr(listener, '__name__', listener)!s} failed: {e!r}"
                )
                raise
        return s

    def _learn_and_explain(self, s: FrameSummary) -> str | None:
        """Learn the sender's IEEE address from a secured frame; say why it was not decrypted."""
        if s.nwk_src_ieee is not None and s.mac_src is not None and (s.nwk_decrypted or s.fcs_ok):
            # NWK security is hop by hop: the address in the nonce is the MAC sender's.
            _learn_pair(self._ieee_seen, self._ieee_by_nwk, s.mac_src, s.nwk_src_ieee)
        if s.error is not None or s.nwk_decrypted:
            return s.error
        if s.mic_failed:
            n = len(self._raw_keys)
            return (
                f"NWK MIC check failed with every network key given ({n}): "
                "a key this run does not know, or a damaged frame"
            )
        return "NWK not decrypted: the sender's IEEE address is unknown (no extended nonce, not seen before)"

    def event(self, source: str, what: str, **detail: Any) -> None:
        """Record a harness event, e.g. ``event("hub", "offer B2 0x01010000", device="B2")``.

        ``what`` is the one-line description; keyword details are appended as ``key=value``.
        ``destination=`` (or ``device=``) fills the destination column. Details whose name
        mentions a key, secret, password or token are written as «redacted»; a
        :class:`~harness.evidence.keys.NetworkKey` shows only its label, sequence number and
        fingerprint; and a known network key written out in hex anywhere in the text is replaced
        with «redacted».
        """
        if self._closed:
            raise ValueError(f"recorder for {self.run_dir} is closed; event {what!r} not recorded")
        destination = detail.pop("destination", None) or detail.get("device")
        text = what
        if detail:
            text += " " + " ".join(f"{k}={self._detail_text(k, v)}" for k, v in detail.items())
        if self._key_text is not None:
            text = self._key_text.sub(REDACTED, text)
        self._seq += 1
        self._timeline.append(
            {
                "seq": self._seq,
                "virtual_time_s": self._virtual_clock(),
                "wall_time_utc": iso_utc(self._wall_clock()),
                "kind": "event",
                "source": source,
                "destination": None if destination is None else str(destination),
                "medium": "harness",
                "detail": text,
            }
        )

    def _detail_text(self, name: str, value: Any) -> str:
        if _SECRET_KEY.search(name):
            return REDACTED
        if isinstance(value, NetworkKey):
            return f"{REDACTED} {value!r}"
        if isinstance(value, bytes | bytearray | memoryview) and bytes(value) in self._raw_keys:
            return REDACTED
        return str(value)

    # --- network keys -------------------------------------------------------------------
    def _use_key(self, key: NetworkKey, *, first: bool) -> None:
        # A key given again (say with a new label or sequence number) replaces its old entry.
        kept = [k for k in self._network_keys if k.key != key.key]
        self._network_keys = [key, *kept] if first else [*kept, key]
        self._raw_keys = tuple(k.key for k in self._network_keys)
        self._key_text = _key_text_pattern(self._network_keys)

    def add_network_key(self, key: NetworkKey) -> None:
        """Decrypt NWK frames with ``key`` from now on, e.g. after the Trust Centre switched keys.

        The new key is tried first; the earlier ones stay (frames in flight, devices that missed
        the switch). ``evidence/zigbee_pc_keys`` is rewritten with every key (complete or not at
        all), and the timeline notes the key by label and fingerprint only.
        """
        if not isinstance(key, NetworkKey):
            raise BadInputError(f"expected a NetworkKey, not {type(key).__name__}", field="key")
        if self._closed:
            raise ValueError(f"recorder for {self.run_dir} is closed; network key {key} not added")
        self._use_key(key, first=True)
        write_wireshark_keys(self.key_file, self._network_keys)
        self.event("harness", f"decrypting NWK frames with {key} (added)")

    @property
    def network_keys(self) -> tuple[NetworkKey, ...]:
        """The network keys the recorder decrypts with, in the order it tries them."""
        return tuple(self._network_keys)

    def add_image(self, data: bytes, name: str) -> Path:
        """Keep a copy of a firmware image as ``evidence/images/<name>`` and return its path.

        The file is written under a temporary name and renamed, so it is complete or absent.
        ``name`` must be a plain file name (no folders).
        """
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise BadInputError("image name must be a plain file name", field="name", value=name)
        target = self.images_dir / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.images_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def redact(self, text: str) -> str:
        """``text`` with every known network key (written in hex, any common form) replaced by «redacted»."""
        return text if self._key_text is None else self._key_text.sub(REDACTED, text)

    def serial_line(self, port: str, line: str, *, virtual_time: float | None = None) -> None:
        """Append one line received on (or sent to) control port ``port`` to its transcript.

        Each transcript line starts with the testbed time (``virtual_time`` when the line carries the
        device's own clock, else now) and the UTC wall time.
        """
        f = self._serial.get(port)
        if f is None:
            if self._closed:
                raise ValueError(
                    f"recorder for {self.run_dir} is closed; serial line from {port} not recorded"
                )
            path = self.serial_dir / f"{_clean_name(port)}.log"
            f = self._serial[port] = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        line = line.rstrip("\r\n")
        if self._key_text is not None:
            # A device console may print its network key (a debug dump, a join log): the
            # transcript keeps the line but never the key.
            line = self._key_text.sub(REDACTED, line)
        when = self._virtual_clock() if virtual_time is None else virtual_time
        f.write(f"{when:.6f} {iso_utc(self._wall_clock())} {line}\n")
        f.flush()

    # --- observers and names ------------------------------------------------------------
    def add_frame_listener(self, callback: FrameListener) -> None:
        """Call ``callback(summary, virtual_time)`` for every frame recorded from now on."""
        self._listeners.append(callback)

    def remove_frame_listener(self, callback: FrameListener) -> None:
        """Stop calling ``callback``; removing one that is not registered is harmless."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def name_address(self, address: str, name: str) -> None:
        """Show ``address`` (``"0x1234"`` or an EUI-64) as device ``name`` in the timeline."""
        self._names[address] = name

    @property
    def addresses(self) -> dict[str, str]:
        """The address → device name map known so far (a copy)."""
        return dict(self._names)

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the run folder, with forward slashes (as records store it)."""
        return Path(path).resolve().relative_to(self.run_dir.resolve()).as_posix()

    # --- the end ------------------------------------------------------------------------
    def close(self) -> TimelineStats:
        """Close every file and write ``timeline.parquet`` into the run folder.

        Calling it again does nothing more and returns the same stats.
        """
        if self._stats is not None:
            return self._stats
        self._closed = True
        for pcap in self._pcaps.values():
            pcap.close()
        for f in self._serial.values():
            f.close()
        self._serial.clear()
        self._stats = self._timeline.finalize(self.timeline_parquet)
        self._compress_journal()
        return self._stats

    def _compress_journal(self) -> None:
        # The journal is the record as it was written (kept, as ISO 17025 7.5 asks for originals),
        # but at ~300 bytes a frame it dwarfs the run; once the Parquet copy exists it is kept gzipped.
        packed = self.timeline_jsonl.with_name(self.timeline_jsonl.name + ".gz")
        temp = packed.with_name(packed.name + ".tmp")
        with self.timeline_jsonl.open("rb") as source, gzip.open(temp, "wb", compresslevel=6) as target:
            shutil.copyfileobj(source, target, 1 << 20)
        os.replace(temp, packed)
        self.timeline_jsonl.unlink()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
