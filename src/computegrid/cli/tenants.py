"""Tenants from the terminal: list them, show one, and (operators) set their scheduling limits.

Register with `tenants.register(app)` in cli/main.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from computegrid.cli.common import call as _call
from computegrid.cli.common import client as _client
from computegrid.cli.common import out

tenants_app = typer.Typer(help="Tenants and their scheduling limits (priority classes, fair share).",
                          invoke_without_command=True)


def _tenants_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title="Tenants")
    for col in ("ID", "NAME", "PRIORITY CLASSES", "FAIR SHARE"):
        table.add_column(col)
    for t in items:
        table.add_row(str(t["id"]), t["name"], ",".join(t["priority_classes"]), str(t["fair_share"]))
    return table


@tenants_app.callback()
def tenants_list(ctx: typer.Context) -> None:
    """Operator: list tenants with their limits."""
    if ctx.invoked_subcommand is None:
        out.print(_tenants_table(_call(_client().tenants)))


@tenants_app.command("show")
def tenants_show(name: str) -> None:
    """One tenant's limits (your own, or any for operators)."""
    out.print(_tenants_table([_call(_client().tenant, name)]))


@tenants_app.command("set")
def tenants_set(
    name: str,
    priority_classes: Annotated[str | None, typer.Option(
        help="Classes its jobs may use, comma-separated, of low, normal, high.")] = None,
    fair_share: Annotated[int | None, typer.Option(help="Fair-share weight, a whole number >= 1.")] = None,
) -> None:
    """Operator: set a tenant's priority classes and/or fair share (options left out keep their value)."""
    classes = None if priority_classes is None else [c.strip() for c in priority_classes.split(",") if c.strip()]
    out.print(_tenants_table([_call(_client().set_tenant_limits, name, priority_classes=classes,
                                    fair_share=fair_share)]))


def register(app: typer.Typer) -> None:
    """Add the tenants commands to the main CLI."""
    app.add_typer(tenants_app, name="tenants")
