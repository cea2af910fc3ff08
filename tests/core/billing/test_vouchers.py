"""core/billing/vouchers.py: eligibility, grants, and a share never above ratio, annual cap, budget or grant."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.billing import (
    EXTERNAL,
    BillingError,
    IneligibleVoucher,
    InvalidAmount,
    TenantProfile,
    VoucherGrant,
    VoucherUsage,
    check_redemption,
    fund_voucher_program,
    grant_voucher,
    is_domestic,
    voucher_budget,
    voucher_share,
)
from computegrid.core.billing.vouchers import parse_period
from computegrid.core.catalog import default_catalog
from tests.core._helpers import FAST
from tests.core.billing._builders import ACME, program

T0 = 1_772_323_200_000


def _grant(amount=None, expires=None, tenant=ACME):
    return grant_voucher(program=program(), tenant=tenant, grant_id="g1", at_ms=T0, amount_fen=amount,
                         expires_ms=expires)


def _share(line, *, domestic=False, used=0, spent=0, grant_used=0, grant=None, prog=None):
    return voucher_share(prog or program(), grant or _grant(), line, domestic=domestic, tenant_used_this_year_fen=used,
                         program_spent_fen=spent, grant_used_fen=grant_used)


def test_domestic_vendors():
    cat = default_catalog()
    assert is_domestic("MLU370-X8", cat) and is_domestic("Ascend910B", cat) and is_domestic("BR104", cat)
    assert is_domestic("K200", cat) and is_domestic("MTT-S4000", cat) and is_domestic("BI-V100", cat)
    assert not is_domestic("A100-80G", cat) and not is_domestic("MI300X", cat)


def test_share_is_the_ratio_of_the_line_rounded_down():
    assert _share(10_000) == 2_000
    assert _share(10_000, domestic=True) == 3_000
    assert _share(9) == 1  # 1.8 -> 1: never above the ratio
    assert _share(0) == 0


def test_share_stops_at_the_annual_cap_the_budget_and_the_grant():
    cap = program().tenant_annual_cap_fen
    assert _share(10**12, used=cap - 5) == 5
    assert _share(10**12, used=cap) == 0
    assert _share(10**12, spent=program().budget_fen - 7) == 7
    assert _share(10_000, grant=_grant(amount=1_500), grant_used=1_000) == 500
    assert _share(10_000, grant=_grant(amount=1_500), grant_used=1_500) == 0


@FAST
@given(line=st.integers(0, 10**10), domestic=st.booleans(), used=st.integers(0, 3 * 10**8),
       spent=st.integers(0, 2 * 10**9), grant_amount=st.none() | st.integers(1, 10**9),
       grant_used=st.integers(0, 10**9))
def test_share_never_exceeds_any_limit(line, domestic, used, spent, grant_amount, grant_used):
    prog = program()
    share = _share(line, domestic=domestic, used=used, spent=spent, grant_used=grant_used, grant=_grant(grant_amount))
    assert 0 <= share <= prog.ratio_for(domestic) * line
    assert share <= max(0, prog.tenant_annual_cap_fen - used)
    assert share <= max(0, prog.budget_fen - spent)
    if grant_amount is not None:
        assert share <= max(0, grant_amount - grant_used)


@pytest.mark.parametrize(("tenant", "message"), [
    (TenantProfile("bj", region="beijing", industry_tags=frozenset({"ai"})), "is in region 'beijing'"),
    (TenantProfile("fin", region="shanghai", industry_tags=frozenset({"finance"})), "no eligible industry tag"),
])
def test_ineligible_tenants_get_no_grant(tenant, message):
    with pytest.raises(IneligibleVoucher, match=message):
        _grant(tenant=tenant)


def test_redemption_rules():
    grant = _grant(expires=T0 + 1000)
    check_redemption(program=program(), grant=grant, tenant=ACME, provider="p1", at_ms=T0)
    cases = [
        ({"provider": "acme-cloud"}, "'acme-cloud' is affiliated with tenant 'acme'"),
        ({"at_ms": T0 + 1000}, "not valid for usage"),
        ({"at_ms": T0 - 1}, "not valid for usage"),
        ({"tenant": TenantProfile("other", "shanghai", frozenset({"ai"}))}, "belongs to tenant 'acme'"),
        ({"program": program(program_id="bj")}, "belongs to program 'sh-2026'"),
        ({"program": program(eligible_providers=frozenset({"p9"}))}, "'p1' is not in program"),
        ({"tenant": TenantProfile("acme", "beijing", frozenset({"ai"}))}, "region 'beijing'"),
    ]
    for change, message in cases:
        args = {"program": program(), "grant": grant, "tenant": ACME, "provider": "p1", "at_ms": T0} | change
        with pytest.raises(IneligibleVoucher, match=message):
            check_redemption(**args)


@pytest.mark.parametrize(("change", "message"), [
    ({"budget_fen": -1}, "budget must be positive"),
    ({"tenant_annual_cap_fen": 0}, "annual cap must be positive"),
    ({"coverage_ratio": Fraction(3, 2)}, "coverage ratio must be between 0 and 1"),
    ({"domestic_coverage_ratio": 0.3}, "exact ratio"),
    ({"year_start_month": 13}, "year_start_month"),
    ({"issuer": ""}, "needs an id and an issuer"),
])
def test_ill_formed_programs_are_refused(change, message):
    with pytest.raises(BillingError, match=message):
        program(**change)


def test_bad_grants_are_refused():
    with pytest.raises(InvalidAmount, match="amount must be positive"):
        _grant(amount=-5)
    with pytest.raises(BillingError, match="expire before"):
        _grant(expires=T0)


def test_program_year_basis():
    assert program().year_of("2026-03") == 2026
    fiscal = program(year_start_month=4)
    assert fiscal.year_of("2026-03") == 2025 and fiscal.year_of("2026-04") == 2026
    for bad in ("2026-13", "2026-3", "26-03", ""):
        with pytest.raises(BillingError, match="YYYY-MM"):
            parse_period(bad)


def test_usage_records_program_tenant_year_and_grant():
    g = VoucherGrant("g1", "sh-2026", "acme", None, T0)
    u = VoucherUsage().record(g, 2026, 100).record(g, 2027, 50)
    assert u.spent("sh-2026") == 150 and u.used_by("sh-2026", "acme", 2026) == 100 and u.used_of("g1") == 150


def test_funding_posts_from_external_to_the_budget():
    p = fund_voucher_program(program=program(), amount_fen=5_000, funding_id="f1", at_ms=T0)
    assert p.key == "voucher-fund:f1" and p.effect == {EXTERNAL: -5_000, voucher_budget("sh-2026"): 5_000}
    with pytest.raises(InvalidAmount):
        fund_voucher_program(program=program(), amount_fen=0, funding_id="f1", at_ms=T0)
