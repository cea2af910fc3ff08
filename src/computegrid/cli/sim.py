"""`computegrid sim`: the discrete-event simulator (sim/) from the terminal. No server, no database."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from computegrid.cli import common
from computegrid.cli.common import err, out
from computegrid.core.placement import policy_names
from computegrid.core.queueing import QUEUE_POLICIES
from computegrid.sim.demand import Demand, DemandParams
from computegrid.sim.federation import FederationResult, run_federation
from computegrid.sim.metrics import HEADLINE
from computegrid.sim.pools import PoolError, load_pool
from computegrid.sim.replay import BACKFILL_SCAN, ReplayProgress, ReplayResult, replay
from computegrid.sim.report import write_json, write_report
from computegrid.sim.traces import TraceError, compress, load_trace
from computegrid.sim.world import WorldProgress

sim_app = typer.Typer(help="Simulate the grid: replay job traces on pools built from real inventories.",
                      no_args_is_help=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Bad input to a simulation is a usage error: exit 2."""
    return common.fail(message, code)


def _progress(p: ReplayProgress) -> None:
    err.print(f"replay: {p.done:,}/{p.total:,} jobs done, sim day {p.sim_ms / 86_400_000:.1f}, "
              f"{p.running:,} running, {p.waiting:,} waiting, wall {p.wall_s:.1f} s", highlight=False)


def _duration(seconds: float) -> str:
    return f"{seconds / 86400:,.1f} days" if seconds >= 86400 else f"{seconds:,.1f} s"


