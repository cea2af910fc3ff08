"""The federation's figures for one world, exactly as docs/simulator.md defines them.

All figures cover the measured window [window_start, window_end) of the demand (the warm-up day before it
and the tail after it are simulated but not counted):
- `idle_device_hours_pct`: 100 x (capacity device-hours - busy device-hours) / capacity device-hours, where
  capacity = every device of the pool for the window and busy = the device-time held by runs (on-demand or
  spot), clipped to the window.
- `unmet_demand_pct`: over jobs arriving in the window, 100 x the requested device-hours (GPUs x trace
  duration) of jobs that did not start by their deadline (deadline-tolerant jobs) or within one hour of
  arrival (every other job), over all their requested device-hours. A job that never ran counts as unmet.
- `mean_wait_s`, `p95_wait_s`: first start - arrival over the jobs arriving in the window, seconds; a job that
  never started counts with the time it waited until the simulation ended (a lower bound; `waits_censored`
  says how many). p95 by linear interpolation. Time a deadline-tolerant job was deliberately deferred counts.
- `latency_slo_violations`: starts of inference services on a site beyond their RTT limit.
- `tenant_cost_per_du_fen`: what tenants paid for usage in the window over its du: on-demand runs through
  `core.billing.charge_usage` with the site's posted schedule (band by local time), spot runs through
  `SpotIndex.charge_fen` at the clearing price in force. Usage on opaque models has no du and no price; it is
  left out of both and reported as `unpriced_device_hours`.
- `energy_cost_fen`: busy device-hours x device power x the site's electricity price (`pricing`), rounded
  once to whole fen.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from computegrid.core.billing.charges import charge_usage
from computegrid.core.market import MarketClass, SpotIndex
from computegrid.core.metering import UsageInterval
from computegrid.sim.demand import KINDS, MS_PER_HOUR, SIM_EPOCH_MS
from computegrid.sim.pricing import rated_du_per_hour
from computegrid.sim.world import World


@dataclass
class WorldMetrics:
    """The figures of one world (see the module docstring) and the series the report plots."""

    world: str
    idle_device_hours_pct: float
    unmet_demand_pct: float
    mean_wait_s: float
    p95_wait_s: float
    latency_slo_violations: int
    tenant_cost_per_du_fen: float
    energy_cost_fen: int
    details: dict[str, Any]
    series: dict[str, Any] = field(repr=False, default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """The headline figures and details as plain JSON values."""
        return {"idle_device_hours_pct": round(self.idle_device_hours_pct, 3),
                "unmet_demand_pct": round(self.unmet_demand_pct, 3), "mean_wait_s": round(self.mean_wait_s, 1),
                "p95_wait_s": round(self.p95_wait_s, 1), "latency_slo_violations": self.latency_slo_violations,
                "tenant_cost_per_du_fen": round(self.tenant_cost_per_du_fen, 3),
                "energy_cost_fen": self.energy_cost_fen, **self.details}


HEADLINE = ("idle_device_hours_pct", "unmet_demand_pct", "mean_wait_s", "p95_wait_s", "latency_slo_violations",
            "tenant_cost_per_du_fen", "energy_cost_fen")


def _integral_at(starts: np.ndarray, ends: np.ndarray, devices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Busy device-ms accumulated from 0 to each edge (exact: busy devices are constant between events)."""
    if not len(starts):
        return np.zeros(len(edges))
    times = np.concatenate([starts, ends]).astype(np.float64)
    deltas = np.concatenate([devices, -devices]).astype(np.float64)
    order = np.argsort(times, kind="stable")
    times, deltas = times[order], deltas[order]
    level = np.cumsum(deltas)
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(times))])
    out: np.ndarray = np.interp(edges, times, area, left=0.0, right=float(area[-1]))
    return out


