"""The ``harness`` command: run suites, build and inspect OTA images, check testbeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness import __version__
from harness.errors import BadInputError

app = typer.Typer(
    name="harness",
    help="Hardware-in-the-loop OTA test harness for GB smart-metering HAN devices and P2P Alt HAN bridges.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VERDICT_STYLE = {"PASS": "green", "FAIL": "red", "ERROR": "magenta", "INCONCLUSIVE": "yellow"}


def fail_bad_input(exc: BadInputError) -> typer.Exit:
    """Print one paragraph naming file, field and value, and give exit status 3."""
    Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(3)


@app.command()
def run(
    suites: Annotated[
        list[str] | None,
        typer.Argument(
            help="Robot suite files or folders to run (default: suites/robot).", show_default=False
        ),
    ] = None,
    testbed: Annotated[
        str | None,
        typer.Option(
            "--testbed",
            "-t",
            help="Testbed file (default: the packaged testbeds/emulated.yaml).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Run folder to write (default: reports/<UTC timestamp>, with reports/latest "
            "pointing at it).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed for the emulated testbed (default: the testbed file's seed); same seed, "
            "same timeline.",
            show_default=False,
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            "-i",
            help="Run only tests with this tag (repeatable; Robot tag patterns).",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-e", help="Skip tests with this tag (repeatable).", show_default=False),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar per transfer.")
    ] = True,
) -> None:
    """Run Robot suites on a testbed and write evidence and reports to the run folder.

    The folder gets index.html (verdicts, transfer summaries, plots), output.xml, log.html,
    report.html, junit.xml, allure-results/, evidence/air.pcap, evidence/images/,
    timeline.parquet, run.json and manifest.json. Exit status: 0 all PASS, 1 some FAIL,
    2 some ERROR or INCONCLUSIVE, 3 bad input.
    """
    from harness.robot.library import default_testbed
    from harness.runner import run_suites

    try:
        result = run_suites(
            suites or [],
            testbed=testbed or default_testbed(),
            out=out,
            seed=seed,
            include=include or [],
            exclude=exclude or [],
            progress=progress,
        )
    except BadInputError as exc:
        raise fail_bad_input(exc) from None
    console = Console(stderr=True)
    if result.record is not None and result.record.tests:
        table = Table(title=f"harness run: {result.record.testbed_name} (seed {result.record.seed})")
        table.add_column("test")
        table.add_column("verdict")
        table.add_column("reason", overflow="fold")
        for test in result.record.tests:
            style = VERDICT_STYLE.get(test.verdict, "white")
            table.add_row(test.name, f"[{style}]{test.verdict}[/]", test.reason)
        console.print(table)
    console.print(f"report: {result.run_dir / 'index.html'}")
    raise typer.Exit(result.exit_status)


@app.command()
def version() -> None:
    """Print the harness version."""
    typer.echo(__version__)


def _mount_subcommands() -> None:
    # Sub-apps live beside what they drive; mounted here so `harness --help` lists them all.
    from harness.ota.cli import app as ota_app
    from harness.testbed.cli import app as testbed_app

    app.add_typer(ota_app, name="ota", help="Build, inspect and verify ZigBee OTA image files.")
    app.add_typer(testbed_app, name="testbed", help="Check testbed files.")


_mount_subcommands()


def main() -> None:
    """Entry point of the ``harness`` console script."""
    app(prog_name="harness")


if __name__ == "__main__":
    main()
