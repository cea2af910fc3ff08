"""The computegrid world routes training as the live scheduler places a spec with a workload and no tier:
one request over every site (no hub-first step), models ordered by `prefer_cheapest_work` over each
model's cheapest price posted at the time of the pass."""

from __future__ import annotations

from dataclasses import replace

from computegrid.core.billing.prices import PriceRule, PriceSchedule
from computegrid.core.catalog import default_catalog
from computegrid.core.placement.preference import prefer_cheapest_work
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.core.throughput import default_throughputs
from computegrid.sim.demand import SIM_EPOCH_MS, Demand
from computegrid.sim.pools import PoolNode, SimPool, Site
from computegrid.sim.pricing import OFF_PEAK, Pricing, site_prices
from computegrid.sim.regions import default_regions, default_rtt
from computegrid.sim.world import World, WorldConfig
from tests.sim.federation_helpers import HOUR, hand_demand

OFFSETS = {r.name: 480 for r in default_regions()}  # sim time 0 is 00:00 local (UTC+8)
GRID = WorldConfig(name="grid", policy="best-fit", cross_site=True, model_preference=True)
WORKLOAD = "ResNet-50 (batch size 64)"


def pool_of(*nodes: tuple[str, str, str]) -> SimPool:
    """One node with one device per (region, tier, model), each its own site, node ids in order."""
    catalog = default_catalog()
    electricity = {r.name: r.electricity_fen_per_kwh for r in default_regions()}
    sites = [Site(f"{tier}-{region}-{i}", region, tier, electricity[region])
             for i, (region, tier, _) in enumerate(nodes)]
    models = [catalog.get(model) for _, _, model in nodes]
    infos = [NodeInfo(node_id=i, site=s.name, region=s.region, tier=s.tier, up=True, cpu_milli=8000, memory_mb=0)
             for i, s in enumerate(sites)]
    devices = [DeviceInfo(node_id=i, index=0, model=m.model, memory_gb=float(m.memory_gb))
               for i, m in enumerate(models)]
    pool_nodes = [PoolNode(f"n{i}", 8000, 0, 1, m.model, float(m.memory_gb)) for i, m in enumerate(models)]
    return SimPool(name="hand", source="test", snapshot=PoolSnapshot(infos, devices), nodes=pool_nodes, sites=sites,
                   node_site=sites, opaque_models=())


def with_workloads(demand: Demand, workloads: list[str | None]) -> Demand:
    return replace(demand, workload=workloads)


def run(pool: SimPool, demand: Demand, pricing: Pricing) -> World:
    world = World(demand, pool, GRID, seed=1, pricing=pricing, rtt=default_rtt(), utc_offset_min=OFFSETS,
                  catalog=default_catalog())
    world.run()
    return world


def models_run(world: World) -> dict[int, str]:
    return {j: world.pairs.model[p] for j, p in zip(world.seg_job, world.seg_pair, strict=True)}


def test_training_is_one_request_over_every_site_ordered_by_the_cheapest_posted_price() -> None:
    # An H800 in Beijing (core, 113 fen/du at peak) and an A10 at the Guizhou hub (126): the hub-first rule put
    # the job on the hub's A10; live orders by the cheapest posted price per du and places over every site.
    pool = pool_of(("beijing", "core", "H800-80G"), ("guizhou", "hub", "A10"))
    pricing = site_prices(pool)
    demand = with_workloads(hand_demand(pool, [{"arrival": 10 * HOUR, "duration": HOUR, "region": "beijing"}],
                                        window_ms=(0, 12 * HOUR)), [WORKLOAD])
    world = run(pool, demand, pricing)
    route = world.router.route(demand, 0)
    assert [s.request.tier for s in route.steps] == [None]
    assert route.pairs == tuple(range(len(world.pairs)))
    prices, _ = pricing.cheapest_posted(SIM_EPOCH_MS + 10 * HOUR, OFFSETS)
    expected = prefer_cheapest_work(route.steps[0].request, default_throughputs(), prices, default_catalog())
    assert route.steps[0].request.model_preference == expected.model_preference == ("H800-80G", "A10")
    assert world.first_start == [10 * HOUR] and models_run(world) == {0: "H800-80G"}


def test_cheapest_posted_prices_follow_the_band_and_say_until_when() -> None:
    pool = pool_of(("beijing", "core", "A10"), ("guizhou", "hub", "A10"), ("ningxia", "hub", "A100-80G"))
    pricing = site_prices(pool)
    peak, until = pricing.cheapest_posted(SIM_EPOCH_MS + 10 * HOUR, OFFSETS)
    assert peak == {"A10": 126, "A100-80G": 139}  # Guizhou's A10 undercuts Beijing's 192
    assert until == SIM_EPOCH_MS + 22 * HOUR
    off_peak, until = pricing.cheapest_posted(SIM_EPOCH_MS + 23 * HOUR, OFFSETS)
    assert off_peak == {"A10": 84, "A100-80G": 93}
    assert until == SIM_EPOCH_MS + 24 * HOUR  # midnight is an edge too (the cycle repeats)


def test_a_waiting_job_takes_the_model_order_of_the_pass_that_starts_it() -> None:
    # Beijing's A10 posts 1000 fen/du at peak and 10 off-peak; Ningxia's A100 139 / 93. Two jobs without a
    # workload hold both devices until 23:00; a training job arriving at 10:00 (peak: A100 first) waits and
    # is started by the 23:00 pass, off-peak, when the A10 is cheapest.
    pool = pool_of(("beijing", "core", "A10"), ("ningxia", "hub", "A100-80G"))
    pricing = site_prices(pool)
    a10 = pricing.sites["core-beijing-0"]
    schedule = PriceSchedule(provider=a10.schedule.provider, base_fen_per_du=1000,
                             rules=(PriceRule(1000, model="A10"), PriceRule(10, model="A10", band=OFF_PEAK.name)),
                             bands=(OFF_PEAK,), interruptible_floor_fen_per_du=5)
    pricing = Pricing({**pricing.sites, "core-beijing-0": replace(a10, schedule=schedule)}, pricing.catalog)
    jobs: list[dict[str, object]] = [{"arrival": 0, "duration": 23 * HOUR, "region": "beijing"},
                                     {"arrival": 0, "duration": 23 * HOUR, "region": "beijing"},
                                     {"arrival": 10 * HOUR, "duration": HOUR, "region": "beijing"}]
    demand = with_workloads(hand_demand(pool, jobs, window_ms=(0, 30 * HOUR)), [None, None, WORKLOAD])
    world = run(pool, demand, pricing)
    assert world.first_start == [0, 0, 23 * HOUR]
    assert models_run(world)[2] == "A10"
    assert world.router.route(demand, 2).steps[0].request.model_preference == ("A10", "A100-80G")

    # the control: the same job arriving at 10:00 to a free pool starts at once on the A100
    alone = with_workloads(hand_demand(pool, jobs[2:], window_ms=(0, 30 * HOUR)), [WORKLOAD])
    world = run(pool_of(("beijing", "core", "A10"), ("ningxia", "hub", "A100-80G")), alone, pricing)
    assert world.first_start == [10 * HOUR] and models_run(world) == {0: "A100-80G"}
