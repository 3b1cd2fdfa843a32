"""Verdicts: PASS, FAIL, ERROR, INCONCLUSIVE, each with its reason and the evidence it rests on."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from harness.errors import BadInputError, BenchError, DeviceFault, Inconclusive


class Verdict(enum.StrEnum):
    """What a check concluded.

    - PASS: the device did what it must.
    - FAIL: the device did wrong (the evidence shows it).
    - ERROR: the harness or the bench broke (port gone, radio dead, bad input); the device is not blamed.
    - INCONCLUSIVE: the evidence cannot decide, e.g. the budget ran out while the device still progressed.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    INCONCLUSIVE = "INCONCLUSIVE"


# Worst first: a run with any ERROR is an ERROR run (its FAILs may be the bench's doing).
SEVERITY = {Verdict.ERROR: 3, Verdict.INCONCLUSIVE: 2, Verdict.FAIL: 1, Verdict.PASS: 0}


@dataclass(frozen=True)
class VerdictResult:
    """A verdict with the reason a person reads and the evidence files it rests on."""

    verdict: Verdict
    reason: str
    evidence: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return f"{self.verdict}: {self.reason}"


def worst(verdicts: list[Verdict]) -> Verdict:
    """The verdict that decides a group (ERROR > INCONCLUSIVE > FAIL > PASS); PASS for none."""
    return max(verdicts, key=SEVERITY.__getitem__, default=Verdict.PASS)


def classify(exc: BaseException) -> Verdict:
    """The verdict an exception leads to: its class decides (as OpenHTF's failure_exceptions)."""
    if isinstance(exc, DeviceFault):
        return Verdict.FAIL
    if isinstance(exc, Inconclusive):
        return Verdict.INCONCLUSIVE
    if isinstance(exc, (BenchError, BadInputError)):
        return Verdict.ERROR
    if isinstance(exc, AssertionError):
        return Verdict.FAIL
    return Verdict.ERROR


def exit_status(verdicts: list[Verdict], *, bad_input: bool = False) -> int:
    """Exit status of ``harness run``: 0 all PASS, 1 some FAIL, 2 some ERROR/INCONCLUSIVE, 3 bad input."""
    if bad_input:
        return 3
    if any(v in (Verdict.ERROR, Verdict.INCONCLUSIVE) for v in verdicts):
        return 2
    if any(v is Verdict.FAIL for v in verdicts):
        return 1
    return 0
