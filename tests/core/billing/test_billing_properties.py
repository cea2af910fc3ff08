"""Billing invariants over random sequences of top-ups, purchases, job runs, preemptions, refunds, expiries,
voucher grants and redemptions, invoices and payouts (a Hypothesis state machine).

After every step: all balances sum to exactly 0; no wallet is below its credit limit (a step that would
cross it is refused and posts nothing); vouchers never pay more than their coverage ratio of the eligible
amounts, the per-tenant annual cap, the program budget or the grant; replaying any earlier posting
changes nothing, and reusing its key for different money is refused.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from computegrid.core.billing import (
    BillingError,
    CardExpired,
    DuplicateKeyConflict,
    Entry,
    HoldingState,
    IneligibleVoucher,
    InsufficientFunds,
    InvalidAmount,
    Ledger,
    Posting,
    ProductInactive,
    TenantProfile,
    UnknownProduct,
    VoucherUsage,
    build_invoice,
    charge_usage,
    confirm_payout,
    expire_holding,
    fail_payout,
    fund_voucher_program,
    grant_voucher,
    is_domestic,
    payout,
    prepaid,
    purchase_product,
    ran_until,
    receivable,
    refund_holding,
    start_payout,
    tenant_ineligibility,
    top_up,
    usage_line,
    voucher_budget,
    wallet,
    withdraw,
)
from computegrid.core.catalog import default_catalog
from computegrid.core.metering import UsageInterval
from tests.core.billing._builders import ACME, CST, HOUR_MS, PRODUCTS, at, banded_schedule, flat_schedule, program

CATALOG = default_catalog()
BETA = TenantProfile("beta", region="beijing", industry_tags=frozenset({"ai"}), affiliated_providers=frozenset({"p2"}))
PROFILES = {"acme": ACME, "beta": BETA}
CREDIT_LIMITS = {"acme": 0, "beta": 50_000}
SCHEDULES = {"p1": banded_schedule("p1"), "p2": flat_schedule("p2", 500)}
PROGRAMS = {
    "small": program(program_id="small", budget_fen=60, tenant_annual_cap_fen=200,
                     eligible_regions=frozenset({"shanghai", "beijing"})),
    "local": program(program_id="local", budget_fen=100_000, tenant_annual_cap_fen=40,
                     coverage_ratio=Fraction(1, 10), domestic_coverage_ratio=Fraction(1, 5)),
}
MODELS = ("A100-80G", "MLU370-X8", "V100-32G", "BR104")
FEE = Fraction(1, 10)
T_START = at("2026-01-02T00:00+08:00")

tenants = st.sampled_from(sorted(PROFILES))
providers = st.sampled_from(sorted(SCHEDULES))
models = st.sampled_from(MODELS)
shares = st.sampled_from([250, 500, 1000])


class BillingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.now = T_START
        self.seq = 0
        self.holdings = dict.fromkeys(PROFILES, ())
        self.pending = {t: [] for t in PROFILES}
        self.grants = {t: [] for t in PROFILES}
        self.months = dict.fromkeys(PROFILES, 0)
        self.usage = VoucherUsage()
        self.posted: list[Posting] = []
        self.funded = dict.fromkeys(PROGRAMS, 0)
        self.ratio_bound = {p: Fraction(0) for p in PROGRAMS}  # sum of ratio x eligible over lines each paid
        self.expected_wallet = dict.fromkeys(PROFILES, 0)

    def _next_id(self) -> str:
        self.seq += 1
        return str(self.seq)

    def _post(self, *postings: Posting) -> None:
        assert self.ledger.post_many(postings) == len(postings)
        self.posted.extend(postings)

    def _refused(self, error: type[BillingError], call) -> None:
        before, count = self.ledger.balances(), len(self.ledger)
        with pytest.raises(error):
            self._post(call())
        assert self.ledger.balances() == before and len(self.ledger) == count

    @initialize(acme_fen=st.integers(100_000, 300_000), beta_fen=st.integers(0, 300_000),
                acme_grant=st.none() | st.integers(1, 400), beta_grant=st.none() | st.integers(1, 400),
                cards=st.lists(st.sampled_from(sorted(PRODUCTS)), max_size=3))
    def open_accounts(self, acme_fen, beta_fen, acme_grant, beta_grant, cards):
        """Start most runs with money, cards and a grant each, so draws and vouchers are exercised early."""
        for tenant, fen in (("acme", acme_fen), ("beta", beta_fen)):
            if fen:
                self.top_up(tenant=tenant, amount=fen)
        for n, product_id in enumerate(cards):
            self.buy(tenant=sorted(PROFILES)[n % 2], product_id=product_id, quantity=1)
        self.grant(tenant="acme", program_id="local", amount=acme_grant)
        self.grant(tenant="acme", program_id="small", amount=None)
        self.grant(tenant="beta", program_id="small", amount=beta_grant)

    @rule(tenant=tenants, amount=st.integers(-500, 200_000))
    def top_up(self, tenant, amount):
        def make():
            return top_up(tenant=tenant, amount_fen=amount, topup_id=self._next_id(), at_ms=self.now)
        if amount <= 0:
            self._refused(InvalidAmount, make)
            return
        self._post(make())
        self.expected_wallet[tenant] += amount

    @rule(tenant=tenants, amount=st.integers(1, 60_000))
    def withdraw(self, tenant, amount):
        balance = self.ledger.balance(wallet(tenant))

        def make():
            return withdraw(tenant=tenant, amount_fen=amount, withdrawal_id=self._next_id(), at_ms=self.now,
                            wallet_balance_fen=balance)
        if amount > balance:
            self._refused(InsufficientFunds, make)
            return
        self._post(make())
        self.expected_wallet[tenant] -= amount

    @rule(tenant=tenants, product_id=st.sampled_from([*sorted(PRODUCTS), "card-nope"]), quantity=st.integers(-1, 30))
    def buy(self, tenant, product_id, quantity):
        balance = self.ledger.balance(wallet(tenant))

        def make():
            return purchase_product(products=PRODUCTS, product_id=product_id, tenant=tenant,
                                    purchase_id=self._next_id(), at_ms=self.now, wallet_balance_fen=balance,
                                    credit_limit_fen=CREDIT_LIMITS[tenant], quantity=quantity)
        product = PRODUCTS.get(product_id)
        if quantity <= 0:
            expected: type[BillingError] | None = InvalidAmount
        elif product is None:
            expected = UnknownProduct
        elif not product.active:
            expected = ProductInactive
        elif balance - product.price_fen * quantity < -CREDIT_LIMITS[tenant]:
            expected = InsufficientFunds
        else:
            expected = None
        if expected is not None:
            self._refused(expected, lambda: make().posting)
            return
        bought = make()
        self._post(bought.posting)
        self.holdings[tenant] += bought.holdings
        self.expected_wallet[tenant] -= bought.posting.amount_for(prepaid(tenant))

    def _run(self, tenant, provider, model, devices, share, minutes, preempt_percent):
        end = self.now
        start = end - minutes * 60_000
        planned = [UsageInterval(model, share, start, end)] * devices
        attempts = [(planned, end)]
        if preempt_percent is not None:  # preempted, then requeued: each attempt pays only for the time it ran
            stop = start + (end - start) * preempt_percent // 100
            rest = [UsageInterval(model, share, stop, end)] * devices
            attempts = [(list(ran_until(planned, stop)), stop), (rest, end)]
        job = f"j{self._next_id()}"
        schedule = SCHEDULES[provider]
        full = charge_usage(planned, schedule=schedule, tier="hub", utc_offset_min=CST, catalog=CATALOG)
        billed = Fraction(0)
        for attempt, (intervals, ended) in enumerate(attempts):
            charge = charge_usage(intervals, schedule=schedule, tier="hub", utc_offset_min=CST, catalog=CATALOG)
            billed += charge.exact_fen
            if charge.slices:
                self.pending[tenant].append(usage_line(
                    job_id=job, attempt=attempt, provider=provider, tier="hub", domestic=is_domestic(model, CATALOG),
                    charge=charge, at_ms=ended))
        assert billed == full.exact_fen  # the attempts together ran exactly the planned time

    @rule(tenant=tenants, provider=providers, model=models, devices=st.integers(1, 3), share=shares,
          minutes=st.integers(1, 300))
    def run_job(self, tenant, provider, model, devices, share, minutes):
        self._run(tenant, provider, model, devices, share, minutes, None)

    @rule(tenant=tenants, provider=providers, devices=st.integers(1, 3), minutes=st.integers(1, 300))
    def run_job_on_a_card(self, tenant, provider, devices, minutes):
        """A job on a model one of the tenant's valid cards covers, so card draws are exercised often."""
        usable = [h for h in self.holdings[tenant] if h.is_valid_at(self.now) and h.du_left > 0]
        if usable:
            model = min(usable[0].allowed_models or MODELS)
            self._run(tenant, provider, model, devices, 1000, minutes, None)

    @rule(tenant=tenants, provider=providers, model=models, devices=st.integers(1, 3), share=shares,
          minutes=st.integers(1, 300), preempt_percent=st.integers(0, 99))
    def run_preempted_job(self, tenant, provider, model, devices, share, minutes, preempt_percent):
        self._run(tenant, provider, model, devices, share, minutes, preempt_percent)

    @rule(hours=st.integers(1, 24 * 5))
    def advance_clock(self, hours):
        self.now += hours * HOUR_MS

    @precondition(lambda self: any(self.pending.values()))
    @rule(pick=st.integers(0, 1))
    def invoice(self, pick):
        billable = [t for t in sorted(self.pending) if self.pending[t]]
        tenant = billable[pick % len(billable)]
        m = self.months[tenant]
        period = f"{2026 + m // 12}-{m % 12 + 1:02d}"
        balance = self.ledger.balance(wallet(tenant))
        args = {"tenant": PROFILES[tenant], "period": period, "at_ms": self.now,
                "lines": tuple(self.pending[tenant]), "holdings": self.holdings[tenant], "programs": PROGRAMS,
                "grants": tuple(self.grants[tenant]), "voucher_usage": self.usage, "fee_ratio": FEE,
                "wallet_balance_fen": balance}
        try:
            inv = build_invoice(**args, credit_limit_fen=CREDIT_LIMITS[tenant])
        except InsufficientFunds:
            unlimited = build_invoice(**args, credit_limit_fen=10**15)
            assert balance - unlimited.net_fen < -CREDIT_LIMITS[tenant]  # refused only when really short
            return
        self._post(*inv.postings)
        for ln in inv.lines:
            assert ln.card_list_fen + ln.voucher_eligible_fen == ln.usage.gross_fen
            assert ln.voucher_fen >= 0 and ln.net_fen >= 0
            if ln.voucher_program is not None:
                ratio = PROGRAMS[ln.voucher_program].ratio_for(ln.usage.domestic)
                assert ln.voucher_fen <= ratio * ln.voucher_eligible_fen
                self.ratio_bound[ln.voucher_program] += ratio * ln.voucher_eligible_fen
                assert ln.usage.provider not in PROFILES[tenant].affiliated_providers
        self.holdings[tenant] = inv.holdings
        self.usage = inv.voucher_usage
        self.pending[tenant] = []
        self.months[tenant] += 1
        self.expected_wallet[tenant] -= inv.net_fen

    @rule(tenant=tenants, index=st.integers(0, 50))
    def refund_card(self, tenant, index):
        if not self.holdings[tenant]:
            return
        i = index % len(self.holdings[tenant])
        h = self.holdings[tenant][i]
        if h.state is not HoldingState.ACTIVE or self.now >= h.expires_ms:
            self._refused(CardExpired if h.state is HoldingState.ACTIVE else BillingError,
                          lambda: refund_holding(h, self.now)[1])
            return
        closed, posting = refund_holding(h, self.now)
        if posting is not None:
            self._post(posting)
        self.expected_wallet[tenant] += h.value_left_fen
        self.holdings[tenant] = self.holdings[tenant][:i] + (closed,) + self.holdings[tenant][i + 1:]

    @rule(tenant=tenants)
    def expire_cards(self, tenant):
        kept = []
        for h in self.holdings[tenant]:
            if h.state is HoldingState.ACTIVE and self.now >= h.expires_ms:
                h, posting = expire_holding(h, self.now)
                if posting is not None:
                    self._post(posting)
            kept.append(h)
        self.holdings[tenant] = tuple(kept)

    @rule(program_id=st.sampled_from(sorted(PROGRAMS)), amount=st.integers(1, 20_000))
    def fund_program(self, program_id, amount):
        self._post(fund_voucher_program(program=PROGRAMS[program_id], amount_fen=amount, funding_id=self._next_id(),
                                        at_ms=self.now))
        self.funded[program_id] += amount

    @rule(tenant=tenants, program_id=st.sampled_from(sorted(PROGRAMS)), amount=st.none() | st.integers(1, 400))
    def grant(self, tenant, program_id, amount):
        prog, profile = PROGRAMS[program_id], PROFILES[tenant]

        def make():
            return grant_voucher(program=prog, tenant=profile, grant_id=f"g{self._next_id()}", at_ms=T_START,
                                 amount_fen=amount)
        if tenant_ineligibility(prog, profile):
            with pytest.raises(IneligibleVoucher):
                make()
            return
        self.grants[tenant].append(make())

    @rule(provider=st.sampled_from(sorted(SCHEDULES)), percent=st.integers(1, 120), bounce=st.booleans())
    def pay_provider(self, provider, percent, bounce):
        owed = self.ledger.balance(receivable(provider))
        amount = max(1, owed * percent // 100)
        pid = self._next_id()

        def make():
            return start_payout(provider=provider, amount_fen=amount, payout_id=pid, at_ms=self.now,
                                receivable_fen=owed)
        if amount > owed:
            self._refused(InsufficientFunds, make)
            return
        self._post(make())
        settle = fail_payout if bounce else confirm_payout
        self._post(settle(provider=provider, amount_fen=amount, payout_id=pid, at_ms=self.now))

    @rule(index=st.integers(0, 10**6))
    def replay_earlier_posting(self, index):
        if not self.posted:
            return
        before = self.ledger.balances()
        assert self.ledger.post(self.posted[index % len(self.posted)]) is False
        assert self.ledger.balances() == before

    @rule(index=st.integers(0, 10**6))
    def reuse_a_key_for_other_money(self, index):
        if not self.posted:
            return
        p = self.posted[index % len(self.posted)]
        reversed_money = Posting(p.key, p.at_ms, p.memo, tuple(Entry(e.account, -e.amount_fen) for e in p.entries))
        self._refused(DuplicateKeyConflict, lambda: reversed_money)

    @invariant()
    def books_balance_to_zero(self):
        assert sum(self.ledger.balances().values()) == 0
        assert self.ledger.balances(as_of_ms=self.now) == self.ledger.balances()
        assert len(self.ledger) == len({p.key for p in self.posted})

    @invariant()
    def wallets_stay_within_credit(self):
        for t in PROFILES:
            balance = self.ledger.balance(wallet(t))
            assert balance >= -CREDIT_LIMITS[t]
            assert balance == self.expected_wallet[t]

    @invariant()
    def prepaid_matches_the_holdings(self):
        for t in PROFILES:
            assert self.ledger.balance(prepaid(t)) == sum(h.value_left_fen for h in self.holdings[t])
            assert all(0 <= h.du_left <= h.du_total for h in self.holdings[t])

    @invariant()
    def vouchers_within_every_limit(self):
        for pid, prog in PROGRAMS.items():
            spent = self.usage.spent(pid)
            assert spent <= prog.budget_fen
            assert spent <= self.ratio_bound[pid]
            assert self.ledger.balance(voucher_budget(pid)) == self.funded[pid] - spent
        for (pid, _, _), used in self.usage.tenant_year_used.items():
            assert 0 <= used <= PROGRAMS[pid].tenant_annual_cap_fen
        for grants in self.grants.values():
            for g in grants:
                if g.amount_fen is not None:
                    assert self.usage.used_of(g.grant_id) <= g.amount_fen

    @invariant()
    def providers_are_never_overpaid(self):
        for provider in SCHEDULES:
            assert self.ledger.balance(receivable(provider)) >= 0
            assert self.ledger.balance(payout(provider)) == 0  # every payout here settles at once


BillingMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None,
                                            derandomize=True, database=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestBilling = BillingMachine.TestCase
