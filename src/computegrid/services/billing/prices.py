"""Provider price schedules: each provider posts its own (an operator may post any provider's).

Stored as JSON of the core `PriceSchedule`:
`{"base_fen_per_du": 1000, "interruptible_floor_fen_per_du": 300,
  "bands": [{"name": "peak", "start": "08:00", "end": "22:00"}, ...],
  "rules": [{"fen_per_du": 1200, "band": "peak"}, {"fen_per_du": 1500, "model": "H100-80G", "tier": "core"}]}`
plus the UTC offset (minutes) the bands are read in, +480 (China Standard Time) by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.core.billing.prices import MAX_UTC_OFFSET_MIN, MIN_UTC_OFFSET_MIN
from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.parties import BILLING_UTC_OFFSET_MIN, provider_for, provider_named
from computegrid.services.errors import Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Provider
from computegrid.store.models_billing import PriceScheduleRow

DEFAULT_UTC_OFFSET_MIN = BILLING_UTC_OFFSET_MIN


@dataclass(frozen=True)
class PostedPrices:
    """A provider's schedule and the UTC offset (minutes) its time bands are read in."""

    schedule: core.PriceSchedule
    utc_offset_min: int


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def schedule_to_json(schedule: core.PriceSchedule) -> dict[str, Any]:
    return {
        "base_fen_per_du": schedule.base_fen_per_du,
        "interruptible_floor_fen_per_du": schedule.interruptible_floor_fen_per_du,
        "bands": [{"name": b.name, "start": _hhmm(b.start_minute), "end": _hhmm(b.end_minute)}
                  for b in schedule.bands],
        "rules": [{k: v for k, v in (("fen_per_du", r.fen_per_du), ("model", r.model), ("tier", r.tier),
                                     ("band", r.band)) if v is not None} for r in schedule.rules],
    }


def schedule_from_json(provider: str, data: dict[str, Any], catalog: Catalog | None = None) -> core.PriceSchedule:
    """A validated core schedule; with a catalog, rule models are checked and made canonical.

    Raises a core PriceError (or BillingError) naming the problem.
    """
    def model_of(name: Any) -> str | None:
        if name is None or catalog is None:
            return name if name is None or isinstance(name, str) else str(name)
        try:
            return catalog.get(str(name)).model
        except UnknownAccelerator as exc:
            raise core.PriceError(f"price rule names {exc}") from None

    bands = tuple(core.TimeBand.of(str(b["name"]), str(b["start"]), str(b["end"])) for b in data.get("bands", []))
    rules = tuple(core.PriceRule(fen_per_du=r["fen_per_du"], model=model_of(r.get("model")), tier=r.get("tier"),
                                 band=r.get("band")) for r in data.get("rules", []))
    return core.PriceSchedule(provider=provider, base_fen_per_du=data["base_fen_per_du"], rules=rules, bands=bands,
                              interruptible_floor_fen_per_du=data.get("interruptible_floor_fen_per_du", 0))


def load_prices(session: Session, provider_id: int) -> PostedPrices | None:
    """The provider's posted prices, or None when it has posted none (for charges and the market)."""
    row = session.get(PriceScheduleRow, provider_id)
    if row is None:
        return None
    provider = session.get(Provider, provider_id)
    assert provider is not None
    return PostedPrices(schedule_from_json(provider.name, json.loads(row.schedule)), row.utc_offset_min)


def prices_view(provider: str, row: PriceScheduleRow) -> dict[str, Any]:
    return {"provider": provider, **json.loads(row.schedule), "utc_offset_min": row.utc_offset_min,
            "updated_at": iso(row.updated_ms)}


def set_prices(*, session: Session, principal: Principal, provider: str, data: dict[str, Any],
               utc_offset_min: int, catalog: Catalog, now_ms: int) -> dict[str, Any]:
    """Post (replace) a provider's schedule. The provider itself or an operator; refused with the rule broken."""
    row_provider = provider_for(session, principal, provider)
    if isinstance(utc_offset_min, bool) or not isinstance(utc_offset_min, int) \
            or not MIN_UTC_OFFSET_MIN <= utc_offset_min <= MAX_UTC_OFFSET_MIN:
        raise Invalid(f"utc_offset_min must be whole minutes from {MIN_UTC_OFFSET_MIN} to {MAX_UTC_OFFSET_MIN}, "
                      f"got {utc_offset_min!r}")
    with refusing():
        schedule = schedule_from_json(row_provider.name, data, catalog)
    row = session.get(PriceScheduleRow, row_provider.id)
    if row is None:
        row = PriceScheduleRow(provider_id=row_provider.id)
        session.add(row)
    row.schedule = json.dumps(schedule_to_json(schedule), sort_keys=True)
    row.utc_offset_min = utc_offset_min
    row.updated_ms = now_ms
    session.flush()
    return prices_view(row_provider.name, row)


def get_prices(*, session: Session, provider: str) -> dict[str, Any]:
    row_provider = provider_named(session, provider)
    row = session.get(PriceScheduleRow, row_provider.id)
    if row is None:
        raise NotFound(f"provider {provider!r} has posted no prices")
    return prices_view(row_provider.name, row)


def list_prices(*, session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(Provider.name, PriceScheduleRow)
                           .join(PriceScheduleRow, PriceScheduleRow.provider_id == Provider.id)
                           .order_by(Provider.name)).all()
    return [prices_view(name, row) for name, row in rows]
