"""The paper policies and our default: registry, shared contract, and each policy's scoring rule."""

from __future__ import annotations

import numpy as np
import pytest

from computegrid.core.placement import (
    Placement,
    PlacementFailure,
    PlacementRequest,
    TypicalPod,
    get_policy,
    policy_names,
)
from computegrid.core.placement.best_fit import best_fit_scores
from computegrid.core.placement.dot_product import dot_product_scores
from computegrid.core.placement.fragmentation import FragModel, sigmoid_thresholds, typical_pods
from computegrid.core.placement.gpu_clustering import gpu_clustering_scores
from computegrid.core.placement.gpu_packing import gpu_packing_scores
from computegrid.core.pool import NodeAllocation
from tests.core._helpers import devices, free_state, make_pool, node

T4 = frozenset({"T4"})
A100 = frozenset({"A100-40G", "A100-80G"})
PAPER = ["random", "dot-product", "gpu-clustering", "gpu-packing", "best-fit", "fgd"]
ALL = [*PAPER, "first-fit", "fgd-balance", "default"]


def two_node_pool():
    return make_pool([node(1, cpu_milli=32_000), node(2, cpu_milli=32_000)],
                     devices(1, "T4", 4) + devices(2, "T4", 4))


def test_all_policies_registered():
    assert set(ALL) <= set(policy_names())
    assert get_policy("default").name == "fgd-balance"


@pytest.mark.parametrize("name", ALL)
def test_every_policy_honours_the_contract(name):
    pool = make_pool([node(1, tier="core"), node(2), node(3)],
                     devices(1, "T4", 2) + devices(2, "A100-80G", 4) + devices(3, "A100-40G", 4))
    policy = get_policy(name)
    before = free_state(pool)
    share = policy.place(pool, PlacementRequest(models=T4, milli_per_node=300, cpu_milli=100, memory_mb=10))
    assert isinstance(share, Placement) and share.allocations[0].node_id == 1
    assert share.allocations[0].milli_per_device == 300 and len(share.allocations[0].device_indices) == 1
    gang = policy.place(pool, PlacementRequest(models=A100, milli_per_node=4000, nodes=2))
    assert isinstance(gang, Placement)
    assert sorted(a.node_id for a in gang.allocations) == [2, 3]
    assert all(a.device_indices == (0, 1, 2, 3) for a in gang.allocations)
    assert free_state(pool) == before  # placing never changes the pool
    fail = policy.place(pool, PlacementRequest(models=A100, milli_per_node=4000, nodes=3))
    assert isinstance(fail, PlacementFailure)
    assert "gang needs 3 nodes on one site, 2 fit" in str(fail) and "accelerator" in str(fail)
    tier = policy.place(pool, PlacementRequest(tier="edge"))
    assert isinstance(tier, PlacementFailure) and str(tier) == "tier (want edge) excluded 3 nodes"


@pytest.mark.parametrize("name", ALL)
def test_every_policy_honours_a_price_limit(name):
    # Three A100 nodes priced 900, 400 and unpriced (-1); prices move, so the pool takes updates.
    pool = make_pool([node(1), node(2), node(3)],
                     devices(1, "A100-80G", 4) + devices(2, "A100-80G", 4) + devices(3, "A100-80G", 4))
    pool.set_prices({1: 900, 2: 400})
    policy = get_policy(name)
    for _ in range(3):  # repeated decisions go through the policies' caches
        got = policy.place(pool, PlacementRequest(models=A100, milli_per_node=4000, max_price_fen_per_du=500))
        assert isinstance(got, Placement) and got.allocations[0].node_id in (2, 3)
    gang = policy.place(pool, PlacementRequest(models=A100, milli_per_node=4000, nodes=3, max_price_fen_per_du=500))
    assert isinstance(gang, PlacementFailure)
    assert "price (want <= 500 fen/du) excluded 1 node" in str(gang)
    assert "gang needs 3 nodes on one site, 2 fit" in str(gang)
    pool.set_prices({2: 600, 3: 700})
    none = policy.place(pool, PlacementRequest(models=A100, milli_per_node=1000, max_price_fen_per_du=500))
    assert isinstance(none, PlacementFailure) and str(none).startswith("price (want <= 500 fen/du) excluded 3 nodes")
    assert isinstance(policy.place(pool, PlacementRequest(models=A100, milli_per_node=1000)), Placement)


