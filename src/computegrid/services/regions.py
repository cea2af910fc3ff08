"""Regions and the latency table the scheduler routes by: the built-in estimates plus operators' overrides.

The built-in table is `core.regions` (regions.csv and the estimated region_rtt_ms.csv). Operators override
a pair's round trip, or add one, with a measured figure (`set_rtt`); each is one `RegionRtt` row per
unordered pair (`region_a` < `region_b`). An operator adds a NEW region only by saying so
(`new_region=True` on the first round trip that names it): an unknown name is otherwise a typo, refused
with the close matches. The known regions are the built-in ones, those operators added, and those where a
site is (a site's region is free text; within one region the round trip is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core.regions import (
    MAX_RTT_MS,
    MIN_RTT_MS,
    REGION_NAME,
    default_regions,
    default_rtt,
    merge_rtt,
    pair_key,
    unknown_region_message,
)
from computegrid.services.errors import Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import RegionRtt, Site

MAX_SOURCE_CHARS = 200
BUILT_IN_SOURCE = "estimate (core/data/region_rtt_ms.csv)"

#: (row count, highest id, latest update ms, sum of ms): moves whenever an override is added, changed or removed
RttVersion = tuple[int, int, int, int]


def rtt_version(session: Session) -> RttVersion:
    """A cheap fingerprint of the overrides (one aggregate query), to reload the table only when it moved."""
    count, top, latest, total = session.execute(
        select(func.count(RegionRtt.id), func.max(RegionRtt.id), func.max(RegionRtt.updated_ms),
               func.sum(RegionRtt.rtt_ms))).one()
    return int(count or 0), int(top or 0), int(latest or 0), int(total or 0)


def _overrides(session: Session) -> list[RegionRtt]:
    return list(session.scalars(select(RegionRtt).order_by(RegionRtt.region_a, RegionRtt.region_b)))


def load_rtt(session: Session) -> dict[tuple[str, str], int]:
    """The scheduler's RttTable: the built-in estimates with every operator override applied (ms)."""
    return merge_rtt(default_rtt(), ((r.region_a, r.region_b, r.rtt_ms) for r in _overrides(session)))


def known_regions(session: Session) -> set[str]:
    """Built-in regions, regions operators added, and regions where a site is."""
    names = {r.name for r in default_regions()}
    for a, b in session.execute(select(RegionRtt.region_a, RegionRtt.region_b)):
        names.update((a, b))
    names.update(session.scalars(select(Site.region).distinct()))
    return names


def check_user_region(region: str | None, known: set[str]) -> None:
    """Refuse a job's `placement.user_region` that names no known region (422 with the close matches)."""
    if region is not None and region not in known:
        raise Invalid(f"placement.user_region: {unknown_region_message(region, known)}",
                      detail=[{"field": "placement.user_region", "message": unknown_region_message(region, known)}])


def list_regions(*, session: Session) -> list[dict[str, Any]]:
    """Every known region: name, tier, kind (hub, city, added by an operator, or only a site's region)."""
    sites: dict[str, list[str]] = {}  # region -> the tier of each site there
    for region, tier in session.execute(select(Site.region, Site.tier)):
        sites.setdefault(region, []).append(tier)
    out = [{"name": r.name, "tier": r.tier, "kind": r.kind, "place": r.place, "built_in": True,
            "sites": len(sites.get(r.name, ()))} for r in default_regions()]
    listed = {r["name"] for r in out}
    added = {name for pair in session.execute(select(RegionRtt.region_a, RegionRtt.region_b)) for name in pair}
    for name in sorted((added | set(sites)) - listed):
        tiers = set(sites.get(name, ()))  # an added region has no tier of its own: its sites' tier, if one
        out.append({"name": name, "tier": tiers.pop() if len(tiers) == 1 else None,
                    "kind": "added" if name in added else "site", "place": "", "built_in": False,
                    "sites": len(sites.get(name, ()))})
    return out


def _view(a: str, b: str, ms: int, row: RegionRtt | None, estimate: int | None) -> dict[str, Any]:
    return {"region_a": a, "region_b": b, "rtt_ms": ms, "source": row.source if row is not None else BUILT_IN_SOURCE,
            "overridden": row is not None, "estimate_ms": estimate,
            "updated_at": iso(row.updated_ms) if row is not None else None}


