"""GPU packing (the FGD paper's GpuPacking): prefer shared devices, then used nodes, then free nodes.

Scores, as the paper's simulator ranks them (higher first):
1. the member fits on devices already in use: 100 - (their free share in %) / 10, at least 50;
2. it must take whole free devices of a node already in use: 50 - devices taken, at least 33;
3. the node is entirely free: 33 - its device count (at least the device count).
A job that takes no device scores 0 everywhere. Devices are tried least-free first.
"""

from __future__ import annotations

import numpy as np

from computegrid.core.placement.base import PlacementRequest, register_policy
from computegrid.core.placement.scored import ScoredPolicy, eligible_matrix
from computegrid.core.pool import IntArray, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE


def gpu_packing_scores(pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
    """GpuPacking score per node of `rows` (0..100); unitless."""
    if not req.milli_per_node:
        return np.zeros(len(rows), dtype=np.int64)
    devices = pool.dev_count[rows]
    whole = pool.free_whole[rows]
    free_node = np.maximum(33 - whole, whole)
    if req.milli_per_node >= MILLI_PER_DEVICE:
        used_node = np.full(len(rows), max(50 - req.devices_per_node, 33), dtype=np.int64)
    else:
        share = req.milli_per_device
        free = pool.device_free_matrix(rows)
        fits = eligible_matrix(pool, req, rows) & (free >= share)
        tightest = np.where(fits, free, MILLI_PER_DEVICE + 1).min(axis=1)
        shared = np.maximum(100 - (tightest * 100 // MILLI_PER_DEVICE) // 10, 50)
        used_node = np.where(tightest >= MILLI_PER_DEVICE, 49, shared)
    return np.where(whole == devices, free_node, used_node).astype(np.int64)


class GpuPacking(ScoredPolicy):
    name = "gpu-packing"

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """See `gpu_packing_scores`."""
        return gpu_packing_scores(pool, req, rows)


register_policy(GpuPacking.name, GpuPacking)
