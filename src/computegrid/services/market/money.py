"""Market money, on the money side's ledger: a reserved block is paid in full when it is bought.

One posting per purchase, keyed `reservation:<lease id>`: the buyer's wallet pays the block's cost
(core `Reservation.cost_fen`, rounded half up once); the seller gets it less the platform fee
(`COMPUTEGRID_PLATFORM_FEE`, the same ratio invoices use, rounded half up): a provider's receivable for
a reserved offer, the reseller's wallet for a resale offer. Jobs then run on the block at 0 fen/du.
Spot and on-demand usage is not paid here: it is charged per attempt and invoiced (services/billing).
"""

from __future__ import annotations

from fractions import Fraction

from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.services.billing import ledger
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.invoices import platform_fee_ratio
from computegrid.services.billing.parties import lock_tenant
from computegrid.services.billing.wallets import profile_of
from computegrid.store.models import Tenant


def whole_fen(amount: Fraction) -> int:
    """An exact amount in fen rounded half up, as every posting rounds."""
    return core.round_half_up(amount)


def fee_fen(amount_fen: int) -> int:
    """The platform's fee on a sale of `amount_fen`."""
    return core.round_half_up(platform_fee_ratio() * amount_fen)


def ensure_can_pay(session: Session, tenant: Tenant, amount_fen: int) -> None:
    """PaymentRequired (402) unless the wallet, with its credit limit, covers `amount_fen`."""
    with refusing():
        core.ensure_can_debit(tenant=tenant.name,
                              balance_fen=ledger.balance(session=session, account=core.wallet(tenant.name)),
                              debit_fen=amount_fen, credit_limit_fen=profile_of(session, tenant).credit_limit_fen)


def pay_for_block(*, session: Session, buyer_id: int, seller: core.Account, amount_fen: int, key: str, memo: str,
                  now_ms: int) -> core.Posting | None:
    """Move a block's price from the buyer's wallet to the seller (less the fee), under `key`.

    Locks the buyer's row and checks its balance first; nothing is posted when that fails (402).
    """
    buyer = lock_tenant(session, buyer_id)
    if amount_fen <= 0:
        return None
    ensure_can_pay(session, buyer, amount_fen)
    fee = fee_fen(amount_fen)
    with refusing():
        posting = core.posting_from_amounts(key, now_ms, memo, {core.wallet(buyer.name): -amount_fen,
                                                                 seller: amount_fen - fee, core.FEE_REVENUE: fee})
    ledger.post(session=session, posting=posting, now_ms=now_ms)
    return posting
