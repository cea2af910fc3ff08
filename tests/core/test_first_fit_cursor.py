"""core/placement/first_fit.py: first-fit's per-request cursors give the same placements and failures as
scanning every node, through allocations, releases, moving prices, latency tables and `up` swapped for one
site's nodes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from computegrid.core.capabilities import ANY, EngineCapabilities
from computegrid.core.placement import FirstFit, Placement, PlacementFailure, PlacementRequest
from computegrid.core.placement.base import allocation_for, failure_detail, feasible_nodes, place_preferring
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot


def scan_every_node(pool: PoolSnapshot, req: PlacementRequest, rtt: dict[tuple[str, str], int] | None,
                    ) -> Placement | PlacementFailure:
    """First-fit as a full scan: the first feasible nodes of `feasible_nodes`, or its exclusions."""
    def one(p: PoolSnapshot, r: PlacementRequest, t: dict[tuple[str, str], int] | None) -> Placement | PlacementFailure:
        feas = feasible_nodes(p, r, t)
        rows = np.flatnonzero(feas.node_mask)
        if len(rows) < r.nodes:
            return PlacementFailure(tuple(feas.exclusions), failure_detail(p, r, len(rows)))
        return Placement(tuple(allocation_for(p, int(row), r) for row in rows[: r.nodes]), "first-fit")
    return place_preferring(one, pool, req, rtt)


def random_pool(rng: random.Random, n: int) -> PoolSnapshot:
    engines = [ANY, EngineCapabilities(shares=False), EngineCapabilities(gangs=False, images=False)]
    nodes = [NodeInfo(i, f"s{i % 4}", ("a", "b")[i % 2], ("hub", "core")[i % 3 == 0], rng.random() > 0.1,
                      rng.choice([8000, 32000]), rng.choice([16384, 65536]), capabilities=engines[i % 3])
             for i in range(1, n + 1)]
    devices = []
    for i in range(1, n + 1):
        mixed = rng.random() < 0.2  # some nodes hold two kinds of device
        for d in range(rng.choice([0, 2, 4, 8])):
            devices.append(DeviceInfo(i, d, rng.choice(["T4", "V100"]) if mixed else ("T4", "V100")[i % 2],
                                      rng.choice([16.0, 32.0])))
    return PoolSnapshot(nodes, devices)


def random_request(rng: random.Random) -> PlacementRequest:
    return PlacementRequest(models=rng.choice([frozenset(), frozenset({"T4"}), frozenset({"V100"})]),
                            milli_per_node=rng.choice([0, 500, 1000, 2000, 4000, 8000]),
                            min_device_memory_gb=rng.choice([0.0, 32.0]), cpu_milli=rng.choice([1000, 4000]),
                            memory_mb=rng.choice([1024, 8192]), nodes=rng.choice([1, 1, 1, 2, 3]),
                            tier=rng.choice([None, None, "hub"]), user_region=rng.choice([None, "a"]),
                            max_rtt_ms=rng.choice([None, 10, 50]), model_preference=rng.choice([(), ("V100", "T4")]),
                            gang_spread=rng.choice(["site", "region"]),
                            max_price_fen_per_du=rng.choice([None, None, 50]))


@pytest.mark.parametrize("seed", range(12))
def test_cursors_place_as_a_scan_of_every_node_would(seed: int) -> None:
    rng = random.Random(seed)
    pool = random_pool(rng, rng.choice([5, 60, 300]))
    policy = FirstFit()
    tables: list[dict[tuple[str, str], int] | None] = [{("a", "b"): 30}, {("a", "b"): 5}, None]
    held: list[Placement] = []
    placed = failed = 0
    for _ in range(250):
        req = random_request(rng)
        rtt = rng.choice(tables) if rng.random() < 0.1 else tables[0]
        outcome = policy.place(pool, req, rtt)
        assert outcome == scan_every_node(pool, req, rtt), req
        if isinstance(outcome, Placement):
            placed += 1
            if rng.random() < 0.8:
                pool.allocate(outcome.allocations)
                held.append(outcome)
        else:
            failed += 1
        if held and rng.random() < 0.25:  # capacity comes back below a cursor
            pool.release(held.pop(rng.randrange(len(held))).allocations)
        if rng.random() < 0.05:  # prices move (outside the pool's change log)
            pool.set_prices({node_id: rng.choice([-1, 10, 100]) for node_id in pool.node_row})
        if rng.random() < 0.03:  # placing at one site swaps `up` for that site's nodes (backfill, market)
            saved = pool.up
            pool.up = saved & (pool.site == "s1")
            assert policy.place(pool, req, rtt) == scan_every_node(pool, req, rtt)
            pool.up = saved
    assert placed and failed  # both paths were compared
