"""Whole gangs: a multi-node job lands on one site (or, with `gang: {spread: region}`, one region).

Every policy places a gang through `place_whole_gang` (called from `base.place_preferring`): the groups
(sites or regions) with enough feasible nodes now are each placed by the policy restricted to that group
(`PlacementRequest.within`), and the policy's `group_score` picks among the results; ties go to the group
first in pool order. A gang therefore never spans two sites by default, and never two regions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementRequest,
    RttTable,
    failure,
    feasible_mask,
)
from computegrid.core.pool import IntArray, PoolSnapshot

SPREADS = ("site", "region")
PlaceOne = Callable[[PoolSnapshot, PlacementRequest, RttTable | None], Placement | PlacementFailure]
#: a policy's preference among groups' placements: higher is better (None: first group in pool order)
GroupScore = Callable[[PoolSnapshot, PlacementRequest, Placement], int]


def group_codes(pool: PoolSnapshot, spread: str) -> tuple[IntArray, list[str]]:
    """Per node, the index of its site (or region) in order of first appearance in the pool; and the names."""
    key = ("gang-groups", spread)
    hit = pool.static_cache.get(key)
    if hit is None:
        column = pool.site if spread == "site" else pool.region
        names: list[str] = []
        index: dict[str, int] = {}
        codes = np.empty(pool.node_count, dtype=np.int64)
        for row, name in enumerate(column.tolist()):
            code = index.get(name)
            if code is None:
                code = index[name] = len(names)
                names.append(name)
            codes[row] = code
        hit = pool.static_cache[key] = (codes, names)
    return hit


def widest_group(pool: PoolSnapshot, mask: np.ndarray, spread: str) -> tuple[str, int]:
    """The site (or region) with the most nodes in `mask`, and that count; ("", 0) for an empty pool."""
    codes, names = group_codes(pool, spread)
    if not names:
        return "", 0
    counts = np.bincount(codes[mask], minlength=len(names))
    best = int(np.argmax(counts))
    return names[best], int(counts[best])


def place_whole_gang(place_one: PlaceOne, pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None,
                     group_score: GroupScore | None = None) -> Placement | PlacementFailure:
    """Place a gang (`req.nodes` > 1) whole on one site, or one region when `req.gang_spread` is "region".

    `place_one` is the policy's placement; each group with at least `req.nodes` feasible nodes now is tried
    with the request restricted to it, and the placement with the highest `group_score` wins (the first
    group in pool order on ties, or always when `group_score` is None).
    """
    spread = gang_spread(req)
    mask = feasible_mask(pool, req, rtt)
    codes, names = group_codes(pool, spread)
    counts = np.bincount(codes[mask], minlength=len(names)) if names else np.zeros(0, dtype=np.int64)
    best: tuple[int, Placement] | None = None
    for group in np.flatnonzero(counts >= req.nodes).tolist():
        outcome = place_one(pool, replace(req, within=(spread, names[group])), rtt)
        if not isinstance(outcome, Placement):
            continue
        if group_score is None:
            return outcome
        score = group_score(pool, req, outcome)
        if best is None or score > best[0]:
            best = (score, outcome)
    if best is not None:
        return best[1]
    return gang_failure(pool, req, rtt, counts, int(np.count_nonzero(mask)), spread)


def gang_spread(req: PlacementRequest) -> str:
    """The grouping a gang stays within: "site" (the default) or "region"."""
    return req.gang_spread if req.gang_spread in SPREADS else "site"


def gang_failure(pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None, counts: IntArray, found: int,
                 spread: str) -> PlacementFailure:
    """The failure of a gang no group can take: the filters' counts, and how many nodes fit on the widest
    group (`counts`: feasible nodes per group, `found`: in all)."""
    plain = failure(pool, req, rtt, found)
    widest = int(counts.max()) if len(counts) else 0
    names = group_codes(pool, spread)[1]
    where = f" on {spread} {names[int(np.argmax(counts))]} ({found} in all)" if widest else ""
    detail = f"gang needs {req.nodes} nodes on one {spread}, {widest} fit{where}"
    engine = [d for d in plain.detail.split("; ") if d.startswith("no site whose engine")]
    return PlacementFailure(plain.exclusions, "; ".join([*engine, detail]))
