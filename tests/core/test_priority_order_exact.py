"""core/priority.py: `multifactor_order` (vectorised) orders exactly as sorting by `job_priority` would, float
for float: two jobs whose priorities are equal on paper but differ in the last bit must fall the same way in
the simulator and live, so the terms are added in the same order."""

from __future__ import annotations

import random

import pytest

from computegrid.core.priority import PriorityInputs, Weights, fair_share_factors, job_priority, multifactor_order


@pytest.mark.parametrize("seed", range(20))
def test_the_order_is_the_sort_by_job_priority(seed: int) -> None:
    rng = random.Random(seed)
    now = 1_800_000_000_000
    # Terms on a decimal grid (ages in tenths of the cap, packages in tenths of the highest), so many pairs
    # of jobs tie on paper and their float sums differ only by the order of addition.
    weights = Weights(age=rng.choice([1, 3, 7]), job_class=rng.choice([1, 3]), fair_share=rng.choice([1, 3]),
                      package=rng.choice([1, 3, 7]), max_age_ms=10)
    jobs = [PriorityInputs(i, now - rng.randint(0, 12), rng.randint(0, 2), rng.randint(0, 10),
                           f"t{rng.randint(0, 3)}") for i in range(rng.choice([2, 500]))]
    shares = {f"t{i}": rng.randint(1, 3) for i in range(4)}
    usage = {f"t{i}": float(rng.randint(0, 3)) for i in range(4)} if seed % 2 else {}
    factors = fair_share_factors(shares, usage)
    top = max(j.package_priority for j in jobs)
    expected = sorted(jobs, key=lambda j: (-job_priority(j, now, factors, top, weights), j.submitted_ms, j.job_id))
    assert multifactor_order(jobs, now, shares, usage, weights) == expected
    assert multifactor_order([], now, shares, usage, weights) == []
