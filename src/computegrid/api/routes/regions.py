"""Regions and round-trip times (see docs/regions.md): everyone may look, only an operator may set."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.schemas_regions import RegionView, RttSet, RttView
from computegrid.services import regions

router = APIRouter(prefix="/v1/regions", tags=["regions"])


@router.get("", response_model=list[RegionView])
def list_regions(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    """Every known region with its tier: built in, added by an operator, or named by a site."""
    with state.db.reading() as session:
        return regions.list_regions(session=session)


@router.get("/rtt", response_model=list[RttView])
def list_rtts(principal: CurrentPrincipal, state: StateDep,
              from_region: str | None = Query(default=None, alias="from", max_length=64,
                                              description="only round trips from this region, nearest first")
              ) -> list[dict[str, Any]]:
    """The round trips the scheduler routes by (ms), each with its source (built-in estimate or operator)."""
    with state.db.reading() as session:
        return regions.list_rtts(session=session, from_region=from_region)


@router.put("/rtt", response_model=RttView)
def set_rtt(body: RttSet, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: override or add the round trip between two regions (`new_region: true` to add a region)."""
    with state.db.transaction() as session:
        view = regions.set_rtt(session=session, principal=principal, now_ms=state.clock.now_ms(),
                               change=regions.RttChange(region_a=body.region_a, region_b=body.region_b,
                                                        rtt_ms=body.rtt_ms, source=body.source,
                                                        new_region=body.new_region))
    state.forget_regions()
    return view


@router.delete("/rtt/{region_a}/{region_b}", response_model=RttView)
def clear_rtt(region_a: str, region_b: str, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: drop an override; the pair goes back to the built-in estimate (or leaves the table)."""
    with state.db.transaction() as session:
        view = regions.clear_rtt(session=session, principal=principal, region_a=region_a, region_b=region_b)
    state.forget_regions()
    return view
