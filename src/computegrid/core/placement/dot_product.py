"""Dot-product (the FGD paper's DotProd, after Tetris), as the paper's simulator configures it.

The node's free vector (CPU, total GPU) and the request's vector, each divided by the maxima
(128 cores, 8 GPUs), are multiplied; the score is 100 x (1 - dot / 2), truncated, so the node
whose free capacity is *least* aligned with the request wins. A fractional member takes the
fitting device with the least free capacity.
"""

from __future__ import annotations

from computegrid.core.placement.base import PlacementRequest, register_policy
from computegrid.core.placement.best_fit import MAX_SPEC_CPU, MAX_SPEC_GPU, truncating_div
from computegrid.core.placement.scored import ScoredPolicy, request_milli
from computegrid.core.pool import IntArray, PoolSnapshot


def dot_product_scores(pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
    """DotProd score per node of `rows` (0..100); unitless, exact integers."""
    weight = (MAX_SPEC_CPU // MAX_SPEC_GPU) ** 2
    dot = pool.cpu_free[rows] * req.cpu_milli + weight * pool.free_milli[rows] * request_milli(req)
    den = 2 * MAX_SPEC_CPU * MAX_SPEC_CPU
    return truncating_div((den - dot) * 100, den)


class DotProduct(ScoredPolicy):
    name = "dot-product"

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """See `dot_product_scores`."""
        return dot_product_scores(pool, req, rows)


register_policy(DotProduct.name, DotProduct)
