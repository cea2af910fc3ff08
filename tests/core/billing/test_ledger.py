"""core/billing/ledger.py and accounts.py: balanced, idempotent postings; balances as of a time; statements."""

from __future__ import annotations

import csv
import io

import pytest

from computegrid.core.billing import (
    EXTERNAL,
    FEE_REVENUE,
    Account,
    AccountKind,
    DuplicateKeyConflict,
    Entry,
    Ledger,
    LedgerError,
    Posting,
    iso_utc,
    posting_from_amounts,
    receivable,
    transfer,
    wallet,
)
from tests.core.billing._builders import at


def test_account_names_round_trip():
    for account in (wallet("acme"), receivable("p1"), EXTERNAL, FEE_REVENUE, Account(AccountKind.VOUCHER_BUDGET, "x")):
        assert Account.parse(str(account)) == account
    assert str(wallet("acme")) == "wallet:acme"
    assert str(EXTERNAL) == "external"


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Account(AccountKind.WALLET), "needs an owner"),
    (lambda: Account(AccountKind.WALLET, " acme"), "needs an owner"),
    (lambda: Account(AccountKind.FEE_REVENUE, "acme"), "has no owner"),
    (lambda: Account.parse("bank:acme"), "unknown account kind"),
])
def test_bad_accounts_are_refused(make, message):
    with pytest.raises(LedgerError, match=message):
        make()


def _topup(key: str = "topup:1", amount: int = 500, t: int = 1000) -> Posting:
    return transfer(key, t, "top-up", EXTERNAL, wallet("acme"), amount)


@pytest.mark.parametrize(("entries", "message"), [
    ((Entry(EXTERNAL, -5), Entry(wallet("acme"), 4)), "does not balance: its entries sum to -1 fen"),
    ((Entry(EXTERNAL, -5),), "at least two entries"),
    ((), "at least two entries"),
    ((Entry(EXTERNAL, -5), Entry(EXTERNAL, 5)), "names external twice"),
])
def test_unbalanced_or_ill_formed_postings_are_refused(entries, message):
    with pytest.raises(LedgerError, match=message):
        Posting(key="k", at_ms=0, memo="", entries=entries)


@pytest.mark.parametrize(("amount", "message"), [(0, "is zero"), (1.5, "whole number of fen"),
                                                 (True, "whole number of fen")])
def test_entries_must_be_nonzero_ints(amount, message):
    with pytest.raises(LedgerError, match=message):
        Entry(EXTERNAL, amount)


@pytest.mark.parametrize(("key", "at_ms", "message"), [("", 0, "key must be"), (" k", 0, "key must be"),
                                                       ("k", 1.0, "at_ms must be"), ("k", False, "at_ms must be")])
def test_posting_key_and_time_are_checked(key, at_ms, message):
    with pytest.raises(LedgerError, match=message):
        Posting(key=key, at_ms=at_ms, memo="", entries=(Entry(EXTERNAL, -1), Entry(wallet("a"), 1)))


@pytest.mark.parametrize("amount", [0, -3, 2.0])
def test_transfer_needs_a_positive_int(amount):
    with pytest.raises(LedgerError, match="positive whole number of fen"):
        transfer("k", 0, "", EXTERNAL, wallet("a"), amount)


def test_transfer_needs_two_accounts():
    with pytest.raises(LedgerError, match="two different accounts"):
        transfer("k", 0, "", wallet("a"), wallet("a"), 5)


def test_posting_from_amounts_drops_zeros():
    p = posting_from_amounts("k", 0, "m", {wallet("a"): -7, FEE_REVENUE: 7, EXTERNAL: 0})
    assert p.effect == {FEE_REVENUE: 7, wallet("a"): -7}


def test_post_is_idempotent_and_conflicts_are_refused():
    ledger = Ledger()
    assert ledger.post(_topup()) is True
    assert ledger.post(_topup(t=99_999)) is False  # same money, a later retry: nothing changes
    assert ledger.balance(wallet("acme")) == 500
    assert len(ledger) == 1
    assert ledger.get("topup:1") is not None and ledger.get("topup:1").at_ms == 1000
    with pytest.raises(DuplicateKeyConflict, match="'topup:1' was already used for different money"):
        ledger.post(_topup(amount=501))
    assert ledger.balance(wallet("acme")) == 500
    assert ledger.balances() == {EXTERNAL: -500, wallet("acme"): 500}


def test_post_refuses_non_postings():
    with pytest.raises(LedgerError, match="only Posting values"):
        Ledger().post("topup:1")  # type: ignore[arg-type]


def test_post_many_is_all_or_nothing():
    ledger = Ledger()
    ledger.post(_topup())
    with pytest.raises(DuplicateKeyConflict):
        ledger.post_many([_topup("topup:2"), _topup(amount=1)])
    assert "topup:2" not in ledger
    with pytest.raises(DuplicateKeyConflict, match="twice in one batch"):
        ledger.post_many([_topup("topup:3"), _topup("topup:3", amount=2)])
    assert "topup:3" not in ledger
    assert ledger.post_many([_topup(), _topup("topup:2"), _topup("topup:2")]) == 1
    assert ledger.balance(wallet("acme")) == 1000


def test_balances_as_of_a_time_and_postings_by_period():
    ledger = Ledger()
    ledger.post(_topup("topup:late", 300, t=3000))
    ledger.post(_topup("topup:early", 100, t=1000))
    ledger.post(transfer("fee:1", 2000, "fee", wallet("acme"), FEE_REVENUE, 40))
    assert ledger.balance(wallet("acme"), as_of_ms=999) == 0
    assert ledger.balance(wallet("acme"), as_of_ms=1000) == 100
    assert ledger.balance(wallet("acme"), as_of_ms=2500) == 60
    assert ledger.balance(wallet("acme")) == 360
    assert ledger.balances(as_of_ms=2000) == {EXTERNAL: -100, FEE_REVENUE: 40, wallet("acme"): 60}
    assert [p.key for p in ledger.postings()] == ["topup:early", "fee:1", "topup:late"]
    assert [p.key for p in ledger.postings(FEE_REVENUE)] == ["fee:1"]
    assert [p.key for p in ledger.postings(since_ms=1000, until_ms=3000)] == ["topup:early", "fee:1"]


def test_statement_csv_has_running_balance_from_the_opening_balance():
    ledger = Ledger()
    t0 = at("2026-03-01T00:00+00:00")
    ledger.post(_topup("topup:1", 1000, t=t0 - 1))
    ledger.post(transfer("fee:1", t0 + 1500, 'fee, "quoted"', wallet("acme"), FEE_REVENUE, 250))
    ledger.post(_topup("topup:2", 100, t=t0 + 3_600_000))
    ledger.post(_topup("topup:3", 100, t=t0 + 7_200_000))  # outside the period
    rows = list(csv.reader(io.StringIO(ledger.statement_csv(wallet("acme"), t0, t0 + 7_200_000))))
    assert rows == [
        ["time", "key", "memo", "amount_fen", "running_balance_fen"],
        ["2026-03-01T00:00:01.500Z", "fee:1", 'fee, "quoted"', "-250", "750"],
        ["2026-03-01T01:00:00.000Z", "topup:2", "top-up", "100", "850"],
    ]
    with pytest.raises(LedgerError, match="ends"):
        ledger.statement_csv(wallet("acme"), 10, 5)


def test_iso_utc():
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(at("2026-03-02T21:00:00.250+08:00")) == "2026-03-02T13:00:00.250Z"
    assert iso_utc(-1) == "1969-12-31T23:59:59.999Z"
