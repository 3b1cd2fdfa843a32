"""The harness's exception families; the class of an exception decides the verdict it leads to.

- ``BadInputError``: a file or argument the user gave is wrong (exit status 3, nothing is powered).
- ``DeviceFault``: the device under test did something wrong (verdict FAIL).
- ``BenchError``: the harness or the bench broke: port gone, radio dead (verdict ERROR).
- ``Inconclusive``: the evidence cannot decide, e.g. the budget ran out while the device was
  still progressing (verdict INCONCLUSIVE).
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class BadInputError(HarnessError, ValueError):
    """A user-supplied file or value is wrong; the message names file, field and value."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.value = value
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        what = f"field '{field}' " if field else ""
        got = f" (got {value!r})" if value is not None else ""
        super().__init__(f"{where}{what}{message}{got}".strip())


class DeviceFault(HarnessError, AssertionError):
    """The device under test misbehaved; leads to verdict FAIL."""


class BenchError(HarnessError, RuntimeError):
    """The harness or the bench failed (port, radio, relay, emulator); leads to verdict ERROR."""


class Inconclusive(HarnessError):
    """The evidence cannot decide (e.g. budget spent while still progressing); verdict INCONCLUSIVE."""
