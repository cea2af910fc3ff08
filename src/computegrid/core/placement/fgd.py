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

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementRequest,
    RttTable,
    device_eligibility,
    register_policy,
)
from computegrid.core.placement.fragmentation import (
    SCALAR_BATCH,
    FragModel,
    TypicalPod,
    sigmoid_thresholds,
    typical_key,
    typical_pods_from,
)
from computegrid.core.placement.scored import RankCache, ScoreCache, ScoredPolicy
from computegrid.core.pool import IntArray, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE

#: up to this many nodes are scored one by one through the memo, more as one vectorised batch
ROW_BATCH = 512


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
        self._seen_memory: Counter[tuple[int, int, int, frozenset[str]]] = Counter()
        self._total = 0
        self._next_refresh = 1
        self.set_mix(typical or ())

    def set_mix(self, mix: tuple[TypicalPod, ...]) -> None:
        """Use `mix` from now on (drops the cached scores)."""
        self.model = FragModel(mix)
        self.cache = ScoreCache()
        self.ranks = RankCache()
        self._row_memo: dict[tuple[int, ...], list[int]] = {}
        self._node_memo: dict[tuple[int, ...], int] = {}
        self._row_memo_pool: PoolSnapshot | None = None

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """As ScoredPolicy.place; a policy that learns its mix first counts the request."""
        if self._learn:
            key = typical_key(req)
            self._seen[key] += 1
            self._seen_memory[key] += req.memory_mb
            self._total += 1
            if self._total >= self._next_refresh:
                self.set_mix(typical_pods_from(TypicalPod(*key, count, self._seen_memory[key] // count)
                                               for key, count in self._seen.items()))
                self._next_refresh = min(self._next_refresh * 2, self._next_refresh + 4096)
        return super().place(pool, req, rtt)

    def choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """Score per node of `rows` and device slot (-1 where the slot is not a choice); higher is better.

        A few nodes are scored one by one in pure Python (`row_choice_scores`), more as one batch
        (`batch_choice_scores`); both give the same integers.
        """
        if len(rows) <= SCALAR_BATCH:
            width = pool.node_dev_rows.shape[1]
            return np.array([self.row_choice_scores(pool, req, row) for row in rows.tolist()],
                            dtype=np.int64).reshape(len(rows), width)
        return self.batch_choice_scores(pool, req, rows)

    def batch_choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """`choice_scores` of many nodes, vectorised."""
        raise NotImplementedError

    def row_choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> list[int]:
        """`choice_scores` of one node, in pure Python (one entry per device slot).

        Memoised by what the scores depend on when every device of the node is of an accepted kind: the
        request's milli per node, the node's access class, its CPU level (against the mix's CPU sizes)
        before and after the member, and its devices' free shares in slot order.
        """
        if req.milli_per_node and not device_eligibility(pool, req)[2][row]:
            return self.row_choice_scores_uncached(pool, req, row)
        if self._row_memo_pool is not pool or len(self._row_memo) > 1_000_000:
            self._bind_memos(pool)
        model = self.model
        start, stop = pool.node_devices(row)
        cpu = int(pool.cpu_free[row])
        key = (req.milli_per_node, int(model._access[0][row]), bisect_right(model._levels, cpu),
               bisect_right(model._levels, cpu - req.cpu_milli), *pool.dev_free[start:stop].tolist())
        hit = self._row_memo.get(key)
        if hit is None:
            hit = self._row_memo[key] = self.row_choice_scores_uncached(pool, req, row)
        return hit

    def row_choice_scores_uncached(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> list[int]:
        """`row_choice_scores` computed afresh."""
        raise NotImplementedError

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """The best choice's score per node of `rows` (up to `ROW_BATCH` nodes one by one, memoised)."""
        if len(rows) <= ROW_BATCH:
            return np.array([self.row_node_score(pool, req, row) for row in rows.tolist()], dtype=np.int64)
        best: IntArray = self.choice_scores(pool, req, rows).max(axis=1).astype(np.int64)
        return best

    def row_node_score(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> int:
        """The best choice's score on node `row`, in pure Python.

        When every device of the node is of an accepted kind the best score does not depend on the
        order of the devices, so it is memoised by the request's milli per node, the node's access
        class, its CPU level before and after the member, and its sorted free shares.
        """
        if req.milli_per_node and not device_eligibility(pool, req)[2][row]:
            return max(self.row_choice_scores_uncached(pool, req, row))
        if self._row_memo_pool is not pool or len(self._node_memo) > 1_000_000:
            self._bind_memos(pool)
        model = self.model
        start, stop = pool.node_devices(row)
        cpu = int(pool.cpu_free[row])
        key = (req.milli_per_node, int(model._access[0][row]), bisect_right(model._levels, cpu),
               bisect_right(model._levels, cpu - req.cpu_milli), *sorted(pool.dev_free[start:stop].tolist()))
        hit = self._node_memo.get(key)
        if hit is None:
            hit = self._node_memo[key] = max(self.row_choice_scores_uncached(pool, req, row))
        return hit

    def _bind_memos(self, pool: PoolSnapshot) -> None:
        self._row_memo_pool, self._row_memo, self._node_memo = pool, {}, {}
        self.model.access(pool)

    def order_devices(self, pool: PoolSnapshot, row: int, req: PlacementRequest, candidates: IntArray) -> IntArray:
        """A share goes to the fitting device with the best score (lowest index on ties)."""
        if req.milli_per_node >= MILLI_PER_DEVICE or len(candidates) <= 1:
            return candidates
        scores = self.row_choice_scores(pool, req, row)
        start = int(pool.dev_start[row])
        ranked = sorted(candidates.tolist(), key=lambda r: -scores[r - start])  # stable: lowest index on ties
        return np.array(ranked, dtype=np.int64)


class FragmentationGradientDescent(FragmentationAware):
    name = "fgd"

    def set_mix(self, mix: tuple[TypicalPod, ...]) -> None:
        """Use `mix` from now on (drops the cached scores)."""
        super().set_mix(mix)
        self.thresholds = np.array(sigmoid_thresholds(self.model.total_weight), dtype=np.int64)
        self._thresholds = self.thresholds.tolist()

    def batch_choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """The paper's score 0..100 per node and device choice; -1 where not a choice."""
        before, after, valid = self.model.choices(pool, req, rows)
        decrease = before[:, None] - after
        return np.where(valid, np.searchsorted(self.thresholds, decrease, side="right"), -1).astype(np.int64)

    def row_choice_scores_uncached(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> list[int]:
        """`batch_choice_scores` of one node, in pure Python."""
        before, after = self.model.choices_row(pool, req, row)
        thresholds = self._thresholds
        return [-1 if a is None else bisect_right(thresholds, before - a) for a in after]


register_policy(FragmentationGradientDescent.name, FragmentationGradientDescent)
