"""Ledger accounts: a kind plus, for per-party kinds, the owner (tenant, provider or program).

Sign convention: every entry is signed and a posting's entries sum to zero. A positive
balance is value the platform holds *for* that account's owner (a wallet's money, a
provider's receivable, a program's funded budget); `external` goes negative by the net
money that has entered the platform, so all balances together always sum to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from computegrid.core.billing.errors import LedgerError


class AccountKind(StrEnum):
    EXTERNAL = "external"  # money entering or leaving the platform: banks, the issuer's funding
    WALLET = "wallet"  # a tenant's spendable money (liability to the tenant)
    PREPAID = "prepaid"  # a tenant's unused hour cards and packages (liability, at purchase price)
    RECEIVABLE = "receivable"  # what the platform owes a provider for usage, after the fee
    PAYOUT = "payout"  # a provider's payout in flight (sent to the bank, not yet confirmed)
    FEE_REVENUE = "fee_revenue"  # the platform's fee on usage
    DISCOUNT_EXPENSE = "discount_expense"  # list price minus card value, borne by the platform
    BREAKAGE_REVENUE = "breakage_revenue"  # value of cards that expired unused
    VOUCHER_BUDGET = "voucher_budget"  # a voucher program's funding; negative = the issuer owes


OWNED_KINDS = frozenset({AccountKind.WALLET, AccountKind.PREPAID, AccountKind.RECEIVABLE, AccountKind.PAYOUT,
                         AccountKind.VOUCHER_BUDGET})


@dataclass(frozen=True, order=True)
class Account:
    """One ledger account; `str(account)` is its structured name, e.g. `wallet:acme`."""

    kind: AccountKind
    owner: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, AccountKind):
            raise LedgerError(f"unknown account kind {self.kind!r}")
        if self.kind in OWNED_KINDS:
            if not self.owner or self.owner != self.owner.strip() or any(c in self.owner for c in "\r\n"):
                raise LedgerError(f"a {self.kind} account needs an owner name without surrounding spaces, "
                                  f"got {self.owner!r}")
        elif self.owner:
            raise LedgerError(f"the {self.kind} account has no owner, got {self.owner!r}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.owner}" if self.owner else str(self.kind)

    @classmethod
    def parse(cls, name: str) -> Account:
        """The account named `kind` or `kind:owner`; raises LedgerError for an unknown kind."""
        kind, _, owner = name.partition(":")
        if kind not in set(AccountKind):
            raise LedgerError(f"unknown account kind in {name!r}; known: {', '.join(k.value for k in AccountKind)}")
        return cls(AccountKind(kind), owner)


EXTERNAL = Account(AccountKind.EXTERNAL)
FEE_REVENUE = Account(AccountKind.FEE_REVENUE)
DISCOUNT_EXPENSE = Account(AccountKind.DISCOUNT_EXPENSE)
BREAKAGE_REVENUE = Account(AccountKind.BREAKAGE_REVENUE)


def wallet(tenant: str) -> Account:
    return Account(AccountKind.WALLET, tenant)


def prepaid(tenant: str) -> Account:
    return Account(AccountKind.PREPAID, tenant)


def receivable(provider: str) -> Account:
    return Account(AccountKind.RECEIVABLE, provider)


def payout(provider: str) -> Account:
    return Account(AccountKind.PAYOUT, provider)


def voucher_budget(program_id: str) -> Account:
    return Account(AccountKind.VOUCHER_BUDGET, program_id)
