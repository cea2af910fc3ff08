"""First-fit: the lowest-numbered feasible nodes, and the lowest-indexed free devices on each."""

from __future__ import annotations

import numpy as np

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementRequest,
    RttTable,
    allocation_for,
    failure_detail,
    feasible_nodes,
    place_preferring,
    register_policy,
)
from computegrid.core.pool import PoolSnapshot


class FirstFit:
    name = "first-fit"

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """The first `req.nodes` feasible nodes in pool order (all or nothing); a `model_preference` is
        honoured as in `base.place_preferring`."""
        return place_preferring(self._place_one, pool, req, rtt)

    def _place_one(self, pool: PoolSnapshot, req: PlacementRequest,
                   rtt: RttTable | None) -> Placement | PlacementFailure:
        feas = feasible_nodes(pool, req, rtt)
        rows = np.nonzero(feas.node_mask)[0]
        if len(rows) < req.nodes:
            return PlacementFailure(tuple(feas.exclusions), failure_detail(pool, req, len(rows)))
        return Placement(tuple(allocation_for(pool, int(r), req) for r in rows[: req.nodes]), self.name)


register_policy(FirstFit.name, FirstFit)
