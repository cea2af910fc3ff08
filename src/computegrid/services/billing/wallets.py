"""Tenant wallets, top-ups and tenant profiles (region, industry, credit limit, affiliated providers)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.services.billing import ledger
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.idempotency import Replay, once
from computegrid.services.billing.parties import MAX_FEN, tenant_for, tenant_named
from computegrid.services.errors import Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Provider, Tenant
from computegrid.store.models_billing import TenantProfileRow


@dataclass(frozen=True)
class Profile:
    """What the rules need of a tenant: eligibility facts (core) and its credit limit in fen."""

    core: core.TenantProfile
    credit_limit_fen: int


def profile_of(session: Session, tenant: Tenant) -> Profile:
    """The tenant's profile; a tenant without one has no region, no tags, no credit and no affiliations."""
    row = session.get(TenantProfileRow, tenant.id)
    if row is None:
        return Profile(core.TenantProfile(tenant=tenant.name, region=""), 0)
    return Profile(core.TenantProfile(tenant=tenant.name, region=row.region,
                                      industry_tags=frozenset(json.loads(row.industry_tags)),
                                      affiliated_providers=frozenset(json.loads(row.affiliated_providers))),
                   row.credit_limit_fen)


def profile_view(profile: Profile) -> dict[str, Any]:
    p = profile.core
    return {"tenant": p.tenant, "region": p.region, "industry_tags": sorted(p.industry_tags),
            "credit_limit_fen": profile.credit_limit_fen, "affiliated_providers": sorted(p.affiliated_providers)}


def set_profile(*, session: Session, principal: Principal, tenant: str, region: str, industry_tags: list[str],
                credit_limit_fen: int, affiliated_providers: list[str], now_ms: int) -> dict[str, Any]:
    """Operator: replace a tenant's profile. Affiliated providers must exist; the credit limit is fen >= 0."""
    principal.require_operator()
    row_tenant = tenant_named(session, tenant, lock=True)
    if isinstance(credit_limit_fen, bool) or not isinstance(credit_limit_fen, int) \
            or not 0 <= credit_limit_fen <= MAX_FEN:
        raise Invalid(f"credit_limit_fen must be a whole number of fen from 0 to {MAX_FEN}, got {credit_limit_fen!r}")
    known = set(session.scalars(select(Provider.name).where(Provider.name.in_(affiliated_providers))))
    unknown = sorted(set(affiliated_providers) - known)
    if unknown:
        raise NotFound(f"no provider {', '.join(repr(u) for u in unknown)} (named as affiliated)")
    tags = sorted({t.strip() for t in industry_tags if t.strip()})
    row = session.get(TenantProfileRow, row_tenant.id)
    if row is None:
        row = TenantProfileRow(tenant_id=row_tenant.id, updated_ms=now_ms)
        session.add(row)
    row.region = region.strip()
    row.industry_tags = json.dumps(tags)
    row.credit_limit_fen = credit_limit_fen
    row.affiliated_providers = json.dumps(sorted(set(affiliated_providers)))
    row.updated_ms = now_ms
    session.flush()
    return profile_view(profile_of(session, row_tenant))


def get_profile(*, session: Session, principal: Principal, tenant: str | None) -> dict[str, Any]:
    return profile_view(profile_of(session, tenant_for(session, principal, tenant)))


def wallet_view(session: Session, tenant: Tenant, as_of_ms: int | None = None) -> dict[str, Any]:
    """Wallet and prepaid balances (fen), the credit limit and what can still be spent."""
    profile = profile_of(session, tenant)
    money = ledger.balance(session=session, account=core.wallet(tenant.name), as_of_ms=as_of_ms)
    prepaid = ledger.balance(session=session, account=core.prepaid(tenant.name), as_of_ms=as_of_ms)
    return {"tenant": tenant.name, "balance_fen": money, "prepaid_fen": prepaid,
            "credit_limit_fen": profile.credit_limit_fen, "available_fen": money + profile.credit_limit_fen,
            "as_of": iso(as_of_ms) if as_of_ms is not None else None}


def get_wallet(*, session: Session, principal: Principal, tenant: str | None,
               as_of_ms: int | None = None) -> dict[str, Any]:
    """The caller's own wallet, or (operators) any tenant's; as of a time (epoch ms) when given."""
    return wallet_view(session, tenant_for(session, principal, tenant), as_of_ms)


def top_up(*, session: Session, principal: Principal, tenant: str, amount_fen: int, key: str | None,
           now_ms: int) -> Replay:
    """Operator: money from the bank into a tenant's wallet (ledger key `topup:<id>`)."""
    principal.require_operator()
    row = tenant_named(session, tenant, lock=True)
    body = {"tenant": tenant, "amount_fen": amount_fen}

    def run() -> dict[str, Any]:
        topup_id = secrets.token_hex(8)
        with refusing():
            if amount_fen > MAX_FEN:
                raise core.InvalidAmount(f"top-up amount must be at most {MAX_FEN} fen, got {amount_fen}")
            posting = core.top_up(tenant=row.name, amount_fen=amount_fen, topup_id=topup_id, at_ms=now_ms)
        ledger.post(session=session, posting=posting, now_ms=now_ms)
        return {"topup_id": topup_id, "key": posting.key, "tenant": row.name, "amount_fen": amount_fen,
                "at": iso(now_ms), "wallet": wallet_view(session, row)}

    return once(session=session, user_id=principal.user_id, action="topup", key=key, body=body, now_ms=now_ms,
                run=run)
