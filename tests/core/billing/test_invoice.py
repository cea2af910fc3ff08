"""core/billing/invoice.py: a month's invoice worked by hand, and every refusal moving nothing.

The worked example (also in docs/billing.md), site time +08:00, fee 10%:
- p1 (banded): peak 08:00-22:00 1200 fen/du, off-peak 600; p2 flat 500 fen/du.
- acme holds one A100 hour card: 1 du for 800 fen.
- j1: 1 x A100-80G 21:00-23:00 -> 0.312 du peak + 0.312 du off-peak = 374.4 + 187.2 = 561.6 -> 562 fen.
  The card covers all 0.624 du: list 562, card value 0.624 x 800 = 499.2 -> 499, discount 63.
  Fee 56.2 -> 56; p1 gets 506.
- j2: 4 x MLU370-X8 (domestic, 0.096 du/h) for 10 h at p2 -> 3.84 du x 500 = 1920 fen.
  No card (A100 only). Voucher 30% (domestic) = 576; wallet pays 1344. Fee 192; p2 gets 1728.
- j3: 2 x V100-32G (0.125 du/h) 23:00-02:00 at p1 -> 0.75 du x 600 = 450 fen. Voucher 20% = 90; wallet
  pays 360. Fee 45; p1 gets 405.
"""

from __future__ import annotations

import csv
import io
from fractions import Fraction

import pytest

from computegrid.core.billing import (
    DISCOUNT_EXPENSE,
    FEE_REVENUE,
    BillingError,
    ChargeError,
    DuplicateKeyConflict,
    InsufficientFunds,
    Ledger,
    TenantProfile,
    UsageLine,
    VoucherUsage,
    build_invoice,
    charge_usage,
    fund_voucher_program,
    grant_voucher,
    invoice_csv,
    prepaid,
    purchase_product,
    receivable,
    redemption_report,
    redemption_report_csv,
    top_up,
    usage_line,
    voucher_budget,
    wallet,
)
from computegrid.core.billing.invoice import format_du
from computegrid.core.catalog import default_catalog
from computegrid.core.metering import UsageInterval
from tests.core.billing._builders import ACME, CST, PRODUCTS, at, banded_schedule, flat_schedule, program

CATALOG = default_catalog()
P1, P2 = banded_schedule("p1"), flat_schedule("p2", 500)
FEE = Fraction(1, 10)


def _line(job, provider_schedule, model, devices, start, end, *, domestic=False):
    intervals = [UsageInterval(model, 1000, at(start), at(end)) for _ in range(devices)]
    charge = charge_usage(intervals, schedule=provider_schedule, tier="hub", utc_offset_min=CST, catalog=CATALOG)
    return usage_line(job_id=job, attempt=0, provider=provider_schedule.provider, tier="hub", domestic=domestic,
                      charge=charge, at_ms=at(end))


LINES = (
    _line("j1", P1, "A100-80G", 1, "2026-03-02T21:00+08:00", "2026-03-02T23:00+08:00"),
    _line("j2", P2, "MLU370-X8", 4, "2026-03-03T08:00+08:00", "2026-03-03T18:00+08:00", domestic=True),
    _line("j3", P1, "V100-32G", 2, "2026-03-04T23:00+08:00", "2026-03-05T02:00+08:00"),
)
T_BUY = at("2026-03-01T09:00+08:00")
T_INVOICE = at("2026-04-01T02:00+08:00")


def _setup():
    ledger = Ledger()
    ledger.post(top_up(tenant="acme", amount_fen=5_000, topup_id="t1", at_ms=T_BUY - 1))
    bought = purchase_product(products=PRODUCTS, product_id="card-a100", tenant="acme", purchase_id="b1", at_ms=T_BUY,
                              wallet_balance_fen=5_000, credit_limit_fen=0)
    ledger.post(bought.posting)
    prog = program()
    ledger.post(fund_voucher_program(program=prog, amount_fen=10_000, funding_id="f1", at_ms=T_BUY))
    grant = grant_voucher(program=prog, tenant=ACME, grant_id="g1", at_ms=T_BUY)
    return ledger, bought.holdings, prog, grant


def _invoice(ledger, holdings, prog, grant, lines=LINES, **overrides):
    args = {"tenant": ACME, "period": "2026-03", "at_ms": T_INVOICE, "lines": lines, "holdings": holdings,
            "programs": {prog.program_id: prog}, "grants": (grant,), "voucher_usage": VoucherUsage(),
            "fee_ratio": FEE, "wallet_balance_fen": ledger.balance(wallet("acme")), "credit_limit_fen": 0}
    args.update(overrides)
    return build_invoice(**args)


