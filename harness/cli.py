"""The ``harness`` command: run suites, build and inspect OTA images, check testbeds."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="harness",
    help="Hardware-in-the-loop OTA test harness for GB smart-metering HAN devices and P2P Alt HAN bridges.",
    no_args_is_help=True,
    add_completion=False,
)


def _mount_subcommands() -> None:
    # Sub-apps live beside what they drive; imported here so `harness --help` lists them all.
    from harness.ota.cli import app as ota_app
    from harness.testbed.cli import app as testbed_app

    app.add_typer(ota_app, name="ota")
    app.add_typer(testbed_app, name="testbed")


def main() -> None:
    """Entry point of the ``harness`` console script."""
    _mount_subcommands()
    app()
