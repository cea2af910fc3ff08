"""core/billing/wallets.py and payouts.py: money in and out, never past the credit limit or what is owed."""

from __future__ import annotations

import pytest

from computegrid.core.billing import (
    EXTERNAL,
    BillingError,
    InsufficientFunds,
    InvalidAmount,
    Ledger,
    confirm_payout,
    ensure_can_debit,
    fail_payout,
    payout,
    receivable,
    start_payout,
    top_up,
    transfer,
    wallet,
    withdraw,
)


def test_top_up_and_withdraw():
    ledger = Ledger()
    ledger.post(top_up(tenant="acme", amount_fen=1_000, topup_id="t1", at_ms=5))
    assert ledger.balances() == {EXTERNAL: -1_000, wallet("acme"): 1_000}
    ledger.post(withdraw(tenant="acme", amount_fen=400, withdrawal_id="w1", at_ms=6, wallet_balance_fen=1_000))
    assert ledger.balance(wallet("acme")) == 600
    with pytest.raises(InsufficientFunds, match="1 fen short"):
        withdraw(tenant="acme", amount_fen=601, withdrawal_id="w2", at_ms=7, wallet_balance_fen=600)


@pytest.mark.parametrize("amount", [0, -100, 1.5, True, "100"])
def test_bad_top_ups_are_refused(amount):
    with pytest.raises(InvalidAmount):
        top_up(tenant="acme", amount_fen=amount, topup_id="t", at_ms=0)


def test_bad_times_are_refused():
    with pytest.raises(BillingError, match="epoch milliseconds"):
        top_up(tenant="acme", amount_fen=5, topup_id="t", at_ms=1.5)


def test_credit_limit():
    ensure_can_debit(tenant="a", balance_fen=100, debit_fen=600, credit_limit_fen=500)
    with pytest.raises(InsufficientFunds, match="credit limit of 500 fen"):
        ensure_can_debit(tenant="a", balance_fen=100, debit_fen=601, credit_limit_fen=500)
    with pytest.raises(InvalidAmount, match="debit must be zero or more"):
        ensure_can_debit(tenant="a", balance_fen=100, debit_fen=-1, credit_limit_fen=0)


def test_payout_goes_receivable_to_payout_to_external():
    ledger = Ledger()
    ledger.post(top_up(tenant="acme", amount_fen=1_000, topup_id="t1", at_ms=0))
    ledger.post(transfer("usage:j:0", 1, "usage", wallet("acme"), receivable("p1"), 900))
    ledger.post(start_payout(provider="p1", amount_fen=700, payout_id="po1", at_ms=2, receivable_fen=900))
    assert ledger.balance(receivable("p1")) == 200 and ledger.balance(payout("p1")) == 700
    ledger.post(confirm_payout(provider="p1", amount_fen=700, payout_id="po1", at_ms=3))
    assert ledger.balance(payout("p1")) == 0 and ledger.balance(EXTERNAL) == -300
    ledger.post(start_payout(provider="p1", amount_fen=200, payout_id="po2", at_ms=4, receivable_fen=200))
    ledger.post(fail_payout(provider="p1", amount_fen=200, payout_id="po2", at_ms=5))
    assert ledger.balance(receivable("p1")) == 200 and ledger.balance(payout("p1")) == 0
    with pytest.raises(InsufficientFunds, match="is owed 200 fen; cannot pay out 201"):
        start_payout(provider="p1", amount_fen=201, payout_id="po3", at_ms=6, receivable_fen=200)
    with pytest.raises(InvalidAmount):
        start_payout(provider="p1", amount_fen=-1, payout_id="po3", at_ms=6, receivable_fen=200)
