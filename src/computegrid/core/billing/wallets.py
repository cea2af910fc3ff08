"""Wallet money in and out: top-ups from the bank, withdrawals back to it, and the credit-limit check.

A wallet may go negative down to its credit limit (a positive number of fen the tenant
may owe); every use case that debits a wallet calls `ensure_can_debit` first.
"""

from __future__ import annotations

from computegrid.core.billing.accounts import EXTERNAL, wallet
from computegrid.core.billing.errors import InsufficientFunds
from computegrid.core.billing.ledger import Posting, transfer
from computegrid.core.billing.money import require_fen, require_time_ms


def ensure_can_debit(*, tenant: str, balance_fen: int, debit_fen: int, credit_limit_fen: int) -> None:
    """Raise InsufficientFunds unless balance - debit >= -credit_limit (all fen)."""
    require_fen(credit_limit_fen, f"credit limit of {tenant}", allow_zero=True)
    require_fen(debit_fen, "debit", allow_zero=True)
    after = balance_fen - debit_fen
    if after < -credit_limit_fen:
        raise InsufficientFunds(
            f"wallet of {tenant} holds {balance_fen} fen with a credit limit of {credit_limit_fen} fen; "
            f"debiting {debit_fen} fen would leave {after} fen, {-credit_limit_fen - after} fen short")


def top_up(*, tenant: str, amount_fen: int, topup_id: str, at_ms: int) -> Posting:
    """Money from the bank into the tenant's wallet (key `topup:<topup_id>`)."""
    require_fen(amount_fen, "top-up amount")
    require_time_ms(at_ms, "top-up time")
    return transfer(f"topup:{topup_id}", at_ms, f"top-up {topup_id}", EXTERNAL, wallet(tenant), amount_fen)


def withdraw(*, tenant: str, amount_fen: int, withdrawal_id: str, at_ms: int, wallet_balance_fen: int) -> Posting:
    """Money from the wallet back to the tenant's bank (key `withdraw:<id>`); credit cannot be withdrawn."""
    require_fen(amount_fen, "withdrawal amount")
    require_time_ms(at_ms, "withdrawal time")
    ensure_can_debit(tenant=tenant, balance_fen=wallet_balance_fen, debit_fen=amount_fen, credit_limit_fen=0)
    return transfer(f"withdraw:{withdrawal_id}", at_ms, f"withdrawal {withdrawal_id}", wallet(tenant), EXTERNAL,
                    amount_fen)