@pytest.mark.parametrize("name", ALL)
def test_gang_all_or_nothing_after_allocation(name):
    pool = two_node_pool()
    pool.allocate([NodeAllocation(2, (0,), 1, 0, 0)])
    policy = get_policy(name)
    assert isinstance(policy.place(pool, PlacementRequest(milli_per_node=4000, nodes=2)), PlacementFailure)
    got = policy.place(pool, PlacementRequest(milli_per_node=3000, nodes=2))
    assert isinstance(got, Placement)
    assert [len(a.device_indices) for a in got.allocations] == [3, 3]


@pytest.mark.parametrize("name", ALL)
def test_scores_follow_pool_changes(name):
    # the per-node score cache must notice allocate/release (via node versions)
    pool = make_pool([node(1)], devices(1, "T4", 1))
    policy = get_policy(name)
    req = PlacementRequest(milli_per_node=1000)
    got = policy.place(pool, req)
    assert isinstance(got, Placement)
    pool.allocate(got.allocations)
    assert isinstance(policy.place(pool, req), PlacementFailure)
    pool.release(got.allocations)
    assert isinstance(policy.place(pool, req), Placement)


def test_best_fit_prefers_the_tightest_node_and_device():
    pool = two_node_pool()
    pool.allocate([NodeAllocation(2, (1,), 600, 8000, 0), NodeAllocation(2, (3,), 300, 0, 0)])
    policy = get_policy("best-fit")
    got = policy.place(pool, PlacementRequest(milli_per_node=300, cpu_milli=1000))
    assert isinstance(got, Placement)
    assert got.allocations[0].node_id == 2 and got.allocations[0].device_indices == (1,)  # 400 free beats 700
    rows = np.array([0, 1])
    # 100 x (1 - (cpu left / 256 cores + GPU left / 16 GPUs)), truncated
    assert best_fit_scores(pool, PlacementRequest(milli_per_node=1000, cpu_milli=0), rows).tolist() == [
        int(100 * (1 - 32_000 / 256_000 - 3000 / 16_000)), int(100 * (1 - 24_000 / 256_000 - 2100 / 16_000))]


def test_dot_product_prefers_least_aligned_node():
    pool = two_node_pool()
    pool.allocate([NodeAllocation(1, (0, 1, 2), 1000, 30_000, 0)])
    rows = np.array([0, 1])
    scores = dot_product_scores(pool, PlacementRequest(milli_per_node=1000, cpu_milli=2000), rows)
    dot = [(2000 * 2000 + 256 * 1000 * 1000) / 128_000**2, (32_000 * 2000 + 256 * 4000 * 1000) / 128_000**2]
    assert scores.tolist() == [int(100 * (1 - d / 2)) for d in dot]
    assert get_policy("dot-product").place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=2000)) \
        .allocations[0].node_id == 1  # type: ignore[union-attr]


