"""Demand for the federation: a seeded, deterministic rule that turns trace jobs (GPUs, duration) into tenants'
jobs in regions, with kinds, workload classes, deadlines, latency limits and bid limits.

The rule, step by step (every draw comes from `numpy.random.default_rng([seed, DEMAND_STREAM])`):

1. **A week of the trace, copied.** The simulated span is `warmup_days + measured_days + tail_days` days
   starting on a Monday at 00:00 local time. Source blocks are the Mondays of the trace at which every day
   of a span-long block has at least `min_day_share` of the trace's busiest day's jobs (so the nearly empty
   first and last weeks of Philly are left out). Copy k draws a block uniformly (with replacement) and a
   jitter uniform in [-`jitter_ms`, +`jitter_ms`]: its jobs keep their offset from the block's Monday
   00:00, plus the jitter, so the copies keep the trace's weekday and time-of-day pattern without arriving
   in lockstep. Copies are added until the *offered load* reaches `target_load` (below).
2. **Tenants and regions.** A tenant is one of the trace's groups (Philly's virtual clusters) in one copy.
   Each tenant sits in one region, drawn with weight `TENANT_TIER_WEIGHTS` by the region's tier: core
   cities 8, edge cities 3, hub regions 1. Why: ARCHITECTURE.md defines `core` as near users and `hub` as
   cheap power; users and firms concentrate in the big cities, and the hubs are data-centre towns
   built for power, not people. The ratio itself is an assumption (66.7% of tenants in core cities, 25%
   in edge cities, 8.3% in hub regions), the same for both worlds.
3. **Local day.** A job keeps its local wall-clock time: submitted at 09:00 on a Tuesday in the trace, it
   arrives at 09:00 on a Tuesday in its tenant's region (UTC offset from data/regions.csv). Philly's
   timestamps carry no zone (the public trace does not say which); the rule needs none, only that one
   trace uses one zone. Every region of data/regions.csv keeps UTC+08:00, so the shift is the same for all.
4. **Kinds.** Each 1-GPU job is an **inference service** with probability `inference_share`: one replica
   on one device with a latency limit `max_rtt_ms` drawn from `INFERENCE_RTT_MS`; its users are in the
   tenant's region, and a placement farther than that RTT is a latency-SLO violation. A service holds its
   device for its trace duration on any model (it runs for a time, not an amount of work). Every other
   job is **training**, with a workload class drawn uniformly from `SpeedModel.workloads` (Gavel's); its
   duration on model M is the trace duration x `SpeedModel.factor(M, w)` (reference P100, see `speed`).
   A training job is **interruptible** (spot) with probability `spot_share`, bidding up to a limit drawn
   uniformly between the lowest spot floor and the median posted peak price of the pool (fen per du);
   else **deadline-tolerant** with probability `deadline_share`, with a start deadline drawn from
   `DEADLINE_HOURS` after arrival; else plain **batch**.
5. **Deadlines.** A job must start by its deadline; jobs without one by `allowance_ms` (1 hour) after
   arrival. The unmet-demand metric counts the device-hours of jobs that did not.

**Offered load** = the mean number of devices the jobs would hold over the measured window if each started
the moment it arrived, over the pool's devices: sum of GPUs x the time its run overlaps the window, with
each training job's duration at the pool's device-weighted mean factor for its workload. It counts jobs
arriving before the window that still run in it. Both worlds get exactly the same jobs.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from computegrid.core.placement import PlacementRequest
from computegrid.sim.pools import SimPool
from computegrid.sim.pricing import Pricing, utc_offset_min
from computegrid.sim.regions import Region
from computegrid.sim.speed import SpeedModel
from computegrid.sim.traces import Trace

DEMAND_STREAM = 0x64656D  # "dem": keeps demand draws apart from the engine's generator
MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
#: Monday 2024-01-01 00:00 at UTC+08:00 as epoch ms: sim time 0 (price bands are read in local time from it)
SIM_EPOCH_MS = 1_704_038_400_000
REFERENCE_OFFSET_MIN = 480
TENANT_TIER_WEIGHTS = {"core": 8, "edge": 3, "hub": 1}
INFERENCE_RTT_MS = (10, 20, 30)
DEADLINE_HOURS = (8, 12, 24)

INFERENCE, BATCH, DEADLINE, SPOT = "inference", "batch", "deadline", "spot"
KINDS = (INFERENCE, BATCH, DEADLINE, SPOT)


@dataclass(frozen=True)
class DemandParams:
    """The knobs of the demand rule (see the module docstring); times in ms, shares in [0, 1]."""

    target_load: float = 0.8
    warmup_days: int = 1
    measured_days: int = 3
    tail_days: int = 1
    jitter_ms: int = 30 * 60_000
    min_day_share: float = 0.02
    inference_share: float = 0.5
    spot_share: float = 0.3
    deadline_share: float = 0.3
    allowance_ms: int = MS_PER_HOUR
    max_copies: int = 2000

    @property
    def span_days(self) -> int:
        return self.warmup_days + self.measured_days + self.tail_days


@dataclass
class Demand:
    """Jobs sorted by arrival (sim ms from `SIM_EPOCH_MS`), one entry per job in every list."""

    arrival_ms: list[int]
    gpus: list[int]
    trace_duration_ms: list[int]
    kind: list[str]
    workload: list[str | None]
    tenant: list[str]
    region: list[str]
    deadline_ms: list[int]
    max_rtt_ms: list[int | None]
    bid_limit: list[int | None]
    copy: list[int]
    line: list[int]
    window_start_ms: int
    window_end_ms: int
    span_ms: int
    params: DemandParams
    speed: SpeedModel
    offered_load: float
    copies: int
    source_blocks: list[str] = field(default_factory=list)
    trace_name: str = ""
    #: per job, a placement request to use as it is (instead of the world's routing), or None
    requests: list[PlacementRequest | None] | None = None

    def __len__(self) -> int:
        return len(self.arrival_ms)

    def requested_device_ms(self, job: int) -> int:
        """What the job asks for: GPUs x its trace duration (device-ms on the reference model)."""
        return self.gpus[job] * self.trace_duration_ms[job]

    def in_window(self, job: int) -> bool:
        """Whether the job arrives in the measured window (the jobs the metrics count)."""
        return self.window_start_ms <= self.arrival_ms[job] < self.window_end_ms

    def summary(self) -> dict[str, Any]:
        """Plain JSON figures: parameters, load factor, copies and counts by kind."""
        kinds = {k: sum(1 for x in self.kind if x == k) for k in KINDS}
        return {"trace": self.trace_name, "jobs": len(self), "copies": self.copies,
                "offered_load": round(self.offered_load, 4), "by_kind": kinds,
                "window_start_ms": self.window_start_ms, "window_end_ms": self.window_end_ms,
                "span_ms": self.span_ms, "sim_epoch_ms": SIM_EPOCH_MS, "reference_model": self.speed.reference,
                "source_blocks": sorted(set(self.source_blocks)), "params": asdict(self.params),
                "tenant_tier_weights": TENANT_TIER_WEIGHTS, "inference_rtt_ms": list(INFERENCE_RTT_MS),
                "deadline_hours": list(DEADLINE_HOURS)}


def trace_origin_ms(trace: Trace) -> int:
    """Wall-clock epoch ms of the trace's first arrival (naive stamps read as UTC wall clock); 0 without a file."""
    if trace.path is None or not len(trace):
        return 0
    want = int(trace.line[0])
    with trace.path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader)]
        at = header.index("timestamp")
        for row in reader:
            if reader.line_num == want:
                text = row[at].strip()
                try:
                    return round(float(text) * 1000)
                except ValueError:
                    stamp = dt.datetime.fromisoformat(text)
                    if stamp.tzinfo is None:
                        stamp = stamp.replace(tzinfo=dt.UTC)
                    return round(stamp.timestamp() * 1000)
    raise ValueError(f"{trace.path}: line {want} not found")


