"""Heterogeneity: which of the models a job accepts it should run on, by throughput per fen.

A job may accept several accelerator models (`PlacementRequest.models`). Given its workload class
(`PlacementRequest.workload`), a throughput table (`core.throughput`, seeded from Gavel) and each
model's price in integer fen per du, `prefer_models` ranks the accepted models best value first
(`ThroughputTable.rank_models`: measured steps/s per fen/h, then rated FP16 per fen/h, then by name)
and records the order in `PlacementRequest.model_preference`. Score-based policies (the default among
them) then place the job on the first model in that order that has room, falling back to the next.

The live scheduler and the simulator order by the providers' posted prices: `cheapest_model_prices`
takes each model's lowest current price per du among the pool's priced nodes, and
`prefer_cheapest_work` ranks by the lowest expected fen for the job's work (price per du over measured
throughput per du), recomputed whenever the prices move.

Pure and deterministic: the same request, table, prices and catalog give the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from computegrid.core.catalog import Catalog
from computegrid.core.placement.base import PlacementRequest
from computegrid.core.pool import PoolSnapshot
from computegrid.core.throughput import ThroughputTable


def prefer_models(request: PlacementRequest, table: ThroughputTable, prices_fen_per_du: Mapping[str, int],
                  catalog: Catalog) -> PlacementRequest:
    """The request with `model_preference` set: its accepted models, best throughput per fen first.

    `prices_fen_per_du`: price of each model in integer fen per du (1 du = 1 PFLOP/s of rated FP16 for
    one hour); a model without a price ranks after those with one. Returns the request unchanged (with
    an empty preference) when it names no workload or accepts fewer than two models, so such requests
    are placed exactly as before. Raises ValueError for a price that is not a positive integer.
    """
    if request.workload is None or len(request.models) < 2:
        return replace(request, model_preference=()) if request.model_preference else request
    ranked = table.rank_models(sorted(request.models), request.workload, prices_fen_per_du, catalog)
    return replace(request, model_preference=tuple(ranked))


def chooses_model_by_price(request: PlacementRequest) -> bool:
    """True when the request names a workload and accepts several models, so its model is chosen by price."""
    return request.workload is not None and len(request.models) > 1


def cheapest_model_prices(pool: PoolSnapshot) -> dict[str, int]:
    """Each accelerator model's lowest current price per du (fen) among the pool's priced nodes.

    A node's price (`pool.price`; -1 when its provider posts none) is the price of its first device's model,
    as services/billing/node_prices prices a node. Models on no priced node are absent.
    """
    rows = np.flatnonzero((pool.price >= 0) & (pool.dev_count > 0))
    if rows.size == 0:
        return {}
    codes = pool.dev_model_code[pool.dev_start[rows]]
    lowest = np.full(len(pool.model_code), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(lowest, codes, pool.price[rows])
    return {model: int(lowest[code]) for model, code in pool.model_code.items()
            if lowest[code] != np.iinfo(np.int64).max}


def prefer_cheapest_work(request: PlacementRequest, table: ThroughputTable, prices_fen_per_du: Mapping[str, int],
                         catalog: Catalog) -> PlacementRequest:
    """The request with `model_preference` set by the lowest expected fen for its work, cheapest first.

    Expected fen per step = price (fen per du) / measured steps per du, the inverse of `prefer_models`'
    throughput per fen, with each model's price from `prices_fen_per_du` (in the scheduler, the cheapest
    posted price among the nodes that have it: `cheapest_model_prices`). Models that no one prices come
    after the priced ones, ordered among themselves as if equally priced (by measured throughput per du);
    when none is priced that is the whole order. A posted price of 0 counts as 1 fen/du (the least
    `rank_models` takes). Requests that do not choose (`chooses_model_by_price`) come back unchanged.
    """
    if not chooses_model_by_price(request):
        return prefer_models(request, table, {}, catalog)
    assert request.workload is not None
    priced = {m: max(1, int(p)) for m in request.models if (p := prices_fen_per_du.get(m)) is not None}
    unpriced = sorted(request.models - priced.keys())
    first = table.rank_models(sorted(priced), request.workload, priced, catalog) if priced else []
    rest = table.rank_models(unpriced, request.workload, dict.fromkeys(unpriced, 1), catalog) if unpriced else []
    return replace(request, model_preference=tuple(first + rest))
