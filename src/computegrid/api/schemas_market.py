"""Request bodies of the market endpoints. Prices are whole fen per du (JSON integers), times integer
epoch milliseconds, device memory an exact decimal string ("80"): floats and booleans are refused."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import Field, StrictBool, StrictInt

from computegrid.api.schemas import Strict
from computegrid.services.billing.parties import MAX_FEN
from computegrid.services.errors import Invalid
from computegrid.services.market.common import DEFAULT_NOTICE_MS, MAX_DEVICES

MAX_MS = 2**53  # epoch milliseconds beyond year 287,000 are typos
TEXT = r"^[^\x00-\x1f\x7f]*$"
Price = Annotated[StrictInt, Field(ge=0, le=MAX_FEN, description="fen per du, a whole number >= 0")]
Devices = Annotated[StrictInt, Field(gt=0, le=MAX_DEVICES, description="whole devices")]
EpochMs = Annotated[StrictInt, Field(ge=0, le=MAX_MS, description="epoch milliseconds")]
Short = Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT)]
Models = Annotated[str | list[Short] | None, Field(
    default=None, description="accepted models: 'A100|H100-80G', a family or vendor, or a list; empty = any")]
_DECIMAL = re.compile(r"\d{1,6}(\.\d{1,6})?")
MAX_ID = 2**31 - 1


def exact_gb(value: str | None, what: str = "min_device_memory_gb") -> Fraction | None:
    """'80' or '31.5' -> an exact Fraction of GB; Invalid for anything else (floats never get here)."""
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value):
        raise Invalid(f"{what} must be a decimal number of GB like \"80\" or \"31.5\", got {value!r}")
    return Fraction(value)


def id_path(what: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=f"the {what}'s id")


def text_query(description: str) -> Any:
    return Query(default=None, max_length=64, pattern=TEXT, description=description)


def ms_query(description: str) -> Any:
    return Query(default=None, ge=0, le=MAX_MS, description=description)


class OfferCreate(Strict):
    site: Short
    model: Short
    devices: Devices
    floor_fen_per_du: Price
    kind: Literal["spot", "reserved"] = "spot"
    window_start_ms: EpochMs | None = None
    window_end_ms: EpochMs | None = None
    interruptible: StrictBool = False
    device_memory_gb: str | None = Field(default=None, max_length=16, description="exact decimal; default: the "
                                                                                  "catalog's memory for the model")


class BidCreate(Strict):
    limit_fen_per_du: Price
    job_id: Annotated[StrictInt, Field(ge=1, le=MAX_ID)] | None = None
    kind: Literal["spot", "reserved"] | None = None
    devices: Devices | None = None
    models: Models = None
    min_device_memory_gb: str | None = Field(default=None, max_length=16)
    regions: list[Short] | None = Field(default=None, max_length=64)
    tier: Literal["core", "hub", "edge"] | None = None
    window_start_ms: EpochMs | None = None
    window_end_ms: EpochMs | None = None


class RoundRun(Strict):
    notice_ms: Annotated[StrictInt, Field(ge=0, le=86_400_000)] = DEFAULT_NOTICE_MS


class QuoteAsk(Strict):
    """Either `job` (a job spec, as submitted) or a request: devices, models, memory, regions, tier."""

    job: dict[str, Any] | None = None
    devices: Devices | None = None
    models: Models = None
    min_device_memory_gb: str | None = Field(default=None, max_length=16)
    regions: list[Short] | None = Field(default=None, max_length=64)
    tier: Literal["core", "hub", "edge"] | None = None
    duration_ms: Annotated[StrictInt, Field(gt=0, le=366 * 86_400_000)] | None = None
    start_ms: EpochMs | None = None


class ReservationBuy(Strict):
    offer_id: Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
    devices: Devices
    start_ms: EpochMs
    end_ms: EpochMs


class ResaleCreate(Strict):
    devices: Devices
    floor_fen_per_du: Price
    from_ms: EpochMs | None = Field(default=None, description="default: now")
