"""Placement honours what each site's engine takes (core.capabilities) and keeps a gang whole on one site
(or one region, with gang spread "region"), for every policy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from computegrid.core.capabilities import EngineCapabilities
from computegrid.core.placement import Placement, PlacementFailure, PlacementRequest, get_policy, policy_names
from computegrid.core.placement.gang import place_whole_gang
from computegrid.core.pool import NodeAllocation, NodeInfo, PoolSnapshot
from tests.core._helpers import devices, make_pool, node

T4 = frozenset({"T4"})
SLURM = EngineCapabilities(shares=False, images=False, gangs=True, models=frozenset({"T4"}))
LOCAL = EngineCapabilities(shares=True, images=False, gangs=True)
KUBERNETES = EngineCapabilities(shares=False, images=True, gangs=True)
ALL = policy_names()


def at(info: NodeInfo, caps: EngineCapabilities) -> NodeInfo:
    return replace(info, capabilities=caps)


def t4_pool(*sites: tuple[str, str, EngineCapabilities, int]) -> PoolSnapshot:
    """(site, region, capabilities, nodes) per site; each node has 2 T4s, numbered in site order."""
    infos, devs = [], []
    for site, region, caps, count in sites:
        for _ in range(count):
            node_id = len(infos) + 1
            infos.append(at(node(node_id, site=site, region=region), caps))
            devs += devices(node_id, "T4", 2)
    return make_pool(infos, devs)


def sites_of(pool: PoolSnapshot, placement: Placement) -> set[str]:
    return {str(pool.site[pool.node_row[a.node_id]]) for a in placement.allocations}


@pytest.mark.parametrize("name", ALL)
def test_a_share_goes_to_the_engine_that_takes_shares(name: str) -> None:
    pool = t4_pool(("slurm-a", "jingjinji", SLURM, 2), ("local-b", "jingjinji", LOCAL, 1))
    half = PlacementRequest(models=T4, milli_per_node=500)
    got = get_policy(name).place(pool, half)
    assert isinstance(got, Placement) and sites_of(pool, got) == {"local-b"}
    whole = get_policy(name).place(pool, replace(half, milli_per_node=1000))
    assert isinstance(whole, Placement)  # whole devices may go to either


@pytest.mark.parametrize("name", ALL)
def test_a_share_waits_where_no_engine_takes_shares(name: str) -> None:
    pool = t4_pool(("slurm-a", "jingjinji", SLURM, 2))
    fail = get_policy(name).place(pool, PlacementRequest(models=T4, milli_per_node=500))
    assert isinstance(fail, PlacementFailure)
    assert "engine (want one that takes device shares) excluded 2 nodes" in str(fail)
    assert "no site whose engine takes device shares" in str(fail)


@pytest.mark.parametrize("name", ALL)
def test_an_image_goes_only_to_an_engine_that_runs_images(name: str) -> None:
    pool = t4_pool(("slurm-a", "jingjinji", SLURM, 1), ("k8s-b", "jingjinji", KUBERNETES, 1))
    got = get_policy(name).place(pool, PlacementRequest(models=T4, milli_per_node=1000, image=True))
    assert isinstance(got, Placement) and sites_of(pool, got) == {"k8s-b"}


def test_a_model_the_engine_cannot_be_asked_for_is_never_eligible() -> None:
    infos = [at(node(1, site="slurm-a"), SLURM), at(node(2, site="local-b"), LOCAL)]
    pool = make_pool(infos, devices(1, "A100-80G", 2) + devices(2, "A100-80G", 2))
    got = get_policy("first-fit").place(pool, PlacementRequest(milli_per_node=1000))
    assert isinstance(got, Placement) and got.allocations[0].node_id == 2  # slurm-a maps only T4


def test_undeclared_sites_take_everything() -> None:
    pool = t4_pool(("old-agent", "jingjinji", EngineCapabilities(), 1))
    got = get_policy("default").place(pool, PlacementRequest(models=T4, milli_per_node=500, image=True))
    assert isinstance(got, Placement)


@pytest.mark.parametrize("name", ALL)
def test_a_gang_lands_whole_on_one_site(name: str) -> None:
    # Two providers in two regions; the first site has one free node, the second two.
    pool = t4_pool(("p1-a", "jingjinji", LOCAL, 2), ("p2-b", "guizhou", LOCAL, 2))
    pool.allocate([NodeAllocation(1, (0, 1), 1000, 0, 0)])
    gang = PlacementRequest(models=T4, milli_per_node=2000, nodes=2)
    for _ in range(2):  # again through the policy's caches
        got = get_policy(name).place(pool, gang)
        assert isinstance(got, Placement) and sites_of(pool, got) == {"p2-b"}
    pool.allocate([NodeAllocation(3, (0, 1), 1000, 0, 0)])  # now each site has one free node: 2 in all
    fail = get_policy(name).place(pool, gang)
    assert isinstance(fail, PlacementFailure)
    assert "gang needs 2 nodes on one site, 1 fit on site p1-a (2 in all)" in str(fail)


@pytest.mark.parametrize("name", ALL)
def test_spread_region_uses_sites_of_one_region_never_two_regions(name: str) -> None:
    pool = t4_pool(("p1-a", "jingjinji", LOCAL, 1), ("p1-b", "jingjinji", LOCAL, 1), ("p2-c", "guizhou", LOCAL, 1))
    gang = PlacementRequest(models=T4, milli_per_node=2000, nodes=2)
    assert isinstance(get_policy(name).place(pool, gang), PlacementFailure)  # no site has two nodes
    got = get_policy(name).place(pool, replace(gang, gang_spread="region"))
    assert isinstance(got, Placement) and sites_of(pool, got) == {"p1-a", "p1-b"}
    three = get_policy(name).place(pool, replace(gang, nodes=3, gang_spread="region"))
    assert isinstance(three, PlacementFailure)
    assert "gang needs 3 nodes on one region, 2 fit on region jingjinji (3 in all)" in str(three)


def test_the_policy_scores_choose_among_sites() -> None:
    # Best-fit packs: the site whose nodes are already partly used leaves the least free after placing.
    pool = t4_pool(("p1-a", "jingjinji", LOCAL, 2), ("p2-b", "guizhou", LOCAL, 2))
    pool.allocate([NodeAllocation(3, (0,), 1000, 0, 0), NodeAllocation(4, (0,), 1000, 0, 0)])
    gang = PlacementRequest(models=T4, milli_per_node=1000, nodes=2)
    best = get_policy("best-fit").place(pool, gang)
    assert isinstance(best, Placement) and sites_of(pool, best) == {"p2-b"}
    first = get_policy("first-fit").place(pool, gang)
    assert isinstance(first, Placement) and sites_of(pool, first) == {"p1-a"}  # first site in pool order


@pytest.mark.parametrize("name", ["best-fit", "default", "fgd", "gpu-packing", "dot-product"])
def test_the_one_pass_gang_path_chooses_as_trying_each_site_would(name: str) -> None:
    rng = np.random.default_rng(7)
    placed = 0
    for trial in range(25):
        infos, devs = [], []
        for i in range(int(rng.integers(4, 24))):
            site = f"s{int(rng.integers(0, 5))}"
            cpus = int(rng.integers(4, 64)) * 1000
            infos.append(node(i + 1, site=site, region=f"r{int(site[1:]) % 2}", cpu_milli=cpus))
            devs += devices(i + 1, "A100-80G", int(rng.choice([2, 4, 8])))
        pool = make_pool(infos, devs)
        for d in np.flatnonzero(rng.random(len(pool.dev_free)) < 0.4).tolist():
            pool.allocate([NodeAllocation(int(pool.node_ids[pool.dev_node[d]]), (int(pool.dev_index[d]),), 1000, 0, 0)])
        gang = PlacementRequest(milli_per_node=int(rng.choice([1, 2, 4])) * 1000, cpu_milli=2000, memory_mb=512,
                                nodes=int(rng.integers(2, 4)), gang_spread=str(rng.choice(["site", "region"])))
        policy = get_policy(name)
        fast = policy.place(pool, gang)
        slow = place_whole_gang(policy._place_one, pool, gang, None, policy.group_score)  # type: ignore[attr-defined]
        assert fast == slow, (trial, fast, slow)
        placed += isinstance(fast, Placement)
    assert 0 < placed < 25  # both outcomes are exercised