def world_metrics(world: World) -> WorldMetrics:
    """The figures of a world that has run."""
    demand, pairs, pricing, catalog = world.demand, world.pairs, world.pricing, world.catalog
    ws, we = demand.window_start_ms, demand.window_end_ms
    job = np.array(world.seg_job, dtype=np.int64)
    start = np.array(world.seg_start, dtype=np.int64)
    end = np.array(world.seg_end, dtype=np.int64)
    pair = np.array(world.seg_pair, dtype=np.int64)
    devices = np.array(world.seg_devices, dtype=np.int64)
    spot = np.array(world.seg_spot, dtype=np.bool_)
    s, e = np.maximum(start, ws), np.minimum(end, we)
    inside = e > s
    held = np.where(inside, (e - s) * devices, 0)
    capacity = world.pool.devices * (we - ws)
    busy = int(held.sum())

    energy = Fraction(0)
    per_pair = np.bincount(pair, weights=held, minlength=len(pairs)) if len(pair) else np.zeros(len(pairs))
    for p in range(len(pairs)):
        if per_pair[p]:
            energy += pricing.energy_fen(pairs.site[p], pairs.model[p], int(per_pair[p]))

    fen, du = Fraction(0), Fraction(0)
    unpriced_ms = 0
    kind_of = np.array([KINDS.index(k) for k in demand.kind], dtype=np.int64)
    fen_by_kind = [Fraction(0)] * len(KINDS)
    du_by_kind = [Fraction(0)] * len(KINDS)
    index = world.market.index if world.market is not None else None
    times = {cls: [pt.at_ms for pt in pts] for cls, pts in index.series.items()} if index is not None else {}
    groups: dict[tuple[int, int, int], list[UsageInterval]] = {}
    for k in np.flatnonzero(inside).tolist():
        p = int(pair[k])
        rate = rated_du_per_hour(pairs.model[p], catalog)
        if rate is None:
            unpriced_ms += int(held[k])
            continue
        kk = int(kind_of[job[k]])
        if spot[k]:
            assert index is not None
            cls = MarketClass(catalog.get(pairs.model[p]).model, pairs.region[p])
            d = int(devices[k])
            lo, hi = SIM_EPOCH_MS + int(s[k]), SIM_EPOCH_MS + int(e[k])
            # the points in force over [lo, hi) only: the same charge, without walking the whole series
            at = times.get(cls, [])
            i, j = max(0, bisect.bisect_right(at, lo) - 1), bisect.bisect_left(at, hi)
            part = SpotIndex({cls: index.series[cls][i:j]} if cls in index.series else {})
            paid = part.charge_fen(cls, devices=d, du_per_device_hour=rate, start_ms=lo, end_ms=hi)
            used = d * rate * Fraction(int(e[k] - s[k]), MS_PER_HOUR)
            fen, du = fen + paid, du + used
            fen_by_kind[kk] += paid
            du_by_kind[kk] += used
        else:
            groups.setdefault((p, int(devices[k]), kk), []).append(
                UsageInterval(pairs.model[p], 1000, SIM_EPOCH_MS + int(s[k]), SIM_EPOCH_MS + int(e[k])))
    for (p, d, kk), intervals in sorted(groups.items()):
        site = pricing.sites[pairs.site[p]]
        charge = charge_usage(intervals, schedule=site.schedule, tier=pairs.tier[p],
                              utc_offset_min=world.offsets[pairs.region[p]], catalog=catalog)
        fen, du = fen + d * charge.exact_fen, du + d * charge.du
        fen_by_kind[kk] += d * charge.exact_fen
        du_by_kind[kk] += d * charge.du

    n = len(demand)
    arrival = np.array(demand.arrival_ms, dtype=np.int64)
    first = np.array(world.first_start, dtype=np.int64)
    deadline = np.array(demand.deadline_ms, dtype=np.int64)
    requested = np.array([demand.gpus[j] * demand.trace_duration_ms[j] for j in range(n)], dtype=np.float64)
    measured = (arrival >= ws) & (arrival < we)
    started = first >= 0
    unmet = measured & (~started | (first > deadline))
    waits = (np.where(started, first, world.end_ms) - arrival)[measured] / 1000.0
    region_names = sorted(set(pairs.region))
    edges = np.arange(0, world.end_ms + MS_PER_HOUR, MS_PER_HOUR, dtype=np.float64)
    region_of_pair = np.array([region_names.index(r) for r in pairs.region], dtype=np.int64)
    seg_region = region_of_pair[pair] if len(pair) else np.zeros(0, dtype=np.int64)
    region_devices = dict.fromkeys(region_names, 0)
    for p in range(len(pairs)):
        region_devices[pairs.region[p]] += pairs.devices[p]
    utilisation: dict[str, list[float]] = {}
    idle_by_region: dict[str, float] = {}
    for i, r in enumerate(region_names):
        mask = seg_region == i
        area = np.diff(_integral_at(start[mask], end[mask], devices[mask], edges))
        utilisation[r] = (100.0 * area / (region_devices[r] * MS_PER_HOUR)).round(3).tolist()
        held_r = float(held[mask].sum())
        idle_by_region[r] = round((region_devices[r] * (we - ws) - held_r) / MS_PER_HOUR, 1)
    index_series: dict[str, list[tuple[int, int]]] = {}
    if index is not None:
        for cls in index.classes():
            index_series[str(cls)] = [(p.at_ms - SIM_EPOCH_MS, p.price_fen_per_du) for p in index.series[cls]]
    total_requested = float(requested[measured].sum())
    details = {
        "capacity_device_hours": round(capacity / MS_PER_HOUR, 1),
        "busy_device_hours": round(busy / MS_PER_HOUR, 1),
        "idle_device_hours": round((capacity - busy) / MS_PER_HOUR, 1),
        "window_jobs": int(measured.sum()), "unmet_jobs": int(unmet.sum()),
        "requested_device_hours": round(total_requested / MS_PER_HOUR, 1),
        "unmet_device_hours": round(float(requested[unmet].sum()) / MS_PER_HOUR, 1),
        "unmet_by_kind_pct": {k: round(100.0 * float(requested[unmet & (kind_of == i)].sum())
                                       / max(1.0, float(requested[measured & (kind_of == i)].sum())), 3)
                              for i, k in enumerate(KINDS)},
        "waits_censored": int((measured & ~started).sum()),
        "mean_wait_by_kind_s": {k: round(float(waits[kind_of[measured] == i].mean()), 1)
                                if (kind_of[measured] == i).any() else None for i, k in enumerate(KINDS)},
        "tenant_cost_fen": round(float(fen)), "du": round(float(du), 3),
        "energy_fen_per_busy_device_hour": round(float(energy) * MS_PER_HOUR / busy, 3) if busy else None,
        "cost_per_du_by_kind_fen": {k: round(float(fen_by_kind[i] / du_by_kind[i]), 3) if du_by_kind[i] else None
                                    for i, k in enumerate(KINDS)},
        "unpriced_device_hours": round(unpriced_ms / MS_PER_HOUR, 1),
        "jobs_started": int(started.sum()), "preemptions": world.preemptions, "deferred_jobs": world.deferred,
        "spot_rounds": world.spot_rounds, "spot_allocations_unplaced": world.spot_unplaced,
        "unplaceable": dict(sorted(world.unplaceable.items())), "events": world.engine.handled,
        "simulated_until_ms": world.end_ms, "wall_s": round(world.wall_s, 2),
    }
    series = {"utilisation_pct_by_region_hourly": utilisation, "idle_device_hours_by_region": idle_by_region,
              "waits_s": waits.tolist(), "spot_index": index_series,
              "cost_per_du_by_kind_fen": details["cost_per_du_by_kind_fen"]}
    return WorldMetrics(
        world=world.config.name,
        idle_device_hours_pct=100.0 * (capacity - busy) / capacity if capacity else 0.0,
        unmet_demand_pct=100.0 * float(requested[unmet].sum()) / total_requested if total_requested else 0.0,
        mean_wait_s=float(waits.mean()) if len(waits) else 0.0,
        p95_wait_s=float(np.percentile(waits, 95)) if len(waits) else 0.0,
        latency_slo_violations=world.latency_violations,
        tenant_cost_per_du_fen=float(fen / du) if du else 0.0,
        energy_cost_fen=round(energy), details=details, series=series)
