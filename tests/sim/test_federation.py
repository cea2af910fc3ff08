"""The federation simulator: metric definitions on hand-checkable scenarios, the worlds' invariants,
the market world's preemption, and determinism."""

from __future__ import annotations

from dataclasses import replace

import pytest

from computegrid.core.catalog import default_catalog
from computegrid.core.placement.base import rtt_between
from computegrid.sim.demand import DEADLINE, INFERENCE, SPOT, DemandParams, build_demand
from computegrid.sim.federation import COMPUTEGRID, ISOLATED, run_federation
from computegrid.sim.metrics import world_metrics
from computegrid.sim.pricing import site_prices
from computegrid.sim.regions import default_regions, default_rtt
from computegrid.sim.world import World, WorldConfig
from tests.sim.federation_helpers import (
    HOUR,
    MONDAY_UTC_MS,
    hand_demand,
    small_pool,
    synthetic_trace,
    two_site_pool,
)

OFFSETS = {r.name: 480 for r in default_regions()}
GRID_WITHOUT_MARKET = WorldConfig(name="grid", policy="best-fit", cross_site=True)


def run_world(config: WorldConfig, demand_jobs: list[dict[str, object]], *, window: tuple[int, int],
              pool_model: str = "A10") -> World:
    pool = two_site_pool(pool_model)
    demand = hand_demand(pool, demand_jobs, window_ms=window)
    world = World(demand, pool, config, seed=1, pricing=site_prices(pool), rtt=default_rtt(), utc_offset_min=OFFSETS,
                  catalog=default_catalog())
    world.run()
    return world


# Two sites (Beijing, Shanghai) with one A10 each; every tenant in Beijing. Window [0, 10 h).
JOBS: list[dict[str, object]] = [
    {"arrival": 0, "duration": 4 * HOUR, "region": "beijing"},
    {"arrival": 1 * HOUR, "duration": 2 * HOUR, "region": "beijing"},
    {"arrival": 2 * HOUR, "duration": 1 * HOUR, "region": "beijing", "kind": DEADLINE, "deadline": 7 * HOUR},
]


def test_isolated_metrics_by_hand() -> None:
    world = run_world(ISOLATED, JOBS, window=(0, 10 * HOUR))
    m = world_metrics(world)
    # Beijing runs 0-4 h, 4-6 h, 6-7 h; Shanghai idles: busy 7 of 20 device-hours
    assert world.first_start == [0, 4 * HOUR, 6 * HOUR]
    assert m.idle_device_hours_pct == pytest.approx(100 * 13 / 20)
    # job 1 waited 3 h > its 1 h allowance (2 of 7 requested device-hours); job 2 met its 5 h deadline
    assert m.unmet_demand_pct == pytest.approx(100 * 2 / 7)
    assert m.mean_wait_s == pytest.approx((0 + 3 * 3600 + 4 * 3600) / 3)
    assert m.p95_wait_s == pytest.approx(3 * 3600 + 0.9 * 3600)  # linear interpolation between 3 h and 4 h
    assert m.latency_slo_violations == 0
    # energy: 7 h x 150 W x 53.1 fen/kWh = 55.755 fen
    assert m.energy_cost_fen == 56
    # all usage in 00:00-07:00 local, the off-peak band: ceil(2 x 0.15 x 53.1 / 0.125) = 128 fen per du
    assert m.tenant_cost_per_du_fen == pytest.approx(128)
    assert m.details["du"] == pytest.approx(7 * 0.125)


def test_cross_site_serves_the_waiting_job_elsewhere() -> None:
    world = run_world(GRID_WITHOUT_MARKET, JOBS, window=(0, 10 * HOUR))
    m = world_metrics(world)
    assert world.first_start == [0, HOUR, 3 * HOUR]  # the third waits for the second (in Shanghai) to end
    assert m.unmet_demand_pct == 0
    assert m.idle_device_hours_pct == pytest.approx(100 * 13 / 20)  # the same work, in the window
    assert {world.pairs.region[p] for p in world.seg_pair} == {"beijing", "shanghai"}


def test_a_job_that_never_starts_is_unmet_and_its_wait_is_censored() -> None:
    jobs: list[dict[str, object]] = [{"arrival": 0, "duration": 20 * HOUR, "region": "beijing"},
                                     {"arrival": HOUR, "duration": HOUR, "region": "beijing"}]
    world = run_world(ISOLATED, jobs, window=(0, 4 * HOUR))
    m = world_metrics(world)
    assert world.first_start == [0, -1]
    assert world.end_ms == 4 * HOUR  # the window's end: the last deadline (2 h) is earlier
    assert m.unmet_demand_pct == pytest.approx(100 * 1 / 21)
    assert m.details["waits_censored"] == 1
    assert m.mean_wait_s == pytest.approx((0 + 3 * 3600) / 2)
    assert m.idle_device_hours_pct == pytest.approx(50)  # Beijing busy 4 h of the window, Shanghai idle


