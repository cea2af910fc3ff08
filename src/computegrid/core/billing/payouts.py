"""Paying providers what the platform owes them (their receivable, already net of the fee).

A payout moves in two steps so a bank transfer in flight is visible:
`start_payout` receivable -> payout (key `payout:<id>`), then `confirm_payout`
payout -> external once the bank confirms (key `payout-sent:<id>`), or `fail_payout`
payout -> receivable when the transfer bounced (key `payout-failed:<id>`).
"""

from __future__ import annotations

from computegrid.core.billing.accounts import EXTERNAL, payout, receivable
from computegrid.core.billing.errors import InsufficientFunds
from computegrid.core.billing.ledger import Posting, transfer
from computegrid.core.billing.money import require_fen, require_time_ms


def start_payout(*, provider: str, amount_fen: int, payout_id: str, at_ms: int, receivable_fen: int) -> Posting:
    """Earmark `amount_fen` of the provider's receivable for a bank transfer; never more than is owed."""
    require_fen(amount_fen, "payout amount")
    require_time_ms(at_ms, "payout time")
    if amount_fen > receivable_fen:
        raise InsufficientFunds(f"provider {provider} is owed {receivable_fen} fen; cannot pay out {amount_fen} fen")
    return transfer(f"payout:{payout_id}", at_ms, f"payout {payout_id} to {provider}", receivable(provider),
                    payout(provider), amount_fen)


def confirm_payout(*, provider: str, amount_fen: int, payout_id: str, at_ms: int) -> Posting:
    """The bank confirmed the transfer: the money has left the platform."""
    require_fen(amount_fen, "payout amount")
    require_time_ms(at_ms, "payout time")
    return transfer(f"payout-sent:{payout_id}", at_ms, f"payout {payout_id} sent to {provider}", payout(provider),
                    EXTERNAL, amount_fen)


def fail_payout(*, provider: str, amount_fen: int, payout_id: str, at_ms: int) -> Posting:
    """The transfer failed: the amount is owed to the provider again."""
    require_fen(amount_fen, "payout amount")
    require_time_ms(at_ms, "payout time")
    return transfer(f"payout-failed:{payout_id}", at_ms, f"payout {payout_id} to {provider} failed", payout(provider),
                    receivable(provider), amount_fen)