def source_blocks(wall_ms: np.ndarray, span_days: int, min_day_share: float) -> list[int]:
    """Epoch-ms Mondays 00:00 (wall clock) that start a span of `span_days` busy days (see the docstring)."""
    day = wall_ms // MS_PER_DAY
    first = int(day.min())
    counts = np.bincount(day - first)
    busy = counts >= max(1.0, min_day_share * counts.max())
    blocks = []
    for d in range(len(counts) - span_days + 1):
        if (first + d + 3) % 7 == 0 and busy[d:d + span_days].all():  # 1970-01-01 was a Thursday
            blocks.append((first + d) * MS_PER_DAY)
    return blocks


def _mean_factors(speed: SpeedModel, pool: SimPool) -> dict[str, float]:
    devices: dict[str, int] = {}
    for node in pool.nodes:
        if node.devices:
            devices[node.model] = devices.get(node.model, 0) + node.devices
    total = sum(devices.values())
    return {w: sum(n * speed.factor(m, w) for m, n in devices.items()) / total for w in speed.workloads}


def build_demand(trace: Trace, pool: SimPool, regions: list[Region], pricing: Pricing, *, seed: int,
                 params: DemandParams | None = None, speed: SpeedModel | None = None,
                 origin_ms: int | None = None) -> Demand:
    """The demand of the module docstring for `trace` on `pool`; deterministic for a seed.

    Raises ValueError when the trace has no block of `span_days` busy days or the load cannot be reached.
    """
    params = params or DemandParams()
    speed = speed or SpeedModel([n.model for n in pool.nodes if n.devices])
    rng = np.random.default_rng([seed, DEMAND_STREAM])
    origin = trace_origin_ms(trace) if origin_ms is None else origin_ms
    wall = trace.arrival_ms.astype(np.int64) + origin
    span = params.span_days * MS_PER_DAY
    blocks = source_blocks(wall, params.span_days, params.min_day_share)
    if not blocks:
        raise ValueError(f"trace {trace.name}: no Monday starts {params.span_days} busy days in a row")
    window = (params.warmup_days * MS_PER_DAY, (params.warmup_days + params.measured_days) * MS_PER_DAY)
    offsets = {r.name: (utc_offset_min(r.utc_offset) - REFERENCE_OFFSET_MIN) * 60_000 for r in regions}
    names = sorted(offsets)
    weights = np.array([TENANT_TIER_WEIGHTS[r.tier] for r in sorted(regions, key=lambda r: r.name)], dtype=float)
    mean_factor = _mean_factors(speed, pool)
    workloads = speed.workloads
    devices = pool.devices

    parts: list[dict[str, np.ndarray]] = []
    chosen: list[int] = []
    load = 0.0
    while load < params.target_load:
        k = len(parts)
        if k >= params.max_copies:
            raise ValueError(f"offered load {load:.3f} below {params.target_load} after {k} copies")
        block = blocks[int(rng.integers(len(blocks)))]
        jitter = int(rng.integers(-params.jitter_ms, params.jitter_ms + 1))
        sel = np.flatnonzero((wall >= block) & (wall < block + span))
        groups = sorted({trace.group[i] for i in sel.tolist()})
        region_of = dict(zip(groups, rng.choice(len(names), size=len(groups), p=weights / weights.sum()).tolist(),
                             strict=True))
        region = np.array([region_of[trace.group[i]] for i in sel.tolist()], dtype=np.int64)
        shift = np.array([offsets[names[r]] for r in region.tolist()], dtype=np.int64)
        arrival = wall[sel] - block + jitter - shift
        n = len(sel)
        gpus = trace.gpus[sel]
        is_inference = (gpus == 1) & (rng.random(n) < params.inference_share)
        u_spot, u_deadline = rng.random(n), rng.random(n)
        kind = np.where(is_inference, 0, np.where(u_spot < params.spot_share, 3,
                                                  np.where(u_deadline < params.deadline_share, 2, 1)))
        workload = rng.integers(len(workloads), size=n)
        rtt = rng.integers(len(INFERENCE_RTT_MS), size=n)
        hours = rng.integers(len(DEADLINE_HOURS), size=n)
        u_bid = rng.random(n)
        keep = (arrival >= 0) & (arrival < span)
        part = {"arrival": arrival, "gpus": gpus, "duration": trace.duration_ms[sel], "kind": kind,
                "workload": workload, "rtt": rtt, "hours": hours, "u_bid": u_bid, "region": region,
                "line": trace.line[sel], "group": np.array([trace.group[i] for i in sel.tolist()], dtype=object)}
        part = {key: value[keep] for key, value in part.items()}
        part["copy"] = np.full(int(keep.sum()), k, dtype=np.int64)
        parts.append(part)
        chosen.append(block)
        factor = np.array([1.0 if kd == 0 else mean_factor[workloads[w]]
                           for kd, w in zip(part["kind"].tolist(), part["workload"].tolist(), strict=True)])
        start = part["arrival"].astype(np.float64)
        end = start + part["duration"] * factor
        overlap = np.clip(np.minimum(end, window[1]) - np.maximum(start, window[0]), 0, None)
        load += float((overlap * part["gpus"]).sum()) / (devices * (window[1] - window[0]))

    cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.lexsort((cat["line"], cat["copy"], cat["arrival"]))
    cat = {key: value[order] for key, value in cat.items()}
    low, high = pricing.min_floor(), max(pricing.median_peak(), pricing.min_floor())
    kinds = [KINDS[k] for k in cat["kind"].tolist()]
    arrivals = cat["arrival"].tolist()
    deadline = [a + (DEADLINE_HOURS[h] * MS_PER_HOUR if k == DEADLINE else params.allowance_ms)
                for a, k, h in zip(arrivals, kinds, cat["hours"].tolist(), strict=True)]
    return Demand(
        arrival_ms=arrivals, gpus=cat["gpus"].tolist(), trace_duration_ms=cat["duration"].tolist(), kind=kinds,
        workload=[None if k == INFERENCE else workloads[w] for k, w in zip(kinds, cat["workload"].tolist(),
                                                                           strict=True)],
        tenant=[f"t{c}-{g}" for c, g in zip(cat["copy"].tolist(), cat["group"].tolist(), strict=True)],
        region=[names[r] for r in cat["region"].tolist()], deadline_ms=deadline,
        max_rtt_ms=[INFERENCE_RTT_MS[r] if k == INFERENCE else None for k, r in zip(kinds, cat["rtt"].tolist(),
                                                                                    strict=True)],
        bid_limit=[low + int(u * (high - low)) if k == SPOT else None
                   for k, u in zip(kinds, cat["u_bid"].tolist(), strict=True)],
        copy=cat["copy"].tolist(), line=cat["line"].tolist(), window_start_ms=window[0], window_end_ms=window[1],
        span_ms=span, params=params, speed=speed, offered_load=load, copies=len(parts),
        source_blocks=[dt.datetime.fromtimestamp(b / 1000, dt.UTC).date().isoformat() for b in chosen],
        trace_name=trace.name)
