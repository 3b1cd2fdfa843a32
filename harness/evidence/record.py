"""The run record: the one summary of a run that every report (HTML, JUnit, Allure) reads.

It holds what ran (testbed, seed, command), each test's verdict with its reason and evidence,
and each firmware transfer. It is saved as JSON, temp-file-then-rename, so a reader sees either
the previous complete record or the new one, never half of it.

Verdicts (DESIGN.md principle 5): ``PASS``; ``FAIL`` (the device did wrong); ``ERROR`` (the
harness or the bench broke); ``INCONCLUSIVE`` (the evidence cannot decide). A transfer that is
still going when the record is saved says ``RUNNING``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.errors import BadInputError

__all__ = [
    "RECORD_FILE",
    "VERDICTS",
    "VERDICT_ORDER",
    "RunRecord",
    "TestRecord",
    "TransferRecord",
    "overall_verdict",
    "write_json_atomic",
]

RECORD_FILE = "run.json"
"""Where in the run folder the run record is kept."""

VERDICTS = ("PASS", "FAIL", "ERROR", "INCONCLUSIVE")
"""The four verdicts a test can end with."""

VERDICT_ORDER = ("PASS", "FAIL", "INCONCLUSIVE", "ERROR")
"""Verdicts from best to worst; a run's overall verdict is its worst test's.

ERROR outranks everything because the bench itself broke, so no other verdict of the run can be
fully trusted; INCONCLUSIVE outranks FAIL because part of the run could not be judged at all.
This matches the exit status of ``harness run`` (0 all PASS, 1 some FAIL, 2 some ERROR or
INCONCLUSIVE). Counts per verdict are always shown next to it, so a FAIL is never hidden.
"""

_RECORD_VERSION = 1
_T = TypeVar("_T")


def overall_verdict(verdicts: Iterable[str]) -> str:
    """The worst of ``verdicts`` in :data:`VERDICT_ORDER`; anything unknown or unfinished
    (e.g. ``RUNNING``) counts as INCONCLUSIVE, and no verdicts at all is INCONCLUSIVE too."""
    worst = -1
    for v in verdicts:
        rank = VERDICT_ORDER.index(v) if v in VERDICT_ORDER else VERDICT_ORDER.index("INCONCLUSIVE")
        worst = max(worst, rank)
    return VERDICT_ORDER[worst] if worst >= 0 else "INCONCLUSIVE"


def _build(cls: type[_T], data: object, where: str) -> _T:
    if not isinstance(data, dict):
        raise BadInputError(f"expected a JSON object, found {type(data).__name__}", field=where)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}  # type: ignore[arg-type]
    missing = [name for name in required if name not in data]
    if missing:
        raise BadInputError(f"missing {', '.join(sorted(missing))}", field=where)
    # Unknown keys are ignored so an older harness can still read a newer record.
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TransferRecord:
    """One firmware transfer to one device, as the harness saw it.

    ``image_file`` is relative to the run folder (e.g. ``evidence/images/B2-0x01010000.zigbee``).
    Versions are the 32-bit OTA file versions. Virtual times are testbed seconds; wall times are
    ISO 8601 UTC. ``ended_*`` stay None while the transfer is running.
    """

    device: str
    image_file: str
    image_sha256: str
    image_size: int
    from_version: int
    to_version: int
    block_size: int
    blocks: int
    retries: int
    started_virtual_s: float
    ended_virtual_s: float | None
    started_wall: str
    ended_wall: str | None
    last_offset: int
    verdict: str
    reason: str


@dataclass
class TestRecord:
    """One test's outcome: its verdict, why, and the evidence files (relative paths) it rests on."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name

    name: str
    suite: str
    verdict: str
    reason: str
    started_wall: str
    ended_wall: str | None
    evidence: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything a report needs to know about one run of the harness."""

    run_id: str
    harness_version: str
    testbed_name: str
    testbed_file: str
    testbed_sha256: str
    seed: int
    started_wall: str
    ended_wall: str | None
    command: str
    tests: list[TestRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)
    bad_input: bool = False
    """True when a step was refused for bad input (exit status 3): a file, option or device name."""
    testbeds_used: list[str] = field(default_factory=list)
    """Every testbed started in the run, as 'name (file, sha256 prefix)', in order of first use."""

    def overall_verdict(self) -> str:
        """The run's verdict: the worst test verdict (see :data:`VERDICT_ORDER`).

        A run without tests is judged on its transfers; with neither it is INCONCLUSIVE.
        """
        if self.tests:
            return overall_verdict(t.verdict for t in self.tests)
        return overall_verdict(t.verdict for t in self.transfers)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON-ready data."""
        data = asdict(self)
        data["record_version"] = _RECORD_VERSION
        return data

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunRecord:
        """Rebuild a record from :meth:`to_json` output; a missing field raises ``BadInputError``."""
        if not isinstance(d, dict):
            raise BadInputError(f"expected a JSON object, found {type(d).__name__}", field="run record")
        data = dict(d)
        tests = data.get("tests", [])
        transfers = data.get("transfers", [])
        if not isinstance(tests, list) or not isinstance(transfers, list):
            raise BadInputError("tests and transfers must be lists", field="run record")
        data["tests"] = [_build(TestRecord, t, f"tests[{i}]") for i, t in enumerate(tests)]
        data["transfers"] = [_build(TransferRecord, t, f"transfers[{i}]") for i, t in enumerate(transfers)]
        return _build(cls, data, "run record")

    def save(self, path: str | os.PathLike[str], *, redact: Callable[[str], str] | None = None) -> Path:
        """Write the record as JSON to ``path`` atomically (temporary file, then rename).

        ``redact`` rewrites every string in the record before it is written (the recorder's key
        redaction, so a reason or command line quoting a network key never lands in run.json).
        """
        data = self.to_json()
        if redact is not None:
            data = _redact_strings(data, redact)
        return write_json_atomic(Path(path), data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read a record saved by :meth:`save`; a damaged file raises ``BadInputError`` naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BadInputError(f"not valid JSON: {e}", file=str(path)) from e
        try:
            return cls.from_json(data)
        except BadInputError as e:
            raise BadInputError(e.reason, file=str(path), field=e.field) from e
        except TypeError as e:
            raise BadInputError(str(e), file=str(path)) from e


def utc_now() -> str:
    """Now, as the ISO 8601 UTC text the record's wall-time fields hold (millisecond precision)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _redact_strings(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_strings(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_strings(v, redact) for v in value]
    return value


def write_json_atomic(path: Path, data: object) -> Path:
    """Write ``data`` as indented JSON to ``path`` via a temporary file in the same folder.

    The temporary file is synced before the rename, so after a crash ``path`` holds either the
    old or the new content in full.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
