"""Bodies of the region endpoints: an operator's round trip between two regions, and what the listings return."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt

from computegrid.api.schemas import Strict

RegionName = Annotated[str, Field(min_length=1, max_length=64, description="a region's name, e.g. greater-bay")]


class RttSet(Strict):
    """Override (or add) the measured round trip between two regions."""

    region_a: RegionName
    region_b: RegionName
    rtt_ms: StrictInt = Field(description="round trip in ms, 1 to 10000")
    source: str = Field(default="", max_length=200, description="how and by whom it was measured")
    new_region: StrictBool = Field(default=False, description="allow a region no one knows yet (added by this)")


class RegionView(BaseModel):
    name: str
    tier: str | None = Field(description="hub, core or edge; for a region only sites name, their tier if one")
    kind: str = Field(description="hub or city (built in), added (by an operator) or site (only a site's region)")
    place: str
    built_in: bool
    sites: int


class RttView(BaseModel):
    region_a: str
    region_b: str
    rtt_ms: int | None = Field(description="what the scheduler uses, ms (None: the pair left the table)")
    source: str | None
    overridden: bool = Field(description="an operator's figure replaces or adds to the built-in estimate")
    estimate_ms: int | None = Field(description="the built-in estimate for the pair, if it has one")
    updated_at: str | None
