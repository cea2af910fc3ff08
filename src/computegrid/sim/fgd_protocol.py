"""The FGD paper's experiment (Weng et al., ATC '23), as ../shared/data/SOURCES.md describes it.

Per seed: one numpy Generator seeded with the seed drives the run. Nodes are put in a random
order (ties between node scores go to the first), the pods are sorted by name then shuffled,
and copies drawn uniformly with replacement from all pods are appended until the next copy
would bring the arrived GPU demand past 130% of the cluster's GPU capacity. Pods are placed
one by one; none departs and a failed one is never retried. After each pod the allocated
milli-GPU is logged; the value at k% arrived is the mean allocation ratio over the pods whose
arrived demand rounds to k% (the neighbours k +- 1 when none does), as the paper's analysis
script computes it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from computegrid.core.placement import Placement, get_policy, typical_pods
from computegrid.core.placement.base import PlacementRequest
from computegrid.sim.openb import OpenbNode, OpenbPod, build_pool, pod_request

MAX_ARRIVED_PCT = 130
#: policies whose constructor takes the typical-pod mix, and those that take the run's Generator
TAKES_TYPICAL = {"fgd", "fgd-balance", "default"}
TAKES_RNG = {"random"}


@dataclass
class SeedRun:
    seed: int
    alloc_pct_at: dict[int, float]
    pods: int
    placed: int
    placing_s: float
    elapsed_s: float


@dataclass
class ProtocolResult:
    policy: str
    seeds: list[int]
    runs: list[SeedRun] = field(default_factory=list)

    def alloc_pct_at(self) -> dict[int, float]:
        """Median across seeds of the allocation ratio (%) at each arrived % (0..130)."""
        keys = sorted({k for run in self.runs for k in run.alloc_pct_at})
        return {k: round(statistics.median(run.alloc_pct_at[k] for run in self.runs if k in run.alloc_pct_at), 3)
                for k in keys}

    def as_json(self) -> dict[str, Any]:
        """The OUT.json object of `computegrid bench fgd`."""
        median = self.alloc_pct_at()
        pods = sum(r.pods for r in self.runs)
        placing = sum(r.placing_s for r in self.runs)
        return {
            "policy": self.policy,
            "seeds": self.seeds,
            "alloc_pct_at": {str(k): v for k, v in median.items()},
            "unallocated_pct_at_100": round(100.0 - median[100], 3) if 100 in median else None,
            "elapsed_s": round(sum(r.elapsed_s for r in self.runs), 3),
            "placements_per_s": round(pods / placing, 1) if placing else None,
            "per_seed": [{"seed": r.seed, "alloc_pct_at_100": r.alloc_pct_at.get(100), "pods": r.pods,
                          "placed": r.placed, "elapsed_s": round(r.elapsed_s, 3)} for r in self.runs],
        }


def arrival_order(pods: Sequence[OpenbPod], capacity_milli: int, rng: np.random.Generator) -> list[OpenbPod]:
    """The pods sorted by name and shuffled, then copies until 130% of `capacity_milli` would be passed."""
    ordered = sorted(pods, key=lambda p: p.name)
    order = [ordered[i] for i in rng.permutation(len(ordered))]
    arrived = sum(p.gpu_milli_total for p in order)
    limit = capacity_milli * MAX_ARRIVED_PCT // 100
    while True:
        copy = ordered[int(rng.integers(len(ordered)))]
        if arrived + copy.gpu_milli_total > limit:
            break
        order.append(copy)
        arrived += copy.gpu_milli_total
    return order


def discretise(arrived: Sequence[int], allocated: Sequence[int], gpus: int) -> dict[int, float]:
    """Mean allocation ratio (%) per rounded arrived % (0..130), as the paper's analysis rounds them.

    arrived, allocated: milli-GPU after each pod; gpus: the cluster's GPU count.
    """
    arrived_pct = np.array([round(a / gpus / 10, 0) for a in arrived])
    alloc_pct = np.array([round(a / gpus / 10, 2) for a in allocated])
    out: dict[int, float] = {}
    for k in range(MAX_ARRIVED_PCT + 1):
        sel = alloc_pct[arrived_pct == k]
        if not len(sel):
            sel = alloc_pct[(arrived_pct >= k - 1) & (arrived_pct <= k + 1)]
        if len(sel):
            out[k] = round(float(sel.mean()), 2)
    return out


def seed_order(nodes: Sequence[OpenbNode], pods: Sequence[OpenbPod],
               seed: int) -> tuple[list[OpenbNode], list[OpenbPod], np.random.Generator]:
    """One seed's node order and pod arrival order, and its Generator (for a policy that draws more)."""
    rng = np.random.default_rng(seed)
    node_order = [nodes[i] for i in rng.permutation(len(nodes))]
    gpus = sum(n.gpus for n in nodes)
    return node_order, arrival_order(pods, gpus * 1000, rng), rng


def run_seed(nodes: Sequence[OpenbNode], pods: Sequence[OpenbPod], policy: str, seed: int,
             mix_pods: Sequence[OpenbPod] | None = None) -> SeedRun:
    """One seed of the protocol; `mix_pods` (default `pods`) builds the typical-pod mix."""
    started = time.perf_counter()
    node_order, order, rng = seed_order(nodes, pods, seed)
    pool = build_pool(node_order)
    gpus = sum(n.gpus for n in nodes)
    options: dict[str, Any] = {}
    if policy in TAKES_TYPICAL:
        options["typical"] = typical_pods(pod_request(p) for p in (mix_pods or pods))
    if policy in TAKES_RNG:
        options["rng"] = rng
    placer = get_policy(policy, **options)
    requests: dict[OpenbPod, PlacementRequest] = {}
    arrived: list[int] = []
    allocated: list[int] = []
    total_arrived = total_allocated = placed = 0
    placing_started = time.perf_counter()
    for pod in order:
        req = requests.get(pod)
        if req is None:
            req = requests[pod] = pod_request(pod)
        total_arrived += pod.gpu_milli_total
        outcome = placer.place(pool, req)
        if isinstance(outcome, Placement):
            pool.allocate(outcome.allocations)
            total_allocated += pod.gpu_milli_total
            placed += 1
        arrived.append(total_arrived)
        allocated.append(total_allocated)
    placing_s = time.perf_counter() - placing_started
    curve = discretise(arrived, allocated, gpus)
    return SeedRun(seed, curve, len(order), placed, placing_s, time.perf_counter() - started)


def run_protocol(nodes: Sequence[OpenbNode], pods: Sequence[OpenbPod], policy: str, seeds: Sequence[int],
                 progress: Callable[[str], None] | None = None) -> ProtocolResult:
    """Every seed of the protocol for one policy; `progress` gets one line per seed."""
    result = ProtocolResult(policy=policy, seeds=list(seeds))
    for i, seed in enumerate(seeds, start=1):
        run = run_seed(nodes, pods, policy, seed)
        result.runs.append(run)
        if progress is not None:
            progress(f"[{i}/{len(seeds)}] {policy} seed {seed}: alloc {run.alloc_pct_at.get(100, float('nan')):.2f}% "
                     f"at 100% arrived, {run.placed}/{run.pods} placed, {run.elapsed_s:.2f} s "
                     f"({run.pods / run.placing_s:,.0f} placements/s)")
    return result
