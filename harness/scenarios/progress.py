"""Progress of long transfers, shown to the person waiting (rich bars) or to nobody (tests)."""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text


class ProgressSink(Protocol):
    """Receives transfer progress; the CLI shows it, tests ignore it."""

    def started(self, device: str, total: int, virtual_time: float) -> None:
        """A transfer of ``total`` bytes to ``device`` began."""

    def advanced(self, device: str, offset: int, virtual_time: float) -> None:
        """``device`` has now received ``offset`` bytes."""

    def finished(self, device: str, verdict: str) -> None:
        """The transfer ended with ``verdict``."""


class NoProgress:
    """A progress sink that shows nothing."""

    def started(self, device: str, total: int, virtual_time: float) -> None:
        """Ignore."""

    def advanced(self, device: str, offset: int, virtual_time: float) -> None:
        """Ignore."""

    def finished(self, device: str, verdict: str) -> None:
        """Ignore."""


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--:--"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _RatesColumn(ProgressColumn):
    """blocks/s (wall), and ETA in testbed time and in wall time."""

    def render(self, task: Task) -> Text:
        fields = task.fields
        blocks = fields.get("blocks", 0)
        wall = max(time.monotonic() - fields.get("wall_start", time.monotonic()), 1e-9)
        virtual = max(fields.get("virtual_now", 0.0) - fields.get("virtual_start", 0.0), 1e-9)
        done = task.completed
        remaining = (task.total or 0) - done
        eta_virtual = remaining / (done / virtual) if done else None
        eta_wall = remaining / (done / wall) if done else None
        return Text(
            f"{blocks / wall:7.0f} blocks/s  ETA testbed {_clock(eta_virtual)}  wall {_clock(eta_wall)}"
            f"  (testbed {_clock(virtual)})",
            style="progress.data.speed",
        )


class RichProgress:
    """One rich progress bar per transfer: percent, blocks/s, ETA in testbed time and wall time."""

    def __init__(self, console: Console | None = None) -> None:
        # Robot Framework captures sys.stdout while keywords run; the bars go to the real terminal.
        self.console = console or Console(file=sys.__stderr__)
        self._progress = Progress(
            TextColumn("[bold]{task.description:>8}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            _RatesColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._running = False

    def started(self, device: str, total: int, virtual_time: float) -> None:
        """Open a bar for the transfer to ``device``."""
        if not self._running:
            self._progress.start()
            self._running = True
        self._tasks[device] = self._progress.add_task(
            device,
            total=total,
            blocks=0,
            wall_start=time.monotonic(),
            virtual_start=virtual_time,
            virtual_now=virtual_time,
        )

    def advanced(self, device: str, offset: int, virtual_time: float) -> None:
        """Move the bar of ``device`` to ``offset`` bytes."""
        task = self._tasks.get(device)
        if task is None:
            return
        blocks = self._progress.tasks[task].fields.get("blocks", 0) + 1
        self._progress.update(task, completed=offset, blocks=blocks, virtual_now=virtual_time)

    def finished(self, device: str, verdict: str) -> None:
        """Close the bar of ``device`` with its verdict."""
        task = self._tasks.pop(device, None)
        if task is not None:
            self._progress.update(task, description=f"{device} {verdict}")
            self._progress.stop_task(task)
        if not self._tasks and self._running:
            self._progress.stop()
            self._running = False
