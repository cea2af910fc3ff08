"""Placement at scale: decisions per second and latency per decision on a large synthetic pool.

    .venv/bin/python benchmarks/placement_scale.py [--nodes 10000] [--jobs 100000] [--policies best-fit,fgd,default]

Pool: 10,000 nodes x 8 devices across 500 sites and 20 accelerator models (a site's nodes share
a model). Jobs (seeded): 30% a fraction of one device, then 1, 2, 4 or 8 whole devices; 10% gangs
of 2-4 nodes; 30% accept only 2 of the 20 models. Jobs depart (oldest first) whenever more than
80% of the devices are in use, so the pool stays busy but not full. Latency is the wall time of
one `policy.place` call (one core; allocate/release are timed in placements/s but not in the
latencies). Prints a table, then one JSON line per figure. `--digest` also prints a SHA-256 of every
decision per policy (computed after the timed loop), to check that a speed change left decisions alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import deque

import numpy as np

from computegrid.core.placement import Placement, PlacementRequest, get_policy, typical_pods
from computegrid.core.pool import DeviceInfo, NodeAllocation, NodeInfo, PoolSnapshot

REGIONS = ["jingjinji", "yangtze-delta", "greater-bay", "chengdu-chongqing", "inner-mongolia", "guizhou", "gansu",
           "ningxia"]


def build_pool(nodes: int, sites: int, models: int, devices: int) -> PoolSnapshot:
    infos = [NodeInfo(node_id=i, site=f"site-{i % sites}", region=REGIONS[(i % sites) % len(REGIONS)],
                      tier="core" if (i % sites) % 5 == 0 else "hub", up=True, cpu_milli=128_000,
                      memory_mb=1_048_576) for i in range(nodes)]
    devs = [DeviceInfo(node_id=i, index=k, model=f"M{(i % sites) % models:02d}", memory_gb=80.0)
            for i in range(nodes) for k in range(devices)]
    return PoolSnapshot(infos, devs)


def make_jobs(count: int, models: int, rng: np.random.Generator) -> list[PlacementRequest]:
    jobs = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.30:
            milli = int(rng.choice([250, 500, 750]))
        else:
            milli = 1000 * int(rng.choice([1, 2, 4, 8], p=[0.5, 0.22, 0.14, 0.14]))
        gang = milli >= 1000 and rng.random() < 0.10 / 0.70
        accepted = frozenset(f"M{int(m):02d}" for m in rng.choice(models, size=2, replace=False)) \
            if rng.random() < 0.30 else frozenset()
        jobs.append(PlacementRequest(models=accepted, milli_per_node=milli,
                                     cpu_milli=max(1000, milli * 12), memory_mb=max(1024, milli * 32),
                                     nodes=int(rng.integers(2, 5)) if gang else 1))
    return jobs


def run(policy_name: str, args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(args.seed)
    pool = build_pool(args.nodes, args.sites, args.models, args.devices)
    jobs = make_jobs(args.jobs, args.models, rng)
    options = {"typical": typical_pods(jobs[:10_000])} if policy_name in ("fgd", "default", "fgd-balance") \
        else {}
    policy = get_policy(policy_name, **options)
    capacity = args.nodes * args.devices * 1000
    live: deque[tuple[NodeAllocation, ...]] = deque()
    used = 0
    latencies = np.zeros(len(jobs))
    placed = 0
    outcomes: list[object] = []
    started = time.perf_counter()
    for i, req in enumerate(jobs):
        while used > 0.8 * capacity and live:
            gone = live.popleft()
            pool.release(gone)
            used -= sum(a.milli_per_device * len(a.device_indices) for a in gone)
        t0 = time.perf_counter()
        outcome = policy.place(pool, req)
        latencies[i] = time.perf_counter() - t0
        if args.digest:
            outcomes.append(outcome)
        if isinstance(outcome, Placement):
            pool.allocate(outcome.allocations)
            live.append(outcome.allocations)
            used += sum(a.milli_per_device * len(a.device_indices) for a in outcome.allocations)
            placed += 1
        if args.progress and (i + 1) % 20_000 == 0:
            print(f"  {policy_name}: {i + 1:,} jobs, {time.perf_counter() - started:.1f} s", flush=True)
    elapsed = time.perf_counter() - started
    if args.digest:
        digest = hashlib.sha256("\n".join(repr(o) for o in outcomes).encode()).hexdigest()[:16]
        print(f"  {policy_name}: decisions sha256 {digest}", flush=True)
    return {"placements_per_s": len(jobs) / elapsed, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3), "placed": placed, "elapsed_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--policies", default="best-fit,fgd,default")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--digest", action="store_true", help="print a hash of every decision per policy")
    args = parser.parse_args()
    figures = {}
    for name in args.policies.split(","):
        figures[name] = run(name, args)
        f = figures[name]
        print(f"{name:15} {f['placements_per_s']:9,.0f} placements/s  p50 {f['p50_ms']:.3f} ms  "
              f"p99 {f['p99_ms']:.3f} ms  placed {f['placed']:,}/{args.jobs:,}  ({f['elapsed_s']:.1f} s)", flush=True)
    for name, f in figures.items():
        for metric in ("placements_per_s", "p50_ms", "p99_ms"):
            print(json.dumps({"bench": "placement_scale", "policy": name, "metric": metric,
                              "value": round(f[metric], 4), "nodes": args.nodes, "jobs": args.jobs}))


if __name__ == "__main__":
    main()
