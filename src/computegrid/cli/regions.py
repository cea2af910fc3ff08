"""Regions and round trips from the terminal: list them, and (operators) set or clear a measured round trip.

Register with `regions.register(app)` in cli/main.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from computegrid.cli.common import call as _call
from computegrid.cli.common import client as _client
from computegrid.cli.common import out

regions_app = typer.Typer(help="Regions and the round trips the scheduler routes `max_rtt_ms` by.",
                          invoke_without_command=True)
rtt_app = typer.Typer(help="Round trips between regions (ms): list, or (operators) set and clear.",
                      invoke_without_command=True)
regions_app.add_typer(rtt_app, name="rtt")


def _regions_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title="Regions")
    for col in ("NAME", "TIER", "KIND", "PLACE", "SITES"):
        table.add_column(col)
    for r in items:
        table.add_row(r["name"], r["tier"] or "-", r["kind"], r["place"] or "-", str(r["sites"]))
    return table


def _rtt_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title="Round trips (ms)")
    for col in ("FROM", "TO", "RTT MS", "ESTIMATE MS", "SOURCE"):
        table.add_column(col)
    for r in items:
        table.add_row(r["region_a"], r["region_b"], "-" if r["rtt_ms"] is None else str(r["rtt_ms"]),
                      "-" if r["estimate_ms"] is None else str(r["estimate_ms"]), r["source"] or "-")
    return table


@regions_app.callback()
def regions_list(ctx: typer.Context) -> None:
    """List regions with their tier (built in, added by an operator, or named by a site)."""
    if ctx.invoked_subcommand is None:
        out.print(_regions_table(_call(_client().regions)))


@rtt_app.callback()
def rtt_list(ctx: typer.Context,
             from_region: Annotated[str | None, typer.Option("--from", help="Only from this region, nearest first.")]
             = None) -> None:
    """List round trips: from one region, or every pair."""
    if ctx.invoked_subcommand is None:
        out.print(_rtt_table(_call(_client().region_rtts, from_region)))


@rtt_app.command("set")
def rtt_set(region_a: str, region_b: str, rtt_ms: int,
            source: Annotated[str, typer.Option(help="How and by whom it was measured.")] = "",
            new_region: Annotated[bool, typer.Option("--new-region", help="Allow a region no one knows yet.")]
            = False) -> None:
    """Operator: override or add the measured round trip between two regions (1 to 10000 ms)."""
    out.print(_rtt_table([_call(_client().set_region_rtt, region_a, region_b, rtt_ms, source=source,
                                new_region=new_region)]))


@rtt_app.command("clear")
def rtt_clear(region_a: str, region_b: str) -> None:
    """Operator: drop an override; the pair goes back to the built-in estimate."""
    out.print(_rtt_table([_call(_client().clear_region_rtt, region_a, region_b)]))


def register(app: typer.Typer) -> None:
    """Add the regions commands to the main CLI."""
    app.add_typer(regions_app, name="regions")
