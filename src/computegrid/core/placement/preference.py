"""Heterogeneity: which of the models a job accepts it should run on, by throughput per fen.

A job may accept several accelerator models (`PlacementRequest.models`). Given its workload class
(`PlacementRequest.workload`), a throughput table (`core.throughput`, seeded from Gavel) and each
model's price in integer fen per du, `prefer_models` ranks the accepted models best value first
(`ThroughputTable.rank_models`: measured steps/s per fen/h, then rated FP16 per fen/h, then by name)
and records the order in `PlacementRequest.model_preference`. Score-based policies (the default among
them) then place the job on the first model in that order that has room, falling back to the next.

Pure and deterministic: the same request, table, prices and catalog give the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from computegrid.core.catalog import Catalog
from computegrid.core.placement.base import PlacementRequest
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
