"""The database ledger: the same semantics as core's in-memory `Ledger`, on the ledger tables.

A posting is stored once under its key with a digest of its entries. Posting the same
key again with the same money changes nothing (the first posting's time and memo stand);
with different money it is refused (409, naming the key) and nothing is written. All
writes happen in the caller's transaction, so a posting and the state it goes with
(holdings, invoices, payouts) commit together or not at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from computegrid.core.billing import Account, DuplicateKeyConflict, LedgerError, Posting, iso_utc
from computegrid.core.billing.ledger import STATEMENT_COLUMNS
from computegrid.services.billing.errors import as_service_error
from computegrid.services.errors import Invalid
from computegrid.store.models_billing import LedgerEntry, LedgerPosting


def digest(posting: Posting) -> str:
    """sha256 of the posting's effect (fen per account, in account order): equal digests move equal money."""
    text = ";".join(f"{account}={fen}" for account, fen in posting.effect.items())
    return hashlib.sha256(text.encode()).hexdigest()


def _describe(session: Session, posting_id: int) -> str:
    rows = session.execute(select(LedgerEntry.account, LedgerEntry.amount_fen)
                           .where(LedgerEntry.posting_id == posting_id).order_by(LedgerEntry.account)).all()
    return ", ".join(f"{a} {v:+d}" for a, v in rows)


def _check_replay(session: Session, posting: Posting) -> bool:
    """True when `posting` was already recorded with the same money; raises Conflict for different money."""
    row = session.scalar(select(LedgerPosting).where(LedgerPosting.key == posting.key))
    if row is None:
        return False
    if row.digest != digest(posting):
        new = ", ".join(f"{a} {v:+d}" for a, v in posting.effect.items())
        raise as_service_error(DuplicateKeyConflict(
            f"posting key {posting.key!r} was already used for different money "
            f"({_describe(session, row.id)} vs {new}); nothing was posted"))
    return True


def post(*, session: Session, posting: Posting, now_ms: int) -> bool:
    """Record `posting`; False when it is an identical replay. Conflict (409) for the same key, other money."""
    if not isinstance(posting, Posting):
        raise Invalid(f"only Posting values can be posted, got {posting!r}")
    if _check_replay(session, posting):
        return False
    row = LedgerPosting(key=posting.key, at_ms=posting.at_ms, memo=posting.memo, digest=digest(posting),
                        created_ms=now_ms)
    session.add(row)
    session.flush()
    session.add_all([LedgerEntry(posting_id=row.id, account=str(e.account), amount_fen=e.amount_fen,
                                 at_ms=posting.at_ms) for e in posting.entries])
    session.flush()
    return True


def post_many(*, session: Session, postings: Iterable[Posting], now_ms: int) -> int:
    """Record several postings, checking all before writing any; returns how many were new."""
    fresh: dict[str, Posting] = {}
    for p in postings:
        if _check_replay(session, p):
            continue
        seen = fresh.get(p.key)
        if seen is not None and seen.effect != p.effect:
            raise as_service_error(DuplicateKeyConflict(
                f"posting key {p.key!r} appears twice in one batch with different money; nothing was posted"))
        fresh.setdefault(p.key, p)
    for p in fresh.values():
        post(session=session, posting=p, now_ms=now_ms)
    return len(fresh)


def posted(*, session: Session, key: str) -> bool:
    return session.scalar(select(LedgerPosting.id).where(LedgerPosting.key == key)) is not None


def balance(*, session: Session, account: Account, as_of_ms: int | None = None) -> int:
    """Balance in fen of `account`, counting postings at or before `as_of_ms` (all when None)."""
    query = select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(LedgerEntry.account == str(account))
    if as_of_ms is not None:
        query = query.where(LedgerEntry.at_ms <= as_of_ms)
    return int(session.scalar(query) or 0)


def balances(*, session: Session, as_of_ms: int | None = None, prefix: str | None = None) -> dict[str, int]:
    """Balance in fen of every account ever posted to (zeros included), as of `as_of_ms`, by account name."""
    amount: Any = LedgerEntry.amount_fen
    if as_of_ms is not None:
        amount = case((LedgerEntry.at_ms <= as_of_ms, LedgerEntry.amount_fen), else_=0)
    query = select(LedgerEntry.account, func.sum(amount)).group_by(LedgerEntry.account).order_by(LedgerEntry.account)
    if prefix is not None:
        query = query.where(LedgerEntry.account.startswith(prefix, autoescape=True))
    return {account: int(total or 0) for account, total in session.execute(query)}


def parse_account(name: str) -> Account:
    try:
        return Account.parse(name)
    except LedgerError as exc:
        raise Invalid(str(exc)) from exc


def statement_rows(*, session: Session, account: Account, since_ms: int,
                   until_ms: int) -> tuple[int, list[tuple[int, str, str, int]]]:
    """Opening balance before `since_ms`, then (at_ms, key, memo, amount) for since_ms <= at < until_ms."""
    if until_ms < since_ms:
        raise Invalid(f"statement period ends ({until_ms}) before it starts ({since_ms})")
    opening = balance(session=session, account=account, as_of_ms=since_ms - 1)
    rows = session.execute(
        select(LedgerPosting.at_ms, LedgerPosting.key, LedgerPosting.memo, func.sum(LedgerEntry.amount_fen))
        .join(LedgerEntry, LedgerEntry.posting_id == LedgerPosting.id)
        .where(LedgerEntry.account == str(account), LedgerEntry.at_ms >= since_ms, LedgerEntry.at_ms < until_ms)
        .group_by(LedgerPosting.id, LedgerPosting.at_ms, LedgerPosting.key, LedgerPosting.memo)
        .order_by(LedgerPosting.at_ms, LedgerPosting.id)).all()
    return opening, [(int(at), key, memo, int(amount)) for at, key, memo, amount in rows]


def statement_csv(*, session: Session, account: Account, since_ms: int, until_ms: int) -> str:
    """CSV statement of `account` for since_ms <= time < until_ms, as core's `Ledger.statement_csv`.

    Columns: time (ISO 8601 UTC), key, memo, amount_fen, running_balance_fen; the running
    balance starts from the balance before `since_ms`.
    """
    running, rows = statement_rows(session=session, account=account, since_ms=since_ms, until_ms=until_ms)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    for at_ms, key, memo, amount in rows:
        running += amount
        writer.writerow((iso_utc(at_ms), key, memo, amount, running))
    return out.getvalue()