def test_gpu_packing_bands():
    pool = make_pool([node(1), node(2), node(3)], devices(1, "T4", 4) + devices(2, "T4", 4) + devices(3, "T4", 4))
    pool.allocate([NodeAllocation(2, (0,), 600, 0, 0), NodeAllocation(3, (0,), 1000, 0, 0)])
    rows = np.array([0, 1, 2])
    share = gpu_packing_scores(pool, PlacementRequest(milli_per_node=300), rows).tolist()
    assert share == [33 - 4, 100 - 40 // 10, 49]  # free node; shared device (40% free); fresh device of used node
    whole = gpu_packing_scores(pool, PlacementRequest(milli_per_node=2000), rows).tolist()
    assert whole == [29, 48, 48]
    assert gpu_packing_scores(pool, PlacementRequest(), rows).tolist() == [0, 0, 0]


def test_gpu_clustering_bands():
    pool = make_pool([node(1), node(2), node(3), node(4)],
                     devices(1, "T4", 8) + devices(2, "T4", 8) + devices(3, "T4", 8) + devices(4, "T4", 8))
    pool.allocate([NodeAllocation(2, (0,), 500, 0, 0), NodeAllocation(3, (0,), 500, 0, 0),
                   NodeAllocation(3, (1, 2), 1000, 0, 0), NodeAllocation(4, (0, 1), 1000, 0, 0)])
    rows = np.array([0, 1, 2, 3])
    scores = gpu_clustering_scores(pool, PlacementRequest(milli_per_node=300), rows).tolist()
    assert scores == [25, 75 + 25 * 500 // 8000, 50 + 25 * 2500 // 8000, 25 * 2000 // 8000]
    assert get_policy("gpu-clustering").place(pool, PlacementRequest(milli_per_node=300)) \
        .allocations[0].node_id == 2  # type: ignore[union-attr]


def test_random_is_seeded_and_uniform_enough():
    pool = make_pool([node(i) for i in range(1, 6)], [d for i in range(1, 6) for d in devices(i, "T4", 2)])
    req = PlacementRequest(milli_per_node=500)

    def draws(seed: int) -> list[tuple[int, tuple[int, ...]]]:
        policy = get_policy("random", rng=np.random.default_rng(seed))
        out = []
        for _ in range(200):
            got = policy.place(pool, req)
            assert isinstance(got, Placement)
            out.append((got.allocations[0].node_id, got.allocations[0].device_indices))
        return out

    assert draws(7) == draws(7)
    assert {n for n, _ in draws(7)} == {1, 2, 3, 4, 5}
    assert {d for _, d in draws(7)} == {(0,), (1,)}


def test_typical_pods_cover_95_percent_most_frequent_first():
    reqs = ([PlacementRequest(milli_per_node=1000, cpu_milli=4000)] * 60 + [PlacementRequest(milli_per_node=500)] * 30
            + [PlacementRequest(cpu_milli=2000)] * 6 + [PlacementRequest(milli_per_node=8000)] * 4)
    mix = typical_pods(reqs)
    assert [(t.milli_per_device, t.devices, t.count) for t in mix] == [(1000, 1, 60), (500, 1, 30), (0, 0, 6)]


def test_fragmentation_measure():
    mix = (TypicalPod(4000, 1000, 1, frozenset(), 2), TypicalPod(4000, 500, 1, frozenset(), 1),
           TypicalPod(8000, 0, 0, frozenset(), 1))
    model = FragModel(mix)
    pool = make_pool([node(1)], devices(1, "T4", 2))
    rows = np.array([0])
    # free 1000 + 300: the 1-GPU shape wastes 300, the 0.5 shape wastes 300, the CPU-only shape all 1300
    got = model.fragmentation(pool, np.array([16_000]), np.array([[1000, 300]]), rows)
    assert got.tolist() == [2 * 300 + 1 * 300 + 1 * 1300]
    # without CPU nothing fits: everything free is fragment for every shape
    assert model.fragmentation(pool, np.array([0]), np.array([[1000, 300]]), rows).tolist() == [4 * 1300]
    # the scalar path gives the same integer
    assert model.state_fragmentation(pool, 0, 16_000, [300, 1000]) == 2 * 300 + 300 + 1300


def test_sigmoid_thresholds_match_the_float_score():
    import math
    thresholds = sigmoid_thresholds(35)
    for d in [-300_000, -5000, -1, 0, 1, 999, 1000, 12_345, 80_000]:
        want = int((1.0 / (1.0 + math.exp(-d / 35_000.0))) * 100.0)
        assert sum(t <= d for t in thresholds) == want


def test_fgd_picks_the_device_that_fragments_least():
    mix = (TypicalPod(0, 500, 1, frozenset(), 1), TypicalPod(0, 1000, 1, frozenset(), 1))
    pool = make_pool([node(1)], devices(1, "T4", 2))
    pool.allocate([NodeAllocation(1, (1,), 500, 0, 0)])
    got = get_policy("fgd", typical=mix).place(pool, PlacementRequest(milli_per_node=500))
    assert isinstance(got, Placement) and got.allocations[0].device_indices == (1,)  # a whole GPU stays free


def test_default_prefers_shared_devices_for_shares():
    mix = (TypicalPod(0, 1000, 1, frozenset(), 3), TypicalPod(0, 200, 1, frozenset(), 1))
    pool = make_pool([node(1), node(2)], devices(1, "T4", 1) + devices(2, "T4", 1))
    pool.allocate([NodeAllocation(2, (0,), 700, 0, 0)])
    got = get_policy("default", typical=mix).place(pool, PlacementRequest(milli_per_node=200))
    assert isinstance(got, Placement) and got.allocations[0].node_id == 2


def test_default_sends_cpu_heavy_jobs_where_cpu_is_plentiful():
    # mix: 1 GPU + 12 cores; node 1 has 12 cores per GPU (CPU-poor), node 2 has 48 (CPU-rich)
    mix = (TypicalPod(12_000, 1000, 1, frozenset(), 10, 8_192),)
    pool = make_pool([node(1, cpu_milli=48_000, memory_mb=1 << 20), node(2, cpu_milli=96_000, memory_mb=1 << 20)],
                     devices(1, "T4", 4) + devices(2, "T4", 2))
    for n in (1, 2):  # both in use, so neither pays for opening a free node
        pool.allocate([NodeAllocation(n, (0,), 1000, 12_000, 8_192)])
    policy = get_policy("default", typical=mix)
    # 16 cores on node 1 leave 2 GPUs and 20 cores: one more typical pod fits, the other GPU is stranded
    heavy = policy.place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=16_000, memory_mb=8_192))
    light = policy.place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=2_000, memory_mb=8_192))
    assert isinstance(heavy, Placement) and heavy.allocations[0].node_id == 2
    assert isinstance(light, Placement) and light.allocations[0].node_id == 1
    # FGD sees no difference one pod ahead and takes the first node for both
    fgd = get_policy("fgd", typical=mix).place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=16_000,
                                                                      memory_mb=8_192))
    assert isinstance(fgd, Placement) and fgd.allocations[0].node_id == 1


