"""The pcap writer and reader: round trip, torn tails, and Wireshark's own reader agreeing."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import pytest

from harness.evidence.pcap import PcapFormatError, PcapWriter, read_pcap


def test_header_is_on_disk_as_soon_as_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "air.pcap"
    writer = PcapWriter(path)
    magic, major, minor, _zone, _sig, snaplen, linktype = struct.unpack("<IHHiIII", path.read_bytes())
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 195)
    writer.close()


def test_round_trip_keeps_frames_and_microsecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "air.pcap"
    frames = [(1_700_000_000.25, b"\x02\x00\x17\x00\x00"), (1_700_000_001.999_999_7, bytes(range(120)))]
    with PcapWriter(path) as writer:
        for ts, frame in frames:
            writer.write(frame, ts)
    reader = read_pcap(path)
    got = list(reader)
    assert [f for _, f in got] == [f for _, f in frames]
    assert got[0][0] == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert got[1][0] == pytest.approx(1_700_000_002.0, abs=1e-6)  # rounded up into the next second
    assert reader.linktype == 195 and reader.frames == 2 and not reader.torn_tail


def test_every_record_is_flushed_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "air.pcap"
    writer = PcapWriter(path)
    writer.write(b"abcde", 1.0)
    assert path.stat().st_size == 24 + 16 + 5
    assert [f for _, f in read_pcap(path)] == [b"abcde"]
    writer.close()


def test_existing_capture_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "air.pcap"
    path.write_bytes(b"earlier evidence")
    with pytest.raises(FileExistsError):
        PcapWriter(path)
    assert path.read_bytes() == b"earlier evidence"


@pytest.mark.parametrize("cut", [1, 10, 16, 16 + 3])
def test_torn_last_record_is_reported_not_raised(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "air.pcap"
    with PcapWriter(path) as writer:
        writer.write(b"first frame", 10.0)
        writer.write(b"second frame", 11.0)
    whole = path.read_bytes()
    last_record = 16 + len(b"second frame")
    path.write_bytes(whole[: len(whole) - last_record + cut])
    reader = read_pcap(path)
    assert list(reader) == [(10.0, b"first frame")]
    assert reader.torn_tail and reader.torn_bytes == cut


def test_reader_rejects_a_file_that_is_not_pcap(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a capture at all")
    with pytest.raises(PcapFormatError, match="not a classic pcap file"):
        list(read_pcap(path))


def test_reader_reads_big_endian_nanosecond_files(tmp_path: Path) -> None:
    # As written by some sniffers on other platforms.
    path = tmp_path / "ns.pcap"
    path.write_bytes(
        struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 195)
        + struct.pack(">IIII", 5, 500_000_000, 3, 3)
        + b"xyz"
    )
    assert list(read_pcap(path)) == [(5.5, b"xyz")]


@pytest.mark.tshark
def test_tshark_reads_the_capture_with_the_right_frame_count(tmp_path: Path, frames) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        warnings.warn("tshark is not installed: the independent pcap check did not run", stacklevel=1)
        pytest.skip("tshark not installed (apt-get install tshark); independent pcap check NOT run")
    path = tmp_path / "air.pcap"
    written = [
        frames.block_request(0),
        frames.mac_ack(23),
        frames.block_response(0, bytes(range(50))),
        frames.block_request(50),
        frames.block_response(50, bytes(range(50, 100))),
    ]
    with PcapWriter(path) as writer:
        for i, frame in enumerate(written):
            writer.write(frame, 1_700_000_000 + i * 0.01)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "wpan.fcs_ok",
            "-e",
            "zbee_zcl_general.ota.file.offset",
            "-e",
            "zbee_zcl_general.ota.data_size",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout.splitlines()
    rows = [line.split("\t") for line in out]
    assert len(rows) == len(written)
    assert all(r[1] in ("1", "True") for r in rows)  # Wireshark agrees every FCS is good
    # Requests carry a file offset (their size is max_data_size); responses offset and data size.
    assert [(r[2], r[3]) for r in rows if r[2]] == [("0", ""), ("0", "50"), ("50", ""), ("50", "50")]
