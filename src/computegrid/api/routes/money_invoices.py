"""Charges of finished job attempts, and monthly invoices (run, list, show, CSV)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.schemas_money import InvoiceRun, id_path, name_query
from computegrid.services.billing import charges, invoices

router = APIRouter(prefix="/v1", tags=["money"])


@router.get("/charges")
def list_charges(principal: CurrentPrincipal, state: StateDep, tenant: str | None = name_query("tenant"),
                 job_id: int | None = Query(default=None, ge=1, le=2**31 - 1),
                 status: str | None = Query(default=None, max_length=16),
                 limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Priced usage of ended job attempts: pending (not yet invoiced) or invoiced."""
    with state.db.reading() as session:
        return charges.list_charges(session=session, principal=principal, catalog=state.catalog, tenant=tenant,
                                    job_id=job_id, status=status, limit=limit)


@router.post("/invoices/run")
def run_invoices(body: InvoiceRun, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: issue every tenant's invoice for a month that has ended (repeat runs issue only what is missing)."""
    return invoices.run_invoices(db=state.db, principal=principal, period=body.period, catalog=state.catalog,
                                 now_ms=state.clock.now_ms())


@router.get("/invoices")
def list_invoices(principal: CurrentPrincipal, state: StateDep, tenant: str | None = name_query("tenant"),
                  period: str | None = Query(default=None, max_length=7)) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return invoices.list_invoices(session=session, principal=principal, tenant=tenant, period=period)


@router.get("/invoices/{invoice_id}")
def show_invoice(principal: CurrentPrincipal, state: StateDep, invoice_id: int = id_path("invoice")) -> dict[str, Any]:
    """The invoice itemised by job attempt: du, price, card draw-down, discount, voucher, net, fee."""
    with state.db.reading() as session:
        row, tenant = invoices.get_invoice(session=session, principal=principal, invoice_id=invoice_id)
        return invoices.invoice_view(row, tenant)


@router.get("/invoices/{invoice_id}/csv", response_class=PlainTextResponse)
def invoice_csv(principal: CurrentPrincipal, state: StateDep,
                invoice_id: int = id_path("invoice")) -> PlainTextResponse:
    with state.db.reading() as session:
        row, tenant = invoices.get_invoice(session=session, principal=principal, invoice_id=invoice_id)
    return PlainTextResponse(row.csv, media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="invoice-{tenant}-{row.period}.csv"'})
