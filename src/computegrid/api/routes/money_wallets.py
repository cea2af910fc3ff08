"""Wallets, top-ups, tenant profiles, the ledger (statements, balances), receivables and payouts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.routes.money_common import IdempotencyKey, answer, writing
from computegrid.api.schemas_money import (
    REF,
    PayoutCreate,
    TenantProfileUpdate,
    TopUpCreate,
    ms_query,
    name_path,
    name_query,
    ref_path,
)
from computegrid.services.billing import payouts, statements, wallets

router = APIRouter(prefix="/v1", tags=["money"])


@router.get("/wallet")
def get_wallet(principal: CurrentPrincipal, state: StateDep, tenant: str | None = name_query("tenant"),
               as_of_ms: int | None = ms_query()) -> dict[str, Any]:
    """Your tenant's wallet (operators: any tenant's), optionally as of a time."""
    with state.db.reading() as session:
        return wallets.get_wallet(session=session, principal=principal, tenant=tenant, as_of_ms=as_of_ms)


@router.post("/topups", status_code=201)
def top_up(body: TopUpCreate, principal: CurrentPrincipal, state: StateDep,
           idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Operator: money received from a tenant's bank into its wallet."""
    with writing(state) as session:
        return answer(wallets.top_up(session=session, principal=principal, tenant=body.tenant,
                                     amount_fen=body.amount_fen, key=idempotency_key, now_ms=state.clock.now_ms()))


@router.put("/tenants/{tenant}/profile")
def set_profile(body: TenantProfileUpdate, principal: CurrentPrincipal, state: StateDep,
                tenant: str = name_path("tenant")) -> dict[str, Any]:
    """Operator: a tenant's region, industry tags, credit limit and affiliated providers."""
    with writing(state) as session:
        return wallets.set_profile(session=session, principal=principal, tenant=tenant, region=body.region,
                                   industry_tags=body.industry_tags, credit_limit_fen=body.credit_limit_fen,
                                   affiliated_providers=body.affiliated_providers, now_ms=state.clock.now_ms())


@router.get("/tenants/{tenant}/profile")
def get_profile(principal: CurrentPrincipal, state: StateDep, tenant: str = name_path("tenant")) -> dict[str, Any]:
    with state.db.reading() as session:
        return wallets.get_profile(session=session, principal=principal, tenant=tenant)


@router.get("/ledger/statement", response_class=PlainTextResponse)
def statement(principal: CurrentPrincipal, state: StateDep, account: str | None = Query(default=None, pattern=REF),
              since_ms: int | None = ms_query(), until_ms: int | None = ms_query()) -> PlainTextResponse:
    """CSV statement of one account (default: your wallet or receivable) for since <= time < until."""
    with state.db.reading() as session:
        chosen, text = statements.statement(session=session, principal=principal, account=account,
                                            since_ms=since_ms, until_ms=until_ms, now_ms=state.clock.now_ms())
    return PlainTextResponse(text, media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="statement-{str(chosen).replace(":", "-")}.csv"'})


@router.get("/ledger/balances")
def balances(principal: CurrentPrincipal, state: StateDep, as_of_ms: int | None = ms_query()) -> dict[str, Any]:
    """Operator: every account's balance in fen as of a time; the total is always 0."""
    with state.db.reading() as session:
        found = statements.all_balances(session=session, principal=principal, as_of_ms=as_of_ms)
    return {"balances": found, "total_fen": sum(found.values())}


@router.get("/receivables")
def receivables(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    """What the platform owes providers (net of its fee): a provider its own, operators all."""
    with state.db.reading() as session:
        return payouts.receivables(session=session, principal=principal)


@router.post("/payouts", status_code=201)
def start_payout(body: PayoutCreate, principal: CurrentPrincipal, state: StateDep,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Operator: pay a provider part or all of its receivable (the transfer is then confirmed or failed)."""
    with writing(state) as session:
        return answer(payouts.start(session=session, principal=principal, provider=body.provider,
                                    amount_fen=body.amount_fen, key=idempotency_key, now_ms=state.clock.now_ms()))


@router.post("/payouts/{payout_id}/confirm")
def confirm_payout(principal: CurrentPrincipal, state: StateDep, payout_id: str = ref_path("payout")) -> dict[str, Any]:
    with writing(state) as session:
        return payouts.settle(session=session, principal=principal, payout_id=payout_id, confirmed=True,
                              now_ms=state.clock.now_ms())


@router.post("/payouts/{payout_id}/fail")
def fail_payout(principal: CurrentPrincipal, state: StateDep, payout_id: str = ref_path("payout")) -> dict[str, Any]:
    with writing(state) as session:
        return payouts.settle(session=session, principal=principal, payout_id=payout_id, confirmed=False,
                              now_ms=state.clock.now_ms())


@router.get("/payouts")
def list_payouts(principal: CurrentPrincipal, state: StateDep,
                 provider: str | None = name_query("provider")) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return payouts.list_payouts(session=session, principal=principal, provider=provider)