def result_table(r: ReplayResult) -> Table:
    """The replay's figures as a two-column table."""
    table = Table(title=f"replay: {r.trace} on {r.pool} ({r.devices:,} devices), queue {r.queue}, "
                        f"policy {r.policy}, seed {r.seed}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    skipped = ", ".join(f"{k}: {v:,}" for k, v in r.skipped_rows.items())
    unplaceable = "; ".join(f"{k}: {v:,}" for k, v in r.unplaceable.items())
    rows = [
        ("jobs", f"{r.jobs:,}" + (f" (trace rows skipped: {skipped})" if skipped else "")),
        ("completed", f"{r.completed:,}"),
        ("unplaceable", f"{r.unplaceable_total:,}" + (f" ({unplaceable})" if unplaceable else "")),
        ("average JCT", f"{r.avg_jct_s:,.1f} s"),
        ("mean wait", f"{r.mean_wait_s:,.1f} s"),
        ("p95 wait", f"{r.p95_wait_s:,.1f} s"),
        ("utilisation", f"{r.utilisation_pct:.2f} % (makespan {_duration(r.makespan_s)})"),
        ("device-hours", f"{r.device_hours:,.1f}"),
        ("du (rated FP16 PFLOP/s-hours)", f"{float(r.du):,.1f}"),
    ]
    if r.unmetered_device_hours:
        rows.append(("device-hours without du (unknown FP16)",
                     ", ".join(f"{m} {h:,.1f}" for m, h in r.unmetered_device_hours.items())))
    if r.queue in ("fair", "multifactor"):
        rows.append(("backfilled jobs", f"{r.backfilled:,}"))
    rows += [("events", f"{r.events:,}"), ("wall time", f"{r.wall_s:.2f} s ({r.events / r.wall_s:,.0f} events/s)"
                                           if r.wall_s > 0 else "0 s")]
    for name, value in rows:
        table.add_row(name, value)
    return table


@sim_app.command("replay")
def replay_command(
    trace: Annotated[str, typer.Option(help="philly, or a CSV with columns timestamp,duration,num_gpus[,group].")] =
        "philly",
    pool: Annotated[str, typer.Option(help="alibaba-spot, openb, or a node-list CSV "
                                           "(sn,cpu_milli,memory_mib,gpu,model).")] = "alibaba-spot",
    queue: Annotated[str, typer.Option(help="Queueing policy: fifo, sjf, fair (fair share with backfill), or "
                                           "multifactor (Slurm-style priority with backfill).")] =
        "fifo",
    policy: Annotated[str, typer.Option(help="Placement policy (see core/placement).")] = "best-fit",
    seed: Annotated[int, typer.Option(help="Seed of the run's random generator.")] = 1,
    speedup: Annotated[float, typer.Option(help="Bring arrivals this many times closer (load a pool harder).")] = 1.0,
    backfill_scan: Annotated[int, typer.Option(min=0, help="Backfill candidates tried per pass.")] = BACKFILL_SCAN,
    data_dir: Annotated[Path | None, typer.Option(help="The shared data folder (default: ../shared/data).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures here as JSON.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Replay a job trace on one pool with a queueing and a placement policy; print JCT, waits and utilisation."""
    if queue not in QUEUE_POLICIES:
        raise fail(f"unknown queue policy {queue!r}; known: {', '.join(QUEUE_POLICIES)}")
    if policy not in policy_names():
        raise fail(f"unknown placement policy {policy!r}; known: {', '.join(policy_names())}")
    if not speedup > 0:
        raise fail(f"--speedup must be above 0, got {speedup}")
    if json_out is not None and not json_out.parent.is_dir():
        raise fail(f"{json_out}: its folder {json_out.parent} does not exist")
    try:
        jobs = compress(load_trace(trace, data_dir), speedup)
        nodes = load_pool(pool, data_dir)
    except (TraceError, PoolError) as exc:
        raise fail(str(exc)) from exc
    if not quiet:
        err.print(f"replay: {len(jobs):,} jobs from {jobs.path} on {nodes.name} ({len(nodes.nodes):,} nodes, "
                  f"{nodes.devices:,} devices, {len(nodes.sites)} sites)", highlight=False)
    result = replay(jobs, nodes, queue=queue, policy=policy, seed=seed, backfill_scan=backfill_scan,
                    progress=None if quiet else _progress)
    out.print(result_table(result))
    if json_out is not None:
        figures = result.figures()
        figures["trace_file"], figures["pool_file"], figures["speedup"] = str(jobs.path), nodes.source, speedup
        try:
            json_out.write_text(json.dumps(figures, indent=1) + "\n")
        except OSError as exc:
            raise fail(f"{json_out}: cannot write ({exc.strerror or exc})") from exc
        out.print(f"wrote {json_out}")


def _world_progress(p: WorldProgress) -> None:
    err.print(f"federation: {p.world}: sim hour {p.sim_ms / 3_600_000:,.1f}, {p.arrived:,}/{p.total:,} jobs arrived, "
              f"{p.running:,} running, {p.waiting:,} waiting, wall {p.wall_s:.1f} s", highlight=False)


def federation_table(r: FederationResult) -> Table:
    """Both worlds' headline figures side by side, with computegrid's reduction against isolated."""
    d = r.demand
    table = Table(title=f"federation: {r.trace} on {r.pool} ({r.devices:,} devices, {r.sites} sites), seed {r.seed}; "
                        f"{len(d):,} jobs, offered load {d.offered_load:.3f}")
    table.add_column("figure")
    for name in r.worlds:
        table.add_column(name, justify="right")
    table.add_column("computegrid vs isolated", justify="right")
    figures = {name: m.figures() for name, m in r.worlds.items()}
    for metric in HEADLINE:
        cells = []
        for name in r.worlds:
            value = figures[name][metric]
            cells.append(f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
        cut = r.reduction_pct(metric) if "isolated" in r.worlds and "computegrid" in r.worlds else None
        table.add_row(metric, *cells, "" if cut is None else f"{-cut:+.1f} %")
    return table


@sim_app.command("federation")
def federation_command(
    pool: Annotated[str, typer.Option(help="alibaba-spot, openb, or a node-list CSV.")] = "alibaba-spot",
    trace: Annotated[str, typer.Option(help="philly, or a CSV with columns timestamp,duration,num_gpus[,group].")] =
        "philly",
    seed: Annotated[int, typer.Option(help="Seed of the demand and of both worlds.")] = 1,
    load: Annotated[float, typer.Option(help="Offered load to build the demand up to (share of the pool).")] =
        DemandParams.target_load,
    data_dir: Annotated[Path | None, typer.Option(help="The shared data folder (default: ../shared/data).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write both worlds' figures here as JSON.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write index.html and PNG plots into this folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Run the isolated world and the computegrid world on the same demand; compare idle capacity, unmet demand,
    waits, latency SLOs, cost per du and energy."""
    if not 0 < load <= 2:
        raise fail(f"--load must be in (0, 2], got {load}")
    for path in (json_out,):
        if path is not None and not path.parent.is_dir():
            raise fail(f"{path}: its folder {path.parent} does not exist")
    if report is not None and report.exists() and not report.is_dir():
        raise fail(f"{report}: exists and is not a folder")
    try:
        jobs = load_trace(trace, data_dir)
        nodes = load_pool(pool, data_dir)
    except (TraceError, PoolError) as exc:
        raise fail(str(exc)) from exc

    def announce(demand: Demand) -> None:
        if not quiet:
            summary = demand.summary()
            err.print(f"federation: {len(demand):,} jobs from {summary['copies']} copies of {jobs.name} "
                      f"({', '.join(f'{k} {v:,}' for k, v in summary['by_kind'].items())}); offered load "
                      f"{demand.offered_load:.3f} of {nodes.devices:,} devices on {nodes.name}", highlight=False)

    try:
        result = run_federation(jobs, nodes, seed=seed, params=replace(DemandParams(), target_load=load),
                                progress=None if quiet else _world_progress, on_demand=announce)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    out.print(federation_table(result))
    try:
        if json_out is not None:
            write_json(result, json_out)
            out.print(f"wrote {json_out}")
        if report is not None:
            written = write_report(result, report)
            out.print(f"wrote {report / 'index.html'} and {len(written) - 1} plots")
    except OSError as exc:
        raise fail(f"cannot write the output ({exc.strerror or exc})") from exc
