"""Heterogeneity: a job that accepts several models runs on the best throughput per fen that has room."""

from __future__ import annotations

from dataclasses import replace

import pytest

from computegrid.core.catalog import default_catalog
from computegrid.core.placement import Placement, PlacementFailure, PlacementRequest, get_policy
from computegrid.core.placement.preference import prefer_models
from computegrid.core.pool import NodeAllocation, PoolSnapshot
from computegrid.core.throughput import default_throughputs

from ._helpers import devices, make_pool, node

WORKLOAD = "ResNet-50 (batch size 64)"  # Gavel: V100 4.39 steps/s, P100 2.62 steps/s
PRICES = {"V100-16G": 100, "P100-16G": 100}  # fen per du; V100 holds 125/18.7 times the du per hour of a P100
V100_NODE, P100_NODE = 1, 2
POLICIES = ["default", "fgd-balance", "fgd", "best-fit", "first-fit", "gpu-packing", "dot-product",
            "gpu-clustering"]


def pool_v100_then_p100() -> PoolSnapshot:
    """Node 1 has 4 V100-16G, node 2 has 4 P100-16G; the V100 node comes first in pool order."""
    return make_pool([node(V100_NODE), node(P100_NODE)],
                     devices(V100_NODE, "V100-16G", 4) + devices(P100_NODE, "P100-16G", 4))


def request(workload: str | None = WORKLOAD, milli: int = 1000) -> PlacementRequest:
    return PlacementRequest(models=frozenset({"V100-16G", "P100-16G"}), milli_per_node=milli, cpu_milli=1000,
                            memory_mb=1024, workload=workload)


def preferred(req: PlacementRequest) -> PlacementRequest:
    return prefer_models(req, default_throughputs(), PRICES, default_catalog())


def nodes_of(outcome: Placement | PlacementFailure) -> list[int]:
    assert isinstance(outcome, Placement), str(outcome)
    return [a.node_id for a in outcome.allocations]


def test_prefer_models_ranks_p100_first_per_fen() -> None:
    # steps/s per fen/h: P100 2.62 / 1.87 = 1.40 against V100 4.39 / 12.5 = 0.35
    assert preferred(request()).model_preference == ("P100-16G", "V100-16G")


def test_cheaper_v100_flips_the_order() -> None:
    cheap_v100 = {"V100-16G": 10, "P100-16G": 100}  # V100 at 1.25 fen/h: 4.39 / 1.25 = 3.5 steps/s per fen/h
    req = prefer_models(request(), default_throughputs(), cheap_v100, default_catalog())
    assert req.model_preference == ("V100-16G", "P100-16G")


@pytest.mark.parametrize("policy", POLICIES)
def test_lands_on_p100_when_both_are_free(policy: str) -> None:
    pool = pool_v100_then_p100()
    assert nodes_of(get_policy(policy).place(pool, preferred(request()))) == [P100_NODE]


@pytest.mark.parametrize("policy", POLICIES)
def test_falls_back_to_v100_when_p100_is_full(policy: str) -> None:
    pool = pool_v100_then_p100()
    pool.allocate([NodeAllocation(P100_NODE, (0, 1, 2, 3), 1000, 0, 0)])
    assert nodes_of(get_policy(policy).place(pool, preferred(request()))) == [V100_NODE]


def test_fails_as_before_when_both_are_full() -> None:
    pool = pool_v100_then_p100()
    pool.allocate([NodeAllocation(P100_NODE, (0, 1, 2, 3), 1000, 0, 0),
                   NodeAllocation(V100_NODE, (0, 1, 2, 3), 1000, 0, 0)])
    with_pref = get_policy("default").place(pool, preferred(request()))
    without = get_policy("default").place(pool, request())
    assert isinstance(with_pref, PlacementFailure) and isinstance(without, PlacementFailure)
    assert with_pref == without


def test_placed_share_fills_preferred_model_first() -> None:
    pool = pool_v100_then_p100()
    policy = get_policy("default")
    landed = []
    for _ in range(12):  # 12 half-devices: 8 fit on the P100s, then the V100s
        outcome = policy.place(pool, preferred(request(milli=500)))
        assert isinstance(outcome, Placement)
        pool.allocate(outcome.allocations)
        landed.extend(nodes_of(outcome))
    assert landed == [P100_NODE] * 8 + [V100_NODE] * 4


def test_no_workload_changes_nothing() -> None:
    req = request(workload=None)
    assert preferred(req) is req and req.model_preference == ()
    assert PlacementRequest().workload is None and PlacementRequest().model_preference == ()
    for policy in POLICIES:
        pool = pool_v100_then_p100()
        # without a workload the accepted kinds are equals: ties go to the first node in pool order
        assert nodes_of(get_policy(policy).place(pool, req)) == [V100_NODE], policy


def test_single_model_request_keeps_no_preference() -> None:
    req = replace(request(), models=frozenset({"P100-16G"}))
    assert preferred(req).model_preference == ()


def test_gang_prefers_one_model_and_falls_back() -> None:
    nodes = [node(i) for i in (1, 2, 3, 4)]
    devs = devices(1, "V100-16G", 2) + devices(2, "V100-16G", 2) + devices(3, "P100-16G", 2) \
        + devices(4, "P100-16G", 2)
    pool = make_pool(nodes, devs)
    gang = preferred(replace(request(), nodes=2))
    assert sorted(nodes_of(get_policy("default").place(pool, gang))) == [3, 4]
    pool.allocate([NodeAllocation(4, (0, 1), 1000, 0, 0)])
    assert sorted(nodes_of(get_policy("default").place(pool, gang))) == [1, 2]
    pool.allocate([NodeAllocation(2, (0, 1), 1000, 0, 0)])
    # neither model alone has two free nodes: the last resort is every accepted model together
    assert sorted(nodes_of(get_policy("default").place(pool, gang))) == [1, 3]
