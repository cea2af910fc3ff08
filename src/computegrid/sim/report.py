"""The federation's report: OUT.json (both worlds' figures and the parameters) and DIR/index.html with PNG plots.

Plots (matplotlib, imported only here and lazily, with the non-interactive Agg backend):
- `utilisation.png`: utilisation per region and hour, one heat map per world;
- `idle.png`: idle device-hours per region in the measured window, both worlds;
- `waits.png`: the distribution (CDF) of queueing delays of the window's jobs, both worlds;
- `spot_index.png`: the spot price index, fen per du per class, over time (computegrid);
- `cost_per_du.png`: what tenants paid per du, by job kind, both worlds.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from computegrid.sim.demand import KINDS, MS_PER_HOUR
from computegrid.sim.federation import FederationResult
from computegrid.sim.metrics import HEADLINE

COLOURS = {"isolated": "#c0504d", "computegrid": "#1f77b4"}
LABELS = {
    "idle_device_hours_pct": "idle device-hours (%)",
    "unmet_demand_pct": "unmet demand (% of requested device-hours)",
    "mean_wait_s": "mean wait (s)",
    "p95_wait_s": "p95 wait (s)",
    "latency_slo_violations": "latency-SLO violations",
    "tenant_cost_per_du_fen": "tenant cost (fen per du)",
    "energy_cost_fen": "energy cost (fen)",
}


def write_json(result: FederationResult, path: Path) -> None:
    """OUT.json: `FederationResult.figures()`; raises OSError when it cannot be written."""
    path.write_text(json.dumps(result.figures(), indent=1, default=str) + "\n")


def _save(fig: Any, folder: Path, name: str, title: str) -> tuple[str, str]:
    """Write `fig` to folder/name as PNG and close it; (name, title) for the report."""
    import matplotlib.pyplot as plt  # loaded by _plots, after it chose the Agg backend

    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name, title


def _plots(result: FederationResult, folder: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    worlds = result.worlds
    window = (result.demand.window_start_ms / MS_PER_HOUR, result.demand.window_end_ms / MS_PER_HOUR)

    fig, axes = plt.subplots(len(worlds), 1, figsize=(12, 4.2 * len(worlds)), sharex=True, squeeze=False)
    for ax, (name, m) in zip(axes[:, 0], worlds.items(), strict=True):
        series = m.series["utilisation_pct_by_region_hourly"]
        regions = sorted(series)
        grid = np.array([series[r] for r in regions])
        image = ax.imshow(grid, aspect="auto", vmin=0, vmax=100, cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(regions)), regions, fontsize=7)
        ax.set_title(f"{name}: utilisation per region (%), hourly")
        for x in window:
            ax.axvline(x - 0.5, color="white", linestyle="--", linewidth=1)
        fig.colorbar(image, ax=ax, fraction=0.025)
    axes[-1, 0].set_xlabel("hours from the start (dashed: measured window)")
    out.append(_save(fig, folder, "utilisation.png", "Utilisation over time per region"))

    fig, ax = plt.subplots(figsize=(12, 4.5))
    regions = sorted(next(iter(worlds.values())).series["idle_device_hours_by_region"])
    width = 0.8 / len(worlds)
    for i, (name, m) in enumerate(worlds.items()):
        idle = m.series["idle_device_hours_by_region"]
        ax.bar(np.arange(len(regions)) + i * width, [idle[r] for r in regions], width, label=
               f"{name}: {m.details['idle_device_hours']:,.0f} device-hours ({m.idle_device_hours_pct:.1f}%)",
               color=COLOURS.get(name))
    ax.set_xticks(np.arange(len(regions)) + width * (len(worlds) - 1) / 2, regions, rotation=60, fontsize=8)
    ax.set_ylabel("idle device-hours in the window")
    ax.legend()
    out.append(_save(fig, folder, "idle.png", "Idle device-hours per region"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, m in worlds.items():
        waits = np.sort(np.asarray(m.series["waits_s"], dtype=np.float64))
        if len(waits):
            ax.step(waits + 1, np.arange(1, len(waits) + 1) / len(waits), where="post", color=COLOURS.get(name),
                    label=f"{name}: mean {m.mean_wait_s:,.0f} s, p95 {m.p95_wait_s:,.0f} s")
    ax.set_xscale("log")
    ax.set_xlabel("queueing delay + 1 (s); never started: censored at the end")
    ax.set_ylabel("share of the window's jobs")
    ax.axvline(3601, color="grey", linestyle=":", linewidth=1)
    ax.legend()
    out.append(_save(fig, folder, "waits.png", "Queueing delay distributions"))

    index = {name: m.series["spot_index"] for name, m in worlds.items() if m.series["spot_index"]}
    if index:
        fig, ax = plt.subplots(figsize=(12, 4.5))
        for name, classes in index.items():
            models = sorted({c.split(" in ")[0] for c in classes})
            cmap = plt.get_cmap("tab10")
            for cls, points in sorted(classes.items()):
                model = cls.split(" in ")[0]
                xs = [p[0] / MS_PER_HOUR for p in points] + [points[-1][0] / MS_PER_HOUR]
                ys = [p[1] for p in points] + [points[-1][1]]
                ax.step(xs, ys, where="post", linewidth=0.8, alpha=0.7, color=cmap(models.index(model) % 10))
            for i, model in enumerate(models):
                ax.plot([], [], color=cmap(i % 10), label=f"{model} ({name})")
        ax.set_xlabel("hours from the start")
        ax.set_ylabel("spot price (fen per du), one line per class (model, region)")
        ax.legend(fontsize=8)
        out.append(_save(fig, folder, "spot_index.png", "Spot price index"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    groups = [*KINDS, "all"]
    width = 0.8 / len(worlds)
    for i, (name, m) in enumerate(worlds.items()):
        by_kind = m.series["cost_per_du_by_kind_fen"]
        values = [by_kind.get(k) or 0.0 for k in KINDS] + [m.tenant_cost_per_du_fen]
        ax.bar(np.arange(len(groups)) + i * width, values, width, label=name, color=COLOURS.get(name))
    ax.set_xticks(np.arange(len(groups)) + width * (len(worlds) - 1) / 2, groups)
    ax.set_ylabel("fen per du paid by tenants")
    ax.legend()
    out.append(_save(fig, folder, "cost_per_du.png", "Cost per du paid by tenants"))
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def write_report(result: FederationResult, folder: Path) -> list[Path]:
    """DIR/index.html and its PNGs; returns the files written. Raises OSError when the folder is not writable."""
    folder.mkdir(parents=True, exist_ok=True)
    images = _plots(result, folder)
    figures = result.figures()
    names = list(result.worlds)
    rows = []
    for metric in HEADLINE:
        cells = "".join(f"<td>{_cell(figures['worlds'][w][metric])}</td>" for w in names)
        change = figures["reduction_pct"].get(metric)
        said = "" if change is None else f"{change:.1f}% less" if change >= 0 else f"{-change:.1f}% more"
        rows.append(f"<tr><th>{html.escape(LABELS[metric])}</th>{cells}<td>{said}</td></tr>")
    demand = figures["demand"]
    params = "".join(f"<li>{html.escape(k)}: {_cell(v)}</li>" for k, v in demand["params"].items())
    details = "".join(
        f"<tr><th>{html.escape(k)}</th>" + "".join(f"<td>{_cell(figures['worlds'][w].get(k))}</td>" for w in names)
        + "</tr>" for k in figures["worlds"][names[0]] if k not in HEADLINE)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>computegrid federation: {html.escape(result.trace)} on
{html.escape(result.pool)}, seed {result.seed}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{text-align:left}}img{{max-width:100%}}</style>
</head><body>
<h1>Isolated sites vs computegrid</h1>
<p>Trace <b>{html.escape(result.trace)}</b> on pool <b>{html.escape(result.pool)}</b> ({result.devices:,} devices,
{result.sites} sites), seed {result.seed}. {demand['jobs']:,} jobs from {demand['copies']} seeded copies of the trace;
offered load {demand['offered_load']:.3f} of the pool over the measured window
[{demand['window_start_ms'] / MS_PER_HOUR:g} h, {demand['window_end_ms'] / MS_PER_HOUR:g} h). See docs/simulator.md
for every definition.</p>
<table><tr><th>figure</th>{''.join(f'<th>{html.escape(w)}</th>' for w in names)}<th>computegrid vs isolated</th></tr>
{''.join(rows)}</table>
{''.join(f'<h2>{html.escape(title)}</h2><img src="{name}" alt="{html.escape(title)}">' for name, title in images)}
<h2>Details</h2><table><tr><th>figure</th>{''.join(f'<th>{html.escape(w)}</th>' for w in names)}</tr>{details}</table>
<h2>Demand parameters</h2><ul>{params}</ul>
<p>Jobs by kind: {html.escape(json.dumps(demand['by_kind']))}.
Source weeks: {html.escape(', '.join(demand['source_blocks']))}. Wall time {result.wall_s:.1f} s.</p>
</body></html>
"""
    (folder / "index.html").write_text(body)
    return [folder / "index.html", *(folder / name for name, _ in images)]
