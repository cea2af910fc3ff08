"""The monthly invoice run: every tenant's uninvoiced charges up to the end of the month, priced,
drawn down from cards, discounted by vouchers and settled from the wallet (core `build_invoice`).

Each tenant's invoice is its own transaction: one tenant's refusal (not enough money within
its credit limit) leaves the others issued and moves none of its own money. Running the same
month again issues only what is missing: one invoice per tenant and month, ever. Charges that
ended in an earlier month but were not invoiced yet (late usage) go on the next invoice.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.core.billing.invoice import format_du
from computegrid.core.catalog import Catalog
from computegrid.services.billing import ledger
from computegrid.services.billing.charges import line_view, price_charge
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.parties import lock_tenant, period_bounds, tenant_for
from computegrid.services.billing.products import save_holding, tenant_holdings
from computegrid.services.billing.vouchers import grant_from_row, program_from_row, voucher_usage
from computegrid.services.billing.wallets import profile_of
from computegrid.services.errors import Forbidden, Invalid, NotFound, ServiceError
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.db import Database
from computegrid.store.models import Provider, Tenant
from computegrid.store.models_billing import (
    InvoiceRow,
    UsageCharge,
    VoucherGrantRow,
    VoucherProgramRow,
    VoucherRedemption,
)

DEFAULT_FEE = "0.10"


def platform_fee_ratio() -> Fraction:
    """The platform's fee on usage: COMPUTEGRID_PLATFORM_FEE as a decimal fraction (default 0.10 = 10%)."""
    text = os.environ.get("COMPUTEGRID_PLATFORM_FEE", DEFAULT_FEE)
    try:
        ratio = Fraction(Decimal(text.strip()))
    except (InvalidOperation, ValueError) as exc:
        raise Invalid(f"COMPUTEGRID_PLATFORM_FEE must be a decimal like 0.10, got {text!r}") from exc
    if not 0 <= ratio < 1:
        raise Invalid(f"COMPUTEGRID_PLATFORM_FEE must be at least 0 and below 1, got {text!r}")
    return ratio


def _invoice_line_view(ln: core.InvoiceLine) -> dict[str, Any]:
    return {**line_view(ln.usage), "card_du": format_du(ln.card_du), "card_list_fen": ln.card_list_fen,
            "card_value_fen": ln.card_value_fen, "discount_fen": ln.discount_fen,
            "card_draws": [{"holding_id": d.holding_id, "du": format_du(d.du), "value_fen": d.value_fen}
                           for d in ln.card_draws],
            "voucher_program": ln.voucher_program, "voucher_grant": ln.voucher_grant,
            "voucher_eligible_fen": ln.voucher_eligible_fen, "voucher_fen": ln.voucher_fen, "net_fen": ln.net_fen,
            "fee_fen": ln.fee_fen, "provider_fen": ln.provider_fen}


def invoice_view(row: InvoiceRow, tenant: str) -> dict[str, Any]:
    body = json.loads(row.body)
    return {"id": row.id, "key": row.key, "tenant": tenant, "period": row.period, "status": row.status,
            "at": iso(row.at_ms), "gross_fen": row.gross_fen, "card_value_fen": row.card_value_fen,
            "voucher_fen": row.voucher_fen, "net_fen": row.net_fen, "fee_fen": row.fee_fen, **body}


