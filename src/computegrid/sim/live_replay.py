"""Replay job specs through the simulator exactly as the live control plane would run them.

For the agreement check between the simulator and the live scheduler
(tests/integration/test_sim_matches_live.py): the same nodes, the same job specs, the same arrival times
and run times. Each spec becomes its placement request through the same core calls as
`services.scheduler.Scheduler`: `core.jobs.parse_job_spec`, `PlacementRequest.from_spec`, and, for a
job naming a workload and accepting several models, `core.placement.preference.prefer_cheapest_work` with
each model's cheapest price per du among the pool's priced nodes (`cheapest_model_prices`; the pool here
is one local site that posts no prices, as on `computegrid up`, so the order is measured throughput per
du). Latency limits use the built-in region table (`core.regions.default_rtt`), as the scheduler loads it
when no operator has overridden a round trip. The world then tries pending jobs in arrival order on every
pass and places them with the given policy on the pool snapshot, as `Scheduler.place_pending` does. Usage
is metered through `core.metering.meter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from computegrid.core.catalog import Catalog, default_catalog
from computegrid.core.jobs import parse_job_spec
from computegrid.core.metering import UsageInterval, meter
from computegrid.core.placement import PlacementRequest, get_policy
from computegrid.core.placement.preference import cheapest_model_prices, prefer_cheapest_work
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.core.regions import default_rtt
from computegrid.core.throughput import default_throughputs
from computegrid.sim.demand import BATCH, Demand, DemandParams
from computegrid.sim.pools import PoolNode, SimPool, Site
from computegrid.sim.pricing import site_prices
from computegrid.sim.speed import SpeedModel
from computegrid.sim.world import World, WorldConfig


@dataclass(frozen=True)
class SpecJob:
    """A job as a tenant submits it: when (ms), its spec, and how long it runs once started (ms)."""

    arrival_ms: int
    duration_ms: int
    spec: dict[str, Any]


@dataclass(frozen=True)
class LiveNode:
    """A node as an agent registers it: name, CPU (milli), memory (MiB), and the model of each device."""

    name: str
    cpu_milli: int
    memory_mb: int
    models: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One start: the job (index in the input), when, where ((node name, device indices) per member), du."""

    job: int
    start_ms: int
    end_ms: int
    placement: tuple[tuple[str, tuple[int, ...]], ...]
    du: Fraction


def request_for(spec: dict[str, Any], catalog: Catalog,
                prices_fen_per_du: Mapping[str, int] | None = None) -> PlacementRequest:
    """The placement request the live scheduler derives from a job spec (see the module docstring), with the
    model order from `prices_fen_per_du` (each model's cheapest posted price per du, fen; none: unpriced)."""
    request = PlacementRequest.from_spec(parse_job_spec(spec, catalog))
    return prefer_cheapest_work(request, default_throughputs(), prices_fen_per_du or {}, catalog)


def pool_of(nodes: list[LiveNode], catalog: Catalog, site: Site,
            node_sites: Sequence[Site] | None = None) -> SimPool:
    """A SimPool of `nodes` at `site` (or `node_sites[i]` for node i, when given), node ids 0.. in the given
    order (the live pool orders by node id, that is by registration)."""
    at = list(node_sites) if node_sites is not None else [site] * len(nodes)
    if len(at) != len(nodes):
        raise ValueError(f"{len(nodes)} nodes but {len(at)} node sites")
    infos = [NodeInfo(node_id=i, site=s.name, region=s.region, tier=s.tier, up=True, cpu_milli=n.cpu_milli,
                      memory_mb=n.memory_mb) for i, (n, s) in enumerate(zip(nodes, at, strict=True))]
    devices = [DeviceInfo(node_id=i, index=k, model=catalog.get(m).model,
                          memory_gb=float(catalog.get(m).memory_gb or 0))  # unknown memory: 0 GB, meets no minimum
               for i, n in enumerate(nodes) for k, m in enumerate(n.models)]
    pool_nodes = [PoolNode(name=n.name, cpu_milli=n.cpu_milli, memory_mb=n.memory_mb, devices=len(n.models),
                           model=catalog.get(n.models[0]).model if n.models else "",
                           device_memory_gb=float(catalog.get(n.models[0]).memory_gb or 0) if n.models else 0.0)
                  for n in nodes]
    return SimPool(name="live", source="live", snapshot=PoolSnapshot(infos, devices), nodes=pool_nodes,
                   sites=list(dict.fromkeys(at)) or [site], node_site=at, opaque_models=())


def replay_specs(jobs: list[SpecJob], nodes: list[LiveNode], *, policy: str, typical: bool = False,
                 site: Site | None = None, catalog: Catalog | None = None) -> list[Run]:
    """Every start of `jobs` on `nodes`, in order of start time (then arrival order).

    `typical`: build the policy with the typical-pod mix of these jobs' requests (fragmentation-aware
    policies), as the caller does for the live scheduler's policy; else as `get_policy(policy)` builds it.
    Jobs must come in arrival order (the order they are submitted). Nodes hold one model each.
    """
    catalog = catalog or default_catalog()
    site = site or Site("local", "local", "core", 0.0)
    if any(b.arrival_ms < a.arrival_ms for a, b in zip(jobs, jobs[1:], strict=False)):
        raise ValueError("jobs must be in arrival order")
    pool = pool_of(nodes, catalog, site)
    prices = cheapest_model_prices(pool.snapshot)
    requests: list[PlacementRequest | None] = [request_for(j.spec, catalog, prices) for j in jobs]
    end = (jobs[-1].arrival_ms if jobs else 0) + sum(j.duration_ms for j in jobs) + 1
    n = len(jobs)
    demand = Demand(
        arrival_ms=[j.arrival_ms for j in jobs], gpus=[(r.devices_per_node if r else 0) * (r.nodes if r else 1)
                                                       for r in requests],
        trace_duration_ms=[j.duration_ms for j in jobs], kind=[BATCH] * n, workload=[None] * n,
        tenant=["default"] * n, region=[site.region] * n, deadline_ms=[end] * n, max_rtt_ms=[None] * n,
        bid_limit=[None] * n, copy=[0] * n, line=list(range(n)), window_start_ms=0, window_end_ms=end, span_ms=end,
        params=DemandParams(), speed=SpeedModel([nd.model for nd in pool.nodes if nd.devices] or ["P100-16G"]),
        offered_load=0.0, copies=1, requests=requests)
    config = WorldConfig(name="live", policy=policy, cross_site=True)
    mix = [r for r in requests if r is not None]
    world = World(demand, pool, config, seed=0, pricing=site_prices(pool, catalog), rtt=default_rtt(),
                  utc_offset_min={site.region: 480}, catalog=catalog, keep_starts=True, requests=mix,
                  policy=None if typical else get_policy(policy))
    world.run()
    ends: dict[int, list[int]] = {}
    for job, stop in zip(world.seg_job, world.seg_end, strict=True):
        ends.setdefault(job, []).append(stop)
    runs = []
    attempt: dict[int, int] = {}
    for start, job, allocations in world.starts:
        k = attempt[job] = attempt.get(job, 0) + 1
        stop = sorted(set(ends[job]))[k - 1]
        intervals = [UsageInterval(pool.nodes[a.node_id].model, a.milli_per_device, start, stop)
                     for a in allocations for _ in a.device_indices]
        du = meter(intervals, catalog).du
        runs.append(Run(job, start, stop, tuple((pool.nodes[a.node_id].name, a.device_indices) for a in allocations),
                        du if du is not None else Fraction(0)))
    return runs
