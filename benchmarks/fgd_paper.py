"""The FGD paper's comparison, reproduced: six policies + our default on the three openb pod lists.

    .venv/bin/python benchmarks/fgd_paper.py [--seeds 42-51] [--traces default,gpushare40,multigpu50]
                                             [--policies random,dot-product,...,default]
                                             [--gpuspec 10,20,33]

Runs the protocol of ../shared/data/SOURCES.md (computegrid.sim.fgd_protocol) and prints the
allocation ratio at 100% arrived (median of the seeds) next to the paper's
(fgd_paper_alloc_median.csv), then one JSON line per (trace, policy). `--gpuspec P,...` adds, for
each P, the default trace with GPU-type constraints on P% of its GPU pods (`sim.openb.with_gpu_specs`,
trace name `gpuspecP-derived`; the paper has no published figure for these).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from computegrid.cli.bench import parse_seeds
from computegrid.sim.fgd_protocol import run_protocol
from computegrid.sim.openb import OpenbPod, read_nodes, read_pods, with_gpu_specs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"  # ../shared beside the repo
PAPER_NAMES = {"random": "01-Random", "dot-product": "02-DotProd", "gpu-clustering": "03-GpuClustering",
               "gpu-packing": "04-GpuPacking", "best-fit": "05-BestFit", "fgd": "06-FGD"}
POLICIES = [*PAPER_NAMES, "default"]


def paper_values(path: Path) -> dict[tuple[str, str], float]:
    """(trace, paper policy) -> allocation % at 100% arrived."""
    with path.open() as f:
        return {(row["workload"].removeprefix("openb_pod_list_"), row["policy"]):
                float(row["gpu_alloc_pct_median_of_10_seeds"])
                for row in csv.DictReader(f) if row["arrived_pct"] == "100"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--traces", default="default,gpushare40,multigpu50")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--gpuspec", default="", help="comma-separated percentages for derived gpuspec traces")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    paper = paper_values(args.data / "fgd_paper_alloc_median.csv")
    nodes = read_nodes(args.data / "openb_node_list_gpu_node.csv")
    traces: list[tuple[str, list[OpenbPod]]] = [
        (trace, read_pods(args.data / f"openb_pod_list_{trace}.csv")) for trace in args.traces.split(",") if trace]
    for pct in (int(p) for p in args.gpuspec.split(",") if p):
        traces.append((f"gpuspec{pct}-derived",
                       with_gpu_specs(read_pods(args.data / "openb_pod_list_default.csv"), pct, seed=pct)))
    rows = []
    for trace, pods in traces:
        for policy in args.policies.split(","):
            started = time.perf_counter()
            result = run_protocol(nodes, pods, policy, seeds).as_json()
            ours = result["alloc_pct_at"]["100"]
            ref = paper.get((trace, PAPER_NAMES.get(policy, "")))
            rows.append({"bench": "fgd_paper", "trace": trace, "policy": policy, "seeds": args.seeds,
                         "alloc_pct_at_100": ours, "paper_alloc_pct_at_100": ref,
                         "diff_pp": round(ours - ref, 3) if ref is not None else None,
                         "unallocated_pct_at_100": result["unallocated_pct_at_100"],
                         "seconds_per_seed": round((time.perf_counter() - started) / len(seeds), 3),
                         "placements_per_s": result["placements_per_s"]})
            r = rows[-1]
            print(f"{trace:11} {policy:15} ours {ours:6.2f}  paper {ref if ref is not None else '':>7}  "
                  f"diff {r['diff_pp'] if r['diff_pp'] is not None else '':>6}  "
                  f"unallocated {r['unallocated_pct_at_100']:5.2f}%  {r['seconds_per_seed']:.2f} s/seed", flush=True)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
