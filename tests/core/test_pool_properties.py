"""Property: place-then-allocate and release never over-allocate or lose capacity."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.placement import Placement, PlacementFailure, PlacementRequest, get_policy
from computegrid.core.placement.base import feasible_nodes
from computegrid.core.placement.gang import widest_group
from computegrid.core.pool import DeviceInfo, NodeAllocation, NodeInfo, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE
from tests.core._helpers import FAST

MODELS = {"T4": 16.0, "A100-40G": 40.0, "A100-80G": 80.0}
REGIONS = ["jingjinji", "yangtze-delta", "greater-bay"]
RTT = {("jingjinji", "yangtze-delta"): 25, ("jingjinji", "greater-bay"): 40, ("yangtze-delta", "greater-bay"): 30}


@st.composite
def pools(draw: st.DrawFn) -> PoolSnapshot:
    count = draw(st.integers(1, 4))
    node_ids = draw(st.lists(st.integers(1, 99), min_size=count, max_size=count, unique=True))
    nodes, devs = [], []
    for nid in node_ids:
        nodes.append(NodeInfo(node_id=nid, site=f"s{nid % 2}", region=draw(st.sampled_from(REGIONS)),
                              tier=draw(st.sampled_from(["core", "hub", "edge"])), up=draw(st.integers(0, 4)) > 0,
                              cpu_milli=500 * draw(st.integers(1, 16)), memory_mb=1024 * draw(st.integers(1, 8))))
        for index in range(draw(st.integers(0, 4))):
            model = draw(st.sampled_from(sorted(MODELS)))
            devs.append(DeviceInfo(node_id=nid, index=index, model=model, memory_gb=MODELS[model]))
    return PoolSnapshot(nodes, devs)


@st.composite
def requests(draw: st.DrawFn) -> PlacementRequest:
    milli = draw(st.sampled_from([0, 1, 250, 500, 750, 999, 1000, 2000, 3000]))
    nodes = draw(st.integers(1, 3)) if milli == 0 or milli % MILLI_PER_DEVICE == 0 else 1
    models = draw(st.sampled_from([frozenset(), frozenset(), frozenset({"T4"}), frozenset({"A100-40G", "A100-80G"}),
                                   frozenset({"T4", "A100-80G"})]))
    routed = draw(st.integers(0, 3)) == 0
    return PlacementRequest(
        models=models, milli_per_node=milli, min_device_memory_gb=draw(st.sampled_from([0.0, 0.0, 16.0, 50.0])),
        cpu_milli=250 * draw(st.integers(0, 12)), memory_mb=512 * draw(st.integers(0, 8)), nodes=nodes,
        tier=draw(st.sampled_from([None, None, None, "core", "hub", "edge"])),
        user_region=draw(st.sampled_from(REGIONS)) if routed else None,
        max_rtt_ms=draw(st.sampled_from([1, 30])) if routed else None,
    )


OPS = st.lists(st.one_of(st.tuples(st.just("place"), requests()), st.tuples(st.just("release"), st.integers(0, 50))),
               max_size=25)


def check_invariants(pool: PoolSnapshot, live: list[tuple[NodeAllocation, ...]]) -> None:
    assert (pool.dev_free >= 0).all() and (pool.dev_free <= MILLI_PER_DEVICE).all()
    assert (pool.cpu_free >= 0).all() and (pool.cpu_free <= pool.cpu_total).all()
    assert (pool.mem_free >= 0).all() and (pool.mem_free <= pool.mem_total).all()
    dev_used: Counter[int] = Counter()
    cpu_used: Counter[int] = Counter()
    mem_used: Counter[int] = Counter()
    for allocations in live:
        for a in allocations:
            row = pool.node_row[a.node_id]
            cpu_used[row] += a.cpu_milli
            mem_used[row] += a.memory_mb
            for i in a.device_indices:
                dev_used[pool.dev_row[(a.node_id, i)]] += a.milli_per_device
    for r in range(len(pool.dev_free)):
        assert dev_used[r] == MILLI_PER_DEVICE - pool.dev_free[r], f"device row {r}"
    for r in range(pool.node_count):
        assert cpu_used[r] == pool.cpu_total[r] - pool.cpu_free[r], f"cpu of node row {r}"
        assert mem_used[r] == pool.mem_total[r] - pool.mem_free[r], f"memory of node row {r}"


def check_placement(pool: PoolSnapshot, req: PlacementRequest, placement: Placement) -> None:
    """A placement the policy returns honours the request and fits the pool as it is now."""
    allocs = placement.allocations
    assert len(allocs) == req.nodes
    assert len({a.node_id for a in allocs}) == req.nodes, "a gang uses distinct nodes"
    assert len({pool.site[pool.node_row[a.node_id]] for a in allocs}) == 1, "a gang lands whole on one site"
    for a in allocs:
        row = pool.node_row[a.node_id]
        assert pool.up[row]
        assert req.tier is None or pool.tier[row] == req.tier
        assert a.cpu_milli == req.cpu_milli and a.memory_mb == req.memory_mb
        assert pool.cpu_free[row] >= a.cpu_milli and pool.mem_free[row] >= a.memory_mb
        assert len(a.device_indices) == req.devices_per_node
        assert len(set(a.device_indices)) == len(a.device_indices)
        for i in a.device_indices:
            d = pool.dev_row[(a.node_id, i)]
            assert pool.dev_node[d] == row
            assert not req.models or pool.dev_model[d] in req.models
            assert pool.dev_mem_gb[d] >= req.min_device_memory_gb
            need = MILLI_PER_DEVICE if req.milli_per_node >= MILLI_PER_DEVICE else req.milli_per_device
            assert pool.dev_free[d] >= need


@FAST
@given(pool=pools(), ops=OPS)
def test_capacity_is_never_over_allocated_or_lost(pool: PoolSnapshot, ops: list[tuple[str, Any]]):
    policy = get_policy("first-fit")
    totals = (pool.cpu_total.copy(), pool.mem_total.copy(), len(pool.dev_free))
    live: list[tuple[NodeAllocation, ...]] = []
    for kind, arg in ops:
        if kind == "place":
            before = (pool.dev_free.copy(), pool.cpu_free.copy(), pool.mem_free.copy())
            result = policy.place(pool, arg, RTT)
            # placing alone never changes the pool
            assert all(np.array_equal(x, y) for x, y in zip(before, (pool.dev_free, pool.cpu_free, pool.mem_free),
                                                             strict=True))
            if isinstance(result, Placement):
                check_placement(pool, arg, result)
                pool.allocate(result.allocations)
                live.append(result.allocations)
            else:
                assert isinstance(result, PlacementFailure)
                feas = feasible_nodes(pool, arg, RTT)
                # a gang lands whole on one site: it fails only when no site has enough feasible nodes
                assert widest_group(pool, feas.node_mask, arg.gang_spread)[1] < arg.nodes
                assert str(result)
        elif live:
            pool.release(live.pop(arg % len(live)))
        check_invariants(pool, live)
    assert np.array_equal(pool.cpu_total, totals[0]) and np.array_equal(pool.mem_total, totals[1])
    assert len(pool.dev_free) == totals[2]
    for allocations in live:
        pool.release(allocations)
    check_invariants(pool, [])
    assert (pool.dev_free == MILLI_PER_DEVICE).all()
    assert np.array_equal(pool.cpu_free, pool.cpu_total) and np.array_equal(pool.mem_free, pool.mem_total)


@FAST
@given(pool=pools(), req=requests())
def test_what_fits_now_could_fit_in_an_empty_pool(pool: PoolSnapshot, req: PlacementRequest):
    now = feasible_nodes(pool, req, RTT).node_mask
    ever = feasible_nodes(pool, req, RTT, empty=True).node_mask
    assert not (now & ~ever).any()


def aggregates(pool: PoolSnapshot) -> tuple[list[int], ...]:
    return (pool.dev_free.tolist(), pool.cpu_free.tolist(), pool.mem_free.tolist(), pool.free_whole.tolist(),
            pool.free_milli.tolist(), pool.max_free.tolist(), pool.shape_count.tolist())


def check_aggregates(pool: PoolSnapshot) -> None:
    """The incremental per-node aggregates equal a recomputation from the devices."""
    for row in range(pool.node_count):
        start, stop = pool.node_devices(row)
        free = pool.dev_free[start:stop]
        assert pool.free_whole[row] == int((free == MILLI_PER_DEVICE).sum())
        assert pool.free_milli[row] == int(free.sum())
        assert pool.max_free[row] == (int(free.max()) if len(free) else 0)


POLICIES = ["first-fit", "random", "best-fit", "dot-product", "gpu-packing", "gpu-clustering", "fgd", "default"]


@FAST
@given(pool=pools(), ops=OPS, name=st.sampled_from(POLICIES))
def test_every_policy_never_over_allocates_and_release_restores(pool: PoolSnapshot, ops: list[tuple[str, Any]],
                                                                name: str):
    policy = get_policy(name)
    empty = aggregates(pool)
    live: list[tuple[NodeAllocation, ...]] = []
    snapshots: list[tuple[list[int], ...]] = []
    for kind, arg in ops:
        if kind == "place":
            before = aggregates(pool)
            result = policy.place(pool, arg, RTT)
            assert aggregates(pool) == before
            if isinstance(result, Placement):
                check_placement(pool, arg, result)  # a gang is whole: `nodes` distinct members
                pool.allocate(result.allocations)
                live.append(result.allocations)
                snapshots.append(before)
            else:
                assert int(feasible_nodes(pool, arg, RTT).node_mask.sum()) < arg.nodes  # nothing placed
        elif live:
            # releasing the newest placement restores the snapshot taken just before it, exactly
            pool.release(live.pop())
            assert aggregates(pool) == snapshots.pop()
        check_invariants(pool, live)
        check_aggregates(pool)
    while live:
        pool.release(live.pop())
    assert aggregates(pool) == empty


@FAST
@given(pool=pools(), req=requests(), before=st.lists(requests(), max_size=6))
def test_fast_filters_agree_with_feasible_nodes(pool: PoolSnapshot, req: PlacementRequest,
                                                before: list[PlacementRequest]):
    from computegrid.core.placement.base import failure, feasible_mask

    for earlier in before:  # some capacity in use first
        placed = get_policy("first-fit").place(pool, earlier, RTT)
        if isinstance(placed, Placement):
            pool.allocate(placed.allocations)
    slow = feasible_nodes(pool, req, RTT)
    assert feasible_mask(pool, req, RTT).tolist() == slow.node_mask.tolist()
    assert failure(pool, req, RTT, 0).exclusions == tuple(slow.exclusions)


@st.composite
def uniform_pools(draw: st.DrawFn) -> PoolSnapshot:
    """Pools whose nodes each hold one kind of device (the case the incremental fast path serves)."""
    count = draw(st.integers(1, 6))
    nodes, devs = [], []
    for nid in range(1, count + 1):
        nodes.append(NodeInfo(node_id=nid, site=f"s{nid % 2}", region=draw(st.sampled_from(REGIONS)),
                              tier=draw(st.sampled_from(["core", "hub", "edge"])), up=draw(st.integers(0, 4)) > 0,
                              cpu_milli=500 * draw(st.integers(1, 16)), memory_mb=1024 * draw(st.integers(1, 8))))
        model = draw(st.sampled_from(sorted(MODELS)))
        for index in range(draw(st.integers(0, 4))):
            devs.append(DeviceInfo(node_id=nid, index=index, model=model, memory_gb=MODELS[model]))
    return PoolSnapshot(nodes, devs)


@FAST
@given(pool=uniform_pools(), shapes=st.lists(requests(), min_size=1, max_size=3),
       picks=st.lists(st.tuples(st.sampled_from(["place", "place", "release"]), st.integers(0, 50)), max_size=30),
       name=st.sampled_from(POLICIES), limit=st.sampled_from([2, 5, 100_000]))
def test_incremental_fast_path_places_exactly_as_the_full_scan(pool: PoolSnapshot, shapes: list[PlacementRequest],
                                                               picks: list[tuple[str, int]], name: str, limit: int):
    """On uniform pools the change-log fast path gives the same decisions as feasible_mask + per-shape scores."""
    import copy

    from computegrid.core.placement.scored import uniform_nodes

    assert uniform_nodes(pool)
    slow_pool = copy.deepcopy(pool)
    slow_pool.static_cache["uniform-nodes"] = False  # forces the full scan of every node
    pool._changes_limit = limit  # a short log is trimmed often, so entries also fall back to a full rebuild
    options: dict[str, Any] = {"rng": np.random.default_rng(0)} if name == "random" else {}
    fast, slow = get_policy(name, **options), get_policy(name, **copy.deepcopy(options))
    live: list[tuple[NodeAllocation, ...]] = []
    for kind, arg in picks:  # a few shapes, placed again and again, so cached entries are brought up to date
        if kind == "place":
            req = shapes[arg % len(shapes)]
            got, want = fast.place(pool, req, RTT), slow.place(slow_pool, req, RTT)
            assert got == want
            if isinstance(got, Placement):
                pool.allocate(got.allocations)
                slow_pool.allocate(got.allocations)
                live.append(got.allocations)
        elif live:
            gone = live.pop(arg % len(live))
            pool.release(gone)
            slow_pool.release(gone)
