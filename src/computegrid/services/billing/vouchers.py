"""Compute voucher programs (算力券): operators create and fund them, grant them to eligible tenants;
invoices redeem them automatically; issuers get a redemption report per program."""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.core.billing.reports import REDEMPTION_COLUMNS
from computegrid.services.billing import ledger
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.idempotency import Replay, once
from computegrid.services.billing.parties import MAX_FEN, tenant_for, tenant_named
from computegrid.services.billing.wallets import profile_of
from computegrid.services.errors import Conflict, NotFound
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Provider, Tenant
from computegrid.store.models_billing import VoucherGrantRow, VoucherProgramRow, VoucherRedemption


def _set(text: str) -> frozenset[str]:
    return frozenset(json.loads(text))


def program_from_row(row: VoucherProgramRow) -> core.VoucherProgram:
    return core.VoucherProgram(
        program_id=row.program_id, issuer=row.issuer, budget_fen=row.budget_fen,
        coverage_ratio=Fraction(row.coverage_ratio), domestic_coverage_ratio=Fraction(row.domestic_coverage_ratio),
        tenant_annual_cap_fen=row.tenant_annual_cap_fen, eligible_regions=_set(row.eligible_regions),
        eligible_industries=_set(row.eligible_industries), eligible_providers=_set(row.eligible_providers),
        year_start_month=row.year_start_month)


def grant_from_row(row: VoucherGrantRow, tenant: str) -> core.VoucherGrant:
    return core.VoucherGrant(grant_id=row.grant_id, program_id=row.program_id, tenant=tenant,
                             amount_fen=row.amount_fen, granted_ms=row.granted_ms, expires_ms=row.expires_ms)


def _ratio(r: Fraction) -> str:
    return str(r.numerator) if r.denominator == 1 else f"{r.numerator}/{r.denominator}"


def program_view(session: Session, row: VoucherProgramRow) -> dict[str, Any]:
    p = program_from_row(row)
    spent = int(session.scalar(select(func.coalesce(func.sum(VoucherRedemption.voucher_fen), 0))
                               .where(VoucherRedemption.program_id == row.program_id)) or 0)
    return {"program_id": p.program_id, "issuer": p.issuer, "budget_fen": p.budget_fen,
            "coverage_ratio": _ratio(p.coverage_ratio), "domestic_coverage_ratio": _ratio(p.domestic_coverage_ratio),
            "tenant_annual_cap_fen": p.tenant_annual_cap_fen, "eligible_regions": sorted(p.eligible_regions),
            "eligible_industries": sorted(p.eligible_industries), "eligible_providers": sorted(p.eligible_providers),
            "year_start_month": p.year_start_month, "redeemed_fen": spent,
            "funded_balance_fen": ledger.balance(session=session, account=core.voucher_budget(p.program_id))}


def create_program(*, session: Session, principal: Principal, program_id: str, issuer: str, budget_fen: int,
                   coverage_ratio: Fraction, domestic_coverage_ratio: Fraction, tenant_annual_cap_fen: int,
                   eligible_regions: list[str], eligible_industries: list[str], eligible_providers: list[str],
                   year_start_month: int, now_ms: int) -> dict[str, Any]:
    """Operator: a new voucher program (moves no money; fund it separately)."""
    principal.require_operator()
    if session.get(VoucherProgramRow, program_id) is not None:
        raise Conflict(f"voucher program {program_id!r} already exists")
    known = set(session.scalars(select(Provider.name).where(Provider.name.in_(eligible_providers))))
    unknown = sorted(set(eligible_providers) - known)
    if unknown:
        raise NotFound(f"no provider {', '.join(repr(u) for u in unknown)} (named as eligible)")
    with refusing():
        for what, fen in (("budget", budget_fen), ("per-tenant annual cap", tenant_annual_cap_fen)):
            if fen > MAX_FEN:
                raise core.InvalidAmount(f"{what} must be at most {MAX_FEN} fen, got {fen}")
        program = core.VoucherProgram(
            program_id=program_id, issuer=issuer, budget_fen=budget_fen, coverage_ratio=coverage_ratio,
            domestic_coverage_ratio=domestic_coverage_ratio, tenant_annual_cap_fen=tenant_annual_cap_fen,
            eligible_regions=frozenset(eligible_regions), eligible_industries=frozenset(eligible_industries),
            eligible_providers=frozenset(eligible_providers), year_start_month=year_start_month)
    row = VoucherProgramRow(
        program_id=program.program_id, issuer=program.issuer, budget_fen=program.budget_fen,
        coverage_ratio=str(program.coverage_ratio), domestic_coverage_ratio=str(program.domestic_coverage_ratio),
        tenant_annual_cap_fen=program.tenant_annual_cap_fen,
        eligible_regions=json.dumps(sorted(program.eligible_regions)),
        eligible_industries=json.dumps(sorted(program.eligible_industries)),
        eligible_providers=json.dumps(sorted(program.eligible_providers)),
        year_start_month=program.year_start_month, created_ms=now_ms)
    session.add(row)
    session.flush()
    return program_view(session, row)


