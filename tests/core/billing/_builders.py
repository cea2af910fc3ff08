"""Shared builders for the billing tests: times, schedules, products and programs."""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from computegrid.core.billing import (
    HourCard,
    PriceRule,
    PriceSchedule,
    TenantProfile,
    TimeBand,
    TrainingPackage,
    VoucherProgram,
)

CST = 480  # China Standard Time, +08:00, in minutes
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def at(text: str) -> int:
    """Epoch ms of an ISO time with offset, e.g. at('2026-03-02T21:00+08:00')."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def banded_schedule(provider: str = "p1") -> PriceSchedule:
    """Peak 08:00-22:00 at 1200 fen/du, off-peak 22:00-08:00 at 600, base 1000, floor 300."""
    return PriceSchedule(
        provider=provider, base_fen_per_du=1000,
        rules=(PriceRule(1200, band="peak"), PriceRule(600, band="off-peak")),
        bands=(TimeBand.of("peak", "08:00", "22:00"), TimeBand.of("off-peak", "22:00", "08:00")),
        interruptible_floor_fen_per_du=300)


def flat_schedule(provider: str = "p2", fen_per_du: int = 500) -> PriceSchedule:
    return PriceSchedule(provider=provider, base_fen_per_du=fen_per_du)


A100_CARD = HourCard(product_id="card-a100", name="A100 hour card", du=Fraction(1), price_fen=800, validity_days=30,
                     allowed_models=frozenset({"A100-80G", "A100-40G"}))
ANY_CARD = HourCard(product_id="card-any", name="Any-chip card", du=Fraction(2), price_fen=1500, validity_days=7)
OLD_CARD = HourCard(product_id="card-old", name="Retired card", du=Fraction(1), price_fen=900, validity_days=30,
                    active=False)
A100_PACKAGE = TrainingPackage(product_id="pkg-a100", name="A100 training pack", accelerator_class="A100",
                               allowed_models=frozenset({"A100-80G", "A100-40G"}), du=Fraction(10), priority=5,
                               price_fen=7000, validity_days=90)
PRODUCTS = {p.product_id: p for p in (A100_CARD, ANY_CARD, OLD_CARD, A100_PACKAGE)}


def program(**overrides: object) -> VoucherProgram:
    """20% / 30% domestic coverage, a ¥2,000,000 per-tenant annual cap (illustrative, docs/billing.md)."""
    fields: dict[str, object] = {
        "program_id": "sh-2026", "issuer": "Shanghai issuer", "budget_fen": 1_000_000_000,
        "coverage_ratio": Fraction(1, 5), "domestic_coverage_ratio": Fraction(3, 10),
        "tenant_annual_cap_fen": 200_000_000, "eligible_regions": frozenset({"shanghai"}),
        "eligible_industries": frozenset({"ai", "manufacturing"})}
    fields.update(overrides)
    return VoucherProgram(**fields)  # type: ignore[arg-type]


ACME = TenantProfile(tenant="acme", region="shanghai", industry_tags=frozenset({"ai"}),
                     affiliated_providers=frozenset({"acme-cloud"}))
