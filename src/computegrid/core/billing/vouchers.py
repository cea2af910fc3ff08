"""Compute voucher programs (算力券): eligibility, grants and the share a voucher pays.

Modelled on published municipal rules (sources in docs/billing.md): an issuer budget,
a coverage ratio of an eligible bill (higher for domestic accelerators), a per-tenant
annual cap, eligibility on the tenant's region and industry, and no affiliation
between tenant and provider. A voucher pays the smallest of: ratio x eligible amount
(rounded down), what is left of the tenant's annual cap, of the program budget, and of
the grant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from computegrid.core.billing.accounts import EXTERNAL, voucher_budget
from computegrid.core.billing.errors import BillingError, IneligibleVoucher
from computegrid.core.billing.ledger import Posting, transfer
from computegrid.core.billing.money import require_fen, require_ratio, require_time_ms
from computegrid.core.catalog import Catalog

# Chinese accelerator vendors, as spelled in the catalog's `vendor` column.
DOMESTIC_VENDORS = frozenset({"huawei", "cambricon", "hygon", "kunlunxin", "moorethreads", "iluvatar", "enflame",
                              "biren", "metax"})
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def is_domestic(model: str, catalog: Catalog) -> bool:
    """True when the accelerator model's vendor is Chinese (higher voucher coverage in some programs)."""
    return catalog.get(model).vendor.lower() in DOMESTIC_VENDORS


