"""Who money belongs to: tenants and providers by name, row locks, and billing time (months)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.billing import BillingError
from computegrid.core.billing.vouchers import parse_period
from computegrid.services.errors import Forbidden, Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.store.models import Provider, Tenant

# Invoices are monthly in China Standard Time: usage ending at 2026-12-01T07:00Z is November's.
BILLING_UTC_OFFSET_MIN = 480
MAX_FEN = 10**14  # ¥1,000,000,000,000: any single amount above this is a typo, and overflows nothing


def tenant_named(session: Session, name: str, *, lock: bool = False) -> Tenant:
    query = select(Tenant).where(Tenant.name == name)
    tenant = session.scalar(query.with_for_update() if lock else query)
    if tenant is None:
        raise NotFound(f"no tenant {name!r}")
    return tenant


def provider_named(session: Session, name: str, *, lock: bool = False) -> Provider:
    query = select(Provider).where(Provider.name == name)
    provider = session.scalar(query.with_for_update() if lock else query)
    if provider is None:
        raise NotFound(f"no provider {name!r}")
    return provider


def lock_tenant(session: Session, tenant_id: int) -> Tenant:
    """The tenant row, locked until the transaction ends (PostgreSQL; SQLite writers are serial anyway):
    every debit of its wallet checks the balance under this lock, so two debits cannot both pass."""
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def tenant_for(session: Session, principal: Principal, name: str | None, *, lock: bool = False) -> Tenant:
    """The tenant a request is about: `name` if given (operators: any; others: only their own), else the caller's.

    Another tenant's name is answered as not found, so tenants cannot probe each other.
    """
    if name is None:
        if principal.tenant_id is None:
            raise Invalid("name a tenant (your user belongs to none)")
        return lock_tenant(session, principal.tenant_id) if lock else _tenant_by_id(session, principal.tenant_id)
    tenant = tenant_named(session, name, lock=lock)
    if not principal.can_see_tenant(tenant.id):
        raise NotFound(f"no tenant {name!r}")
    return tenant


def _tenant_by_id(session: Session, tenant_id: int) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def provider_for(session: Session, principal: Principal, name: str | None) -> Provider:
    """The provider a request is about: operators name any; a provider's users get their own."""
    if name is None:
        if principal.provider_id is None:
            raise Invalid("name a provider (your user belongs to none)")
        provider = session.get(Provider, principal.provider_id)
        if provider is None:
            raise NotFound(f"no provider {principal.provider_id}")
        return provider
    provider = provider_named(session, name)
    if not principal.can_manage_provider(provider.id):
        raise Forbidden(f"only provider {name!r} itself or an operator may do this")
    return provider


def period_of(at_ms: int) -> str:
    """The billing month ('YYYY-MM') of an instant (epoch ms), in billing time."""
    moment = datetime.fromtimestamp(at_ms / 1000, UTC) + timedelta(minutes=BILLING_UTC_OFFSET_MIN)
    return f"{moment.year:04d}-{moment.month:02d}"


def period_bounds(period: str) -> tuple[int, int]:
    """[start, end) of a billing month in epoch ms; Invalid for anything but 'YYYY-MM'."""
    try:
        year, month = parse_period(period)
    except BillingError as exc:
        raise Invalid(str(exc)) from exc
    offset = timedelta(minutes=BILLING_UTC_OFFSET_MIN)
    start = datetime(year, month, 1, tzinfo=UTC) - offset
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) - offset
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)
