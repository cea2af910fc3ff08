"""GPU clustering (the FGD paper's GpuClustering): put jobs of the same shape together.

A node's shapes are those of its running allocations (a device share, 1, 2, 4 or 8 whole
devices; see `pool.SHAPES`). Score bands, as the paper's simulator has them:
(75, 100] the node runs only this shape; (50, 75] this shape among others; (25, 50] an idle
node; [0, 25] other shapes only. Within a band, fuller nodes (less GPU free) score higher.
A job that takes no device scores 0 everywhere.
"""

from __future__ import annotations

import numpy as np

from computegrid.core.placement.base import PlacementRequest, register_policy
from computegrid.core.placement.best_fit import MAX_SPEC_GPU
from computegrid.core.placement.scored import ScoredPolicy
from computegrid.core.pool import IntArray, PoolSnapshot, shape_of


def gpu_clustering_scores(pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
    """GpuClustering score per node of `rows` (0..100); unitless."""
    shape = shape_of(req.devices_per_node, req.milli_per_device if req.milli_per_node else 0)
    if shape == 0:
        return np.zeros(len(rows), dtype=np.int64)
    counts = pool.shape_count[rows, 1:]
    kinds = np.count_nonzero(counts, axis=1)
    same = pool.shape_count[rows, shape] > 0
    band = np.where(same, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
    fill = 25 * (MAX_SPEC_GPU - pool.free_milli[rows]) // MAX_SPEC_GPU
    return (band + fill).astype(np.int64)


class GpuClustering(ScoredPolicy):
    name = "gpu-clustering"

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """See `gpu_clustering_scores`."""
        return gpu_clustering_scores(pool, req, rows)


register_policy(GpuClustering.name, GpuClustering)
