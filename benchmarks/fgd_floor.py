"""The packing floor of the FGD paper's experiment: the least GPU any policy can leave unallocated.

    .venv/bin/python benchmarks/fgd_floor.py [--seeds 42-51] [--traces default,gpushare40,multigpu50]

For each seed, the pods that have arrived when 100% of the cluster's GPU capacity has (the
protocol's arrival order, computegrid.sim.fgd_protocol.seed_order) go to
computegrid.sim.packing_floor: the fractional pods' shares are packed onto the fewest devices
(an exact integer program), and what that packing wastes is unallocated under every policy.
Prints the floor per seed and its median, then one JSON line per trace. Compare with
`unallocated_pct_at_100` of benchmarks/fgd_paper.py: the distance to the floor is what any policy
could still win. The floor drops some large shares where that pays (their devices then take
whole-device pods); `placed_all` is the waste when every share is placed instead, which shows how
much of a policy's gap is packing and how much is which pods fail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

from computegrid.cli.bench import parse_seeds
from computegrid.core.units import MILLI_PER_DEVICE
from computegrid.sim.fgd_protocol import seed_order
from computegrid.sim.openb import read_nodes, read_pods
from computegrid.sim.packing_floor import packing_floor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"  # ../shared beside the repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--traces", default="default,gpushare40,multigpu50")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    nodes = read_nodes(args.data / "openb_node_list_gpu_node.csv")
    capacity = sum(n.gpus for n in nodes) * MILLI_PER_DEVICE
    rows = []
    for trace in args.traces.split(","):
        pods = read_pods(args.data / f"openb_pod_list_{trace}.csv")
        floors, placed_all = [], []
        started = time.perf_counter()
        for seed in seeds:
            _, order, _ = seed_order(nodes, pods, seed)
            arrived = 0
            shares: Counter[int] = Counter()
            for pod in order:
                if arrived + pod.gpu_milli_total > capacity:
                    break
                arrived += pod.gpu_milli_total
                if pod.num_gpu == 1 and pod.gpu_milli < MILLI_PER_DEVICE:
                    shares[pod.gpu_milli] += 1
            floor = packing_floor(shares, capacity, arrived)
            pct = 100.0 * floor.unallocated_milli / capacity
            floors.append(pct)
            every = packing_floor(shares, capacity, arrived, allow_drop=False)
            placed_all.append(100.0 * every.unallocated_milli / capacity)
            print(f"{trace:11} seed {seed}: floor {pct:.3f}% unallocated, {placed_all[-1]:.3f}% placing every share "
                  f"({floor.devices_for_shares} devices for {sum(shares.values())} shared pods, "
                  f"dropped {floor.dropped_milli} milli, {'optimal' if floor.optimal else 'solver bound'})",
                  flush=True)
        median = statistics.median(floors)
        median_all = statistics.median(placed_all)
        print(f"{trace:11} median floor {median:.3f}%, placing every share {median_all:.3f}% "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
        rows.append({"bench": "fgd_floor", "trace": trace, "seeds": args.seeds,
                     "metric": "floor_unallocated_pct_at_100", "value": round(median, 3)})
        rows.append({"bench": "fgd_floor", "trace": trace, "seeds": args.seeds,
                     "metric": "placed_all_unallocated_pct_at_100", "value": round(median_all, 3)})
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
