"""Charges: each job attempt, once it has ended, becomes a charge at the price it was bought at.

`charge_attempt` runs inside the transition that ends an attempt (services/jobs.record_event):
the job row holds only the *current* attempt's price, so the price is captured there, per
attempt: a fixed fen/du set at placement (spot clearing, reservation), else the provider's
posted schedule as it stood then (a snapshot, so a later price change does not reprice it).
It writes one `usage_charges` row, unique per (job, attempt), and never raises for data it
cannot use: an attempt's end must never fail because of billing.

The money moves at invoicing. The charge is priced from the attempt's usage records cut at
its end (`ran_until`: a preempted or cancelled attempt pays only for the time it ran), so
usage the agent ships after the transition (a cancelled or preempted attempt is drained
first) is still counted. One usage line per accelerator model; the line's job id is the job
number, or `<job>/<model>` for the rare attempt that used several models.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.core.billing.invoice import format_du
from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.metering import UsageInterval
from computegrid.services.billing.parties import BILLING_UTC_OFFSET_MIN, period_of, tenant_for
from computegrid.services.billing.prices import load_prices, schedule_from_json, schedule_to_json
from computegrid.services.errors import Invalid
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Job, Provider, Site, Tenant, UsageRecord
from computegrid.store.models_billing import UsageCharge

UNPRICED = "unpriced"  # the provider had posted no prices and the attempt had no fixed price: charged 0
MAX_LIST = 1000


def charge_attempt(session: Session, job: Job, attempt: int, now_ms: int) -> UsageCharge | None:
    """Record that `attempt` of `job` has ended, with its price; a repeat for the same attempt does nothing."""
    if attempt < 1 or job.site_id is None:
        return None  # never placed: nothing ran
    if session.scalar(select(UsageCharge.id).where(UsageCharge.job_id == job.id,
                                                   UsageCharge.attempt == attempt)) is not None:
        return None
    site = session.get(Site, job.site_id)
    if site is None:
        return None
    schedule: str | None = None
    offset = BILLING_UTC_OFFSET_MIN
    if job.price_fen_per_du is not None:
        kind = job.price_kind or "fixed"
    else:
        try:
            posted = load_prices(session, site.provider_id)
        except core.BillingError:  # stored schedules were validated when posted; never block an attempt's end
            posted = None
        if posted is None:
            kind = UNPRICED
        else:
            kind = job.price_kind or "on-demand"
            schedule = json.dumps(schedule_to_json(posted.schedule), sort_keys=True)
            offset = posted.utc_offset_min
    ended = job.ended_ms if job.ended_ms is not None else now_ms
    row = UsageCharge(job_id=job.id, attempt=attempt, tenant_id=job.tenant_id, site_id=site.id,
                      provider_id=site.provider_id, tier=site.tier, price_kind=kind,
                      fixed_fen_per_du=job.price_fen_per_du, schedule=schedule, utc_offset_min=offset,
                      ended_ms=ended, period=period_of(ended), invoice_id=None, created_ms=now_ms)
    session.add(row)
    return row


@dataclass(frozen=True)
class PricedCharge:
    """A charge's usage lines (one per model) and anything that could not be priced."""

    charge: UsageCharge
    provider: str
    lines: tuple[core.UsageLine, ...]
    problems: tuple[str, ...]


def _schedule(charge: UsageCharge, provider: str) -> core.PriceSchedule:
    if charge.fixed_fen_per_du is not None:
        return core.PriceSchedule(provider=provider, base_fen_per_du=charge.fixed_fen_per_du)
    if charge.schedule is not None:
        return schedule_from_json(provider, json.loads(charge.schedule))
    return core.PriceSchedule(provider=provider, base_fen_per_du=0)