def test_the_worked_example_line_by_line():
    assert [(ln.du, ln.gross_fen) for ln in LINES] == [
        (Fraction(624, 1000), 562), (Fraction(384, 100), 1920), (Fraction(75, 100), 450)]
    ledger, holdings, prog, grant = _setup()
    inv = _invoice(ledger, holdings, prog, grant)
    got = [(ln.usage.job_id, ln.card_du, ln.card_list_fen, ln.card_value_fen, ln.discount_fen, ln.voucher_fen,
            ln.net_fen, ln.fee_fen, ln.provider_fen) for ln in inv.lines]
    assert got == [
        ("j1", Fraction(624, 1000), 562, 499, 63, 0, 0, 56, 506),
        ("j2", 0, 0, 0, 0, 576, 1344, 192, 1728),
        ("j3", 0, 0, 0, 0, 90, 360, 45, 405),
    ]
    assert (inv.gross_fen, inv.card_value_fen, inv.discount_fen, inv.voucher_fen, inv.net_fen, inv.fee_fen) == (
        2932, 499, 63, 666, 1704, 293)
    assert inv.invoice_id == "invoice:acme:2026-03"
    assert inv.holdings[0].du_left == Fraction(376, 1000)
    assert inv.voucher_usage.used_by("sh-2026", "acme", 2026) == 666


def test_settlement_postings():
    ledger, holdings, prog, grant = _setup()
    inv = _invoice(ledger, holdings, prog, grant)
    assert [p.key for p in inv.postings] == ["usage:j1:0", "usage:j2:0", "usage:j3:0"]
    assert inv.postings[0].effect == {prepaid("acme"): -499, receivable("p1"): 506, FEE_REVENUE: 56,
                                      DISCOUNT_EXPENSE: -63}
    assert inv.postings[1].effect == {wallet("acme"): -1344, receivable("p2"): 1728, FEE_REVENUE: 192,
                                      voucher_budget("sh-2026"): -576}
    assert ledger.post_many(inv.postings) == 3
    assert ledger.balance(wallet("acme")) == 5_000 - 800 - 1704
    assert ledger.balance(prepaid("acme")) == 800 - 499 == inv.holdings[0].value_left_fen
    assert ledger.balance(receivable("p1")) == 506 + 405 and ledger.balance(receivable("p2")) == 1728
    assert ledger.balance(voucher_budget("sh-2026")) == 10_000 - 666
    assert ledger.balance(FEE_REVENUE) == 293 and ledger.balance(DISCOUNT_EXPENSE) == -63
    assert sum(ledger.balances().values()) == 0
    # replaying the invoice moves nothing
    before = ledger.balances()
    assert ledger.post_many(_invoice(ledger, holdings, prog, grant,
                                     wallet_balance_fen=5_000 - 800).postings) == 0
    assert ledger.balances() == before


def test_rebilling_a_settled_job_with_different_money_conflicts():
    ledger, holdings, prog, grant = _setup()
    inv = _invoice(ledger, holdings, prog, grant)
    ledger.post_many(inv.postings)
    again = _invoice(ledger, inv.holdings, prog, grant, voucher_usage=inv.voucher_usage)  # card now used up
    with pytest.raises(DuplicateKeyConflict, match="usage:j1:0"):
        ledger.post_many(again.postings)


def test_a_bill_past_the_credit_limit_is_refused_and_moves_nothing():
    ledger, holdings, prog, grant = _setup()
    with pytest.raises(InsufficientFunds, match="debiting 1704 fen would leave -4 fen, 4 fen short"):
        _invoice(ledger, holdings, prog, grant, wallet_balance_fen=1700)
    inv = _invoice(ledger, holdings, prog, grant, wallet_balance_fen=1700, credit_limit_fen=4)
    assert inv.net_fen == 1704


def test_vouchers_stop_at_the_annual_cap_and_skip_affiliated_providers():
    ledger, holdings, _, _ = _setup()
    capped = program(tenant_annual_cap_fen=600)
    grant = grant_voucher(program=capped, tenant=ACME, grant_id="g1", at_ms=T_BUY)
    inv = _invoice(ledger, holdings, capped, grant)
    assert [ln.voucher_fen for ln in inv.lines] == [0, 576, 24]
    used = VoucherUsage().record(grant, 2026, 600)
    assert _invoice(ledger, holdings, capped, grant, voucher_usage=used).voucher_fen == 0
    assert _invoice(ledger, holdings, capped, grant, voucher_usage=used, period="2027-01").voucher_fen == 600
    affiliated = TenantProfile("acme", "shanghai", frozenset({"ai"}), affiliated_providers=frozenset({"p2"}))
    inv = _invoice(ledger, holdings, capped, grant, tenant=affiliated)
    assert [ln.voucher_fen for ln in inv.lines] == [0, 0, 90]


def test_the_grant_paying_most_is_used_and_never_two_on_one_line():
    ledger, holdings, prog, grant = _setup()
    rich = program(program_id="rich", coverage_ratio=Fraction(1, 2), domestic_coverage_ratio=Fraction(1, 2))
    g2 = grant_voucher(program=rich, tenant=ACME, grant_id="g2", at_ms=T_BUY)
    inv = _invoice(ledger, holdings, prog, grant, programs={"sh-2026": prog, "rich": rich}, grants=(grant, g2))
    assert [(ln.voucher_program, ln.voucher_fen) for ln in inv.lines] == [(None, 0), ("rich", 960), ("rich", 225)]


