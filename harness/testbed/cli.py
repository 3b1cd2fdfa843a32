"""``harness testbed``: check testbed files before anything is powered, and serve emulated ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from harness.errors import BadInputError
from harness.testbed.loader import load_testbed, testbed_summary
from harness.testbed.model import TestbedSpec, format_duration, parse_duration
from harness.testbed.starter import serve_testbed

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


_UP_HELP = (
    "Run an emulated testbed as a process and print the URL of every device's control port.\n\n"
    "Each emulated device serves a JSON-lines console (docs/control-port.md) on a TCP port the OS "
    "picks (open it with pyserial as socket://HOST:PORT, or with nc), and on a pty with --pty. "
    "Devices are powered on at start and run on the real clock until Ctrl-C (or --for). The device "
    "the harness's hub would play (radio.plays) is not started: without a hub the others run as a "
    "premises whose CH is switched off; with radio type none the CH is an emulated device under test "
    "and is started too, with its CH commands. With --json the ports are printed as one JSON object on "
    "one line, for scripts."
)


@app.command(help=_UP_HELP)
def up(
    file: Annotated[
        Path, typer.Argument(help="The emulated testbed YAML file, e.g. testbeds/emulated.yaml.")
    ],
    host: Annotated[str, typer.Option(help="Address the TCP ports listen on.")] = "127.0.0.1",
    pty: Annotated[
        bool, typer.Option("--pty", help="Also open a pty per device (printed after the URL).")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the testbed's).")] = None,
    run_for: Annotated[
        str | None,
        typer.Option("--for", help="Stop after this long (e.g. 30s, 5m); default: until Ctrl-C."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ports as one JSON line.")] = False,
) -> None:
    """Serve an emulated testbed's control ports until Ctrl-C (exit status 3 if the file is wrong)."""
    try:
        spec = load_testbed(file)
        duration = _duration_option(run_for)
    except BadInputError as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        asyncio.run(_serve(spec, host=host, pty=pty, seed=seed, duration=duration, as_json=as_json))
    except BadInputError as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        pass


async def _serve(
    spec: TestbedSpec, *, host: str, pty: bool, seed: int | None, duration: float | None, as_json: bool
) -> None:
    loop = asyncio.get_running_loop()
    served = await serve_testbed(spec, loop, host=host, pty=pty, seed=seed)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        served.power_on_all()
        if as_json:
            typer.echo(json.dumps({"testbed": spec.name, "ports": served.urls}))
        else:
            typer.echo(f"testbed {spec.name}: {len(served.urls)} emulated devices up (Ctrl-C stops them)")
            for name, urls in served.urls.items():
                typer.echo(f"{name:8} {'  '.join(urls)}")
        sys.stdout.flush()
        if duration is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
    finally:
        served.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _duration_option(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BadInputError(str(exc), field="--for", value=text) from None
