"""The spot price index as stored: one point per class (model, region) whenever its price changed."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.market import MarketClass, PricePoint, SpotIndex
from computegrid.services.errors import Invalid
from computegrid.services.market.common import canonical_model
from computegrid.services.views import iso
from computegrid.store.models_market import SpotIndexPoint

MAX_POINTS = 10_000


def latest_index(session: Session) -> SpotIndex:
    """The latest point of every class, as a core index (what quotes need)."""
    newest = (select(SpotIndexPoint.model, SpotIndexPoint.region, func.max(SpotIndexPoint.at_ms).label("at"))
              .group_by(SpotIndexPoint.model, SpotIndexPoint.region).subquery())
    rows = session.execute(select(SpotIndexPoint).join(newest, (newest.c.model == SpotIndexPoint.model)
                                                       & (newest.c.region == SpotIndexPoint.region)
                                                       & (newest.c.at == SpotIndexPoint.at_ms))).scalars()
    return SpotIndex({MarketClass(p.model, p.region): (PricePoint(p.at_ms, p.price_fen_per_du),) for p in rows})


def spot_index(*, session: Session, catalog: Catalog, model: str | None = None, region: str | None = None,
               since_ms: int | None = None, until_ms: int | None = None) -> list[dict[str, Any]]:
    """Each class's price history, oldest first: the point in force at `since_ms` and every later one."""
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise Invalid(f"until_ms ({until_ms}) is before since_ms ({since_ms})")
    query = select(SpotIndexPoint).order_by(SpotIndexPoint.model, SpotIndexPoint.region, SpotIndexPoint.at_ms)
    if model is not None:
        query = query.where(SpotIndexPoint.model == canonical_model(model, catalog))
    if region is not None:
        query = query.where(SpotIndexPoint.region == region)
    if until_ms is not None:
        query = query.where(SpotIndexPoint.at_ms < until_ms)
    series: dict[tuple[str, str], list[SpotIndexPoint]] = defaultdict(list)
    for p in session.scalars(query.limit(MAX_POINTS)):
        series[(p.model, p.region)].append(p)
    out = []
    for (m, r), points in sorted(series.items()):
        if since_ms is not None:
            before = [p for p in points if p.at_ms < since_ms]
            points = before[-1:] + [p for p in points if p.at_ms >= since_ms]
        shown = [{"at_ms": p.at_ms, "at": iso(p.at_ms), "price_fen_per_du": p.price_fen_per_du, "devices": p.devices}
                 for p in points]
        out.append({"model": m, "region": r, "latest": shown[-1] if shown else None, "points": shown})
    return out
