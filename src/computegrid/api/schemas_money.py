"""Request bodies of the money endpoints. Amounts are whole fen (JSON integers): floats, strings,
booleans, zero and negatives are refused. du and ratios are exact decimal strings ("2.5", "0.2"),
never floats, so no amount is ever rounded on the way in."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import Field, StrictInt, StrictStr, model_validator

from computegrid.api.schemas import Strict
from computegrid.services.billing.parties import MAX_FEN
from computegrid.services.errors import Invalid

Fen = Annotated[StrictInt, Field(gt=0, le=MAX_FEN, description="A positive whole number of fen (¥0.01).")]
FenOrZero = Annotated[StrictInt, Field(ge=0, le=MAX_FEN)]
PriceFen = Annotated[StrictInt, Field(ge=0, le=MAX_FEN, description="fen per du, a whole number >= 0")]
# Names of tenants, providers, products and programs; references in paths and queries use the same patterns,
# so a NUL byte or an over-long id is a 422, never a database error.
NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
TEXT = r"^[^\x00-\x1f\x7f]*$"
REF = r"^[^\x00-\x1f\x7f]{1,200}$"
Id = Annotated[str, Field(pattern=NAME, description="lowercase letters, digits, . _ -")]
Name = Annotated[str, Field(pattern=NAME, max_length=63)]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT)]
Text = Annotated[str, Field(min_length=1, max_length=128, pattern=TEXT)]
Tags = Annotated[list[Label], Field(default_factory=list, max_length=64)]
Names = Annotated[list[Name], Field(default_factory=list, max_length=64)]
_DECIMAL = re.compile(r"\d{1,12}(\.\d{1,12})?")
_FRACTION = re.compile(r"\d{1,12}/\d{1,12}")


def exact_du(value: str | int, what: str) -> Fraction:
    """'2.5' or 3 -> an exact Fraction of du; Invalid for anything else (floats never get here)."""
    text = str(value)
    if not _DECIMAL.fullmatch(text):
        raise Invalid(f"{what} must be a decimal number of du like \"10\" or \"2.5\", got {value!r}")
    return Fraction(text)


def exact_ratio(value: str, what: str) -> Fraction:
    """'0.2' or '1/5' -> Fraction(1, 5); Invalid for anything else or a zero denominator."""
    if _DECIMAL.fullmatch(value):
        return Fraction(value)
    if _FRACTION.fullmatch(value) and int(value.split("/")[1]) != 0:
        return Fraction(value)
    raise Invalid(f"{what} must be a decimal like \"0.2\" or a fraction like \"1/5\", got {value!r}")


class TopUpCreate(Strict):
    tenant: Name
    amount_fen: Fen


class TenantProfileUpdate(Strict):
    region: str = Field(default="", max_length=64, pattern=TEXT)
    industry_tags: Tags
    credit_limit_fen: FenOrZero = 0
    affiliated_providers: Names


class TimeBandIn(Strict):
    name: Label
    start: str = Field(description="local time HH:MM", max_length=5)
    end: str = Field(description="local time HH:MM (24:00 allowed); wraps past midnight when before start",
                     max_length=5)


class PriceRuleIn(Strict):
    fen_per_du: PriceFen
    model: Label | None = None
    tier: str | None = Field(default=None, max_length=8, pattern=TEXT)
    band: Label | None = None


class PriceScheduleIn(Strict):
    base_fen_per_du: PriceFen
    interruptible_floor_fen_per_du: PriceFen = 0
    bands: list[TimeBandIn] = Field(default_factory=list, max_length=24)
    rules: list[PriceRuleIn] = Field(default_factory=list, max_length=1000)
    utc_offset_min: StrictInt = Field(default=480, ge=-10_000, le=10_000,
                                      description="the bands' local time, minutes east of UTC")


class ProductCreate(Strict):
    product_id: Id
    kind: Literal["hour_card", "training_package"]
    name: Text
    du: StrictStr | StrictInt = Field(description="du in the product, an exact decimal string like \"10\" or \"2.5\"")
    price_fen: Fen
    validity_days: StrictInt = Field(gt=0, le=3650)
    models: list[Label] | None = Field(default=None, max_length=64,
                                      description="hour cards: models or classes it covers (default: any)")
    accelerator_class: Label | None = None
    priority: StrictInt = Field(default=0, ge=-1000, le=1000, description=(
        "training packages: a holder's jobs get the highest priority of its active packages as their package "
        "priority, one factor of the queue's multifactor priority"))

    @model_validator(mode="before")
    @classmethod
    def storage_is_not_sold(cls, data: Any) -> Any:
        if isinstance(data, dict) and "storage_gb" in data:
            raise ValueError("storage_gb: storage is not sold (no quota on job storage is enforced); "
                             "leave storage_gb out")
        return data


class PurchaseCreate(Strict):
    product_id: Id
    quantity: StrictInt = Field(default=1, ge=1, le=1000)
    tenant: Name | None = Field(default=None, description="operators buying for a tenant; others leave it out")


class VoucherProgramCreate(Strict):
    program_id: Id
    issuer: Text
    budget_fen: Fen
    coverage_ratio: StrictStr = Field(max_length=32, description="e.g. \"0.2\" or \"1/5\"")
    domestic_coverage_ratio: StrictStr | None = Field(default=None, max_length=32,
                                                      description="for domestic accelerators; default: coverage_ratio")
    tenant_annual_cap_fen: Fen
    eligible_regions: Tags
    eligible_industries: Tags
    eligible_providers: Names
    year_start_month: StrictInt = Field(default=1, ge=1, le=12)


class VoucherFunding(Strict):
    amount_fen: Fen


class VoucherGrantCreate(Strict):
    program_id: Id
    tenant: Name
    amount_fen: Fen | None = Field(default=None, description="default: up to the program's per-tenant annual cap")
    expires_ms: StrictInt | None = Field(default=None, ge=0, le=10**15, description="epoch ms; default: never")


class InvoiceRun(Strict):
    period: str = Field(max_length=7, pattern=TEXT, description="the month, YYYY-MM")


class PayoutCreate(Strict):
    provider: Name
    amount_fen: Fen


def name_path(what: str) -> Any:
    return Path(pattern=NAME, description=f"the {what}'s name")


def ref_path(what: str) -> Any:
    return Path(pattern=REF, max_length=200, description=f"the {what}'s id")


def name_query(what: str) -> Any:
    return Query(default=None, pattern=NAME, description=f"a {what}'s name")


def ms_query() -> Any:
    return Query(default=None, ge=0, le=10**15, description="epoch milliseconds")


def id_path(what: str) -> Any:
    return Path(ge=1, le=2**31 - 1, description=f"the {what}'s number")