def test_default_keeps_the_only_hosts_of_a_shape_whole():
    # node 2 is the only node with the 120 cores an 8-GPU shape needs; it is also CPU-richer, so stranding
    # alone would send a 16-core job there; the scarcity charge keeps it whole
    mix = (TypicalPod(12_000, 1000, 1, frozenset(), 20, 8_192), TypicalPod(120_000, 1000, 8, frozenset(), 1, 8_192))
    pool = make_pool([node(1, cpu_milli=96_000, memory_mb=1 << 20), node(2, cpu_milli=128_000, memory_mb=1 << 20)],
                     devices(1, "T4", 8) + devices(2, "T4", 8))
    policy = get_policy("default", typical=mix)
    req = PlacementRequest(milli_per_node=1000, cpu_milli=16_000, memory_mb=8_192)
    got = policy.place(pool, req)
    assert isinstance(got, Placement) and got.allocations[0].node_id == 1
    rows = np.array([0, 1])
    strand_before = policy.stranded(pool.free_milli[rows], pool.cpu_free[rows], pool.mem_free[rows])
    strand_after = policy.stranded(pool.free_milli[rows] - 1000, pool.cpu_free[rows] - 16_000,
                                   pool.mem_free[rows] - 8_192)
    increase = (strand_after - strand_before).tolist()
    assert increase[0] > 0 and increase[1] == 0
    assert policy.scarcity(pool).tolist() == [0.0, pytest.approx(2 / 21)]


def test_default_leaves_the_kinds_constrained_jobs_need_to_them():
    # a third of the GPU demand accepts only T4, which is half of the devices: an unconstrained job takes the A10
    mix = (TypicalPod(1_000, 1000, 1, frozenset(), 2, 1_024), TypicalPod(1_000, 1000, 1, T4, 1, 1_024))
    pool = make_pool([node(1), node(2)], devices(1, "T4", 2) + devices(2, "A10", 2))
    policy = get_policy("default", typical=mix)
    assert policy.pressure(pool).tolist() == [pytest.approx((1 / 3) / (2 / 4)), 0.0]
    got = policy.place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=1_000, memory_mb=1_024))
    assert isinstance(got, Placement) and got.allocations[0].node_id == 2
    # the charge is the device taken x pressure, in the mix's weighted units
    req = PlacementRequest(milli_per_node=1000)
    charges = policy.charges(pool, req, np.array([0, 1]))
    assert charges[0] - charges[1] == round(1000 * (2 / 3) * 3)


