"""What the scheduler asks of the market for each pending job, once per placement pass.

- A job naming a reservation (`reservation: <id>`) runs only on that block's site and model, inside
  its window, on devices of the block still free to its holder, at price_kind "reserved" and
  0 fen/du (the block was paid when bought). Otherwise it waits, and its state_reason says why.
- An interruptible job that an open spot offer could serve is a spot bid: it waits for a round,
  and once the round gives it a lease it is placed on the lease's site and model at the class price
  (price_kind "spot"). An interruptible job no spot offer could serve is placed like any other job.
- Every other job is placed by the scheduler's policy on what is left after reserved blocks in force
  are held back (`capacity.Withholding`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.jobs import JobSpec
from computegrid.core.market import Offer
from computegrid.core.placement.base import RttTable
from computegrid.core.pool import PoolSnapshot
from computegrid.services.market.capacity import Reservations, Withholding, load_reservations
from computegrid.services.market.common import JobNeed, job_need, offer_records
from computegrid.services.views import iso
from computegrid.store.models import Job, Site
from computegrid.store.models_market import MarketBid, MarketLease

MAX_ROW_ID = 2**31 - 1


@dataclass(frozen=True)
class MarketJob:
    kind: Literal["reservation", "spot"]
    need: JobNeed


def market_job(spec: JobSpec) -> MarketJob | None:
    """How the market treats a job: on a reservation, a possible spot bid, or (None) not at all."""
    need = job_need(spec)
    if spec.reservation is not None:
        return MarketJob("reservation", need or JobNeed(0, frozenset(), Fraction(0), None, None, None, False, None,
                                                        spec.reservation))
    if need is not None and spec.interruptible:
        return MarketJob("spot", need)
    return None


@dataclass(frozen=True)
class Target:
    """Place the job on `site`'s devices of `model` at this price."""

    site: str
    model: str
    price_kind: str
    price_fen_per_du: int
    devices: int
    lease_id: int | None = None  # a spot lease to mark active, in the placement's transaction
    reservation_id: int | None = None


@dataclass
class MarketPass:
    now_ms: int
    reservations: Reservations
    withholding: Withholding
    blocks: dict[int, MarketLease] = field(default_factory=dict)
    block_sites: dict[int, str] = field(default_factory=dict)
    tenants: dict[int, int] = field(default_factory=dict)  # job -> tenant
    spot_leases: dict[int, MarketLease] = field(default_factory=dict)  # job -> allocated spot lease
    spot_offers: list[Offer] = field(default_factory=list)
    bid_reasons: dict[int, str] = field(default_factory=dict)  # job -> its bid's last word

    def decide(self, job_id: int, job: MarketJob, rtt: RttTable) -> Target | str | None:
        """Where to place the job, why it waits, or None: place it like any job."""
        if job.kind == "reservation":
            return self._reserved(job_id, job.need)
        lease = self.spot_leases.get(job_id)
        if lease is not None:
            return Target(site=self.block_sites[lease.site_id], model=lease.model, price_kind="spot",
                          price_fen_per_du=lease.price_fen_per_du, devices=lease.devices, lease_id=lease.id)
        if not any(job.need.accepts(o, rtt) for o in self.spot_offers):
            return None
        said = self.bid_reasons.get(job_id) or "its bid joins the next round"
        return f"waiting for a spot round (interruptible): {said}"

    def _reserved(self, job_id: int, need: JobNeed) -> Target | str:
        lease_id = need.reservation
        assert lease_id is not None
        block = self.blocks.get(lease_id)
        if block is None or block.tenant_id != self.tenants.get(job_id):
            return f"waiting: no reservation {lease_id} of this tenant; cancel the job or name one of yours"
        if need.devices == 0:
            return f"waiting: reservation {lease_id} holds devices, and the job asks for none"
        if need.models and block.model not in need.models:
            return (f"waiting: reservation {lease_id} is for {block.model}, which the job's accelerators "
                    f"({'|'.join(sorted(need.models))}) do not accept")
        if self.now_ms < block.start_ms:
            return f"waiting: reservation {lease_id} starts at {iso(block.start_ms)}"
        if block.end_ms is None or self.now_ms >= block.end_ms:
            return (f"waiting: reservation {lease_id} ended at {iso(block.end_ms)}; cancel the job, or resubmit it "
                    "without the reservation")
        free = self.reservations.allowance(lease_id)
        if need.devices > free:
            return (f"waiting: reservation {lease_id} has {max(free, 0)} of its {block.devices} devices free now, "
                    f"the job needs {need.devices}")
        return Target(site=self.block_sites[block.site_id], model=block.model, price_kind="reserved",
                      price_fen_per_du=0, devices=need.devices, reservation_id=lease_id)

    def placed(self, target: Target) -> None:
        """Count what a placement took, so the next job on the same block sees it."""
        if target.reservation_id is not None:
            r = self.reservations
            r.in_use[target.reservation_id] = r.in_use.get(target.reservation_id, 0) + target.devices


def load_pass(session: Session, pool: PoolSnapshot, now_ms: int, jobs: dict[int, MarketJob]) -> MarketPass:
    """The market's state for one pass; reserved blocks in force are held back from `pool`."""
    reservations = load_reservations(session, now_ms)
    withholding = Withholding(pool)
    withholding.apply(reservations.withheld())
    mp = MarketPass(now_ms, reservations, withholding)
    if not jobs:
        return mp
    wanted = {r for j in jobs.values() if j.kind == "reservation" and (r := j.need.reservation) is not None
              and 0 < r <= MAX_ROW_ID}  # a larger id names no row (and PostgreSQL refuses to compare it)
    if wanted:
        mp.blocks = {b.id: b for b in session.scalars(select(MarketLease).where(
            MarketLease.id.in_(wanted), MarketLease.kind == "reserved"))}
        mp.tenants = dict(session.execute(select(Job.id, Job.tenant_id).where(
            Job.id.in_([i for i, j in jobs.items() if j.kind == "reservation"]))).all())
    spot_jobs = [i for i, j in jobs.items() if j.kind == "spot"]
    if spot_jobs:
        mp.spot_leases = {lease.job_id: lease for lease in session.scalars(select(MarketLease).where(
            MarketLease.job_id.in_(spot_jobs), MarketLease.kind == "spot", MarketLease.state == "allocated"))
            if lease.job_id is not None}
        mp.spot_offers = [rec.core() for rec in offer_records(session, kinds=("spot",), now_ms=now_ms)]
        mp.bid_reasons = {job_id: reason for job_id, reason in session.execute(
            select(MarketBid.job_id, MarketBid.state_reason).where(MarketBid.job_id.in_(spot_jobs)))
            if job_id is not None}
    sites = {b.site_id for b in mp.blocks.values()} | {x.site_id for x in mp.spot_leases.values()}
    if sites:
        mp.block_sites = dict(session.execute(select(Site.id, Site.name).where(Site.id.in_(sites))).all())
    return mp
