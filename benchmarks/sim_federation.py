"""Isolated sites vs computegrid on the same demand, for several seeds (computegrid.sim.federation).

    .venv/bin/python benchmarks/sim_federation.py [--seeds 1,2,3] [--load 0.8] [--pool alibaba-spot]
                                                  [--trace philly] [--data-dir ../shared/data]

Per seed it builds the demand from the trace (docs/simulator.md, "Demand"), runs both worlds and prints
each world's figures and computegrid's reduction against the isolated world; then a table over the seeds,
whether the goal holds on each (idle device-hours and unmet demand both cut by at least half, no
latency-SLO violation), and one JSON line per figure:
{"bench": "sim_federation", "seed": .., "world": .., "metric": .., "value": ..}
(world "reduction" holds computegrid's cut in percent of the isolated figure). Wall times are per world, on
one core; other work on the machine slows them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from computegrid.sim.demand import DemandParams
from computegrid.sim.federation import FederationResult, run_federation
from computegrid.sim.metrics import HEADLINE
from computegrid.sim.pools import load_pool
from computegrid.sim.traces import load_trace
from computegrid.sim.world import WorldProgress

SHORT = {"idle_device_hours_pct": "idle %", "unmet_demand_pct": "unmet %", "mean_wait_s": "mean wait s",
         "p95_wait_s": "p95 wait s", "latency_slo_violations": "SLO viol.", "tenant_cost_per_du_fen": "fen/du",
         "energy_cost_fen": "energy fen"}


def goal_met(result: FederationResult) -> bool:
    """Idle device-hours and unmet demand both cut by at least half, and no latency-SLO violation."""
    idle, unmet = result.reduction_pct("idle_device_hours_pct"), result.reduction_pct("unmet_demand_pct")
    return (idle is not None and idle >= 50 and unmet is not None and unmet >= 50
            and result.worlds["computegrid"].latency_slo_violations == 0)


def _progress(p: WorldProgress) -> None:
    print(f"  {p.world}: sim hour {p.sim_ms / 3_600_000:.0f}, {p.arrived:,}/{p.total:,} arrived, "
          f"{p.running:,} running, {p.waiting:,} waiting, wall {p.wall_s:.0f} s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--load", type=float, default=DemandParams.target_load)
    parser.add_argument("--pool", default="alibaba-spot")
    parser.add_argument("--trace", default="philly")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    trace = load_trace(args.trace, args.data_dir)
    print(f"{trace.name}: {len(trace):,} jobs; python {platform.python_version()} on {platform.machine()}",
          flush=True)
    results: list[FederationResult] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        pool = load_pool(args.pool, args.data_dir)
        result = run_federation(trace, pool, seed=seed, params=replace(DemandParams(), target_load=args.load),
                                progress=None if args.quiet else _progress)
        results.append(result)
        d = result.demand
        print(f"seed {seed}: {len(d):,} jobs ({d.copies} copies), offered load {d.offered_load:.3f}, "
              f"{time.perf_counter() - started:.1f} s (isolated {result.worlds['isolated'].details['wall_s']} s, "
              f"computegrid {result.worlds['computegrid'].details['wall_s']} s)", flush=True)
    header = f"{'seed':>4} {'world':12}" + "".join(f"{SHORT[m]:>13}" for m in HEADLINE)
    print(header)
    for result in results:
        for name, m in result.worlds.items():
            f = m.figures()
            print(f"{result.seed:>4} {name:12}" + "".join(
                f"{f[k]:>13,.2f}" if isinstance(f[k], float) else f"{f[k]:>13,}" for k in HEADLINE))
        cuts = [result.reduction_pct(k) for k in HEADLINE]
        print(f"{result.seed:>4} {'reduction %':12}" + "".join(f"{'' if c is None else f'{c:.1f}':>13}" for c in cuts)
              + f"   goal {'met' if goal_met(result) else 'NOT met'}")
    for result in results:
        for name, m in result.worlds.items():
            for k in HEADLINE:
                print(json.dumps({"bench": "sim_federation", "seed": result.seed, "world": name, "metric": k,
                                  "value": m.figures()[k]}))
        for k in HEADLINE:
            print(json.dumps({"bench": "sim_federation", "seed": result.seed, "world": "reduction", "metric": k,
                              "value": result.reduction_pct(k)}))
        print(json.dumps({"bench": "sim_federation", "seed": result.seed, "world": "computegrid",
                          "metric": "wall_s", "value": result.worlds["computegrid"].details["wall_s"]}))
        print(json.dumps({"bench": "sim_federation", "seed": result.seed, "world": "isolated",
                          "metric": "wall_s", "value": result.worlds["isolated"].details["wall_s"]}))


if __name__ == "__main__":
    main()
