"""The run timeline: every captured frame and harness event, one row each, in time order.

While a run is going, rows are appended to ``evidence/timeline.jsonl`` (one JSON object per line,
flushed per row), so a kill keeps everything written before it. At the end the JSON lines are
converted once into ``timeline.parquet`` with a fixed schema, the file reports and notebooks
read. A line cut short by a kill is skipped and noted in the returned :class:`TimelineStats`,
never a crash.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_str
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "COLUMNS",
    "TimelineStats",
    "TimelineWriter",
    "finalize_timeline",
    "iso_utc",
    "read_timeline",
    "rows_to_frame",
    "timeline_schema",
]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "int64"),
    ("virtual_time_s", "float64"),
    ("wall_time_utc", "string"),
    ("kind", "string"),
    ("source", "string"),
    ("destination", "string"),
    ("hop", "string"),
    ("medium", "string"),
    ("layers", "string"),
    ("zcl_command", "string"),
    ("file_offset", "int64"),
    ("data_size", "int64"),
    ("detail", "string"),
)
"""The timeline's columns and their types, in order. Every column may hold nulls."""

_COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
_KINDS = {name: kind for name, kind in COLUMNS}


def timeline_schema() -> pa.Schema:
    """The fixed pyarrow schema of ``timeline.parquet``."""
    import pyarrow as pa

    types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    return pa.schema([pa.field(name, types[kind], nullable=True) for name, kind in COLUMNS])


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _str(value: str | None) -> str:
    return "null" if value is None else _json_str(str(value))


def _int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _num(value: float) -> str:
    v = float(value)
    return repr(v) if math.isfinite(v) else "null"


@dataclass
class TimelineStats:
    """What :func:`finalize_timeline` did: rows written and lines it had to skip, with reasons."""

    rows: int = 0
    skipped_lines: int = 0
    warnings: list[str] = field(default_factory=list)


class TimelineWriter:
    """Appends timeline rows to a JSON-lines file, flushing each one.

    Args:
        path_jsonl: the JSON-lines file. It is opened for appending: rows already in it are
            kept. If it ends part-way through a line (an earlier writer was killed), a line break
            is added first so that the torn line stays alone and is skipped on conversion.
    """

    def __init__(self, path_jsonl: str | os.PathLike[str]) -> None:
        self.path = Path(path_jsonl)
        needs_break = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_break = f.read(1) != b"\n"
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if needs_break:
            self._file.write("\n")
            self._file.flush()
        self._encode = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), default=_json_default
        ).encode

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row (a JSON object on its own line) and flush it to the operating system."""
        f = self._file
        if f is None:
            raise ValueError(f"timeline {self.path} is already finalized or closed")
        f.write(self._encode(row) + "\n")
        f.flush()

    def append_row(
        self,
        seq: int,
        virtual_time_s: float,
        wall_time_utc: str,
        kind: str,
        source: str,
        destination: str,
        hop: str | None,
        medium: str,
        layers: str,
        zcl_command: str | None,
        file_offset: int | None,
        data_size: int | None,
        detail: str | None,
    ) -> None:
        """Write one row given column by column; same result as :meth:`append`, about three times
        cheaper, for callers that write one row per captured frame."""
        f = self._file
        if f is None:
            raise ValueError(f"timeline {self.path} is already finalized or closed")
        # Building the line by hand skips the generic encoder's dict walk (see perf-limits.md 2c).
        f.write(
            f'{{"seq":{int(seq)},"virtual_time_s":{_num(virtual_time_s)},'
            f'"wall_time_utc":{_str(wall_time_utc)},"kind":{_str(kind)},'
            f'"source":{_str(source)},"destination":{_str(destination)},"hop":{_str(hop)},'
            f'"medium":{_str(medium)},"layers":{_str(layers)},"zcl_command":{_str(zcl_command)},'
            f'"file_offset":{_int(file_offset)},"data_size":{_int(data_size)},"detail":{_str(detail)}}}\n'
        )
        f.flush()

    def close(self) -> None:
        """Stop writing; the JSON-lines file stays as it is. Closing twice is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def finalize(self, parquet_path: str | os.PathLike[str]) -> TimelineStats:
        """Close the writer and convert everything written into ``parquet_path``."""
        self.close()
        return finalize_timeline(self.path, parquet_path)

    def __enter__(self) -> TimelineWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _load_columns(jsonl_path: Path, stats: TimelineStats) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMN_NAMES}
    if not jsonl_path.exists():
        stats.warnings.append(f"{jsonl_path.name}: no such file; the timeline is empty")
        return columns
    with open(jsonl_path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    last = len(lines) - 1
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            stats.skipped_lines += 1
            where = "last line, torn by a kill" if number - 1 == last else "damaged line"
            stats.warnings.append(
                f"{jsonl_path.name} line {number} ({where}, {len(line)} characters) skipped: {e}"
            )
            continue
        _add_row(row, columns, stats, f"{jsonl_path.name} line {number}")
    return columns


def _add_row(row: dict[str, Any], columns: dict[str, list[Any]], stats: TimelineStats, where: str) -> None:
    extras = [(k, v) for k, v in row.items() if k not in _KINDS]
    for name, kind in COLUMNS:
        value = row.get(name)
        if value is not None:
            try:
                if kind == "int64":
                    if isinstance(value, float) and not value.is_integer():
                        raise ValueError("not a whole number")
                    value = int(value)
                elif kind == "float64":
                    value = float(value)
                elif not isinstance(value, str):
                    value = json.dumps(value, ensure_ascii=False, default=_json_default)
            except (TypeError, ValueError) as e:
                stats.warnings.append(
                    f"{where}: column {name} value {value!r} is not {kind} ({e}); set to null"
                )
                value = None
        columns[name].append(value)
    if extras:
        # Keys outside the schema are kept, appended to the detail column as key=value.
        text = " ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=_json_default)}" for k, v in extras)
        detail = columns["detail"]
        detail[-1] = f"{detail[-1]} {text}" if detail[-1] else text
    stats.rows += 1


