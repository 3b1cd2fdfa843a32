"""The HTML report of a run: ``index.html``, one self-contained page a test-lab engineer reads
instead of the raw log.

It only reads the run record and the run folder (timeline, file list); it never changes
evidence. Plots are drawn with matplotlib (no display needed) and embedded in the page, so the
page can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import jinja2

from harness.evidence.record import VERDICT_ORDER, RunRecord, TransferRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TSHARK_OTA_COMMAND", "VERDICT_COLOURS", "format_version", "write_html_report"]

TSHARK_OTA_COMMAND = (
    "WIRESHARK_CONFIG_DIR=evidence tshark -r evidence/air.pcap -Y 'zbee_zcl && zbee_aps.cluster == 0x0019' "
    "-T fields -e frame.time_relative -e zbee_nwk.dst -e zbee_zcl_general.ota.file.offset "
    "-e zbee_zcl_general.ota.data_size"
)
"""The independent check printed in every report: tshark decoding the OTA fields of the capture."""

MANIFEST_CHECK_COMMAND = "jq -r '.files[] | \"\\(.sha256)  \\(.path)\"' manifest.json | sha256sum -c"
"""Checks every file against manifest.json with standard tools only."""

VERDICT_COLOURS = {
    "PASS": "#1a7f37",
    "FAIL": "#cf222e",
    "ERROR": "#8250df",
    "INCONCLUSIVE": "#6e7781",
    "RUNNING": "#0969da",
}
"""Badge colours: PASS green, FAIL red, ERROR purple, INCONCLUSIVE grey, RUNNING blue."""

_LINKS = (
    ("log.html", "Robot Framework log: every keyword, step by step"),
    ("output.xml", "Robot Framework output (machine-readable)"),
    ("junit.xml", "JUnit XML for CI"),
    ("timeline.parquet", "every frame and event of the run, one row each"),
    ("evidence/air.pcap", "the radio capture; opens in Wireshark"),
    ("manifest.json", "size and SHA-256 of every file in this folder"),
)
_MAX_PLOT_POINTS = 20_000
_MAX_EVENT_LINES = 50
_MAX_EVENT_ROWS = 500
_SECRET_OPTION = re.compile(r"(--?[\w-]*(?:key|secret|password|token)[\w-]*[= ])(\S+)", re.IGNORECASE)


def format_version(version: int) -> str:
    """An OTA file version as dotted bytes and hex, e.g. ``1.1.0.0 (0x01010000)``."""
    v = version & 0xFFFFFFFF
    dotted = ".".join(str((v >> shift) & 0xFF) for shift in (24, 16, 8, 0))
    return f"{dotted} (0x{v:08x})"


def _hms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "—"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _parse_wall(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _wall_seconds(start: str | None, end: str | None) -> float | None:
    a, b = _parse_wall(start), _parse_wall(end)
    if a is None or b is None:
        return None
    if (a.tzinfo is None) != (b.tzinfo is None):
        return None
    return (b - a).total_seconds()


@dataclass
class _TransferView:
    record: TransferRecord
    from_version: str
    to_version: str
    virtual_duration: str
    wall_duration: str
    throughput: str
    plot_uri: str | None
    plot_note: str


def _throughput(t: TransferRecord) -> str:
    if t.ended_virtual_s is None:
        return "—"
    duration = t.ended_virtual_s - t.started_virtual_s
    if duration <= 0:
        return "—"
    delivered = t.image_size if t.verdict == "PASS" else max(t.last_offset, 0)
    return f"{delivered / duration:,.1f}"


def _load_timeline(run_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """The run's timeline, and a note saying where it came from (or why there is none)."""
    from harness.evidence.timeline import read_timeline

    parquet = run_dir / "timeline.parquet"
    jsonl = run_dir / "evidence" / "timeline.jsonl"
    if parquet.is_file():
        source, note = parquet, ""
    elif jsonl.is_file():
        source, note = (
            jsonl,
            "timeline.parquet is missing (the run did not finish); read from timeline.jsonl. ",
        )
    else:
        return None, "No timeline in this run folder, so no plot. "
    try:
        return read_timeline(source), note
    except Exception as e:  # a damaged timeline must not stop the report; say so on the page
        return None, f"The timeline could not be read ({type(e).__name__}: {e}), so no plot. "