def _program(session: Session, program_id: str, *, lock: bool = False) -> VoucherProgramRow:
    row = session.get(VoucherProgramRow, program_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"no voucher program {program_id!r}")
    return row


def list_programs(*, session: Session, principal: Principal) -> list[dict[str, Any]]:
    rows = session.scalars(select(VoucherProgramRow).order_by(VoucherProgramRow.program_id))
    return [program_view(session, r) for r in rows]


def fund_program(*, session: Session, principal: Principal, program_id: str, amount_fen: int, key: str | None,
                 now_ms: int) -> Replay:
    """Operator: the issuer's money into the program's budget account (key `voucher-fund:<id>`)."""
    principal.require_operator()
    row = _program(session, program_id, lock=True)
    body = {"program_id": program_id, "amount_fen": amount_fen}

    def run() -> dict[str, Any]:
        funding_id = secrets.token_hex(8)
        with refusing():
            if amount_fen > MAX_FEN:
                raise core.InvalidAmount(f"funding must be at most {MAX_FEN} fen, got {amount_fen}")
            posting = core.fund_voucher_program(program=program_from_row(row), amount_fen=amount_fen,
                                                funding_id=funding_id, at_ms=now_ms)
        ledger.post(session=session, posting=posting, now_ms=now_ms)
        return {"funding_id": funding_id, "key": posting.key, "amount_fen": amount_fen, "at": iso(now_ms),
                "program": program_view(session, row)}

    return once(session=session, user_id=principal.user_id, action="voucher-fund", key=key, body=body,
                now_ms=now_ms, run=run)


def grant_view(row: VoucherGrantRow, tenant: str, used_fen: int) -> dict[str, Any]:
    return {"grant_id": row.grant_id, "program_id": row.program_id, "tenant": tenant, "amount_fen": row.amount_fen,
            "used_fen": used_fen, "granted_at": iso(row.granted_ms), "expires_at": iso(row.expires_ms)}


def grant(*, session: Session, principal: Principal, program_id: str, tenant: str, amount_fen: int | None,
          expires_ms: int | None, key: str | None, now_ms: int) -> Replay:
    """Operator: grant a program's vouchers to an eligible tenant (moves no money); refused when ineligible."""
    principal.require_operator()
    row_tenant = tenant_named(session, tenant, lock=True)
    program = _program(session, program_id)
    body = {"program_id": program_id, "tenant": tenant, "amount_fen": amount_fen, "expires_ms": expires_ms}

    def run() -> dict[str, Any]:
        grant_id = f"g-{secrets.token_hex(6)}"
        with refusing():
            if amount_fen is not None and amount_fen > MAX_FEN:
                raise core.InvalidAmount(f"grant amount must be at most {MAX_FEN} fen, got {amount_fen}")
            granted = core.grant_voucher(program=program_from_row(program), tenant=profile_of(session,
                                         row_tenant).core, grant_id=grant_id, at_ms=now_ms, amount_fen=amount_fen,
                                         expires_ms=expires_ms)
        row = VoucherGrantRow(grant_id=granted.grant_id, program_id=program_id, tenant_id=row_tenant.id,
                              amount_fen=granted.amount_fen, granted_ms=granted.granted_ms,
                              expires_ms=granted.expires_ms)
        session.add(row)
        session.flush()
        return grant_view(row, row_tenant.name, 0)

    return once(session=session, user_id=principal.user_id, action="voucher-grant", key=key, body=body,
                now_ms=now_ms, run=run)


