"""Compute voucher programs, their funding, grants to tenants, and the issuer's redemption report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.routes.money_common import IdempotencyKey, answer, writing
from computegrid.api.schemas_money import (
    VoucherFunding,
    VoucherGrantCreate,
    VoucherProgramCreate,
    exact_ratio,
    name_path,
    name_query,
)
from computegrid.services.billing import vouchers

router = APIRouter(prefix="/v1", tags=["money"])


@router.get("/voucher-programs")
def list_programs(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return vouchers.list_programs(session=session, principal=principal)


@router.post("/voucher-programs", status_code=201)
def create_program(body: VoucherProgramCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: a voucher program (budget, coverage ratios, per-tenant annual cap, eligibility)."""
    ratio = exact_ratio(body.coverage_ratio, "coverage_ratio")
    domestic = ratio if body.domestic_coverage_ratio is None else exact_ratio(body.domestic_coverage_ratio,
                                                                              "domestic_coverage_ratio")
    with writing(state) as session:
        return vouchers.create_program(
            session=session, principal=principal, program_id=body.program_id, issuer=body.issuer,
            budget_fen=body.budget_fen, coverage_ratio=ratio, domestic_coverage_ratio=domestic,
            tenant_annual_cap_fen=body.tenant_annual_cap_fen, eligible_regions=body.eligible_regions,
            eligible_industries=body.eligible_industries, eligible_providers=body.eligible_providers,
            year_start_month=body.year_start_month, now_ms=state.clock.now_ms())


@router.post("/voucher-programs/{program_id}/fund", status_code=201)
def fund_program(body: VoucherFunding, principal: CurrentPrincipal, state: StateDep,
                 program_id: str = name_path("program"), idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Operator: the issuer's money into the program's budget."""
    with writing(state) as session:
        return answer(vouchers.fund_program(session=session, principal=principal, program_id=program_id,
                                            amount_fen=body.amount_fen, key=idempotency_key,
                                            now_ms=state.clock.now_ms()))


@router.get("/voucher-programs/{program_id}/report", response_class=PlainTextResponse)
def redemption_report(principal: CurrentPrincipal, state: StateDep,
                      program_id: str = name_path("program")) -> PlainTextResponse:
    """Operator (for the issuer): redemptions per program year, tenant and provider, as CSV."""
    with state.db.reading() as session:
        rows = vouchers.redemption_report(session=session, principal=principal, program_id=program_id)
    return PlainTextResponse(vouchers.redemption_report_csv(rows), media_type="text/csv")


@router.post("/voucher-grants", status_code=201)
def grant(body: VoucherGrantCreate, principal: CurrentPrincipal, state: StateDep,
          idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Operator: grant a program's vouchers to an eligible tenant."""
    with writing(state) as session:
        return answer(vouchers.grant(session=session, principal=principal, program_id=body.program_id,
                                     tenant=body.tenant, amount_fen=body.amount_fen, expires_ms=body.expires_ms,
                                     key=idempotency_key, now_ms=state.clock.now_ms()))


@router.get("/voucher-grants")
def list_grants(principal: CurrentPrincipal, state: StateDep,
                tenant: str | None = name_query("tenant")) -> list[dict[str, Any]]:
    """Your tenant's grants and what each has paid (operators: all, or one tenant's)."""
    with state.db.reading() as session:
        return vouchers.list_grants(session=session, principal=principal, tenant=tenant)
