"""Each node's current on-demand price per du, for placement's price limit (`max_price_fen_per_du`).

A node's price is its site provider's posted schedule for the node's accelerator model and the site's
tier, in the time band of `now`. Nodes without devices, and nodes of providers that post no prices,
stay unpriced (-1 in the pool): a price limit does not exclude them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.billing import PriceError, price_fen_per_du
from computegrid.core.pool import PoolSnapshot
from computegrid.services.billing.prices import PostedPrices, load_prices
from computegrid.store.models import Node, Site


def node_prices(session: Session, pool: PoolSnapshot, now_ms: int) -> dict[int, int]:
    """Node id -> fen per du now, for the nodes whose provider posts prices."""
    posted: dict[int, PostedPrices | None] = {}
    out: dict[int, int] = {}
    for node_id, provider_id, tier in session.execute(
            select(Node.id, Site.provider_id, Site.tier).join(Site, Site.id == Node.site_id)):
        row = pool.node_row.get(node_id)
        if provider_id is None or row is None or int(pool.dev_count[row]) == 0:
            continue
        if provider_id not in posted:
            posted[provider_id] = load_prices(session, provider_id)
        prices = posted[provider_id]
        if prices is None:
            continue
        start, _ = pool.node_devices(row)
        model = str(pool.dev_model[start])
        try:
            out[node_id] = price_fen_per_du(prices.schedule, model, tier, now_ms, prices.utc_offset_min)
        except PriceError:
            continue  # a tier or model the schedule cannot price: leave the node unpriced
    return out