def parse_period(period: str) -> tuple[int, int]:
    """'2026-03' -> (2026, 3); raises BillingError otherwise."""
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if not match:
        raise BillingError(f"billing period must be YYYY-MM, got {period!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class TenantProfile:
    """What eligibility rules look at: the tenant's region, industry tags and affiliated providers."""

    tenant: str
    region: str
    industry_tags: frozenset[str] = frozenset()
    affiliated_providers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class VoucherProgram:
    """A voucher program. Ratios are exact Fractions; amounts are fen; empty eligibility sets mean 'any'.

    `year_start_month` is the year basis of the annual cap: 1 for calendar years,
    e.g. 4 for years running April to March.
    """

    program_id: str
    issuer: str
    budget_fen: int
    coverage_ratio: Fraction
    domestic_coverage_ratio: Fraction
    tenant_annual_cap_fen: int
    eligible_regions: frozenset[str] = frozenset()
    eligible_industries: frozenset[str] = frozenset()
    eligible_providers: frozenset[str] = frozenset()
    year_start_month: int = 1

    def __post_init__(self) -> None:
        if not self.program_id or not self.issuer:
            raise BillingError("a voucher program needs an id and an issuer")
        require_fen(self.budget_fen, f"program {self.program_id!r} budget")
        require_fen(self.tenant_annual_cap_fen, f"program {self.program_id!r} per-tenant annual cap")
        object.__setattr__(self, "coverage_ratio", require_ratio(self.coverage_ratio,
                                                                 f"program {self.program_id!r} coverage ratio"))
        object.__setattr__(self, "domestic_coverage_ratio", require_ratio(
            self.domestic_coverage_ratio, f"program {self.program_id!r} domestic coverage ratio"))
        if self.year_start_month not in range(1, 13):
            raise BillingError(f"program {self.program_id!r}: year_start_month must be 1..12")

    def ratio_for(self, domestic: bool) -> Fraction:
        return self.domestic_coverage_ratio if domestic else self.coverage_ratio

    def year_of(self, period: str) -> int:
        """The program year an invoice period ('YYYY-MM') counts against for the annual cap."""
        year, month = parse_period(period)
        return year if month >= self.year_start_month else year - 1


@dataclass(frozen=True)
class VoucherGrant:
    """A program's grant to a tenant: up to `amount_fen` (None = up to the annual cap), usable in [from, expires)."""

    grant_id: str
    program_id: str
    tenant: str
    amount_fen: int | None
    granted_ms: int
    expires_ms: int | None = None


def tenant_ineligibility(program: VoucherProgram, tenant: TenantProfile) -> str | None:
    """Why `tenant` may not hold a grant of `program`, or None when it may."""
    if program.eligible_regions and tenant.region not in program.eligible_regions:
        return (f"tenant {tenant.tenant!r} is in region {tenant.region!r}; program {program.program_id!r} is for "
                f"{', '.join(sorted(program.eligible_regions))}")
    if program.eligible_industries and not (tenant.industry_tags & program.eligible_industries):
        return (f"tenant {tenant.tenant!r} has no eligible industry tag for program {program.program_id!r} "
                f"(needs one of {', '.join(sorted(program.eligible_industries))})")
    return None


def grant_voucher(*, program: VoucherProgram, tenant: TenantProfile, grant_id: str, at_ms: int,
                  amount_fen: int | None = None, expires_ms: int | None = None) -> VoucherGrant:
    """Grant `program` vouchers to an eligible tenant; raises IneligibleVoucher otherwise. Moves no money."""
    require_time_ms(at_ms, "grant time")
    if not grant_id:
        raise BillingError("a voucher grant needs an id")
    if amount_fen is not None:
        require_fen(amount_fen, f"grant {grant_id!r} amount")
    if expires_ms is not None and expires_ms <= at_ms:
        raise BillingError(f"grant {grant_id!r} would expire before it is granted")
    reason = tenant_ineligibility(program, tenant)
    if reason:
        raise IneligibleVoucher(reason)
    return VoucherGrant(grant_id=grant_id, program_id=program.program_id, tenant=tenant.tenant,
                        amount_fen=amount_fen, granted_ms=at_ms, expires_ms=expires_ms)


def redemption_ineligibility(*, program: VoucherProgram, grant: VoucherGrant, tenant: TenantProfile, provider: str,
                             at_ms: int) -> str | None:
    """Why `grant` may not pay part of a bill from `provider` for usage at `at_ms`, or None when it may."""
    if grant.program_id != program.program_id:
        return f"grant {grant.grant_id!r} belongs to program {grant.program_id!r}, not {program.program_id!r}"
    if grant.tenant != tenant.tenant:
        return f"grant {grant.grant_id!r} belongs to tenant {grant.tenant!r}, not {tenant.tenant!r}"
    if at_ms < grant.granted_ms or (grant.expires_ms is not None and at_ms >= grant.expires_ms):
        return f"grant {grant.grant_id!r} is not valid for usage at {at_ms} ms"
    if provider in tenant.affiliated_providers:
        return f"provider {provider!r} is affiliated with tenant {tenant.tenant!r}"
    if program.eligible_providers and provider not in program.eligible_providers:
        return f"provider {provider!r} is not in program {program.program_id!r}"
    return tenant_ineligibility(program, tenant)


def check_redemption(*, program: VoucherProgram, grant: VoucherGrant, tenant: TenantProfile, provider: str,
                     at_ms: int) -> None:
    """Raise IneligibleVoucher when `grant` may not pay part of this bill (for explicit requests)."""
    reason = redemption_ineligibility(program=program, grant=grant, tenant=tenant, provider=provider, at_ms=at_ms)
    if reason:
        raise IneligibleVoucher(reason)


def voucher_share(program: VoucherProgram, grant: VoucherGrant, line_amount_fen: int, *, domestic: bool,
                  tenant_used_this_year_fen: int, program_spent_fen: int, grant_used_fen: int) -> int:
    """The fen a voucher pays of an eligible line: the least of floor(ratio x line), the tenant's
    annual cap left, the program budget left and the grant left (never negative)."""
    require_fen(line_amount_fen, "line amount", allow_zero=True)
    by_ratio = int(program.ratio_for(domestic) * line_amount_fen)  # floor: never above the ratio
    cap_left = program.tenant_annual_cap_fen - tenant_used_this_year_fen
    budget_left = program.budget_fen - program_spent_fen
    grant_left = cap_left if grant.amount_fen is None else grant.amount_fen - grant_used_fen  # None: only the cap
    return max(0, min(by_ratio, cap_left, budget_left, grant_left))


@dataclass(frozen=True)
class VoucherUsage:
    """Voucher fen already paid: per program, per (program, tenant, program year) and per grant."""

    program_spent: Mapping[str, int] = field(default_factory=dict)
    tenant_year_used: Mapping[tuple[str, str, int], int] = field(default_factory=dict)
    grant_used: Mapping[str, int] = field(default_factory=dict)

    def spent(self, program_id: str) -> int:
        return self.program_spent.get(program_id, 0)

    def used_by(self, program_id: str, tenant: str, year: int) -> int:
        return self.tenant_year_used.get((program_id, tenant, year), 0)

    def used_of(self, grant_id: str) -> int:
        return self.grant_used.get(grant_id, 0)

    def record(self, grant: VoucherGrant, year: int, amount_fen: int) -> VoucherUsage:
        """A new usage with `amount_fen` more paid by `grant` in program year `year`."""
        key = (grant.program_id, grant.tenant, year)
        return VoucherUsage(
            program_spent={**self.program_spent, grant.program_id: self.spent(grant.program_id) + amount_fen},
            tenant_year_used={**self.tenant_year_used, key: self.tenant_year_used.get(key, 0) + amount_fen},
            grant_used={**self.grant_used, grant.grant_id: self.used_of(grant.grant_id) + amount_fen})


def fund_voucher_program(*, program: VoucherProgram, amount_fen: int, funding_id: str, at_ms: int) -> Posting:
    """The issuer's money into the program's budget account (key `voucher-fund:<funding_id>`)."""
    require_fen(amount_fen, "voucher funding")
    require_time_ms(at_ms, "funding time")
    return transfer(f"voucher-fund:{funding_id}", at_ms, f"{program.issuer} funds {program.program_id}", EXTERNAL,
                    voucher_budget(program.program_id), amount_fen)
