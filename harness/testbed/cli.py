"""``harness testbed``: check testbed files before anything is powered."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from harness.errors import BadInputError
from harness.testbed.loader import load_testbed, testbed_summary
from harness.testbed.model import TestbedSpec, format_duration

EXIT_BAD_INPUT = 3

app = typer.Typer(
    help="Testbed files: which devices a premises holds, how they reach each other, and the radio.",
    no_args_is_help=True,
    add_completion=False,
)

_COLUMNS = {
    "name": "Device",
    "type": "Type",
    "role": "Role",
    "power": "Power",
    "nwk": "NWK",
    "ieee": "IEEE",
    "parent": "Parent",
    "p2p_peers": "P2P peers",
    "firmware": "Firmware",
    "hops": "Hops",
}


@app.callback()
def testbed() -> None:
    """Testbed files: which devices a premises holds, how they reach each other, and the radio."""


_CHECK_HELP = (
    "Check a testbed file and show its devices and links.\n\n"
    "Every field is checked (types, ranges, addresses, bridges and their P2P peers, parents, "
    "reachability from the CH). A problem is reported as FILE:LINE with the field and the value, "
    "and the exit status is 3. For bench testbeds, ports are not probed yet: only the file is checked."
)


@app.command(help=_CHECK_HELP)
def check(
    file: Annotated[Path, typer.Argument(help="The testbed YAML file, e.g. testbeds/emulated.yaml.")],
) -> None:
    """Check a testbed file and show its devices and links (exit status 3 if it is wrong)."""
    try:
        spec = load_testbed(file)
        rows = testbed_summary(spec)
    except BadInputError as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console = Console()
    if not console.is_terminal:  # logs and CI: don't squeeze the tables into 80 columns
        console = Console(width=160)
    console.print(_devices_table(spec, rows))
    console.print(_links_table(spec))
    # Plain echo: rich would wrap the long line, and scripts grep for it.
    counts = f"{len(spec.devices)} devices, {len(spec.links)} links"
    typer.echo(f"testbed OK: {spec.name} ({counts}), sha256 {spec.sha256}")


def _devices_table(spec: TestbedSpec, rows: list[dict[str, str]]) -> Table:
    table = Table(
        title=f"Testbed {spec.name}: devices ({spec.kind}, radio {spec.radio.type})", box=box.SIMPLE_HEAD
    )
    for header in _COLUMNS.values():
        table.add_column(header)
    for row in rows:
        table.add_row(*(row[key] for key in _COLUMNS))
    return table


def _links_table(spec: TestbedSpec) -> Table:
    table = Table(title=f"Testbed {spec.name}: links", box=box.SIMPLE_HEAD)
    for header in ("Between", "Medium", "Latency", "Loss"):
        table.add_column(header)
    for link in spec.links:
        table.add_row(
            " <-> ".join(link.between), link.medium, format_duration(link.latency), f"{link.loss:g}"
        )
    return table
