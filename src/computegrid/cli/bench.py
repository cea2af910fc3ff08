"""`computegrid bench`: reproducible benchmarks that run core directly (no API server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from computegrid.core.placement import policy_names
from computegrid.sim.fgd_protocol import run_protocol
from computegrid.sim.openb import read_nodes, read_pods

bench_app = typer.Typer(help="Run benchmarks against core's placement policies.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def parse_seeds(text: str) -> list[int]:
    """'42-51' or '42,43,50' (or a mix) to a list of seeds; raises typer.BadParameter when malformed."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise typer.BadParameter(f"seeds must look like 42-51 or 42,43 (got {part!r})")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise typer.BadParameter(f"the seed range {part} ends before it starts")
        seeds.extend(range(first, last + 1))
    return seeds


@bench_app.command("fgd")
def fgd(
    nodes: Annotated[Path, typer.Option("--nodes", help="openb node list CSV (GPU nodes).", exists=True,
                                        dir_okay=False, readable=True)],
    pods: Annotated[Path, typer.Option("--pods", help="openb pod list CSV.", exists=True, dir_okay=False,
                                       readable=True)],
    policy: Annotated[str, typer.Option("--policy", help="Placement policy name.")] = "fgd",
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds: 42-51 or 42,43.")] = "42-51",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result object here.")] = None,
) -> None:
    """The FGD paper's experiment (ATC '23): allocation ratio vs arrived GPU demand, median over seeds."""
    if policy not in policy_names():
        err.print(f"[red]error:[/] unknown policy {policy!r}; known: {', '.join(policy_names())}")
        raise typer.Exit(2)
    seed_list = parse_seeds(seeds)
    try:
        node_list, pod_list = read_nodes(nodes), read_pods(pods)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    gpu_nodes = [n for n in node_list if n.gpus > 0]
    out.print(f"{policy}: {len(gpu_nodes)} GPU nodes ({sum(n.gpus for n in gpu_nodes)} GPUs), "
              f"{len(pod_list)} pods from {pods.name}, seeds {seed_list[0]}..{seed_list[-1]}")
    result = run_protocol(gpu_nodes, pod_list, policy, seed_list, progress=out.print)
    summary = result.as_json()
    summary["nodes_csv"], summary["pods_csv"] = str(nodes), str(pods)
    out.print(f"{policy}: allocation at 100% arrived {summary['alloc_pct_at'].get('100')}% (median), "
              f"unallocated {summary['unallocated_pct_at_100']}%, {summary['elapsed_s']} s, "
              f"{summary['placements_per_s']} placements/s")
    if json_out is not None:
        json_out.write_text(json.dumps(summary, indent=1) + "\n")
        out.print(f"wrote {json_out}")
