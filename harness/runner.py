"""``harness run``: validate the plan, run Robot suites on a testbed, then write the reports.

Order matters for evidence: the testbed file is validated before anything is powered; Robot writes
output.xml, log.html and junit.xml; the library has already written the pcap, timeline and run
record as things happened; then index.html is built from that record and last of all manifest.json
hashes every file, so the manifest covers the reports too.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BadInputError
from harness.evidence.manifest import write_manifest
from harness.evidence.record import RunRecord
from harness.report.html import write_html_report
from harness.scenarios.verdicts import Verdict, exit_status
from harness.testbed.loader import load_testbed

DEFAULT_SUITES = ("suites/robot",)
DEFAULT_REPORTS = Path("reports")
# Robot's own return codes at and above this mean it could not run (bad data, bad options).
ROBOT_USAGE_ERROR = 252


@dataclass
class RunResult:
    """What a run left and how it ended."""

    run_dir: Path
    exit_status: int
    record: RunRecord | None
    robot_rc: int


def default_run_dir(base: Path = DEFAULT_REPORTS) -> Path:
    """``reports/<UTC timestamp>``; a suffix keeps two runs in the same second apart."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = base / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{stamp}-{n}"
    return candidate


def resolve_suites(suites: Sequence[str]) -> list[str]:
    """The suites to run; a path that does not exist is bad input."""
    chosen = list(suites) or [s for s in DEFAULT_SUITES if Path(s).exists()]
    if not chosen:
        raise BadInputError(
            "no suite given and no suites/robot folder here; name a .robot file or folder",
            field="SUITE",
            value=str(Path.cwd()),
        )
    for suite in chosen:
        if not Path(suite).exists():
            raise BadInputError("no such suite file or folder", field="SUITE", value=suite)
    return chosen


def point_latest(run_dir: Path) -> None:
    """Make ``<reports>/latest`` a symlink to this run (replaced atomically)."""
    link = run_dir.parent / "latest"
    temp = run_dir.parent / f".latest-{os.getpid()}"
    if temp.is_symlink() or temp.exists():
        temp.unlink()
    temp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(temp, link)


def run_suites(
    suites: Sequence[str],
    *,
    testbed: str,
    out: Path | None,
    seed: int | None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    progress: bool = True,
    console: str = "verbose",
) -> RunResult:
    """Run Robot suites on a testbed and write every report; returns the exit status to use."""
    from robot.run import run as robot_run

    load_testbed(testbed)  # the plan is validated before anything is powered
    chosen = resolve_suites(suites)
    run_dir = (out or default_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "harness run " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    env = {
        "HARNESS_RUN_DIR": str(run_dir),
        "HARNESS_TESTBED": str(Path(testbed).resolve()),
        "HARNESS_PROGRESS": "1" if progress else "0",
        "HARNESS_COMMAND": command,
    }
    if seed is not None:
        env["HARNESS_SEED"] = str(seed)
    saved = {key: os.environ.get(key) for key in (*env, "HARNESS_SEED")}
    os.environ.update(env)
    if seed is None:
        os.environ.pop("HARNESS_SEED", None)
    try:
        rc = robot_run(
            *chosen,
            outputdir=str(run_dir),
            output="output.xml",
            log="log.html",
            report="report.html",
            xunit="junit.xml",
            include=list(include),
            exclude=list(exclude),
            console=console,
            listener=[f"allure_robotframework;{run_dir / 'allure-results'}"],
            stdout=sys.stdout,
            stderr=sys.stderr,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    record_path = run_dir / "run.json"
    record = RunRecord.load(record_path) if record_path.exists() else None
    if record is not None:
        write_html_report(run_dir, record)
    write_manifest(run_dir)
    if out is None:
        point_latest(run_dir)
    return RunResult(run_dir=run_dir, exit_status=_status(record, rc), record=record, robot_rc=rc)


def _status(record: RunRecord | None, robot_rc: int) -> int:
    if robot_rc >= ROBOT_USAGE_ERROR:
        return 3
    if record is None or not record.tests:
        return 2 if robot_rc else 0
    verdicts = [
        Verdict(t.verdict) if t.verdict in Verdict.__members__ else Verdict.ERROR for t in record.tests
    ]
    return exit_status(verdicts, bad_input=record.bad_input)