def list_rtts(*, session: Session, from_region: str | None = None) -> list[dict[str, Any]]:
    """Round trips (ms) between known regions, each with its source; from one region when `from_region` is set,
    nearest first, else every pair in the table. Raises Invalid for an unknown `from_region`."""
    known = known_regions(session)
    if from_region is not None and from_region not in known:
        raise Invalid(unknown_region_message(from_region, known))
    built_in = {pair_key(a, b): ms for (a, b), ms in default_rtt().items()}
    rows = {(r.region_a, r.region_b): r for r in _overrides(session)}
    pairs = {**built_in, **{key: row.rtt_ms for key, row in rows.items()}}
    out = []
    for (a, b), ms in pairs.items():
        if from_region is not None:
            if from_region not in (a, b):
                continue
            a, b = from_region, (b if a == from_region else a)
        out.append(_view(a, b, ms, rows.get(pair_key(a, b)), built_in.get(pair_key(a, b))))
    out.sort(key=lambda v: (v["rtt_ms"], v["region_b"]) if from_region is not None else (v["region_a"],
                                                                                          v["region_b"]))
    return out


@dataclass(frozen=True)
class RttChange:
    """An operator's round trip between two regions, as the API receives it."""

    region_a: str
    region_b: str
    rtt_ms: int
    source: str = ""
    new_region: bool = False


def set_rtt(*, session: Session, principal: Principal, change: RttChange, now_ms: int) -> dict[str, Any]:
    """Override (or add) the round trip between two regions; returns the stored pair.

    Refused (Invalid, nothing stored): a region no one knows unless `new_region` (then the name must be
    lower-case letters, digits and hyphens), the same region twice, a round trip outside 1..10000 ms, or a
    source over 200 characters. Only an operator may do this (Forbidden).
    """
    principal.require_operator()
    if isinstance(change.rtt_ms, bool) or not isinstance(change.rtt_ms, int) \
            or not MIN_RTT_MS <= change.rtt_ms <= MAX_RTT_MS:
        raise Invalid(f"rtt_ms must be a whole number of ms from {MIN_RTT_MS} to {MAX_RTT_MS}, got {change.rtt_ms!r}")
    if change.region_a == change.region_b:
        raise Invalid(f"region_a and region_b are both {change.region_a!r}: within one region the round trip is 0")
    if len(change.source) > MAX_SOURCE_CHARS:
        raise Invalid(f"source must be at most {MAX_SOURCE_CHARS} characters")
    known = known_regions(session)
    for name in (change.region_a, change.region_b):
        if name in known:
            continue
        if not change.new_region:
            raise Invalid(f"{unknown_region_message(name, known)} (to add a new region, send new_region: true)")
        if not REGION_NAME.fullmatch(name):
            raise Invalid(f"new region {name!r}: a name is 1-64 lower-case letters, digits and inner hyphens")
    a, b = pair_key(change.region_a, change.region_b)
    row = session.scalar(select(RegionRtt).where(RegionRtt.region_a == a, RegionRtt.region_b == b))
    if row is None:
        row = RegionRtt(region_a=a, region_b=b)
        session.add(row)
    row.rtt_ms = change.rtt_ms
    row.source = change.source.strip() or f"set by operator {principal.name}"
    row.updated_ms = max(now_ms, (row.updated_ms or 0) + 1)  # a change always moves the fingerprint
    session.flush()
    estimate = {pair_key(x, y): ms for (x, y), ms in default_rtt().items()}.get((a, b))
    return _view(a, b, row.rtt_ms, row, estimate)


def clear_rtt(*, session: Session, principal: Principal, region_a: str, region_b: str) -> dict[str, Any]:
    """Remove an operator's round trip between two regions: the pair goes back to the built-in estimate
    (or leaves the table, for a pair it does not have). Raises NotFound when no override is stored."""
    principal.require_operator()
    a, b = pair_key(region_a, region_b)
    row = session.scalar(select(RegionRtt).where(RegionRtt.region_a == a, RegionRtt.region_b == b))
    if row is None:
        raise NotFound(f"no operator round trip is stored between {region_a!r} and {region_b!r}")
    session.delete(row)
    session.flush()
    estimate = {pair_key(x, y): ms for (x, y), ms in default_rtt().items()}.get((a, b))
    return {"region_a": a, "region_b": b, "rtt_ms": estimate, "source": BUILT_IN_SOURCE if estimate else None,
            "overridden": False, "estimate_ms": estimate, "updated_at": None}