@pytest.mark.parametrize(("change", "message"), [
    ({"lines": LINES + LINES[:1]}, "billed twice in one invoice: usage:j1:0"),
    ({"period": "2026-3"}, "YYYY-MM"),
    ({"fee_ratio": Fraction(-1, 10)}, "fee ratio must be between 0 and 1"),
    ({"tenant": TenantProfile("zeta", "shanghai", frozenset({"ai"}))}, "belongs to 'acme', not 'zeta'"),
    ({"programs": {}}, "names unknown program 'sh-2026'"),
])
def test_bad_invoice_inputs_are_refused(change, message):
    ledger, holdings, prog, grant = _setup()
    with pytest.raises(BillingError, match=message):
        _invoice(ledger, holdings, prog, grant, **change)


def test_usage_line_checks():
    with pytest.raises(ChargeError, match="covers one accelerator model, got no usage"):
        usage_line(job_id="j", attempt=0, provider="p", tier="hub", domestic=False,
                   charge=charge_usage([], schedule=P1, tier="hub", utc_offset_min=CST, catalog=CATALOG), at_ms=0)
    with pytest.raises(BillingError, match="attempt must be an int >= 0"):
        UsageLine("j", -1, "p", "T4", "hub", Fraction(1), 10, False, 0)
    with pytest.raises(BillingError, match="gross must be zero or more"):
        UsageLine("j", 0, "p", "T4", "hub", Fraction(1), -10, False, 0)
    with pytest.raises(BillingError, match="tier must be one of"):
        UsageLine("j", 0, "p", "T4", "space", Fraction(1), 10, False, 0)
    assert UsageLine("j", 0, "p", "T4", "hub", Fraction(0), 0, False, 0).fen_per_du is None


def test_invoice_csv_and_redemption_report():
    ledger, holdings, prog, grant = _setup()
    inv = _invoice(ledger, holdings, prog, grant)
    rows = list(csv.DictReader(io.StringIO(invoice_csv(inv))))
    assert [r["job_id"] for r in rows] == ["j1", "j2", "j3", "total"]
    assert rows[0]["du"] == "0.624000" and rows[0]["fen_per_du"] == "900.64" and rows[0]["discount_fen"] == "63"
    assert rows[-1]["net_fen"] == "1704" and rows[-1]["voucher_fen"] == "666"
    report = redemption_report(prog, [inv])
    assert [(r.tenant, r.provider, r.year, r.lines, r.eligible_fen, r.voucher_fen) for r in report] == [
        ("acme", "p1", 2026, 1, 450, 90), ("acme", "p2", 2026, 1, 1920, 576)]
    assert redemption_report_csv(prog, [inv]).splitlines()[0] == \
        "program_id,year,tenant,provider,lines,eligible_fen,voucher_fen"


def test_format_du():
    assert format_du(Fraction(1, 3)) == "0.333333" and format_du(Fraction(2, 3), 2) == "0.67"
    assert format_du(Fraction(-1, 2), 1) == "-0.5"


def test_usage_time_decides_card_validity():
    ledger, holdings, prog, grant = _setup()
    late = UsageLine("late", 0, "p1", "A100-80G", "hub", Fraction(1), 1000, False, holdings[0].expires_ms)
    inv = _invoice(ledger, holdings, prog, grant, lines=(late,))
    assert inv.lines[0].card_du == 0  # the card had expired when the job ran


def test_an_empty_month_moves_nothing():
    ledger, holdings, prog, grant = _setup()
    inv = _invoice(ledger, holdings, prog, grant, lines=())
    assert inv.lines == () and inv.postings == () and inv.net_fen == 0 and inv.holdings == holdings


def test_a_card_covering_part_of_a_line_splits_it_by_du_rounding_half_up():
    # 2 du billed 1001 fen; the 1-du card (800 fen) covers half: list 500.5 -> 501, cash part 500.
    ledger, holdings, prog, grant = _setup()
    line = UsageLine("j9", 0, "p1", "A100-80G", "hub", Fraction(2), 1001, False, T_BUY + 1)
    (ln,) = _invoice(ledger, holdings, prog, grant, lines=(line,)).lines
    assert (ln.card_du, ln.card_list_fen, ln.card_value_fen, ln.discount_fen) == (1, 501, 800, -299)
    assert (ln.voucher_eligible_fen, ln.voucher_fen, ln.net_fen, ln.fee_fen, ln.provider_fen) == (500, 100, 400, 100,
                                                                                                   901)


def test_a_line_that_costs_nothing_leaves_cards_alone():
    # Usage on a reserved block (paid when the block was bought) is billed at 0 fen: the card keeps its du.
    ledger, holdings, prog, grant = _setup()
    reserved = UsageLine("r1", 0, "p1", "A100-80G", "hub", Fraction(1, 2), 0, False, T_BUY + 1)
    inv = _invoice(ledger, holdings, prog, grant, lines=(reserved,))
    (ln,) = inv.lines
    assert (ln.card_du, ln.card_value_fen, ln.net_fen) == (0, 0, 0)
    assert inv.holdings == holdings