def test_window_clips_busy_time_and_only_window_arrivals_count() -> None:
    jobs: list[dict[str, object]] = [{"arrival": 0, "duration": 3 * HOUR, "region": "beijing"},
                                     {"arrival": 5 * HOUR, "duration": HOUR, "region": "shanghai"}]
    world = run_world(ISOLATED, jobs, window=(2 * HOUR, 4 * HOUR))
    m = world_metrics(world)
    assert m.details["window_jobs"] == 0 and m.unmet_demand_pct == 0
    assert m.idle_device_hours_pct == pytest.approx(100 * 3 / 4)  # 1 busy device-hour of 4 in [2 h, 4 h)


def test_on_demand_preempts_spot_which_resumes_with_its_progress() -> None:
    config = replace(COMPUTEGRID, time_shift=False, model_preference=False)
    jobs: list[dict[str, object]] = [
        {"arrival": 0, "duration": 2 * HOUR, "region": "beijing", "kind": SPOT, "bid_limit": 150},
        {"arrival": 30 * 60_000, "duration": HOUR, "region": "beijing"},
        {"arrival": 30 * 60_000, "duration": HOUR, "region": "beijing"},
    ]
    pool = two_site_pool(regions=("beijing", "beijing"))  # both devices in Beijing
    demand = hand_demand(pool, jobs, window_ms=(0, 6 * HOUR))
    world = World(demand, pool, config, seed=1, pricing=site_prices(pool), rtt=default_rtt(), utc_offset_min=OFFSETS,
                  catalog=default_catalog())
    world.run()
    # the spot job arrives just after the round at 0 (rounds come before arrivals within a millisecond) and
    # starts at the next (5 min); the two on-demand jobs take both devices at 30 min, preempting it; it
    # resumes at the round when they end (90 min) with 95 min of work left
    minute = 60_000
    assert world.first_start == [5 * minute, 30 * minute, 30 * minute]
    assert world.preemptions == 1
    spot_runs = sorted((s, e) for j, s, e in zip(world.seg_job, world.seg_start, world.seg_end, strict=True) if j == 0)
    assert spot_runs == [(5 * minute, 30 * minute), (90 * minute, 185 * minute)]
    m = world_metrics(world)
    assert m.details["preemptions"] == 1
    # the spot job paid the clearing price, between the floor (80) and its limit (150)
    spot_cost = m.details["cost_per_du_by_kind_fen"]["spot"]
    assert 80 <= spot_cost <= 150


def test_deadline_jobs_wait_for_the_live_start_plan_and_try_its_site_first() -> None:
    # One A10 in Beijing (53.1 fen/kWh) and one in Guizhou (35): Guizhou posts less in every band. Local time =
    # sim time (UTC+8). Without a plan, best-fit puts a lone job on Beijing's node (the control below).
    config = WorldConfig(name="grid", policy="best-fit", cross_site=True, time_shift=True)
    jobs: list[dict[str, object]] = [
        # 2 h, must start by 24:00: cheapest is 22:00-24:00 off-peak at Guizhou
        {"arrival": 10 * HOUR, "duration": 2 * HOUR, "region": "beijing", "kind": DEADLINE, "deadline": 24 * HOUR},
        # 4 h, must start by 20:00: starting at its deadline puts 2 h in off-peak; the old rule never deferred it
        {"arrival": 10 * HOUR, "duration": 4 * HOUR, "region": "beijing", "kind": DEADLINE, "deadline": 20 * HOUR},
        # arrives off-peak: starting now is already cheapest
        {"arrival": 23 * HOUR, "duration": HOUR, "region": "beijing", "kind": DEADLINE, "deadline": 31 * HOUR},
    ]
    pool = two_site_pool(regions=("beijing", "guizhou"))
    demand = hand_demand(pool, jobs, window_ms=(0, 30 * HOUR))
    world = World(demand, pool, config, seed=1, pricing=site_prices(pool), rtt=default_rtt(), utc_offset_min=OFFSETS,
                  catalog=default_catalog())
    plans = [world.start_plan(j, demand.arrival_ms[j]) for j in range(3)]
    assert all(p is not None and p.site == "core-guizhou" for p in plans)
    world.run()
    # job 1 starts at 20:00 (its deadline) at Guizhou; job 0's planned site is then busy, so it starts at
    # 22:00 anywhere (Beijing); job 2 waits for a free device (24:00), well before its deadline
    assert world.first_start == [22 * HOUR, 20 * HOUR, 24 * HOUR]
    assert world.deferred == 2
    runs = {j: world.pairs.site[p] for j, p in zip(world.seg_job, world.seg_pair, strict=True)}
    assert runs == {0: "core-beijing", 1: "core-guizhou", 2: "core-guizhou"}
    assert world_metrics(world).unmet_demand_pct == 0

    alone = hand_demand(pool, jobs[:1], window_ms=(0, 30 * HOUR))
    world = World(alone, two_site_pool(regions=("beijing", "guizhou")), config, seed=1, pricing=site_prices(pool),
                  rtt=default_rtt(), utc_offset_min=OFFSETS, catalog=default_catalog())
    world.run()
    assert world.first_start == [22 * HOUR] and [world.pairs.site[p] for p in world.seg_pair] == ["core-guizhou"]
    control = hand_demand(pool, [{"arrival": 22 * HOUR, "duration": 2 * HOUR, "region": "beijing"}],
                          window_ms=(0, 30 * HOUR))
    world = World(control, two_site_pool(regions=("beijing", "guizhou")), config, seed=1, pricing=site_prices(pool),
                  rtt=default_rtt(), utc_offset_min=OFFSETS, catalog=default_catalog())
    world.run()
    assert [world.pairs.site[p] for p in world.seg_pair] == ["core-beijing"]


