"""sim/replay.py on hand-checkable traces: exact JCTs and waits, backfill, gangs, determinism, conservation."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from computegrid.sim.pools import PoolNode, SimPool, build_pool, find_data_dir, load_pool
from computegrid.sim.regions import default_regions
from computegrid.sim.replay import ReplayProgress, job_shape, replay
from computegrid.sim.traces import Trace, compress, load_philly


def trace(jobs: Sequence[tuple[float, float, int]], groups: list[str] | None = None) -> Trace:
    """A trace of (arrival s, duration s, GPUs), already in arrival order."""
    n = len(jobs)
    return Trace(name="hand", path=None, arrival_ms=np.array([round(a * 1000) for a, _, _ in jobs], dtype=np.int64),
                 duration_ms=np.array([round(d * 1000) for _, d, _ in jobs], dtype=np.int64),
                 gpus=np.array([g for _, _, g in jobs], dtype=np.int64), group=groups or [""] * n,
                 line=np.arange(2, n + 2, dtype=np.int64), rows=n)


def pool(*gpus: int, model: str = "A10", one_site_per_tier: bool = False) -> SimPool:
    nodes = [PoolNode(f"n{i}", 64_000, 256_000, g, model, 24.0) for i, g in enumerate(gpus)]
    regions = None
    if one_site_per_tier:  # every hub node on one site (else nodes are dealt over many sites)
        regions = [next(r for r in default_regions() if r.tier == tier) for tier in ("hub", "core", "edge")]
    return build_pool("hand", "test", nodes, regions)


THREE = [(0, 100, 1), (1, 50, 1), (2, 10, 1)]


def test_three_jobs_on_one_gpu_fifo() -> None:
    r = replay(trace(THREE), pool(1), queue="fifo")
    assert list(r.start_ms) == [0, 100_000, 150_000]
    assert list(r.end_ms) == [100_000, 150_000, 160_000]
    assert r.avg_jct_s == pytest.approx((100 + 149 + 158) / 3)
    assert r.mean_wait_s == pytest.approx((0 + 99 + 148) / 3)
    assert r.p95_wait_s == pytest.approx(99 + 0.9 * (148 - 99))  # linear interpolation
    assert r.utilisation_pct == pytest.approx(100 * 160 / 160)
    assert r.completed == 3 and r.unplaceable_total == 0


def test_three_jobs_on_one_gpu_sjf() -> None:
    r = replay(trace(THREE), pool(1), queue="sjf")
    # A runs first (alone at 0); at 100 the shorter C goes before B
    assert list(r.start_ms) == [0, 110_000, 100_000]
    assert list(r.end_ms) == [100_000, 160_000, 110_000]
    assert r.avg_jct_s == pytest.approx((100 + 159 + 108) / 3)
    assert r.mean_wait_s == pytest.approx((0 + 109 + 98) / 3)


# One node of 5 GPUs. A (3 GPUs) runs 0-100; B needs all 5, so it waits for A and reserves 100.
# C (1 GPU, 50 s) ends at 52, before B's reserved start: fair's backfill starts it at once.
# D (1 GPU, 200 s) fits now but would hold a GPU B needs at 100: it waits until B ends at 110.
BACKFILL = [(0, 100, 3), (1, 10, 5), (2, 50, 1), (3, 200, 1)]


def test_backfill_starts_a_small_job_early_without_delaying_the_head() -> None:
    fair = replay(trace(BACKFILL), pool(5), queue="fair")
    assert list(fair.start_ms) == [0, 100_000, 2_000, 110_000]
    assert fair.backfilled == 1
    fifo = replay(trace(BACKFILL), pool(5), queue="fifo")
    assert list(fifo.start_ms) == [0, 100_000, 110_000, 110_000]
    assert fair.start_ms[1] == fifo.start_ms[1]  # the head starts when it would have anyway
    multifactor = replay(trace(BACKFILL), pool(5), queue="multifactor")  # the live default backfills the same
    assert list(multifactor.start_ms) == list(fair.start_ms) and multifactor.backfilled == 1


def test_backfill_uses_nodes_the_head_does_not_need() -> None:
    # nodes of 8 and 4 GPUs: A fills the 8-GPU node; B needs 8 GPUs on one node, so only that node
    # serves it; C (2 GPUs, long) lands on the 4-GPU node and may start at once
    r = replay(trace([(0, 100, 8), (1, 10, 8), (2, 10_000, 2)]), pool(8, 4), queue="fair")
    assert list(r.start_ms) == [0, 100_000, 2_000]


def test_gangs_of_whole_nodes_and_unplaceable_jobs() -> None:
    sizes = {8: 3, 4: 2}
    assert job_shape(8, sizes) == (8, 1)
    assert job_shape(16, sizes) == (8, 2)
    assert job_shape(12, sizes) == (4, 3)  # 3 members of 4 (8-GPU nodes can hold one each)
    assert job_shape(40, sizes) == "5 nodes of 8 GPUs needed, 3 in the pool"
    assert job_shape(9, sizes) == "no node size divides 9 GPUs"
    r = replay(trace([(0, 10, 16), (0, 10, 9), (1, 10, 1)]), pool(8, 8, 4, one_site_per_tier=True), queue="fifo")
    assert list(r.start_ms) == [0, -1, 1000]
    assert r.unplaceable == {"no node size divides 9 GPUs": 1}
    assert r.completed == 2
    assert r.utilisation_pct == pytest.approx(100 * (16 * 10 + 1 * 10) / (20 * 11))
    # A gang lands whole on one site: with the two 8-GPU nodes dealt to two hub sites it never runs.
    spread = replay(trace([(0, 10, 16), (1, 10, 1)]), pool(8, 8, 4), queue="fifo")
    assert list(spread.start_ms) == [-1, 1000]
    assert spread.unplaceable == {"2 x 8 GPUs never fit on one site": 1}


def test_du_is_metered_per_model_and_opaque_models_report_hours() -> None:
    nodes = [PoolNode("a", 1000, 0, 1, "A10", 24.0), PoolNode("x", 1000, 0, 1, "GPU-series-9", 0.0)]
    sim = build_pool("mixed", "test", nodes)
    r = replay(trace([(0, 3600, 1), (0, 7200, 1)]), sim, queue="fifo")
    # equal best-fit scores go to the first node: the 1-hour job on the A10, the 2-hour one on the opaque model.
    # A10 is rated 125 dense FP16 TFLOPS: one device-hour is 0.125 du, exactly
    assert r.du == Fraction(1, 8)
    assert r.unmetered_device_hours == {"GPU-series-9": 2.0}
    assert r.device_hours == pytest.approx(3.0)


def random_trace(n: int, seed: int, max_gpus: int = 8) -> Trace:
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.integers(0, 5_000, size=n)) / 1.0
    durations = rng.integers(1, 2_000, size=n)
    gpus = rng.choice([1, 1, 1, 2, 4, 8, 16][: 7 if max_gpus >= 16 else 6], size=n)
    groups = [f"g{int(g)}" for g in rng.integers(0, 4, size=n)]
    return trace([(float(a), float(d), int(g)) for a, d, g in zip(arrivals, durations, gpus, strict=True)], groups)


@pytest.mark.parametrize("queue", ["fifo", "sjf", "fair", "multifactor"])
def test_capacity_is_conserved_at_every_pass_and_released_at_the_end(queue: str) -> None:
    sim = pool(8, 8, 4, 4, 2, 1, 1, 8)
    r = replay(random_trace(300, seed=5, max_gpus=16), sim, queue=queue, audit=True)
    assert r.completed + r.unplaceable_total == 300
    assert (sim.snapshot.dev_free == 1000).all()
    assert (sim.snapshot.cpu_free == sim.snapshot.cpu_total).all()
    ran = r.start_ms >= 0
    assert (r.start_ms[ran] >= random_trace(300, seed=5, max_gpus=16).arrival_ms[ran]).all()


def test_same_seed_same_results_and_the_seed_matters() -> None:
    jobs = random_trace(400, seed=9)
    runs = [replay(jobs, pool(8, 8, 4, 4, 2, 2, 1, 1), queue="fair", policy="random", seed=s) for s in (3, 3, 4)]
    assert np.array_equal(runs[0].start_ms, runs[1].start_ms) and np.array_equal(runs[0].end_ms, runs[1].end_ms)
    same = {k: v for k, v in runs[0].figures().items() if k not in ("wall_s", "events_per_s")}
    assert same == {k: v for k, v in runs[1].figures().items() if k not in ("wall_s", "events_per_s")}
    assert runs[0].du != runs[2].du or not np.array_equal(runs[0].start_ms, runs[2].start_ms)


def test_progress_is_reported_at_the_end() -> None:
    seen: list[ReplayProgress] = []
    replay(trace(THREE), pool(1), progress=seen.append)
    assert seen[-1].done == seen[-1].total == 3


def shared_data() -> Path:
    try:
        return find_data_dir()
    except ValueError:
        pytest.skip("the shared data folder (../shared/data) is not here")


def test_philly_slice_on_openb_is_deterministic() -> None:
    data = shared_data()
    full = load_philly(data / "philly" / "philly.csv")
    assert len(full) == 82_247 and full.skipped_total == 0
    head = Trace(name="philly-head", path=full.path, arrival_ms=full.arrival_ms[:3000],
                 duration_ms=full.duration_ms[:3000], gpus=full.gpus[:3000], group=full.group[:3000],
                 line=full.line[:3000])
    a = replay(compress(head, 50), load_pool("openb", data), queue="fair", seed=1)
    b = replay(compress(head, 50), load_pool("openb", data), queue="fair", seed=1)
    assert np.array_equal(a.start_ms, b.start_ms)
    assert a.completed + a.unplaceable_total == 3000
