"""The database ledger keeps core's Ledger semantics, and migration 0003 builds exactly the billing tables.

Each test runs on SQLite and on PostgreSQL (the `db` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from computegrid.core import billing as core
from computegrid.services.billing import ledger
from computegrid.services.errors import Conflict
from computegrid.store.db import Database
from computegrid.store.models import Base
from computegrid.store.models_billing import LedgerEntry, LedgerPosting

T0 = 1_800_000_000_000
ALPHA, BETA = core.wallet("alpha"), core.wallet("beta")


def rows(db: Database) -> tuple[int, int]:
    with db.reading() as session:
        return (session.scalar(select(func.count()).select_from(LedgerPosting)) or 0,
                session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


def test_posting_is_idempotent_and_a_different_replay_is_refused(db: Database) -> None:
    topup = core.top_up(tenant="alpha", amount_fen=500, topup_id="t1", at_ms=T0)
    with db.transaction() as session:
        assert ledger.post(session=session, posting=topup, now_ms=T0) is True
    with db.transaction() as session:  # a retry that stamps a new time and memo is still a replay
        replay = core.Posting(key=topup.key, at_ms=T0 + 5, memo="retried", entries=topup.entries)
        assert ledger.post(session=session, posting=replay, now_ms=T0 + 5) is False
    before = rows(db)
    other = core.top_up(tenant="alpha", amount_fen=501, topup_id="t1", at_ms=T0)
    with pytest.raises(Conflict, match="'topup:t1' was already used for different money"), db.transaction() as s:
        ledger.post(session=s, posting=other, now_ms=T0)
    assert rows(db) == before
    with db.reading() as session:
        assert ledger.balance(session=session, account=ALPHA) == 500
        assert session.scalar(select(LedgerPosting.memo)) == "top-up t1"


def test_post_many_is_all_or_nothing(db: Database) -> None:
    first = core.top_up(tenant="alpha", amount_fen=100, topup_id="a", at_ms=T0)
    with db.transaction() as session:
        ledger.post(session=session, posting=first, now_ms=T0)
    batch = [core.top_up(tenant="beta", amount_fen=7, topup_id="b", at_ms=T0),
             core.top_up(tenant="alpha", amount_fen=999, topup_id="a", at_ms=T0)]  # conflicts with the first
    before = rows(db)
    with pytest.raises(Conflict), db.transaction() as session:
        ledger.post_many(session=session, postings=batch, now_ms=T0)
    assert rows(db) == before
    with db.transaction() as session:
        assert ledger.post_many(session=session, postings=[batch[0], first, batch[0]], now_ms=T0) == 1


def test_balances_as_of_and_statements_match_the_in_memory_ledger(db: Database) -> None:
    postings = [
        core.top_up(tenant="alpha", amount_fen=1000, topup_id="1", at_ms=T0),
        core.top_up(tenant="beta", amount_fen=300, topup_id="2", at_ms=T0 + 10),
        core.transfer("move:1", T0 + 20, "alpha pays beta", ALPHA, BETA, 250),
        core.withdraw(tenant="alpha", amount_fen=50, withdrawal_id="3", at_ms=T0 + 20, wallet_balance_fen=750),
        core.top_up(tenant="alpha", amount_fen=5, topup_id="4", at_ms=T0 + 30),
    ]
    memory = core.Ledger()
    memory.post_many(postings)
    with db.transaction() as session:
        ledger.post_many(session=session, postings=postings, now_ms=T0)
    with db.reading() as session:
        for as_of in (None, T0 - 1, T0, T0 + 15, T0 + 20, T0 + 30):
            want = {str(a): v for a, v in memory.balances(as_of).items()}
            assert ledger.balances(session=session, as_of_ms=as_of) == want, as_of
            assert sum(want.values()) == 0
            assert ledger.balance(session=session, account=ALPHA, as_of_ms=as_of) == memory.balance(ALPHA, as_of)
        for account in (ALPHA, BETA, core.EXTERNAL):
            for since, until in ((0, T0 + 100), (T0 + 15, T0 + 30), (T0 + 20, T0 + 21)):
                assert (ledger.statement_csv(session=session, account=account, since_ms=since, until_ms=until)
                        == memory.statement_csv(account, since, until)), (account, since, until)


def test_migration_0003_matches_the_billing_models(db: Database) -> None:
    billing = {t for t in Base.metadata.tables if t in {
        "ledger_postings", "ledger_entries", "money_requests", "tenant_profiles", "price_schedules", "products",
        "holdings", "voucher_programs", "voucher_grants", "voucher_redemptions", "usage_charges", "invoices",
        "payouts"}}
    assert len(billing) == 13
    with db.engine.connect() as conn:
        diffs: list[Any] = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    def table_of(diff: Any) -> str | None:
        item = diff[0] if isinstance(diff, list) else diff
        for part in item[1:]:
            name = getattr(part, "table", None)
            name = getattr(name, "name", None) or getattr(part, "name", None)
            if isinstance(part, str):
                name = part
            if name in billing:
                return str(name)
        return None

    assert [d for d in diffs if table_of(d) in billing] == []
