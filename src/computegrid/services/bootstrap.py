"""First start of the embedded platform: an operator, a local provider, its site and agent user."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.services import accounts, sites
from computegrid.services.errors import Unauthorized
from computegrid.services.principal import Principal
from computegrid.store.models import Provider, Site, Tenant, User

OPERATOR = "admin"
AGENT_USER = "local-agent"
DEFAULT_TENANT = "default"
LOCAL_PROVIDER = "local"


@dataclass(frozen=True)
class LocalSite:
    name: str = "local"
    region: str = "local"
    tier: str = "core"
    electricity_fen_per_kwh: str = "0"


def ensure_platform(*, session: Session, now_ms: int, site: LocalSite) -> bool:
    """Create what the embedded platform needs if it is missing; True when anything was created."""
    created = False
    tenant = session.scalar(select(Tenant).where(Tenant.name == DEFAULT_TENANT))
    if tenant is None:
        tenant = accounts.create_tenant(session=session, name=DEFAULT_TENANT, now_ms=now_ms)
        created = True
    if session.scalar(select(Provider).where(Provider.name == LOCAL_PROVIDER)) is None:
        accounts.create_provider(session=session, name=LOCAL_PROVIDER, now_ms=now_ms)
        created = True
    if session.scalar(select(User).where(User.name == OPERATOR)) is None:
        accounts.create_user(session=session, name=OPERATOR, role="operator", tenant=DEFAULT_TENANT, now_ms=now_ms)
        created = True
    if session.scalar(select(User).where(User.name == AGENT_USER)) is None:
        accounts.create_user(session=session, name=AGENT_USER, role="provider", provider=LOCAL_PROVIDER,
                             now_ms=now_ms)
        created = True
    if session.scalar(select(Site).where(Site.name == site.name)) is None:
        operator = session.scalar(select(User).where(User.name == OPERATOR))
        assert operator is not None
        sites.create_site(session=session,
                          principal=Principal(operator.id, operator.name, "operator", operator.tenant_id, None),
                          name=site.name, region=site.region, tier=site.tier, backend="local",
                          electricity_fen_per_kwh=site.electricity_fen_per_kwh, provider=LOCAL_PROVIDER,
                          now_ms=now_ms)
        created = True
    return created


def key_for(*, session: Session, user_name: str, existing: str | None, now_ms: int) -> tuple[str, bool]:
    """Keep `existing` if it still authenticates as `user_name`; otherwise issue a new key. (key, issued)."""
    if existing:
        try:
            if accounts.authenticate(session=session, token=existing).name == user_name:
                return existing, False
        except Unauthorized:
            pass
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise LookupError(f"no user {user_name!r}; run ensure_platform first")
    return accounts.issue_key(session=session, user_id=user.id, now_ms=now_ms, label="computegrid up").token, True
