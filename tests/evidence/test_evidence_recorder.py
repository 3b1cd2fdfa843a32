"""The recorder: one call per frame or event, everything on disk at once, parquet at the end."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

import harness.evidence
import harness.report
from harness.errors import BadInputError
from harness.evidence.decode import FrameSummary
from harness.evidence.pcap import read_pcap
from harness.evidence.recorder import Recorder
from harness.evidence.timeline import read_timeline

WALL0 = 1_790_000_000.0


class Clocks:
    """A hand-driven testbed clock and a wall clock that moves much more slowly (virtual time)."""

    def __init__(self) -> None:
        self.virtual = 100.0
        self.wall = WALL0

    def advance(self, seconds: float) -> None:
        self.virtual += seconds
        self.wall += seconds / 100


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def recorder(tmp_path: Path, clocks: Clocks) -> Recorder:
    return Recorder(tmp_path / "run", wall_clock=lambda: clocks.wall, virtual_clock=lambda: clocks.virtual)


def test_creates_the_evidence_layout(recorder: Recorder) -> None:
    evidence = recorder.run_dir / "evidence"
    assert (evidence / "air.pcap").is_file() and (evidence / "timeline.jsonl").is_file()
    assert (evidence / "images").is_dir() and (evidence / "serial").is_dir()
    recorder.close()


def test_frames_go_to_the_pcap_at_testbed_time_and_to_the_timeline(
    recorder: Recorder, clocks: Clocks, frames
) -> None:
    b2, ch = 0x1234, 0x0000
    recorder.frame(frames.block_request(0, src=b2, dst=ch), hop_src="B2", hop_dst="CH", medium="radio")
    clocks.advance(0.004)
    recorder.frame(frames.mac_ack(23), hop_src="CH", hop_dst="B2", medium="radio")
    clocks.advance(1.5)
    recorder.frame(
        frames.block_response(0, bytes(50), src=ch, dst=b2), hop_src="CH", hop_dst="B2", medium="radio"
    )
    recorder.event("hub", "offer B2 0x01010000", device="B2", network_key="00112233")
    recorder.close()

    times = [ts for ts, _ in read_pcap(recorder.run_dir / "evidence" / "air.pcap")]
    assert times == pytest.approx([WALL0, WALL0 + 0.004, WALL0 + 1.504], abs=2e-6)

    df = read_timeline(recorder.run_dir / "timeline.parquet")
    assert df["seq"].tolist() == [1, 2, 3, 4]
    assert df["kind"].tolist() == ["frame", "frame", "frame", "event"]
    assert df["virtual_time_s"].tolist() == pytest.approx([100.0, 100.004, 101.504, 101.504])
    # B2's address was learnt from the MAC source of the frame B2 sent, so the response is named;
    # CH had sent nothing yet when B2's request went out, so that one shows the bare address.
    assert df["source"].tolist()[:3] == ["B2", "CH", "CH"]
    assert df["destination"].tolist() == ["0x0000", "B2", "B2", "B2"]
    assert df["hop"].tolist()[:3] == ["B2→CH", "CH→B2", "CH→B2"]
    assert df["zcl_command"].tolist()[2] == "Image Block Response"
    assert int(df["file_offset"][2]) == 0 and int(df["data_size"][2]) == 50
    assert df["layers"][1] == "MAC ack #23"
    assert df["medium"].tolist() == ["radio", "radio", "radio", "harness"]
    event = df["detail"][3]
    assert event.startswith("offer B2 0x01010000") and "00112233" not in event and "redacted" in event
    assert df["wall_time_utc"][0].endswith("Z") and len(df["wall_time_utc"][0]) == 24


def test_addresses_can_be_named_up_front(tmp_path: Path, clocks: Clocks, frames) -> None:
    recorder = Recorder(tmp_path / "run", virtual_clock=lambda: clocks.virtual, addresses={"0x0000": "CH"})
    recorder.name_address("0x1234", "B2")
    recorder.frame(frames.block_request(0, src=0x1234, dst=0x0000), hop_src="B2", hop_dst="CH")
    recorder.close()
    df = read_timeline(recorder.run_dir / "timeline.parquet")
    assert (df["source"][0], df["destination"][0]) == ("B2", "CH")
    assert recorder.addresses == {"0x0000": "CH", "0x1234": "B2"}


def test_frames_on_another_medium_get_their_own_capture(recorder: Recorder, frames) -> None:
    recorder.frame(frames.block_response(0, bytes(50)), hop_src="B1", hop_dst="B2", medium="p2p")
    recorder.close()
    assert len(list(read_pcap(recorder.run_dir / "evidence" / "p2p.pcap"))) == 1
    assert list(read_pcap(recorder.run_dir / "evidence" / "air.pcap")) == []


def test_frame_listeners_see_every_summary_with_its_testbed_time(
    recorder: Recorder, clocks: Clocks, frames
) -> None:
    seen: list[tuple[FrameSummary, float]] = []
    recorder.add_frame_listener(lambda s, t: seen.append((s, t)))
    clocks.advance(5)
    recorder.frame(frames.block_response(64, bytes(50)), hop_src="CH", hop_dst="B2", medium="radio")
    assert [(s.file_offset, t) for s, t in seen] == [(64, 105.0)]


def test_failing_listener_is_recorded_then_raised(recorder: Recorder, frames) -> None:
    def broken(summary: FrameSummary, t: float) -> None:
        raise RuntimeError("progress tracker bug")

    recorder.add_frame_listener(broken)
    with pytest.raises(RuntimeError, match="progress tracker bug"):
        recorder.frame(frames.mac_ack(1), hop_src="CH", hop_dst="B2", medium="radio")
    recorder.remove_frame_listener(broken)
    recorder.close()
    df = read_timeline(recorder.run_dir / "timeline.parquet")
    assert df["kind"].tolist() == ["frame", "event"]
    assert "progress tracker bug" in df["detail"][1]


def test_images_are_kept_whole_under_evidence(recorder: Recorder) -> None:
    data = b"\x1e\xf1\xee\x0b" + bytes(1000)
    path = recorder.add_image(data, "B2-0x01010000.zigbee")
    assert path == recorder.run_dir / "evidence" / "images" / "B2-0x01010000.zigbee"
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert recorder.relative(path) == "evidence/images/B2-0x01010000.zigbee"
    assert sorted(p.name for p in path.parent.iterdir()) == ["B2-0x01010000.zigbee"]
    for bad in ("../escape.bin", "a/b", "", ".."):
        with pytest.raises(BadInputError):
            recorder.add_image(data, bad)


def test_serial_transcripts_are_timestamped_per_port(recorder: Recorder, clocks: Clocks) -> None:
    recorder.serial_line("B2", "boot 1.0.0.0\r\n")
    clocks.advance(2)
    recorder.serial_line("/dev/ttyUSB3", "ok")
    lines = (recorder.run_dir / "evidence" / "serial" / "B2.log").read_text().splitlines()
    assert lines == ["100.000000 2026-09-21T14:13:20.000Z boot 1.0.0.0"]
    assert (
        (recorder.run_dir / "evidence" / "serial" / "dev_ttyUSB3.log").read_text().startswith("102.000000 ")
    )


def test_close_is_idempotent_and_refuses_later_frames(recorder: Recorder, frames) -> None:
    recorder.frame(frames.mac_ack(1), hop_src="CH", hop_dst="B2", medium="radio")
    first = recorder.close()
    assert recorder.close() is first and first.rows == 1
    assert (recorder.run_dir / "timeline.parquet").is_file()
    with pytest.raises(ValueError, match="closed"):
        recorder.frame(frames.mac_ack(2), hop_src="CH", hop_dst="B2", medium="radio")


def test_evidence_survives_a_kill_without_close(recorder: Recorder, frames) -> None:
    for offset in range(0, 500, 50):
        recorder.frame(frames.block_response(offset, bytes(50)), hop_src="CH", hop_dst="B2", medium="radio")
    # No close(): whatever is on disk now is what a kill -9 would leave.
    reader = read_pcap(recorder.run_dir / "evidence" / "air.pcap")
    assert len(list(reader)) == 10 and not reader.torn_tail
    assert read_timeline(recorder.run_dir / "evidence" / "timeline.jsonl")["file_offset"].tolist() == list(
        range(0, 500, 50)
    )


def test_a_run_folder_with_evidence_is_never_reused(recorder: Recorder, clocks: Clocks) -> None:
    recorder.close()
    with pytest.raises(BadInputError, match="already holds evidence"):
        Recorder(recorder.run_dir, virtual_clock=lambda: clocks.virtual)


def test_evidence_and_report_code_never_import_the_emulator() -> None:
    for package in (harness.evidence, harness.report):
        for source in Path(str(package.__file__)).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                assert not any(n == "testbeds" or n.startswith("testbeds.") for n in names), source


def test_close_keeps_the_journal_gzipped_row_for_row(recorder: Recorder, frames) -> None:
    import gzip

    import pandas as pd

    recorder.frame(frames.block_response(0, b"\x01" * 50), hop_src="CH", hop_dst="B1")
    recorder.event("harness", "offer", device="B2")
    recorder.close()
    journal = recorder.evidence_dir / "timeline.jsonl.gz"
    assert not (recorder.evidence_dir / "timeline.jsonl").exists()
    lines = gzip.decompress(journal.read_bytes()).decode().splitlines()
    assert len(lines) == len(pd.read_parquet(recorder.run_dir / "timeline.parquet")) == 2
