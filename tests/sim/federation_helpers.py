"""Small inputs for the federation tests: a synthetic three-week trace, a small pool over every region,
and hand-made demands on hand-made pools."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from computegrid.core.catalog import default_catalog
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.sim.demand import BATCH, Demand, DemandParams
from computegrid.sim.pools import PoolNode, SimPool, Site, build_pool
from computegrid.sim.regions import default_regions
from computegrid.sim.speed import SpeedModel
from computegrid.sim.traces import Trace

MONDAY_UTC_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
HOUR = 3_600_000


def synthetic_trace(days: int = 21, per_day: int = 40, seed: int = 7) -> Trace:
    """`per_day` jobs a day for `days` days from a Monday: 1-16 GPUs, 5 min to 8 h, four groups."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    arrival = np.sort(rng.integers(0, days * 24 * HOUR, size=n)).astype(np.int64)
    duration = np.clip(np.exp(rng.normal(np.log(HOUR), 1.2, size=n)), 300_000, 8 * HOUR).astype(np.int64)
    gpus = rng.choice([1, 1, 1, 1, 1, 2, 4, 8, 16], size=n).astype(np.int64)
    groups = [f"vc{int(g)}" for g in rng.integers(0, 4, size=n)]
    return Trace(name="synthetic", path=None, arrival_ms=arrival - arrival[0], duration_ms=duration, gpus=gpus,
                 group=groups, line=np.arange(2, n + 2, dtype=np.int64))


def trace_origin(trace: Trace) -> int:
    """The synthetic trace's wall-clock origin: it starts on a Monday, at its first arrival."""
    return MONDAY_UTC_MS


def small_pool() -> SimPool:
    """About 350 devices over all 24 regions: 8-GPU A100 and opaque nodes at hubs, 1- and 4-GPU A10 elsewhere."""
    nodes = ([PoolNode(f"a100-{i}", 96_000, 0, 8, "A100-80G", 80.0) for i in range(24)]
             + [PoolNode(f"opaque-{i}", 96_000, 0, 8, "GPU-series-1", 0.0) for i in range(8)]
             + [PoolNode(f"a10-{i}", 16_000, 0, 1, "A10", 24.0) for i in range(64)]
             + [PoolNode(f"a10x4-{i}", 32_000, 0, 4, "A10", 24.0) for i in range(8)])
    return build_pool("small", "test", nodes)


def write_pool_csv(path: Path) -> Path:
    """`small_pool`'s nodes as an openb node list."""
    pool = small_pool()
    lines = ["sn,cpu_milli,memory_mib,gpu,model"]
    lines += [f"{n.name},{n.cpu_milli},0,{n.devices},{n.model}" for n in pool.nodes]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_trace_csv(path: Path, trace: Trace) -> Path:
    """The trace as a generic CSV with epoch-second timestamps (so its Mondays are Mondays)."""
    lines = ["timestamp,duration,num_gpus,group"]
    lines += [f"{(MONDAY_UTC_MS + int(a)) / 1000:.3f},{int(d) / 1000:.3f},{int(g)},{grp}"
              for a, d, g, grp in zip(trace.arrival_ms, trace.duration_ms, trace.gpus, trace.group, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def two_site_pool(model: str = "A10", regions: tuple[str, str] = ("beijing", "shanghai")) -> SimPool:
    """One node with one device in each of two regions (core sites), node ids 0 and 1."""
    catalog = default_catalog()
    entry = catalog.get(model)
    price = {r.name: r.electricity_fen_per_kwh for r in default_regions()}
    sites = [Site(f"core-{r}", r, "core", price[r]) for r in regions]
    infos = [NodeInfo(node_id=i, site=s.name, region=s.region, tier=s.tier, up=True, cpu_milli=8000, memory_mb=0)
             for i, s in enumerate(sites)]
    devices = [DeviceInfo(node_id=i, index=0, model=entry.model, memory_gb=float(entry.memory_gb))
               for i in range(len(sites))]
    nodes = [PoolNode(f"n{i}", 8000, 0, 1, entry.model, float(entry.memory_gb)) for i in range(len(sites))]
    return SimPool(name="two", source="test", snapshot=PoolSnapshot(infos, devices), nodes=nodes, sites=sites,
                   node_site=sites, opaque_models=())


def hand_demand(pool: SimPool, jobs: list[dict[str, object]], *, window_ms: tuple[int, int]) -> Demand:
    """A demand from explicit jobs: dicts with arrival, duration (ms), gpus, kind, region and optional
    deadline (absolute ms), max_rtt_ms, bid_limit."""
    n = len(jobs)
    allowance = DemandParams().allowance_ms

    def get(job: dict[str, object], key: str, default: object) -> object:
        return job.get(key, default)

    return Demand(
        arrival_ms=[int(str(j["arrival"])) for j in jobs], gpus=[int(str(get(j, "gpus", 1))) for j in jobs],
        trace_duration_ms=[int(str(j["duration"])) for j in jobs],
        kind=[str(get(j, "kind", BATCH)) for j in jobs], workload=[None] * n, tenant=[f"t{i}" for i in range(n)],
        region=[str(j["region"]) for j in jobs],
        deadline_ms=[int(str(get(j, "deadline", int(str(j["arrival"])) + allowance))) for j in jobs],
        max_rtt_ms=[None if get(j, "max_rtt_ms", None) is None else int(str(j["max_rtt_ms"])) for j in jobs],
        bid_limit=[None if get(j, "bid_limit", None) is None else int(str(j["bid_limit"])) for j in jobs],
        copy=[0] * n, line=list(range(n)), window_start_ms=window_ms[0], window_end_ms=window_ms[1],
        span_ms=window_ms[1], params=DemandParams(), speed=SpeedModel([nd.model for nd in pool.nodes]),
        offered_load=0.0, copies=1)
