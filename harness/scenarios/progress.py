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


def _rates(
    fields: dict[str, float], done: float, total: float
) -> tuple[float, float, float | None, float | None]:
    """blocks per wall second, testbed seconds elapsed, ETA in testbed time and in wall time."""
    wall = max(time.monotonic() - fields.get("wall_start", time.monotonic()), 1e-9)
    virtual = max(fields.get("virtual_now", 0.0) - fields.get("virtual_start", 0.0), 1e-9)
    remaining = total - done
    eta_virtual = remaining / (done / virtual) if done else None
    eta_wall = remaining / (done / wall) if done else None
    return fields.get("blocks", 0) / wall, virtual, eta_virtual, eta_wall


class _RatesColumn(ProgressColumn):
    """blocks/s (wall), and ETA in testbed time and in wall time."""

    def render(self, task: Task) -> Text:
        rate, virtual, eta_virtual, eta_wall = _rates(task.fields, task.completed, task.total or 0)
        return Text(
            f"{rate:5.0f} blk/s  ETA {_clock(eta_virtual)} testbed, {_clock(eta_wall)} wall"
            f"  [testbed {_clock(virtual)}]",
            style="progress.data.speed",
        )


class RichProgress:
    """One rich progress bar per transfer: percent, blocks/s, ETA in testbed time and wall time."""

    def __init__(self, console: Console | None = None) -> None:
        # Robot Framework captures sys.stdout while keywords run; the bars go to the real terminal.
        self.console = console or Console(file=sys.__stderr__)
        self._progress = Progress(
            TextColumn("[bold]{task.description:>8}"),
            BarColumn(bar_width=24),
            TextColumn("{task.percentage:>5.1f}%"),
            _RatesColumn(),
            console=self.console,
            transient=True,
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
        blocks = self._task(task).fields.get("blocks", 0) + 1
        self._progress.update(task, completed=offset, blocks=blocks, virtual_now=virtual_time)

    def _task(self, task_id: TaskID) -> Task:
        # Progress.tasks is a list in display order, not indexed by TaskID once tasks are removed.
        return next(task for task in self._progress.tasks if task.id == task_id)

    def finished(self, device: str, verdict: str) -> None:
        """Close the bar of ``device`` with its verdict."""
        task = self._tasks.pop(device, None)
        if task is not None:
            state = self._task(task)
            rate, virtual, _, _ = _rates(state.fields, state.completed, state.total or 0)
            wall = time.monotonic() - state.fields.get("wall_start", time.monotonic())
            # A finished bar leaves one summary line and goes; only running transfers keep a bar.
            self._progress.remove_task(task)
            self._progress.console.print(
                f"[bold]{device:>8}[/] {verdict}: {int(state.completed)} of {int(state.total or 0)} bytes, "
                f"{state.fields.get('blocks', 0)} blocks in {_clock(virtual)} testbed time, "
                f"{_clock(wall)} wall ({rate:.0f} blocks/s)",
                highlight=False,
            )
        if not self._tasks and self._running:
            self._progress.stop()
            self._running = False
