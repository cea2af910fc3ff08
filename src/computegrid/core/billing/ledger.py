"""Double-entry postings in integer fen and an in-memory ledger.

A `Posting` is one business event's money movement: signed entries that sum to zero,
keyed by the event (`topup:<id>`, `usage:<job>:<attempt>`, ...). `Ledger.post` is
idempotent on that key: the same key with the same money is a no-op, with different
money a `DuplicateKeyConflict`. The ledger is deliberately dumb: credit limits and
product rules are checked by the use-case functions *before* a posting is built.
The database-backed ledger mirrors this class.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from computegrid.core.billing.accounts import Account
from computegrid.core.billing.errors import DuplicateKeyConflict, LedgerError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATEMENT_COLUMNS = ("time", "key", "memo", "amount_fen", "running_balance_fen")


def iso_utc(at_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds, e.g. `2026-01-01T08:00:00.000Z`."""
    moment = _EPOCH + timedelta(milliseconds=at_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{at_ms % 1000:03d}Z"


@dataclass(frozen=True)
class Entry:
    """One signed line of a posting: + raises the account's balance, - lowers it (fen)."""

    account: Account
    amount_fen: int

    def __post_init__(self) -> None:
        if not isinstance(self.account, Account):
            raise LedgerError(f"entry account must be an Account, got {self.account!r}")
        if isinstance(self.amount_fen, bool) or not isinstance(self.amount_fen, int):
            raise LedgerError(f"entry for {self.account} must be a whole number of fen (int), "
                              f"got {self.amount_fen!r}")
        if self.amount_fen == 0:
            raise LedgerError(f"entry for {self.account} is zero; leave it out")


@dataclass(frozen=True)
class Posting:
    """A balanced set of entries caused by one business event, identified by `key`."""

    key: str
    at_ms: int
    memo: str
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.strip() or self.key != self.key.strip():
            raise LedgerError(f"posting key must be a non-empty string without surrounding spaces, got {self.key!r}")
        if isinstance(self.at_ms, bool) or not isinstance(self.at_ms, int):
            raise LedgerError(f"posting {self.key!r}: at_ms must be epoch milliseconds (int), got {self.at_ms!r}")
        if not isinstance(self.memo, str):
            raise LedgerError(f"posting {self.key!r}: memo must be a string, got {self.memo!r}")
        entries = tuple(self.entries)
        object.__setattr__(self, "entries", entries)
        if len(entries) < 2:
            raise LedgerError(f"posting {self.key!r} needs at least two entries, got {len(entries)}")
        seen: set[Account] = set()
        for entry in entries:
            if not isinstance(entry, Entry):
                raise LedgerError(f"posting {self.key!r}: entries must be Entry values, got {entry!r}")
            if entry.account in seen:
                raise LedgerError(f"posting {self.key!r} names {entry.account} twice; merge its entries")
            seen.add(entry.account)
        total = sum(e.amount_fen for e in entries)
        if total != 0:
            raise LedgerError(f"posting {self.key!r} does not balance: its entries sum to {total} fen, not 0")

    @property
    def effect(self) -> dict[Account, int]:
        """Fen per account, in account order; two postings with the same effect move the same money."""
        return {e.account: e.amount_fen for e in sorted(self.entries, key=lambda e: e.account)}

    def amount_for(self, account: Account) -> int:
        """Net fen this posting moves into `account` (negative: out of it)."""
        return sum(e.amount_fen for e in self.entries if e.account == account)


def posting_from_amounts(key: str, at_ms: int, memo: str, amounts: Mapping[Account, int]) -> Posting:
    """A posting from net amounts per account, leaving out zeros, in account order."""
    entries = tuple(Entry(a, v) for a, v in sorted(amounts.items()) if v)
    return Posting(key=key, at_ms=at_ms, memo=memo, entries=entries)


def transfer(key: str, at_ms: int, memo: str, source: Account, dest: Account, amount_fen: int) -> Posting:
    """A two-entry posting moving `amount_fen` (> 0) from `source` to `dest`."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise LedgerError(f"posting {key!r}: a transfer must move a positive whole number of fen, got {amount_fen!r}")
    if source == dest:
        raise LedgerError(f"posting {key!r}: a transfer needs two different accounts, got {source} twice")
    return Posting(key=key, at_ms=at_ms, memo=memo, entries=(Entry(source, -amount_fen), Entry(dest, amount_fen)))


class Ledger:
    """An in-memory, append-only ledger of postings (tests and the simulator)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Posting] = {}
        self._log: list[Posting] = []  # insertion order breaks ties between equal times
        self._current: dict[Account, int] = {}

    def __len__(self) -> int:
        return len(self._log)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: str) -> Posting | None:
        """The posting recorded under `key`, if any."""
        return self._by_key.get(key)

    def _is_replay(self, posting: Posting) -> bool:
        if not isinstance(posting, Posting):
            raise LedgerError(f"only Posting values can be posted, got {posting!r}")
        earlier = self._by_key.get(posting.key)
        if earlier is None:
            return False
        if earlier.effect != posting.effect:
            raise DuplicateKeyConflict(
                f"posting key {posting.key!r} was already used for different money "
                f"({_describe(earlier)} vs {_describe(posting)}); nothing was posted")
        return True

    def post(self, posting: Posting) -> bool:
        """Record `posting`; False when it is an identical replay (nothing changes).

        Raises DuplicateKeyConflict when the key was used for a posting that moves
        different money. The first posting's time and memo stand on a replay.
        """
        if self._is_replay(posting):
            return False
        self._append(posting)
        return True

    def post_many(self, postings: Iterable[Posting]) -> int:
        """Record several postings atomically; returns how many were new.

        Every posting is checked first, so a conflict anywhere posts nothing at all.
        """
        batch = list(postings)
        fresh: dict[str, Posting] = {}
        for p in batch:
            if self._is_replay(p):
                continue
            seen = fresh.get(p.key)
            if seen is not None and seen.effect != p.effect:
                raise DuplicateKeyConflict(f"posting key {p.key!r} appears twice in one batch with different money; "
                                           "nothing was posted")
            fresh.setdefault(p.key, p)
        for p in fresh.values():
            self._append(p)
        return len(fresh)

    def _append(self, posting: Posting) -> None:
        self._by_key[posting.key] = posting
        self._log.append(posting)
        for e in posting.entries:
            self._current[e.account] = self._current.get(e.account, 0) + e.amount_fen

    def balance(self, account: Account, as_of_ms: int | None = None) -> int:
        """Balance in fen of `account`, counting postings at or before `as_of_ms` (all when None)."""
        if as_of_ms is None:
            return self._current.get(account, 0)
        return sum(p.amount_for(account) for p in self._log if p.at_ms <= as_of_ms)

    def balances(self, as_of_ms: int | None = None) -> dict[Account, int]:
        """Balance in fen of every account ever posted to (zeros included), as of `as_of_ms`."""
        if as_of_ms is None:
            return dict(sorted(self._current.items()))
        totals = dict.fromkeys(self._current, 0)
        for p in self._log:
            if p.at_ms <= as_of_ms:
                for e in p.entries:
                    totals[e.account] += e.amount_fen
        return dict(sorted(totals.items()))

    def postings(self, account: Account | None = None, since_ms: int | None = None,
                 until_ms: int | None = None) -> tuple[Posting, ...]:
        """Postings touching `account` (all when None) with since_ms <= at_ms < until_ms, in time order."""
        chosen = [
            (p.at_ms, seq, p) for seq, p in enumerate(self._log)
            if (account is None or any(e.account == account for e in p.entries))
            and (since_ms is None or p.at_ms >= since_ms)
            and (until_ms is None or p.at_ms < until_ms)
        ]
        return tuple(p for _, _, p in sorted(chosen, key=lambda t: (t[0], t[1])))

    def statement_csv(self, account: Account, since_ms: int, until_ms: int) -> str:
        """CSV statement of `account` for since_ms <= time < until_ms.

        Columns: time (ISO 8601 UTC), key, memo, amount_fen, running_balance_fen. The
        running balance starts from the balance before `since_ms`, so the last row is
        the account's balance at the end of the period.
        """
        if until_ms < since_ms:
            raise LedgerError(f"statement period ends ({until_ms}) before it starts ({since_ms})")
        running = self.balance(account, as_of_ms=since_ms - 1)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_COLUMNS)
        for p in self.postings(account, since_ms, until_ms):
            amount = p.amount_for(account)
            running += amount
            writer.writerow((iso_utc(p.at_ms), p.key, p.memo, amount, running))
        return out.getvalue()


def _describe(posting: Posting) -> str:
    return ", ".join(f"{a} {v:+d}" for a, v in posting.effect.items())