def _plot_transfer(rows: pd.DataFrame, events: pd.DataFrame, t: TransferRecord) -> str:
    """An SVG plot of file offset over testbed time, as a data: URI."""
    import numpy as np
    from matplotlib.figure import Figure

    x = rows["virtual_time_s"].to_numpy(dtype=float)
    y = rows["file_offset"].to_numpy(dtype=float)
    if len(x) > _MAX_PLOT_POINTS:
        # Thin evenly but keep every point where the offset went back (a restart or resume).
        keep = np.zeros(len(x), dtype=bool)
        keep[:: math.ceil(len(x) / _MAX_PLOT_POINTS)] = True
        keep[-1] = True
        back = np.flatnonzero(np.diff(y) < 0)
        keep[back] = True
        keep[back + 1] = True
        x, y = x[keep], y[keep]
    fig = Figure(figsize=(8, 3.4), dpi=96, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(
        x, y, drawstyle="steps-post", linewidth=1.2, color=VERDICT_COLOURS["RUNNING"], label="file offset"
    )
    ax.axhline(
        t.image_size, linestyle="--", linewidth=1, color="#57606a", label=f"image size {t.image_size:,} B"
    )
    for i, when in enumerate(events["virtual_time_s"].to_numpy(dtype=float)[:_MAX_EVENT_LINES]):
        ax.axvline(
            when,
            linestyle=":",
            linewidth=1,
            color=VERDICT_COLOURS["FAIL"],
            label="harness event" if i == 0 else None,
        )
    ax.set_xlabel("testbed time (s)")
    ax.set_ylabel("file offset (bytes)")
    ax.set_ylim(bottom=0, top=max(t.image_size, float(y.max()) if len(y) else 0) * 1.05 or 1)
    ax.set_title(
        f"{t.device}: {format_version(t.from_version)} → {format_version(t.to_version)}", fontsize=10
    )
    ax.grid(True, linewidth=0.4, alpha=0.5)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _transfer_views(
    record: RunRecord, timeline: pd.DataFrame | None, source_note: str
) -> list[_TransferView]:
    responses = events = None
    if timeline is not None:
        mask = (timeline["zcl_command"] == "Image Block Response").fillna(False) & timeline[
            "file_offset"
        ].notna()
        responses = timeline.loc[mask.astype(bool)]
        events = timeline.loc[(timeline["kind"] == "event").fillna(False).astype(bool)]
    views = []
    for t in record.transfers:
        plot_uri, note = None, source_note
        if responses is not None and events is not None:
            end = t.ended_virtual_s if t.ended_virtual_s is not None else math.inf
            rows = responses[responses["destination"] == t.device]
            last_hop = rows[rows["hop"].fillna("").str.endswith(f"→{t.device}")]
            if len(last_hop):
                # In a multi-hop network each block is captured once per hop: plot its arrival.
                rows = last_hop
            rows = rows[(rows["virtual_time_s"] >= t.started_virtual_s) & (rows["virtual_time_s"] <= end)]
            marks = events[
                (events["destination"] == t.device)
                & (events["virtual_time_s"] >= t.started_virtual_s)
                & (events["virtual_time_s"] <= end)
            ]
            if len(rows):
                plot_uri = _plot_transfer(rows.sort_values("virtual_time_s", kind="stable"), marks, t)
            else:
                note += f"No Image Block Response to {t.device} in the timeline during this transfer."
        virtual = None if t.ended_virtual_s is None else t.ended_virtual_s - t.started_virtual_s
        views.append(
            _TransferView(
                record=t,
                from_version=format_version(t.from_version),
                to_version=format_version(t.to_version),
                virtual_duration=_hms(virtual),
                wall_duration=_hms(_wall_seconds(t.started_wall, t.ended_wall)),
                throughput=_throughput(t),
                plot_uri=plot_uri,
                plot_note=note.strip(),
            )
        )
    return views


def _event_rows(timeline: pd.DataFrame | None) -> tuple[list[dict[str, str]], int]:
    """The harness events of the timeline (at most a few hundred) and how many there are."""
    if timeline is None:
        return [], 0
    events = timeline.loc[(timeline["kind"] == "event").fillna(False).astype(bool)]
    rows = [
        {
            "time": _text(row.virtual_time_s, "{:,.3f}"),
            "source": _text(row.source),
            "destination": _text(row.destination),
            "detail": _text(row.detail),
        }
        for row in events.head(_MAX_EVENT_ROWS).itertuples(index=False)
    ]
    return rows, len(events)


def _text(value: object, fmt: str = "{}") -> str:
    import pandas as pd

    return "" if value is None or pd.isna(value) else fmt.format(value)


def _local_href(path: str) -> str | None:
    """``path`` if it is a plain relative path inside the run folder, else None (shown unlinked)."""
    pure = PurePosixPath(path)
    if not path or ":" in path or pure.is_absolute() or ".." in pure.parts:
        return None
    return path


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_href"] = _local_href
    return env


def _context(run_dir: Path, record: RunRecord) -> dict[str, Any]:
    counts = {v: 0 for v in VERDICT_ORDER}
    for test in record.tests:
        counts[test.verdict if test.verdict in counts else "INCONCLUSIVE"] += 1
    links = [
        {
            "href": name,
            "description": description,
            "present": (run_dir / name).exists() or name == "manifest.json",
        }
        for name, description in _LINKS
    ]
    timeline, timeline_note = _load_timeline(run_dir)
    events, event_count = _event_rows(timeline)
    serial = sorted(
        p.relative_to(run_dir).as_posix() for p in (run_dir / "evidence" / "serial").glob("*.log")
    )
    return {
        "run": record,
        "overall": record.overall_verdict(),
        "counts": counts,
        "colours": VERDICT_COLOURS,
        "command": _SECRET_OPTION.sub(r"\1«redacted»", record.command),
        "run_duration": _hms(_wall_seconds(record.started_wall, record.ended_wall)),
        "transfers": _transfer_views(record, timeline, timeline_note),
        "events": events,
        "event_count": event_count,
        "links": links,
        "serial_logs": serial,
        "tshark_command": TSHARK_OTA_COMMAND,
        "manifest_command": MANIFEST_CHECK_COMMAND,
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def write_html_report(run_dir: str | os.PathLike[str], record: RunRecord) -> Path:
    """Write ``index.html`` for the run in ``run_dir`` and return its path.

    Reads the record, the timeline (``timeline.parquet``, or ``evidence/timeline.jsonl`` if the
    run never finished) and the folder's file list. The page is written under a temporary name
    and renamed, so an old report is replaced only by a complete new one.
    """
    root = Path(run_dir)
    html = _environment().get_template("index.html.j2").render(**_context(root, record))
    target = root / "index.html"
    tmp = root / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    return target