def test_default_scores_one_node_as_the_vectorised_path_does():
    rng = np.random.default_rng(5)
    mix = (TypicalPod(12_000, 1000, 1, frozenset(), 20, 8_192), TypicalPod(4_000, 470, 1, T4, 9, 30_000),
           TypicalPod(120_000, 1000, 8, frozenset(), 3, 8_192))
    infos = [node(i, cpu_milli=int(rng.choice([48_000, 96_000, 128_000])), memory_mb=1 << 19) for i in range(40)]
    devs = [d for i in range(40) for d in devices(i, "T4" if i % 3 else "A10", int(rng.choice([2, 4, 8])))]
    pool = make_pool(infos, devs)
    policy = get_policy("default", typical=mix)
    for _ in range(60):
        req = PlacementRequest(milli_per_node=int(rng.choice([0, 230, 470, 1000, 2000])),
                               cpu_milli=int(rng.integers(0, 20_000)), memory_mb=int(rng.integers(0, 40_000)))
        rows = np.arange(pool.node_count)
        vectorised = policy.charges(pool, req, rows).tolist()
        assert [policy.row_charge(pool, req, r) for r in range(pool.node_count)] == vectorised
        got = policy.place(pool, req)
        if isinstance(got, Placement):
            pool.allocate(got.allocations)


def test_default_opens_a_free_node_only_when_no_used_node_fits():
    mix = (TypicalPod(1_000, 1000, 1, frozenset(), 5, 1_024), TypicalPod(1_000, 1000, 4, frozenset(), 1, 1_024))
    pool = make_pool([node(1), node(2)], devices(1, "T4", 4) + devices(2, "T4", 4))
    pool.allocate([NodeAllocation(2, (0, 1), 1000, 1_000, 1_024)])
    policy = get_policy("default", typical=mix)
    got = policy.place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=1_000, memory_mb=1_024))
    assert isinstance(got, Placement) and got.allocations[0].node_id == 2
    pool.allocate(got.allocations)
    pool.allocate([NodeAllocation(2, (3,), 1000, 1_000, 1_024)])  # node 2 full: the free node is next
    got = policy.place(pool, PlacementRequest(milli_per_node=1000, cpu_milli=1_000, memory_mb=1_024))
    assert isinstance(got, Placement) and got.allocations[0].node_id == 1


def test_typical_pods_keep_the_mean_memory_of_each_shape():
    reqs = [PlacementRequest(milli_per_node=1000, cpu_milli=4000, memory_mb=m) for m in (1000, 2000, 4000)]
    assert [(t.count, t.memory_mb) for t in typical_pods(reqs)] == [(3, 2333)]


def test_fgd_learns_its_mix_when_given_none():
    policy = get_policy("fgd")
    pool = two_node_pool()
    for _ in range(5):
        got = policy.place(pool, PlacementRequest(milli_per_node=500))
        assert isinstance(got, Placement)
        pool.allocate(got.allocations)
    assert [(t.milli_per_device, t.count) for t in policy.model.mix] == [(500, 4)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ALL)
def test_cpu_only_job_on_a_pool_without_any_device(name):
    """The embedded default (`computegrid up` on a machine without accelerators) has no devices at all."""
    pool = make_pool([node(1, cpu_milli=2_000), node(2, cpu_milli=8_000)], [])
    placed = get_policy(name).place(pool, PlacementRequest(cpu_milli=4_000, memory_mb=512))
    assert isinstance(placed, Placement) and placed.allocations[0].node_id == 2
    assert placed.allocations[0].device_indices == ()
    failed = get_policy(name).place(pool, PlacementRequest(cpu_milli=9_000, memory_mb=512))
    assert isinstance(failed, PlacementFailure) and "cpu (want 9) excluded 2 nodes" in str(failed)