@pytest.fixture(scope="module")
def federation() -> object:
    return run_federation(synthetic_trace(), small_pool(), seed=3, params=DemandParams(target_load=0.7),
                          origin_ms=MONDAY_UTC_MS)


def test_demand_rule_reaches_the_load_and_keeps_its_shares() -> None:
    trace, pool = synthetic_trace(), small_pool()
    regions = default_regions()
    pricing = site_prices(pool)
    a = build_demand(trace, pool, regions, pricing, seed=5, origin_ms=MONDAY_UTC_MS)
    b = build_demand(trace, pool, regions, pricing, seed=5, origin_ms=MONDAY_UTC_MS)
    assert a.arrival_ms == b.arrival_ms and a.kind == b.kind and a.region == b.region and a.bid_limit == b.bid_limit
    assert a.offered_load >= DemandParams().target_load
    assert a.arrival_ms == sorted(a.arrival_ms) and a.arrival_ms[0] >= 0 and a.arrival_ms[-1] < a.span_ms
    assert all(k != INFERENCE or g == 1 for k, g in zip(a.kind, a.gpus, strict=True))
    assert all((k == INFERENCE) == (r is not None) for k, r in zip(a.kind, a.max_rtt_ms, strict=True))
    assert all((k == SPOT) == (b is not None) for k, b in zip(a.kind, a.bid_limit, strict=True))
    # a tenant sits in one region
    where: dict[str, set[str]] = {}
    for t, r in zip(a.tenant, a.region, strict=True):
        where.setdefault(t, set()).add(r)
    assert all(len(v) == 1 for v in where.values())
    other = build_demand(trace, pool, regions, pricing, seed=6, origin_ms=MONDAY_UTC_MS)
    assert other.arrival_ms != a.arrival_ms


def test_the_isolated_world_never_crosses_regions(federation: object) -> None:
    from computegrid.sim.federation import FederationResult

    assert isinstance(federation, FederationResult)
    trace, pool = synthetic_trace(), small_pool()
    demand = federation.demand
    world = World(demand, pool, ISOLATED, seed=3, pricing=site_prices(pool), rtt=default_rtt(),
                  utc_offset_min=OFFSETS, catalog=default_catalog())
    world.run()
    assert world.seg_job, "jobs ran"
    assert all(world.pairs.region[p] == demand.region[j] for j, p in zip(world.seg_job, world.seg_pair, strict=True))
    assert trace.name == "synthetic"


def test_computegrid_has_no_latency_violation_and_beats_isolated(federation: object) -> None:
    from computegrid.sim.federation import FederationResult

    assert isinstance(federation, FederationResult)
    iso, grid = federation.worlds["isolated"], federation.worlds["computegrid"]
    assert grid.latency_slo_violations == 0 and iso.latency_slo_violations == 0
    assert grid.unmet_demand_pct < iso.unmet_demand_pct
    assert grid.idle_device_hours_pct < iso.idle_device_hours_pct
    assert grid.details["spot_rounds"] > 0 and grid.details["deferred_jobs"] > 0


def test_inference_runs_within_its_rtt_in_the_market_world() -> None:
    pool = small_pool()
    trace = synthetic_trace(days=14)
    pricing = site_prices(pool)
    demand = build_demand(trace, pool, default_regions(), pricing, seed=2, origin_ms=MONDAY_UTC_MS,
                          params=DemandParams(target_load=0.6))
    world = World(demand, pool, COMPUTEGRID, seed=2, pricing=pricing, rtt=default_rtt(), utc_offset_min=OFFSETS,
                  catalog=default_catalog())
    world.run()
    rtt = default_rtt()
    checked = 0
    for j, p in zip(world.seg_job, world.seg_pair, strict=True):
        limit = demand.max_rtt_ms[j]
        if demand.kind[j] == INFERENCE and limit is not None:
            ms = rtt_between(rtt, demand.region[j], world.pairs.region[p])
            assert ms is not None and ms <= limit
            checked += 1
    assert checked > 0 and world.latency_violations == 0


def test_a_federation_run_is_deterministic(federation: object) -> None:
    from computegrid.sim.federation import FederationResult

    assert isinstance(federation, FederationResult)
    again = run_federation(synthetic_trace(), small_pool(), seed=3, params=DemandParams(target_load=0.7),
                           origin_ms=MONDAY_UTC_MS)
    first, second = federation.figures(), again.figures()
    for figures in (first, second):
        figures.pop("wall_s")
        for world in figures["worlds"].values():
            world.pop("wall_s")
    assert first == second
