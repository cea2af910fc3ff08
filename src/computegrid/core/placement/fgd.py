"""FGD: fragmentation gradient descent (Weng et al., USENIX ATC '23), as the paper's simulator runs it.

FGD places a job where the fragmentation of the typical-pod mix (see `fragmentation.py`) grows
least. Its node score is the paper's int(100 x sigmoid(decrease / 1000)) with the decrease in
frequency-weighted milli-devices (computed here from exact integer thresholds); a fractional
member tries every fitting device and keeps the best-scoring one (lowest index on ties), and
nodes that tie go to the first in pool order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter

import numpy as np

from computegrid.core.placement.base import Placement, PlacementFailure, PlacementRequest, RttTable, register_policy
from computegrid.core.placement.fragmentation import (
    FragModel,
    TypicalPod,
    sigmoid_thresholds,
    typical_key,
    typical_pods_from,
)
from computegrid.core.placement.scored import ScoreCache, ScoredPolicy
from computegrid.core.pool import IntArray, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE


class FragmentationAware(ScoredPolicy):
    """Base of policies scored on the typical-pod mix's fragmentation.

    `typical`: the mix; without one the policy learns it from the requests it is asked to place,
    refreshing it after 1, 2, 4, ... (then every 4096) requests.
    """

    name = "fragmentation-aware"

    def __init__(self, typical: tuple[TypicalPod, ...] | None = None) -> None:
        super().__init__()
        self._learn = typical is None
        self._seen: Counter[tuple[int, int, int, frozenset[str]]] = Counter()
        self._total = 0
        self._next_refresh = 1
        self.set_mix(typical or ())

    def set_mix(self, mix: tuple[TypicalPod, ...]) -> None:
        """Use `mix` from now on (drops the cached scores)."""
        self.model = FragModel(mix)
        self.cache = ScoreCache()

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """As ScoredPolicy.place; a policy that learns its mix first counts the request."""
        if self._learn:
            self._seen[typical_key(req)] += 1
            self._total += 1
            if self._total >= self._next_refresh:
                self.set_mix(typical_pods_from(TypicalPod(cpu, milli, devices, models, count)
                                               for (cpu, milli, devices, models), count in self._seen.items()))
                self._next_refresh = min(self._next_refresh * 2, self._next_refresh + 4096)
        return super().place(pool, req, rtt)

    def choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """Score per node of `rows` and device slot (-1 where the slot is not a choice); higher is better."""
        raise NotImplementedError

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """The best choice's score per node of `rows`."""
        best: IntArray = self.choice_scores(pool, req, rows).max(axis=1).astype(np.int64)
        return best

    def order_devices(self, pool: PoolSnapshot, row: int, req: PlacementRequest, candidates: IntArray) -> IntArray:
        """A share goes to the fitting device with the best score (lowest index on ties)."""
        if req.milli_per_node >= MILLI_PER_DEVICE or len(candidates) <= 1:
            return candidates
        scores = self.choice_scores(pool, req, np.array([row], dtype=np.int64))[0]
        start = int(pool.dev_start[row])
        return candidates[np.argsort(-scores[candidates - start], kind="stable")]


class FragmentationGradientDescent(FragmentationAware):
    name = "fgd"

    def set_mix(self, mix: tuple[TypicalPod, ...]) -> None:
        """Use `mix` from now on (drops the cached scores)."""
        super().set_mix(mix)
        self.thresholds = np.array(sigmoid_thresholds(self.model.total_weight), dtype=np.int64)
        self._thresholds = self.thresholds.tolist()

    def choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """The paper's score 0..100 per node and device choice; -1 where not a choice."""
        before, after, valid = self.model.choices(pool, req, rows)
        decrease = before[:, None] - after
        if len(rows) == 1:
            scores = [bisect_right(self._thresholds, d) for d in decrease[0].tolist()]
            return np.where(valid, np.array([scores], dtype=np.int64), -1)
        return np.where(valid, np.searchsorted(self.thresholds, decrease, side="right"), -1).astype(np.int64)


register_policy(FragmentationGradientDescent.name, FragmentationGradientDescent)
