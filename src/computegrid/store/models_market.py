"""Market tables: providers' offers, tenants' bids, leases (spot, on-demand holds, reserved blocks),
the spot price index and the record of each round.

Prices are integer fen per du (BIGINT); device memory is exact fraction text ("80"); times are
epoch milliseconds. Models are canonical catalog names. See docs/market.md, "Live service".
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from computegrid.store.models import Base


class MarketOffer(Base):
    """A provider's devices of one model at one of its sites: `spot` (open capacity now), `reserved`
    (a future window sold as blocks) or `resale` (a tenant's unused reserved time, `reseller_tenant_id`)."""

    __tablename__ = "market_offers"
    __table_args__ = (Index("ix_market_offers_kind_state", "kind", "state"),
                      Index("ix_market_offers_reservation", "reservation_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    model: Mapped[str] = mapped_column(String(64))
    device_memory_gb: Mapped[str] = mapped_column(String(32))
    devices: Mapped[int] = mapped_column(Integer)
    floor_fen_per_du: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))  # spot | reserved | resale
    window_start_ms: Mapped[int | None] = mapped_column(BigInteger)
    window_end_ms: Mapped[int | None] = mapped_column(BigInteger)
    interruptible: Mapped[bool] = mapped_column(Boolean, default=False)
    reseller_tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    reservation_id: Mapped[int | None] = mapped_column(Integer)  # the lease a resale offer sells on
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | cancelled
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class MarketBid(Base):
    """A tenant's bid: `spot` for an interruptible job (`job_id`; its resources are the constraints),
    or `reserved` for a block in a future window, cleared against reserved and resale offers."""

    __tablename__ = "market_bids"
    __table_args__ = (UniqueConstraint("job_id"), Index("ix_market_bids_state", "state", "kind"),
                      Index("ix_market_bids_tenant", "tenant_id", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(8))  # spot | reserved
    devices: Mapped[int] = mapped_column(Integer)
    # None on a job's bid without a price limit: it pays up to the posted on-demand price
    limit_fen_per_du: Mapped[int | None] = mapped_column(BigInteger)
    models: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of canonical models; [] = any
    min_device_memory_gb: Mapped[str] = mapped_column(String(32), default="0")
    regions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list; [] = any
    tier: Mapped[str | None] = mapped_column(String(8))
    window_start_ms: Mapped[int | None] = mapped_column(BigInteger)
    window_end_ms: Mapped[int | None] = mapped_column(BigInteger)
    # open | leased (a spot lease holds it) | filled (reserved block bought) | cancelled | closed | refused
    state: Mapped[str] = mapped_column(String(12), default="open")
    state_reason: Mapped[str] = mapped_column(Text, default="")
    lease_id: Mapped[int | None] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class MarketLease(Base):
    """Capacity held by a tenant on an offer.

    `spot`: an interruptible job's devices at its round's class price, from allocation until the
    attempt ends (state allocated -> active -> preempting -> ended). `on-demand`: devices a spot
    round took back for a waiting on-demand job, held until it is placed. `reserved`: a block of
    devices over [start_ms, end_ms) bought at `price_fen_per_du` for `cost_fen` (state held).
    """

    __tablename__ = "market_leases"
    __table_args__ = (Index("ix_market_leases_kind_state", "kind", "state"),
                      Index("ix_market_leases_offer", "offer_id"), Index("ix_market_leases_job", "job_id"),
                      Index("ix_market_leases_tenant", "tenant_id", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # spot | on-demand | reserved
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    offer_id: Mapped[int] = mapped_column(ForeignKey("market_offers.id"))
    bid_id: Mapped[int | None] = mapped_column(ForeignKey("market_bids.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int | None] = mapped_column(Integer)  # the job attempt that runs on it (spot)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    model: Mapped[str] = mapped_column(String(64))
    devices: Mapped[int] = mapped_column(Integer)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    limit_fen_per_du: Mapped[int | None] = mapped_column(BigInteger)
    price_fen_per_du: Mapped[int] = mapped_column(BigInteger)
    cost_fen: Mapped[int | None] = mapped_column(BigInteger)  # reserved: what the block cost, rounded half up
    resold_devices: Mapped[int] = mapped_column(Integer, default=0)  # reserved: most devices sold on at once
    posting_key: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(12))
    preempt_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class SpotIndexPoint(Base):
    """The spot price of a class (model, region) from `at_ms` until the class's next point."""

    __tablename__ = "spot_index_points"
    __table_args__ = (UniqueConstraint("model", "region", "at_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    price_fen_per_du: Mapped[int] = mapped_column(BigInteger)
    devices: Mapped[int] = mapped_column(Integer)  # spot devices held in the class after the round
    round_id: Mapped[int | None] = mapped_column(ForeignKey("market_rounds.id"))


class MarketRound(Base):
    """One market round: when, and what it decided (JSON summary)."""

    __tablename__ = "market_rounds"
    __table_args__ = (Index("ix_market_rounds_at", "at_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
