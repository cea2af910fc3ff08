"""Provider payouts: what the platform owes a provider (its receivable, already net of the platform fee)
is paid out in two steps, so a transfer in flight is visible: sent (receivable -> payout), then
confirmed (payout -> external) or failed (payout -> receivable)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.services.billing import ledger
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.idempotency import Replay, once
from computegrid.services.billing.parties import MAX_FEN, provider_for, provider_named
from computegrid.services.errors import Conflict, Forbidden, NotFound
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Provider
from computegrid.store.models_billing import PayoutRow


def payout_view(row: PayoutRow, provider: str) -> dict[str, Any]:
    return {"payout_id": row.payout_id, "provider": provider, "amount_fen": row.amount_fen, "status": row.status,
            "created_at": iso(row.created_ms), "updated_at": iso(row.updated_ms)}


def receivable_view(session: Session, provider: Provider) -> dict[str, Any]:
    return {"provider": provider.name,
            "receivable_fen": ledger.balance(session=session, account=core.receivable(provider.name)),
            "in_flight_fen": ledger.balance(session=session, account=core.payout(provider.name))}


def receivables(*, session: Session, principal: Principal) -> list[dict[str, Any]]:
    """What the platform owes: a provider sees its own; operators every provider's."""
    if principal.role == "tenant":
        raise Forbidden("receivables are providers'; tenants see their wallet")
    if principal.is_operator:
        providers = list(session.scalars(select(Provider).order_by(Provider.name)))
    else:
        providers = [provider_for(session, principal, None)]
    return [receivable_view(session, p) for p in providers]


def start(*, session: Session, principal: Principal, provider: str, amount_fen: int, key: str | None,
          now_ms: int) -> Replay:
    """Operator: send `amount_fen` of a provider's receivable to its bank; never more than is owed."""
    principal.require_operator()
    row_provider = provider_named(session, provider, lock=True)
    body = {"provider": provider, "amount_fen": amount_fen}

    def run() -> dict[str, Any]:
        payout_id = secrets.token_hex(8)
        with refusing():
            if amount_fen > MAX_FEN:
                raise core.InvalidAmount(f"payout amount must be at most {MAX_FEN} fen, got {amount_fen}")
            posting = core.start_payout(
                provider=row_provider.name, amount_fen=amount_fen, payout_id=payout_id, at_ms=now_ms,
                receivable_fen=ledger.balance(session=session, account=core.receivable(row_provider.name)))
        ledger.post(session=session, posting=posting, now_ms=now_ms)
        row = PayoutRow(payout_id=payout_id, provider_id=row_provider.id, amount_fen=amount_fen, status="sent",
                        created_ms=now_ms, updated_ms=now_ms)
        session.add(row)
        session.flush()
        return {**payout_view(row, row_provider.name), **receivable_view(session, row_provider)}

    return once(session=session, user_id=principal.user_id, action="payout", key=key, body=body, now_ms=now_ms,
                run=run)


def settle(*, session: Session, principal: Principal, payout_id: str, confirmed: bool, now_ms: int) -> dict[str, Any]:
    """Operator: the bank confirmed the transfer (money leaves the platform) or it failed (owed again)."""
    principal.require_operator()
    row = session.scalar(select(PayoutRow).where(PayoutRow.payout_id == payout_id).with_for_update())
    if row is None:
        raise NotFound(f"no payout {payout_id!r}")
    provider = session.get(Provider, row.provider_id)
    assert provider is not None
    wanted = "confirmed" if confirmed else "failed"
    if row.status == wanted:
        return {**payout_view(row, provider.name), **receivable_view(session, provider)}  # a repeat
    if row.status != "sent":
        raise Conflict(f"payout {payout_id} is already {row.status}; it cannot become {wanted}")
    step = core.confirm_payout if confirmed else core.fail_payout
    with refusing():
        posting = step(provider=provider.name, amount_fen=row.amount_fen, payout_id=payout_id, at_ms=now_ms)
    ledger.post(session=session, posting=posting, now_ms=now_ms)
    row.status = wanted
    row.updated_ms = now_ms
    return {**payout_view(row, provider.name), **receivable_view(session, provider)}


def list_payouts(*, session: Session, principal: Principal, provider: str | None = None) -> list[dict[str, Any]]:
    if principal.role == "tenant":
        raise Forbidden("payouts are providers'; tenants see their wallet and invoices")
    query = select(PayoutRow, Provider.name).join(Provider, Provider.id == PayoutRow.provider_id)
    if provider is not None or not principal.is_operator:
        query = query.where(PayoutRow.provider_id == provider_for(session, principal, provider).id)
    return [payout_view(r, name) for r, name in session.execute(query.order_by(PayoutRow.id.desc())).all()]
