"""Random (the FGD paper's Random): a feasible node uniformly, and a fitting device uniformly.

All randomness comes from the numpy Generator given to the constructor (seed 0 if none),
so a run is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

from computegrid.core.placement.base import Placement, PlacementRequest, register_policy
from computegrid.core.placement.scored import ScoredPolicy
from computegrid.core.pool import BoolArray, IntArray, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE


class RandomPlacement(ScoredPolicy):
    name = "random"

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def choose(self, pool: PoolSnapshot, req: PlacementRequest, mask: BoolArray) -> list[int]:
        """`req.nodes` distinct feasible rows drawn uniformly."""
        rows = np.flatnonzero(mask)
        if req.nodes == 1:
            return [int(rows[int(self.rng.integers(len(rows)))])]
        return [int(r) for r in self.rng.choice(rows, size=req.nodes, replace=False)]

    def group_score(self, pool: PoolSnapshot, req: PlacementRequest, placement: Placement) -> int:
        """A draw: a gang goes to one of the sites with room, uniformly."""
        return int(self.rng.integers(1 << 62))

    def order_devices(self, pool: PoolSnapshot, row: int, req: PlacementRequest, candidates: IntArray) -> IntArray:
        """Whole devices lowest index first; a share goes to a fitting device drawn uniformly."""
        if req.milli_per_node >= MILLI_PER_DEVICE or len(candidates) <= 1:
            return candidates
        pick = int(self.rng.integers(len(candidates)))
        return np.concatenate((candidates[pick:pick + 1], candidates[:pick], candidates[pick + 1:]))


register_policy(RandomPlacement.name, RandomPlacement)