def price_charge(session: Session, charge: UsageCharge, catalog: Catalog, provider: str) -> PricedCharge:
    """Price the attempt's device usage up to its end, per model, at its captured price."""
    records = session.scalars(select(UsageRecord).where(UsageRecord.job_id == charge.job_id,
                                                        UsageRecord.attempt == charge.attempt,
                                                        UsageRecord.device_index >= 0)
                              .order_by(UsageRecord.start_ms, UsageRecord.id)).all()
    problems: list[str] = []
    by_model: dict[str, list[UsageInterval]] = defaultdict(list)
    for r in records:
        try:
            model = catalog.get(r.model).model if r.model else None
            if model is None:
                raise UnknownAccelerator("a device interval names no accelerator model")
            by_model[model].append(UsageInterval(model, r.share_milli, r.start_ms, r.end_ms))
        except (UnknownAccelerator, ValueError) as exc:
            problems.append(f"usage on node {r.node_id} device {r.device_index} not charged: {exc}")
    lines: list[core.UsageLine] = []
    schedule = _schedule(charge, provider)
    for model in sorted(by_model):
        intervals = core.ran_until(by_model[model], charge.ended_ms)
        try:
            priced = core.charge_usage(intervals, schedule=schedule, tier=charge.tier,
                                       utc_offset_min=charge.utc_offset_min, catalog=catalog)
            if not priced.slices:
                continue
            job_id = str(charge.job_id) if len(by_model) == 1 else f"{charge.job_id}/{model}"
            lines.append(core.usage_line(job_id=job_id, attempt=charge.attempt, provider=provider, tier=charge.tier,
                                         domestic=core.is_domestic(model, catalog), charge=priced,
                                         at_ms=charge.ended_ms))
        except core.BillingError as exc:
            problems.append(f"{model} usage not charged: {exc}")
    return PricedCharge(charge=charge, provider=provider, lines=tuple(lines), problems=tuple(problems))


def line_view(line: core.UsageLine) -> dict[str, Any]:
    price = line.fen_per_du
    return {"job_id": line.job_id, "attempt": line.attempt, "provider": line.provider, "model": line.model,
            "tier": line.tier, "du": format_du(line.du), "fen_per_du": None if price is None else format_du(price, 2),
            "gross_fen": line.gross_fen, "domestic": line.domestic, "at": iso(line.at_ms), "key": line.key}


def charge_view(priced: PricedCharge, tenant: str) -> dict[str, Any]:
    c = priced.charge
    return {"job_id": c.job_id, "attempt": c.attempt, "tenant": tenant, "provider": priced.provider, "tier": c.tier,
            "price_kind": c.price_kind, "fixed_fen_per_du": c.fixed_fen_per_du, "ended_at": iso(c.ended_ms),
            "period": c.period, "status": "invoiced" if c.invoice_id is not None else "pending",
            "invoice_id": c.invoice_id, "lines": [line_view(ln) for ln in priced.lines],
            "gross_fen": sum(ln.gross_fen for ln in priced.lines), "problems": list(priced.problems)}


def list_charges(*, session: Session, principal: Principal, catalog: Catalog, tenant: str | None = None,
                 job_id: int | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Charges of finished attempts: a tenant's own, a provider's (usage on its sites), or (operators) any."""
    if status not in (None, "pending", "invoiced"):
        raise Invalid(f"status must be pending or invoiced, got {status!r}")
    query = (select(UsageCharge, Tenant.name, Provider.name).join(Tenant, Tenant.id == UsageCharge.tenant_id)
             .join(Provider, Provider.id == UsageCharge.provider_id)
             .order_by(UsageCharge.id.desc()).limit(max(1, min(limit, MAX_LIST))))
    if principal.role == "provider":
        query = query.where(UsageCharge.provider_id == principal.provider_id)
    elif tenant is not None or not principal.is_operator:
        query = query.where(UsageCharge.tenant_id == tenant_for(session, principal, tenant).id)
    if job_id is not None:
        query = query.where(UsageCharge.job_id == job_id)
    if status == "pending":
        query = query.where(UsageCharge.invoice_id.is_(None))
    elif status == "invoiced":
        query = query.where(UsageCharge.invoice_id.is_not(None))
    return [charge_view(price_charge(session, c, catalog, provider), name)
            for c, name, provider in session.execute(query).all()]
