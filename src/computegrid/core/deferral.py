"""Deadlines and trough-filling: when and where a job with a deadline should start to cost least.

A job that names a `deadline` and a `time_limit` may wait, but must start by its latest start
(deadline - time_limit) so that it finishes in time. `plan_start` compares, for each candidate site and
each candidate start time, the expected cost of the whole run window: the site's posted price (fen per du,
`core.billing.prices`, the cheapest of the models the job could use there) integrated over
[start, start + run]. The price is constant between band edges, so the cheapest window starts or ends on
an edge, or is pinned to now or to the latest start: those are the candidate starts (edges up to the
latest start, edges minus the run time, now, the latest start). The cheapest (site, start) wins; ties go
to the earlier start, then to a hub-tier site (cheap power in the west), then to the site name. The job
waits only when a later start is strictly cheaper than the cheapest start now.

Costs are in fen per du-of-work x ms (a relative figure: the job's du are the same wherever it runs on
the models priced); sites without a posted schedule are not candidates. Pure: time comes in as epoch ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from computegrid.core.billing.errors import PriceError
from computegrid.core.billing.prices import PriceSchedule, band_at, next_band_change_ms, price_fen_per_du
from computegrid.core.placement.base import PlacementRequest, RttTable, feasible_nodes
from computegrid.core.pool import PoolSnapshot


@dataclass(frozen=True)
class SiteTariff:
    """A candidate site: its name, tier, provider's schedule, the UTC offset (minutes) its bands are read in,
    and the models the job could use there (canonical catalog names)."""

    site: str
    tier: str
    schedule: PriceSchedule
    utc_offset_min: int
    models: tuple[str, ...]


@dataclass(frozen=True)
class StartPlan:
    """Where and when to start: `start_ms` (epoch ms; the current time when the job should not wait), at
    `site`, in time band `band` (None when in no band), with `latest_start_ms` = deadline - run time; the
    expected costs (fen/du x ms) of the plan and of the cheapest start now."""

    start_ms: int
    site: str
    band: str | None
    latest_start_ms: int
    cost: int
    cost_now: int

    def defers(self, now_ms: int) -> bool:
        return self.start_ms > now_ms


def _price(t: SiteTariff, at_ms: int) -> int:
    return min(price_fen_per_du(t.schedule, m, t.tier, at_ms, t.utc_offset_min) for m in t.models)


def window_cost(tariff: SiteTariff, start_ms: int, run_ms: int) -> int:
    """The site's price (fen per du, cheapest model) integrated over [start_ms, start_ms + run_ms] (fen/du x ms)."""
    end = start_ms + run_ms
    t, total = start_ms, 0
    while t < end:
        change = next_band_change_ms(tariff.schedule, t, tariff.utc_offset_min)
        stop = end if change is None else min(change, end)
        total += _price(tariff, t) * (stop - t)
        t = stop
    return total


def _band_edges(tariff: SiteTariff, now_ms: int, until_ms: int) -> list[int]:
    edges: list[int] = []
    t = now_ms
    while True:
        change = next_band_change_ms(tariff.schedule, t, tariff.utc_offset_min)
        if change is None or change > until_ms:
            return edges
        edges.append(change)
        t = change


def plan_start(now_ms: int, deadline_ms: int, run_ms: int, sites: Sequence[SiteTariff]) -> StartPlan | None:
    """The cheapest (site, start) for a run of `run_ms` that ends by `deadline_ms`; None when no site is priced
    (then: start now, anywhere). When the deadline cannot be met from now (latest start < now) the plan is
    to start now at the cheapest site. Raises ValueError for a run time that is not positive."""
    if run_ms <= 0:
        raise ValueError(f"run time must be positive, got {run_ms} ms")
    priced = [s for s in sites if s.models]
    if not priced:
        return None
    latest = deadline_ms - run_ms
    tier_rank = {"hub": 0}
    best: tuple[int, int, int, str] | None = None
    best_now: int | None = None
    for tariff in priced:
        starts = {now_ms}
        if latest > now_ms:
            starts.add(latest)
            edges = _band_edges(tariff, now_ms, latest + run_ms)
            starts.update(e for e in edges if e <= latest)
            starts.update(e - run_ms for e in edges if now_ms <= e - run_ms <= latest)
        for start in sorted(starts):
            cost = window_cost(tariff, start, run_ms)
            if start == now_ms:
                best_now = cost if best_now is None else min(best_now, cost)
            key = (cost, start, tier_rank.get(tariff.tier, 1), tariff.site)
            if best is None or key < best:
                best = key
    assert best is not None and best_now is not None
    cost, start, _, site = best
    tariff = next(s for s in priced if s.site == site)
    return StartPlan(start_ms=start, site=site, band=band_at(tariff.schedule, start, tariff.utc_offset_min),
                     latest_start_ms=latest, cost=cost, cost_now=best_now)


@dataclass(frozen=True)
class PostedTariff:
    """A site's tier and its provider's posted schedule, with the UTC offset (minutes) its bands are read in."""

    tier: str
    schedule: PriceSchedule
    utc_offset_min: int


def candidate_tariffs(pool: PoolSnapshot, req: PlacementRequest, posted: Mapping[str, PostedTariff],
                      rtt: RttTable | None = None) -> list[SiteTariff]:
    """The sites of `pool` that could ever run `req` and that `posted` prices (site name -> tariff), each
    with the models of its eligible devices, by site name. A site whose schedule cannot price its tier or
    models is left out."""
    rows = np.flatnonzero(feasible_nodes(pool, req, rtt, empty=True).node_mask)
    models_at: dict[str, set[str]] = {}
    for row in rows.tolist():
        start, count = pool.node_devices(row)
        models = {str(m) for m in pool.dev_model[start:start + count]}
        if req.models:
            models &= set(req.models)
        models_at.setdefault(str(pool.site[row]), set()).update(models)
    out: list[SiteTariff] = []
    for site in sorted(models_at):
        p = posted.get(site)
        if p is None or not models_at[site]:
            continue
        tariff = SiteTariff(site, p.tier, p.schedule, p.utc_offset_min, tuple(sorted(models_at[site])))
        try:
            window_cost(tariff, 0, 1)
        except PriceError:
            continue
        out.append(tariff)
    return out
