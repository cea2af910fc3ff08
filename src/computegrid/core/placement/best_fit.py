"""Best-fit (the FGD paper's BestFit): the node with the least CPU and GPU left after placing.

Score, as the paper's simulator computes it: 100 x (1 - (cpu left after / 128 cores x 0.5
+ GPU left after / 8 GPUs x 0.5)), truncated to an integer, here in exact integer arithmetic.
A fractional member takes the fitting device with the least free capacity.
"""

from __future__ import annotations

import numpy as np

from computegrid.core.placement.base import PlacementRequest, register_policy
from computegrid.core.placement.scored import ScoredPolicy, request_milli
from computegrid.core.pool import IntArray, PoolSnapshot

#: The normalising maxima of the paper's simulator: 128 cores (milli-CPU) and 8 GPUs (milli-devices).
MAX_SPEC_CPU = 128_000
MAX_SPEC_GPU = 8_000


def truncating_div(num: IntArray, den: int) -> IntArray:
    """Integer division rounding toward zero (as a float-to-int conversion does)."""
    return np.where(num >= 0, num // den, -((-num) // den)).astype(np.int64)


def best_fit_scores(pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
    """BestFit score per node of `rows` (0..100, higher = tighter fit); unitless."""
    cpu_after = pool.cpu_free[rows] - req.cpu_milli
    gpu_after = pool.free_milli[rows] - request_milli(req)
    weight = MAX_SPEC_CPU // MAX_SPEC_GPU  # GPU milli weigh 16 times a CPU milli
    den = 2 * MAX_SPEC_CPU
    return truncating_div((den - cpu_after - weight * gpu_after) * 100, den)


class BestFit(ScoredPolicy):
    name = "best-fit"

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """See `best_fit_scores`."""
        return best_fit_scores(pool, req, rows)


register_policy(BestFit.name, BestFit)