def invoice_tenant(*, session: Session, tenant_id: int, period: str, catalog: Catalog, fee_ratio: Fraction,
                   now_ms: int) -> dict[str, Any]:
    """Issue one tenant's invoice for `period`; the result says issued, exists or nothing to bill."""
    tenant = lock_tenant(session, tenant_id)
    existing = session.scalar(select(InvoiceRow).where(InvoiceRow.tenant_id == tenant.id, InvoiceRow.period == period))
    if existing is not None:
        return {"tenant": tenant.name, "status": "exists", "invoice_id": existing.id}
    _, end_ms = period_bounds(period)
    charges = session.execute(
        select(UsageCharge, Provider.name).join(Provider, Provider.id == UsageCharge.provider_id)
        .where(UsageCharge.tenant_id == tenant.id, UsageCharge.invoice_id.is_(None), UsageCharge.ended_ms < end_ms)
        .order_by(UsageCharge.ended_ms, UsageCharge.id).with_for_update(of=UsageCharge)).all()
    if not charges:
        return {"tenant": tenant.name, "status": "nothing to bill", "invoice_id": None}
    priced = [price_charge(session, c, catalog, provider) for c, provider in charges]
    lines = [ln for p in priced for ln in p.lines]
    problems = [f"job {p.charge.job_id} attempt {p.charge.attempt}: {msg}" for p in priced for msg in p.problems]
    holdings = tenant_holdings(session, tenant)
    grant_rows = session.scalars(select(VoucherGrantRow).where(VoucherGrantRow.tenant_id == tenant.id)
                                 .order_by(VoucherGrantRow.grant_id)).all()
    program_ids = sorted({g.program_id for g in grant_rows})
    # Locked in id order: concurrent invoices of two tenants cannot both spend a program's last budget.
    programs = {r.program_id: program_from_row(r) for r in session.scalars(
        select(VoucherProgramRow).where(VoucherProgramRow.program_id.in_(program_ids))
        .order_by(VoucherProgramRow.program_id).with_for_update())}
    profile = profile_of(session, tenant)
    with refusing():
        invoice = core.build_invoice(
            tenant=profile.core, period=period, at_ms=now_ms, lines=lines, holdings=[h for _, h in holdings],
            programs=programs, grants=[grant_from_row(g, tenant.name) for g in grant_rows],
            voucher_usage=voucher_usage(session, program_ids), fee_ratio=fee_ratio,
            wallet_balance_fen=ledger.balance(session=session, account=core.wallet(tenant.name)),
            credit_limit_fen=profile.credit_limit_fen)
    ledger.post_many(session=session, postings=invoice.postings, now_ms=now_ms)
    rows_by_id = {r.holding_id: r for r, _ in holdings}
    for h in invoice.holdings:
        save_holding(rows_by_id[h.holding_id], h)
    body = {"lines": [_invoice_line_view(ln) for ln in invoice.lines], "du": format_du(invoice.du),
            "discount_fen": invoice.discount_fen, "fee_ratio": str(fee_ratio), "problems": problems}
    row = InvoiceRow(key=invoice.invoice_id, tenant_id=tenant.id, period=period, status="issued", at_ms=now_ms,
                     gross_fen=invoice.gross_fen, card_value_fen=invoice.card_value_fen,
                     voucher_fen=invoice.voucher_fen, net_fen=invoice.net_fen, fee_fen=invoice.fee_fen,
                     body=json.dumps(body, sort_keys=True), csv=core.invoice_csv(invoice))
    session.add(row)
    session.flush()
    for ln in invoice.lines:
        if ln.voucher_program is not None and ln.voucher_grant is not None and ln.voucher_fen:
            session.add(VoucherRedemption(
                program_id=ln.voucher_program, grant_id=ln.voucher_grant, tenant=tenant.name,
                provider=ln.usage.provider, year=programs[ln.voucher_program].year_of(period), line_key=ln.usage.key,
                eligible_fen=ln.voucher_eligible_fen, voucher_fen=ln.voucher_fen, invoice_id=row.id, at_ms=now_ms))
    for charge, _ in charges:
        charge.invoice_id = row.id
    session.flush()
    return {"tenant": tenant.name, "status": "issued", "invoice_id": row.id, "net_fen": row.net_fen}


def run_invoices(*, db: Database, principal: Principal, period: str, catalog: Catalog,
                 now_ms: int) -> dict[str, Any]:
    """Operator: issue every tenant's invoice for a month that has ended; one transaction per tenant."""
    principal.require_operator()
    _, end_ms = period_bounds(period)
    if now_ms < end_ms:
        raise Invalid(f"period {period} has not ended yet (it ends at {iso(end_ms)}); invoice it after that")
    fee = platform_fee_ratio()
    with db.reading() as session:
        tenant_ids = list(session.scalars(
            select(UsageCharge.tenant_id).distinct().where(UsageCharge.invoice_id.is_(None),
                                                          UsageCharge.ended_ms < end_ms)
            .order_by(UsageCharge.tenant_id)))
    results = []
    for tenant_id in tenant_ids:
        try:
            with db.transaction() as session:
                results.append(invoice_tenant(session=session, tenant_id=tenant_id, period=period, catalog=catalog,
                                              fee_ratio=fee, now_ms=now_ms))
        except ServiceError as exc:
            with db.reading() as session:
                tenant = session.get(Tenant, tenant_id)
            results.append({"tenant": tenant.name if tenant else str(tenant_id), "status": "refused",
                            "invoice_id": None, "reason": exc.message})
    return {"period": period, "fee_ratio": str(fee), "tenants": results}


def list_invoices(*, session: Session, principal: Principal, tenant: str | None = None,
                  period: str | None = None) -> list[dict[str, Any]]:
    """A tenant's own invoices; operators see every tenant's (or one tenant's when named)."""
    if principal.role == "provider":
        raise Forbidden("invoices are tenants'; providers see their receivable and payouts")
    query = select(InvoiceRow, Tenant.name).join(Tenant, Tenant.id == InvoiceRow.tenant_id)
    if tenant is not None or not principal.is_operator:
        query = query.where(InvoiceRow.tenant_id == tenant_for(session, principal, tenant).id)
    if period is not None:
        period_bounds(period)
        query = query.where(InvoiceRow.period == period)
    rows = session.execute(query.order_by(InvoiceRow.period.desc(), Tenant.name)).all()
    return [{k: v for k, v in invoice_view(r, name).items() if k not in ("lines", "problems")} for r, name in rows]


def get_invoice(*, session: Session, principal: Principal, invoice_id: int) -> tuple[InvoiceRow, str]:
    row = session.get(InvoiceRow, invoice_id)
    if row is None or not principal.can_see_tenant(row.tenant_id):
        raise NotFound(f"no invoice {invoice_id}")
    tenant = session.get(Tenant, row.tenant_id)
    assert tenant is not None
    return row, tenant.name