def _table(columns: dict[str, list[Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pydict(columns, schema=timeline_schema())


def _load_table(jsonl_path: Path, stats: TimelineStats) -> pa.Table:
    """Parse the JSON lines into a table: Arrow's own reader when every line is clean (the usual
    case, about ten times faster), else line by line with a warning per damaged line."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    try:
        data = jsonl_path.read_bytes()
    except FileNotFoundError:
        stats.warnings.append(f"{jsonl_path.name}: no such file; the timeline is empty")
        return timeline_schema().empty_table()
    body = data[: data.rfind(b"\n") + 1]
    tail = data[len(body) :]
    torn_warning = None
    if tail.strip():
        try:
            complete = isinstance(json.loads(tail), dict)
        except ValueError as e:
            complete = False
            number = body.count(b"\n") + 1
            torn_warning = (
                f"{jsonl_path.name} line {number} (last line, torn by a kill, {len(tail)} bytes) skipped: {e}"
            )
        if complete:
            return _table(_load_columns(jsonl_path, stats))
    options = pa_json.ParseOptions(explicit_schema=timeline_schema(), unexpected_field_behavior="error")
    try:
        table = (
            pa_json.read_json(pa.BufferReader(body), parse_options=options)
            if body.strip()
            else timeline_schema().empty_table()
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass  # a damaged line, an extra key or a wrong type: the careful path below says which
    else:
        stats.rows = table.num_rows
        if torn_warning is not None:
            stats.skipped_lines += 1
            stats.warnings.append(torn_warning)
        return table.select(list(_COLUMN_NAMES))
    return _table(_load_columns(jsonl_path, stats))


def finalize_timeline(
    jsonl_path: str | os.PathLike[str], parquet_path: str | os.PathLike[str]
) -> TimelineStats:
    """Convert a timeline JSON-lines file into Parquet with the fixed schema.

    Works on the file of a run that was killed as well: a torn last line is skipped with a
    warning in the returned stats. Missing keys become nulls; keys outside the schema are kept in
    ``detail`` as ``key=value``. The Parquet file is written to a temporary name and then moved
    into place, so a reader never sees half a file.
    """
    import pyarrow.parquet as pq

    stats = TimelineStats()
    table = _load_table(Path(jsonl_path), stats)
    target = Path(parquet_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return stats


def read_timeline(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load a timeline as a pandas DataFrame with the fixed columns.

    ``path`` is normally ``timeline.parquet``; a ``.jsonl`` file (the timeline of a run that never
    reached its end) is read too, skipping a torn last line.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        table = _load_table(path, TimelineStats())
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path, schema=timeline_schema())
    return _to_pandas(table)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    # Nullable integers stay integers (a null offset must not turn every offset into a float).
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


_second_cache: tuple[int, str] = (-1, "")


def iso_utc(timestamp: float) -> str:
    """Format a Unix time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-03T10:15:02.123Z``."""
    global _second_cache
    seconds = int(timestamp // 1)
    millis = int((timestamp - seconds) * 1000)
    cached_second, prefix = _second_cache
    if cached_second != seconds:
        # Formatting a datetime costs microseconds; frames arrive many per second, so reuse it.
        prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (seconds, prefix)
    return f"{prefix}.{millis:03d}Z"


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a timeline DataFrame from row dicts in one go (for tests and tools, not per frame)."""
    stats = TimelineStats()
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMN_NAMES}
    for row in rows:
        _add_row(dict(row), columns, stats, "row")
    return _to_pandas(_table(columns))
