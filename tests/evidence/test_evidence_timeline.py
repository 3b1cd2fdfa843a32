"""The crash-safe timeline: JSON lines while running, Parquet with a fixed schema at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.evidence.timeline import (
    COLUMNS,
    TimelineWriter,
    finalize_timeline,
    iso_utc,
    read_timeline,
    timeline_schema,
)


def frame_row(seq: int, offset: int | None = None) -> dict:
    return {
        "seq": seq,
        "virtual_time_s": seq * 0.5,
        "wall_time_utc": "2026-11-03T10:15:02.123Z",
        "kind": "frame",
        "source": "CH",
        "destination": "B2",
        "hop": "CH→B1",
        "medium": "radio",
        "layers": "MAC data 0x0000→0x0001 / ...",
        "zcl_command": "Image Block Response",
        "file_offset": offset,
        "data_size": 50 if offset is not None else None,
        "detail": None,
    }


def test_each_appended_row_is_on_disk_at_once(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    writer = TimelineWriter(path)
    writer.append(frame_row(1, 0))
    writer.append({"seq": 2, "kind": "event", "source": "power", "detail": "power cut B2"})
    lines = path.read_text(encoding="utf-8").splitlines()  # read before close: nothing buffered
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    writer.close()


def test_finalize_writes_the_fixed_schema_with_nulls_for_missing_keys(tmp_path: Path) -> None:
    writer = TimelineWriter(tmp_path / "timeline.jsonl")
    writer.append(frame_row(1, 0))
    writer.append(frame_row(2, 50))
    writer.append(
        {
            "seq": 3,
            "virtual_time_s": 2.0,
            "kind": "event",
            "source": "hub",
            "medium": "harness",
            "detail": "offer B2 0x01010000",
        }
    )
    stats = writer.finalize(tmp_path / "timeline.parquet")
    assert (stats.rows, stats.skipped_lines, stats.warnings) == (3, 0, [])
    table = pq.read_table(tmp_path / "timeline.parquet")
    assert table.schema.equals(timeline_schema())
    assert [f.name for f in table.schema] == [name for name, _ in COLUMNS]
    assert table.schema.field("file_offset").type == pa.int64()
    assert table.column("file_offset").to_pylist() == [0, 50, None]
    assert table.column("zcl_command").to_pylist() == ["Image Block Response", "Image Block Response", None]
    assert table.column("hop").to_pylist() == ["CH→B1", "CH→B1", None]


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    with TimelineWriter(path) as writer:
        writer.append(frame_row(1, 0))
        writer.append(frame_row(2, 50))
    whole_line = json.dumps(frame_row(3, 100))
    with open(path, "a", encoding="utf-8") as f:
        f.write(whole_line[: len(whole_line) // 2])  # killed half-way through the write
    stats = finalize_timeline(path, tmp_path / "timeline.parquet")
    assert stats.rows == 2 and stats.skipped_lines == 1
    assert len(stats.warnings) == 1 and "line 3" in stats.warnings[0] and "torn" in stats.warnings[0]
    assert read_timeline(tmp_path / "timeline.parquet")["seq"].tolist() == [1, 2]


def test_writer_reopened_after_a_kill_keeps_old_rows_and_isolates_the_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    path.write_text(json.dumps(frame_row(1, 0)) + "\n" + '{"seq": 2, "kind": "fr', encoding="utf-8")
    with TimelineWriter(path) as writer:
        writer.append(frame_row(3, 100))
    stats = finalize_timeline(path, tmp_path / "timeline.parquet")
    assert stats.rows == 2 and stats.skipped_lines == 1
    assert read_timeline(tmp_path / "timeline.parquet")["seq"].tolist() == [1, 3]


def test_wrong_types_become_null_and_extra_keys_go_to_detail(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    with TimelineWriter(path) as writer:
        writer.append({"seq": 1, "file_offset": "sixty-four", "detail": "x", "rssi": -40, "raw": b"\x01\x02"})
    stats = finalize_timeline(path, tmp_path / "timeline.parquet")
    df = read_timeline(tmp_path / "timeline.parquet")
    assert df["file_offset"].isna().all()
    assert df["detail"][0] == 'x rssi=-40 raw="0102"'
    assert any("file_offset" in w for w in stats.warnings)


def test_read_timeline_reads_the_json_lines_of_an_unfinished_run(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    with TimelineWriter(path) as writer:
        writer.append(frame_row(1, 0))
        writer.append(frame_row(2, 50))
    df = read_timeline(path)
    assert df["file_offset"].tolist() == [0, 50]
    assert list(df.columns) == [name for name, _ in COLUMNS]


def test_finalize_without_any_rows_gives_an_empty_table(tmp_path: Path) -> None:
    with TimelineWriter(tmp_path / "timeline.jsonl") as writer:
        stats = writer.finalize(tmp_path / "timeline.parquet")
    assert stats.rows == 0
    assert pq.read_table(tmp_path / "timeline.parquet").num_rows == 0


def test_iso_utc_has_milliseconds() -> None:
    assert iso_utc(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"
    assert iso_utc(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"


def test_append_row_writes_the_same_json_as_append(tmp_path: Path) -> None:
    row = frame_row(7, 350)
    row["detail"] = 'quote " backslash \\ newline \n arrow →'
    with TimelineWriter(tmp_path / "a.jsonl") as a, TimelineWriter(tmp_path / "b.jsonl") as b:
        a.append(row)
        b.append_row(**row)
    assert (
        json.loads((tmp_path / "a.jsonl").read_text())
        == json.loads((tmp_path / "b.jsonl").read_text())
        == row
    )


def test_fast_and_careful_conversion_give_the_same_table(tmp_path: Path) -> None:
    clean = tmp_path / "clean.jsonl"
    with TimelineWriter(clean) as writer:
        for seq in range(1, 50):
            writer.append(frame_row(seq, seq * 50 if seq % 3 else None))
        writer.append({"seq": 50, "kind": "event", "detail": "power cut B2"})
    careful = tmp_path / "careful.jsonl"
    careful.write_text(clean.read_text() + '{"seq": 51, "unknown_key": 1}\n')  # forces the careful path
    fast_df = read_timeline(clean)
    careful_df = read_timeline(careful)
    assert careful_df.iloc[:50].equals(fast_df)
    assert careful_df["detail"].iloc[50] == "unknown_key=1"
