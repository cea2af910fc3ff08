"""The two worlds on the same demand: isolated sites against the computegrid federation.

- **Isolated** (the situation the mission describes): every site serves only its own region's tenants,
  first come first served (the live scheduler's pass with `--queue-policy fifo`, see `world`) with
  `best-fit` placement. No market, no
  time-shifting: interruptible and deadline-tolerant jobs are plain jobs that start as soon as they fit.
- **computegrid**: one grid. Cross-site placement with the `default` placement policy, tier routing for
  inference (core sites within its RTT, see `routes`), training over every site with models ordered by the
  live rule (`core.placement.preference.prefer_cheapest_work` over each model's cheapest posted price at the
  pass), the interruptible market for spot jobs (`spot_market`, `core.market.run_spot_round`, with
  on-demand work preempting spot work), and time-shifting by the live scheduler's rule: a deadline-tolerant
  job waits for the (site, start) where its run costs least on the posted prices (`core.deferral.plan_start`,
  its trace duration as its time limit, starting by its deadline), then is tried at that site first (see
  `world`).

Both worlds get the same pool (each its own copy, everything free), the same demand (`demand`), the same
prices and the same seed. Deterministic per seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from computegrid.core.catalog import default_catalog
from computegrid.sim.demand import Demand, DemandParams, build_demand
from computegrid.sim.metrics import WorldMetrics, world_metrics
from computegrid.sim.pools import SimPool
from computegrid.sim.pricing import Pricing, site_prices, utc_offset_min
from computegrid.sim.regions import Region, default_regions, default_rtt
from computegrid.sim.traces import Trace
from computegrid.sim.world import World, WorldConfig, WorldProgress, fresh_pool

ISOLATED = WorldConfig(name="isolated", policy="best-fit", cross_site=False)
COMPUTEGRID = WorldConfig(name="computegrid", policy="default", cross_site=True, market=True, time_shift=True,
                          model_preference=True)
WORLDS = (ISOLATED, COMPUTEGRID)


@dataclass
class FederationResult:
    """Both worlds' figures on one demand, with the run's parameters."""

    trace: str
    pool: str
    seed: int
    devices: int
    sites: int
    demand: Demand
    pricing: Pricing
    worlds: dict[str, WorldMetrics]
    wall_s: float

    def reduction_pct(self, metric: str, baseline: str = "isolated", world: str = "computegrid") -> float | None:
        """How much `world` cuts `metric` against `baseline`, in percent of the baseline (None at 0)."""
        before = self.worlds[baseline].figures()[metric]
        after = self.worlds[world].figures()[metric]
        return None if not before else round(100.0 * (before - after) / before, 2)

    def figures(self) -> dict[str, Any]:
        """Everything OUT.json holds (see docs/simulator.md)."""
        pricing = {name: {"region": p.site.region, "tier": p.site.tier,
                          "electricity_fen_per_kwh": p.site.electricity_fen_per_kwh,
                          "peak_fen_per_du": p.peak, "spot_floor_fen_per_du": p.floors}
                   for name, p in sorted(self.pricing.sites.items())}
        return {
            "trace": self.trace, "pool": self.pool, "seed": self.seed, "devices": self.devices, "sites": self.sites,
            "demand": self.demand.summary(),
            "worlds": {name: m.figures() for name, m in self.worlds.items()},
            "reduction_pct": {k: self.reduction_pct(k) for k in ("idle_device_hours_pct", "unmet_demand_pct",
                                                                 "mean_wait_s", "p95_wait_s",
                                                                 "tenant_cost_per_du_fen", "energy_cost_fen")},
            "world_configs": {w.name: w.__dict__ for w in WORLDS},
            "prices": pricing, "wall_s": round(self.wall_s, 2),
        }


def run_federation(trace: Trace, pool: SimPool, *, seed: int = 1, params: DemandParams | None = None,
                   regions: list[Region] | None = None, worlds: tuple[WorldConfig, ...] = WORLDS,
                   progress: Callable[[WorldProgress], None] | None = None,
                   on_demand: Callable[[Demand], None] | None = None,
                   origin_ms: int | None = None) -> FederationResult:
    """Build the demand and run each world on it; `on_demand` sees the demand before the worlds run.

    `origin_ms`: the trace's wall-clock start (epoch ms), when its file does not say (see `demand`).
    """
    started = time.perf_counter()
    regions = regions or default_regions()
    catalog = default_catalog()
    pricing = site_prices(pool, catalog)
    demand = build_demand(trace, pool, regions, pricing, seed=seed, params=params, origin_ms=origin_ms)
    if on_demand is not None:
        on_demand(demand)
    offsets = {r.name: utc_offset_min(r.utc_offset) for r in regions}
    rtt = default_rtt()
    out: dict[str, WorldMetrics] = {}
    for config in worlds:
        world = World(demand, fresh_pool(pool), config, seed=seed, pricing=pricing, rtt=rtt, utc_offset_min=offsets,
                      catalog=catalog, progress=progress)
        world.run()
        out[config.name] = world_metrics(world)
    return FederationResult(trace=trace.name, pool=pool.name, seed=seed, devices=pool.devices, sites=len(pool.sites),
                            demand=demand, pricing=pricing, worlds=out, wall_s=time.perf_counter() - started)
