"""core/pool.py and core/placement/: first-fit, the shared filters, and allocate/release."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from computegrid.core.catalog import default_catalog
from computegrid.core.jobs import parse_job_spec
from computegrid.core.placement import (
    FirstFit,
    Placement,
    PlacementFailure,
    PlacementRequest,
    get_policy,
)
from computegrid.core.placement.base import feasible_nodes, rtt_between
from computegrid.core.pool import DeviceInfo, NodeAllocation, PoolSnapshot
from tests.core._helpers import devices, free_state, make_pool, node

A100 = frozenset({"A100-40G", "A100-80G"})
T4 = frozenset({"T4"})


@pytest.fixture
def policy():
    return get_policy("first-fit")


def place_ok(policy, pool, req, rtt=None) -> Placement:
    result = policy.place(pool, req, rtt)
    assert isinstance(result, Placement), str(result)
    return result


def place_fail(policy, pool, req, rtt=None) -> PlacementFailure:
    result = policy.place(pool, req, rtt)
    assert isinstance(result, PlacementFailure), result
    return result


def exclusions(result: PlacementFailure) -> dict[str, int]:
    return {name.split(" (")[0]: count for name, count in result.exclusions if count}


# ---------------------------------------------------------------- registry


def test_get_policy_first_fit():
    p = get_policy("first-fit")
    assert isinstance(p, FirstFit) and p.name == "first-fit"
    assert get_policy("first-fit") is not p  # a new instance each time


def test_get_policy_unknown_lists_known():
    with pytest.raises(KeyError, match="first-fit"):
        get_policy("no-such-policy")


# ---------------------------------------------------------------- fractional and whole devices


def test_fractional_tasks_share_one_device(policy):
    pool = make_pool([node(1)], devices(1, "T4", 2))
    req = PlacementRequest(models=T4, milli_per_node=500, cpu_milli=100, memory_mb=100)
    first = place_ok(policy, pool, req)
    assert first.allocations == (NodeAllocation(1, (0,), 500, 100, 100),)
    assert first.policy == "first-fit"
    pool.allocate(first.allocations)
    second = place_ok(policy, pool, req)
    assert second.allocations[0].device_indices == (0,)  # the same device, its other half
    pool.allocate(second.allocations)
    assert pool.dev_free.tolist() == [0, 1000]
    third = place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=750, cpu_milli=100, memory_mb=100))
    assert third.allocations[0].device_indices == (1,)
    assert third.allocations[0].milli_per_device == 750


def test_fractional_request_skips_a_device_without_room(policy):
    pool = make_pool([node(1)], devices(1, "T4", 2))
    pool.allocate([NodeAllocation(1, (0,), 600, 0, 0)])
    got = place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=500))
    assert got.allocations[0].device_indices == (1,)
    got = place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=400))
    assert got.allocations[0].device_indices == (0,)


def test_whole_device_request_needs_fully_free_devices(policy):
    pool = make_pool([node(1)], devices(1, "A100-80G", 2))
    pool.allocate([NodeAllocation(1, (0,), 1, 0, 0)])  # one milli-device in use
    fail = place_fail(policy, pool, PlacementRequest(models=A100, milli_per_node=2000))
    assert exclusions(fail)["devices in use"] == 1
    assert "devices in use excluded 1 node" in str(fail)
    one = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=1000))
    assert one.allocations[0].device_indices == (1,)
    assert one.allocations[0].milli_per_device == 1000


def test_multi_device_request_takes_lowest_free_indices(policy):
    pool = make_pool([node(1)], devices(1, "A100-80G", 8))
    pool.allocate([NodeAllocation(1, (1, 4), 1000, 0, 0)])
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=4000))
    assert got.allocations[0].device_indices == (0, 2, 3, 5)
    assert got.allocations[0].milli_per_device == 1000


def test_cpu_only_request_takes_no_devices(policy):
    pool = make_pool([node(1, cpu_milli=2000), node(2)], devices(2, "T4", 1))
    got = place_ok(policy, pool, PlacementRequest(cpu_milli=2000, memory_mb=512))
    assert got.allocations == (NodeAllocation(1, (), 0, 2000, 512),)


def test_first_fit_takes_lowest_numbered_nodes(policy):
    pool = make_pool([node(7), node(3), node(5)], devices(7, "T4", 1) + devices(3, "T4", 1) + devices(5, "T4", 1))
    got = place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=1000, nodes=2))
    # "lowest-numbered" is pool order
    assert [a.node_id for a in got.allocations] == [7, 3]


def test_place_does_not_change_the_pool(policy):
    pool = make_pool([node(1)], devices(1, "T4", 1))
    before = free_state(pool)
    place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=1000))
    place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=1000))
    assert free_state(pool) == before


# ---------------------------------------------------------------- gangs


def test_gang_spans_distinct_nodes(policy):
    pool = make_pool([node(1), node(2), node(3)], devices(1, "A100-80G", 2) + devices(2, "A100-80G", 2)
                     + devices(3, "A100-80G", 2))
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=2000, nodes=3))
    assert [a.node_id for a in got.allocations] == [1, 2, 3]
    assert all(a.device_indices == (0, 1) for a in got.allocations)
    pool.allocate(got.allocations)
    assert pool.dev_free.tolist() == [0] * 6


def test_gang_is_all_or_nothing(policy):
    pool = make_pool([node(1), node(2)], devices(1, "A100-80G", 1) + devices(2, "A100-80G", 1))
    pool.allocate([NodeAllocation(2, (0,), 1000, 0, 0)])
    before = free_state(pool)
    fail = place_fail(policy, pool, PlacementRequest(models=A100, milli_per_node=1000, nodes=2))
    assert fail.detail == "gang needs 2 nodes on one site, 1 fit on site s1 (1 in all)"
    assert "gang needs 2 nodes on one site, 1 fit" in str(fail)
    assert "devices in use excluded 1 node" in str(fail)
    assert free_state(pool) == before


def test_gang_larger_than_pool(policy):
    pool = make_pool([node(1)], [])
    fail = place_fail(policy, pool, PlacementRequest(nodes=2))
    assert str(fail) == "gang needs 2 nodes on one site, 1 fit on site s1 (1 in all)"


def test_single_node_failure_has_no_gang_detail(policy):
    pool = make_pool([node(1)], devices(1, "T4", 1))
    fail = place_fail(policy, pool, PlacementRequest(models=A100, milli_per_node=1000))
    assert fail.detail == ""
    assert str(fail) == "accelerator (1 x A100-40G|A100-80G) excluded 1 node"


def test_empty_pool_failure(policy):
    fail = place_fail(policy, make_pool([], []), PlacementRequest())
    assert str(fail) == "the pool has no nodes"


# ---------------------------------------------------------------- constraints


def test_model_constraint(policy):
    pool = make_pool([node(1), node(2), node(3)],
                     devices(1, "T4", 4) + devices(2, "V100-32G", 4) + devices(3, "A100-80G", 4))
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=1000))
    assert got.allocations[0].node_id == 3
    fail = place_fail(policy, pool, PlacementRequest(models=frozenset({"H100-80G"}), milli_per_node=1000))
    assert exclusions(fail)["accelerator"] == 3
    assert "accelerator (1 x H100-80G) excluded 3 nodes" in str(fail)


def test_model_constraint_counts_only_matching_devices(policy):
    # Node 1 has 4 devices but only 1 A100; a 2 x A100 request must go to node 2.
    pool = make_pool([node(1), node(2)], devices(1, "T4", 3) + [DeviceInfo(1, 3, "A100-80G", 80.0)]
                     + devices(2, "A100-40G", 2))
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=2000))
    assert got.allocations[0].node_id == 2


def test_mixed_node_picks_only_matching_devices(policy):
    pool = make_pool([node(1)], devices(1, "T4", 2) + [DeviceInfo(1, 2, "A100-80G", 80.0)])
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=1000))
    assert got.allocations[0].device_indices == (2,)


def test_min_device_memory(policy):
    pool = make_pool([node(1), node(2)], devices(1, "A100-40G", 2) + devices(2, "A100-80G", 2))
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=1000, min_device_memory_gb=60))
    assert got.allocations[0].node_id == 2
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=1000, min_device_memory_gb=40))
    assert got.allocations[0].node_id == 1  # the bound is inclusive
    fail = place_fail(policy, pool, PlacementRequest(milli_per_node=1000, min_device_memory_gb=81))
    assert exclusions(fail)["accelerator"] == 2


def test_tier_filter(policy):
    pool = make_pool([node(1, tier="hub"), node(2, tier="core"), node(3, tier="hub")], [])
    got = place_ok(policy, pool, PlacementRequest(tier="core"))
    assert got.allocations[0].node_id == 2
    fail = place_fail(policy, pool, PlacementRequest(tier="edge"))
    assert str(fail) == "tier (want edge) excluded 3 nodes"


RTT = {("jingjinji", "yangtze-delta"): 25, ("greater-bay", "jingjinji"): 40}


def test_rtt_between():
    assert rtt_between(RTT, "guizhou", "guizhou") == 0
    assert rtt_between({}, "guizhou", "guizhou") == 0
    assert rtt_between(RTT, "jingjinji", "yangtze-delta") == 25
    assert rtt_between(RTT, "yangtze-delta", "jingjinji") == 25  # symmetric
    assert rtt_between(RTT, "jingjinji", "greater-bay") == 40
    assert rtt_between(RTT, "jingjinji", "ningxia") is None


def test_latency_routing(policy):
    pool = make_pool([node(1, region="greater-bay"), node(2, region="ningxia"), node(3, region="yangtze-delta"),
                      node(4, region="jingjinji")], [])
    req = PlacementRequest(user_region="jingjinji", max_rtt_ms=30, nodes=2)
    feas = feasible_nodes(pool, req, RTT)
    assert feas.node_mask.tolist() == [False, False, True, True]  # 40 ms too far; ningxia unknown
    got = place_ok(policy, pool, req, RTT)
    assert [a.node_id for a in got.allocations] == [3, 4]
    fail = place_fail(policy, pool, PlacementRequest(user_region="jingjinji", max_rtt_ms=30, nodes=3), RTT)
    assert "latency (want <= 30 ms from jingjinji; nearest excluded: greater-bay at 40 ms) excluded 2 nodes" \
        in str(fail)
    # inclusive bound
    assert feasible_nodes(pool, PlacementRequest(user_region="jingjinji", max_rtt_ms=40), RTT).node_mask.tolist() \
        == [True, False, True, True]


def test_latency_routing_without_table_keeps_same_region_only(policy):
    pool = make_pool([node(1, region="greater-bay"), node(2, region="jingjinji")], [])
    got = place_ok(policy, pool, PlacementRequest(user_region="jingjinji", max_rtt_ms=1))
    assert got.allocations[0].node_id == 2


def test_user_region_without_max_rtt_does_not_filter(policy):
    pool = make_pool([node(1, region="greater-bay")], [])
    assert place_ok(policy, pool, PlacementRequest(user_region="jingjinji")).allocations[0].node_id == 1


def test_cpu_and_memory_limits(policy):
    pool = make_pool([node(1, cpu_milli=2000, memory_mb=4096), node(2, cpu_milli=8000, memory_mb=2048),
                      node(3, cpu_milli=8000, memory_mb=8192)], [])
    got = place_ok(policy, pool, PlacementRequest(cpu_milli=4000, memory_mb=4096))
    assert got.allocations[0].node_id == 3
    fail = place_fail(policy, pool, PlacementRequest(cpu_milli=8500, memory_mb=1))
    assert str(fail) == "cpu (want 8.5) excluded 3 nodes"
    fail = place_fail(policy, pool, PlacementRequest(cpu_milli=1, memory_mb=9000))
    assert str(fail) == "memory (want 9000 MiB) excluded 3 nodes"
    # the limits are on free capacity, after allocation
    pool.allocate(got.allocations)
    assert pool.cpu_free.tolist() == [2000, 8000, 4000]
    fail = place_fail(policy, pool, PlacementRequest(cpu_milli=4001, memory_mb=4096))
    assert exclusions(fail) == {"cpu": 2, "memory": 1}
    assert place_ok(policy, pool, PlacementRequest(cpu_milli=4000, memory_mb=4096)).allocations[0].node_id == 3


def test_down_nodes_are_excluded(policy):
    pool = make_pool([node(1, up=False), node(2)], devices(1, "T4", 1) + devices(2, "T4", 1))
    got = place_ok(policy, pool, PlacementRequest(models=T4, milli_per_node=1000))
    assert got.allocations[0].node_id == 2
    fail = place_fail(policy, pool, PlacementRequest(models=T4, milli_per_node=1000, nodes=2))
    assert "node down excluded 1 node" in str(fail)


def test_failure_lists_every_filter_in_order():
    pool = make_pool([node(1, up=False), node(2, tier="core"), node(3), node(4, cpu_milli=500)],
                     devices(3, "T4", 1) + devices(4, "A100-80G", 1))
    req = PlacementRequest(models=A100, milli_per_node=1000, tier="hub", cpu_milli=1000)
    feas = feasible_nodes(pool, req)
    names = [name.split(" (")[0] for name, _ in feas.exclusions]
    assert names == ["node down", "tier", "accelerator", "devices in use", "cpu", "memory"]
    assert [count for _, count in feas.exclusions] == [1, 1, 1, 0, 1, 0]
    fail = get_policy("first-fit").place(pool, req)
    assert isinstance(fail, PlacementFailure)
    assert str(fail) == ("node down excluded 1 node; tier (want hub) excluded 1 node; "
                         "accelerator (1 x A100-40G|A100-80G) excluded 1 node; cpu (want 1) excluded 1 node")


# ---------------------------------------------------------------- feasible_nodes(empty=True)


def test_feasible_empty_ignores_allocations_and_down_state():
    pool = make_pool([node(1, cpu_milli=4000), node(2, up=False, cpu_milli=4000)],
                     devices(1, "A100-80G", 2) + devices(2, "A100-80G", 2))
    pool.allocate([NodeAllocation(1, (0, 1), 1000, 4000, 65_536)])
    req = PlacementRequest(models=A100, milli_per_node=2000, cpu_milli=4000, memory_mb=65_536)
    now = feasible_nodes(pool, req)
    assert now.node_mask.tolist() == [False, False]
    ever = feasible_nodes(pool, req, empty=True)
    assert ever.node_mask.tolist() == [True, True]
    assert ever.fitting_devices.tolist() == [2, 2]
    assert "node down" not in [name for name, _ in ever.exclusions]
    # but the static constraints still apply
    assert not feasible_nodes(pool, PlacementRequest(models=A100, milli_per_node=3000), empty=True).node_mask.any()
    assert not feasible_nodes(pool, PlacementRequest(cpu_milli=4001), empty=True).node_mask.any()


def test_fitting_devices_counts_devices_that_take_the_share():
    pool = make_pool([node(1)], devices(1, "T4", 3))
    pool.allocate([NodeAllocation(1, (0,), 800, 0, 0), NodeAllocation(1, (1,), 300, 0, 0)])
    assert feasible_nodes(pool, PlacementRequest(models=T4, milli_per_node=500)).fitting_devices.tolist() == [2]
    assert feasible_nodes(pool, PlacementRequest(models=T4, milli_per_node=1000)).fitting_devices.tolist() == [1]
    assert feasible_nodes(pool, PlacementRequest(models=T4, milli_per_node=200)).fitting_devices.tolist() == [3]


# ---------------------------------------------------------------- allocate / release


def test_allocate_failure_leaves_pool_unchanged():
    pool = make_pool([node(1, cpu_milli=4000), node(2, cpu_milli=4000)],
                     devices(1, "T4", 2) + devices(2, "T4", 2))
    pool.allocate([NodeAllocation(2, (1,), 700, 0, 0)])
    before = free_state(pool)
    good = NodeAllocation(1, (0, 1), 1000, 1000, 1024)
    for bad in (NodeAllocation(2, (1,), 500, 0, 0),  # device lacks room
                NodeAllocation(2, (0,), 0, 4001, 0),  # cpu
                NodeAllocation(2, (0,), 0, 0, 65_537)):  # memory
        with pytest.raises(ValueError, match="node 2 lacks the capacity"):
            pool.allocate([good, bad])
        assert free_state(pool) == before
        assert pool.try_allocate([good, bad]) is False
        assert free_state(pool) == before


def test_allocate_unknown_node_or_device_leaves_pool_unchanged():
    pool = make_pool([node(1)], devices(1, "T4", 1))
    before = free_state(pool)
    good = NodeAllocation(1, (0,), 500, 0, 0)
    with pytest.raises(ValueError, match="not in the pool"):
        pool.allocate([good, NodeAllocation(9, (0,), 500, 0, 0)])
    with pytest.raises(ValueError, match="has no device"):
        pool.allocate([good, NodeAllocation(1, (5,), 500, 0, 0)])
    assert free_state(pool) == before
    assert pool.try_allocate([good, NodeAllocation(9, (), 0, 0, 0)]) is False
    assert free_state(pool) == before


def test_try_allocate_success():
    pool = make_pool([node(1)], devices(1, "T4", 1))
    assert pool.try_allocate([NodeAllocation(1, (0,), 250, 500, 256)]) is True
    assert pool.dev_free.tolist() == [750]
    assert pool.cpu_free.tolist() == [15_500]
    assert pool.mem_free.tolist() == [65_536 - 256]


def test_release_restores_capacity(policy):
    pool = make_pool([node(1), node(2)], devices(1, "A100-80G", 4) + devices(2, "A100-80G", 4))
    full = free_state(pool)
    got = place_ok(policy, pool, PlacementRequest(models=A100, milli_per_node=3000, cpu_milli=3000,
                                                  memory_mb=3000, nodes=2))
    pool.allocate(got.allocations)
    assert pool.dev_free.tolist() == [0, 0, 0, 1000, 0, 0, 0, 1000]
    assert pool.cpu_free.tolist() == [13_000, 13_000]
    pool.release(got.allocations)
    assert free_state(pool) == full


def test_release_one_of_two_sharers():
    pool = make_pool([node(1)], devices(1, "T4", 1))
    a, b = NodeAllocation(1, (0,), 300, 100, 10), NodeAllocation(1, (0,), 600, 200, 20)
    pool.allocate([a])
    pool.allocate([b])
    assert pool.dev_free.tolist() == [100]
    pool.release([a])
    assert pool.dev_free.tolist() == [400]
    assert pool.cpu_free.tolist() == [16_000 - 200]
    assert pool.mem_free.tolist() == [65_536 - 20]


def test_release_never_goes_above_total():
    pool = make_pool([node(1)], devices(1, "T4", 1))
    pool.release([NodeAllocation(1, (0,), 500, 1000, 1000)])
    assert pool.dev_free.tolist() == [1000]
    assert pool.cpu_free.tolist() == [16_000]
    assert pool.mem_free.tolist() == [65_536]


def test_allocate_checks_parts_of_one_call_together():
    pool = make_pool([node(1, cpu_milli=4000)], devices(1, "T4", 1))
    part = NodeAllocation(1, (0,), 600, 3000, 100)
    with contextlib.suppress(ValueError):
        pool.allocate([part, part])
    assert pool.dev_free.min() >= 0 and pool.cpu_free.min() >= 0


def test_allocate_rejects_repeated_device_index():
    pool = make_pool([node(1)], devices(1, "T4", 1))
    with contextlib.suppress(ValueError):
        pool.allocate([NodeAllocation(1, (0, 0), 600, 0, 0)])
    assert pool.dev_free.tolist() in ([400], [1000])


# ---------------------------------------------------------------- pool snapshot


def test_snapshot_ignores_devices_of_unknown_nodes_and_sorts_devices():
    pool = PoolSnapshot([node(5), node(2)],
                        [DeviceInfo(2, 1, "T4", 16.0), DeviceInfo(9, 0, "T4", 16.0), DeviceInfo(5, 0, "A10", 24.0),
                         DeviceInfo(2, 0, "T4", 16.0)])
    assert pool.node_count == 2
    assert pool.dev_node.tolist() == [0, 1, 1]
    assert pool.dev_index.tolist() == [0, 0, 1]
    assert pool.dev_model.tolist() == ["A10", "T4", "T4"]
    assert pool.dev_row == {(5, 0): 0, (2, 0): 1, (2, 1): 2}
    assert pool.dev_free.dtype == np.int64 and pool.dev_free.tolist() == [1000] * 3


# ---------------------------------------------------------------- from a job spec


def test_request_from_spec_places_end_to_end(policy):
    spec = parse_job_spec({"name": "ft", "run": "x", "nodes": 2,
                           "resources": {"accelerators": "A100:2", "min_device_memory_gb": 60, "cpus": 4,
                                         "memory_gb": 16},
                           "placement": {"tier": "hub", "user_region": "jingjinji", "max_rtt_ms": 30}},
                          default_catalog())
    req = PlacementRequest.from_spec(spec)
    assert req == PlacementRequest(models=A100, milli_per_node=2000, min_device_memory_gb=60.0, cpu_milli=4000,
                                   memory_mb=16_384, nodes=2, tier="hub", user_region="jingjinji", max_rtt_ms=30)
    assert req.devices_per_node == 2 and req.milli_per_device == 1000
    pool = make_pool([node(1, region="jingjinji"), node(2, region="yangtze-delta"), node(3, region="jingjinji"),
                      node(4, region="greater-bay")],
                     devices(1, "A100-40G", 2) + devices(2, "A100-80G", 2) + devices(3, "A100-80G", 4)
                     + devices(4, "A100-80G", 2))
    got = place_ok(policy, pool, req, RTT)
    assert [(a.node_id, a.device_indices) for a in got.allocations] == [(2, (0, 1)), (3, (0, 1))]


@pytest.mark.parametrize(("milli", "devs", "share"), [(0, 0, 0), (1, 1, 1), (500, 1, 500), (999, 1, 999),
                                                      (1000, 1, 1000), (8000, 8, 1000)])
def test_request_devices_per_node_and_share(milli, devs, share):
    req = PlacementRequest(milli_per_node=milli)
    assert req.devices_per_node == devs
    if milli:
        assert req.milli_per_device == share