def list_grants(*, session: Session, principal: Principal, tenant: str | None) -> list[dict[str, Any]]:
    """A tenant's own grants (operators: name any tenant), with what each has paid so far."""
    if tenant is None and principal.is_operator:
        rows = session.execute(select(VoucherGrantRow, Tenant.name).join(Tenant, Tenant.id == VoucherGrantRow.tenant_id)
                               .order_by(VoucherGrantRow.granted_ms, VoucherGrantRow.grant_id)).all()
    else:
        who = tenant_for(session, principal, tenant)
        rows = session.execute(select(VoucherGrantRow, Tenant.name).join(Tenant, Tenant.id == VoucherGrantRow.tenant_id)
                               .where(VoucherGrantRow.tenant_id == who.id)
                               .order_by(VoucherGrantRow.granted_ms, VoucherGrantRow.grant_id)).all()
    used = {grant_id: int(fen or 0) for grant_id, fen in session.execute(
        select(VoucherRedemption.grant_id, func.sum(VoucherRedemption.voucher_fen))
        .group_by(VoucherRedemption.grant_id))}
    return [grant_view(r, name, used.get(r.grant_id, 0)) for r, name in rows]


def voucher_usage(session: Session, program_ids: Iterable[str]) -> core.VoucherUsage:
    """Voucher fen already paid, per program, per (program, tenant, program year) and per grant."""
    ids = sorted(set(program_ids))
    if not ids:
        return core.VoucherUsage()
    spent: dict[str, int] = {}
    by_year: dict[tuple[str, str, int], int] = {}
    by_grant: dict[str, int] = {}
    rows = session.execute(select(VoucherRedemption.program_id, VoucherRedemption.tenant, VoucherRedemption.year,
                                  VoucherRedemption.grant_id, func.sum(VoucherRedemption.voucher_fen))
                           .where(VoucherRedemption.program_id.in_(ids))
                           .group_by(VoucherRedemption.program_id, VoucherRedemption.tenant, VoucherRedemption.year,
                                     VoucherRedemption.grant_id)).all()
    for program_id, tenant, year, grant_id, fen in rows:
        amount = int(fen or 0)
        spent[program_id] = spent.get(program_id, 0) + amount
        by_year[(program_id, tenant, year)] = by_year.get((program_id, tenant, year), 0) + amount
        by_grant[grant_id] = by_grant.get(grant_id, 0) + amount
    return core.VoucherUsage(program_spent=spent, tenant_year_used=by_year, grant_used=by_grant)


def redemption_report(*, session: Session, principal: Principal, program_id: str) -> list[core.RedemptionRow]:
    """Per (program year, tenant, provider): lines the program paid, their eligible amount and voucher fen."""
    principal.require_operator()
    _program(session, program_id)
    rows = session.execute(select(VoucherRedemption.year, VoucherRedemption.tenant, VoucherRedemption.provider,
                                  func.count(), func.sum(VoucherRedemption.eligible_fen),
                                  func.sum(VoucherRedemption.voucher_fen))
                           .where(VoucherRedemption.program_id == program_id, VoucherRedemption.voucher_fen > 0)
                           .group_by(VoucherRedemption.year, VoucherRedemption.tenant, VoucherRedemption.provider)
                           .order_by(VoucherRedemption.year, VoucherRedemption.tenant, VoucherRedemption.provider))
    return [core.RedemptionRow(program_id, int(y), t, p, int(n), int(e or 0), int(v or 0)) for y, t, p, n, e, v in rows]


def redemption_report_csv(rows: list[core.RedemptionRow]) -> str:
    """The report in core's CSV columns (program_id, year, tenant, provider, lines, eligible_fen, voucher_fen)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REDEMPTION_COLUMNS)
    for r in rows:
        writer.writerow((r.program_id, r.year, r.tenant, r.provider, r.lines, r.eligible_fen, r.voucher_fen))
    return out.getvalue()

