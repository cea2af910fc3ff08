"""Tables and small formatting helpers for the CLI."""

from __future__ import annotations

from typing import Any

from rich.table import Table

STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "lost": "magenta",
               "running": "cyan", "pending": "dim", "placed": "blue", "starting": "blue"}


def state_text(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="Jobs")
    for col in ("ID", "NAME", "STATE", "SITE", "EXIT", "SUBMITTED", "REASON"):
        table.add_column(col)
    for j in jobs:
        table.add_row(str(j["id"]), j["name"], state_text(j["state"]), j["site"] or "-",
                      "-" if j["exit_code"] is None else str(j["exit_code"]), (j["submitted_at"] or "")[:19],
                      (j["state_reason"] or "")[:60])
    return table


def sites_table(sites: list[dict[str, Any]]) -> Table:
    table = Table(title="Sites")
    for col in ("NAME", "REGION", "TIER", "BACKEND", "POWER (fen/kWh)"):
        table.add_column(col)
    for s in sites:
        table.add_row(s["name"], s["region"], s["tier"], s["backend"], s["electricity_fen_per_kwh"])
    return table


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(title="Nodes")
    for col in ("ID", "SITE", "NODE", "STATE", "CPUS", "MEMORY (GiB)", "DEVICES", "LAST HEARTBEAT"):
        table.add_column(col)
    for n in nodes:
        counts: dict[str, int] = {}
        for d in n["devices"]:
            label = d["model"] + (" (declared)" if d["source"] == "declared" else "")
            counts[label] = counts.get(label, 0) + 1
        devices = ", ".join(f"{c} x {m}" for m, c in counts.items()) or "-"
        table.add_row(str(n["id"]), n["site"], n["name"], n["state"], f"{n['cpu_milli'] / 1000:g}",
                      f"{n['memory_mb'] / 1024:.1f}", devices, (n["last_heartbeat_at"] or "")[:19])
    return table
