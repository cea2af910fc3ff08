"""Tenants, providers, users and API keys. Keys are stored as a SHA-256 of their secret half."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.services.errors import Conflict, Invalid, NotFound, Unauthorized
from computegrid.services.principal import ROLES, Principal
from computegrid.store.models import ApiKey, Provider, Tenant, User

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
KEY_PREFIX = "cg"


def check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise Invalid(f"{kind} name {name!r} must be 1-63 lowercase letters, digits, '.', '_' or '-'")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    token: str  # shown once; only its hash is stored


def issue_key(*, session: Session, user_id: int, now_ms: int, label: str = "") -> IssuedKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    session.add(ApiKey(key_id=key_id, secret_hash=_hash(secret), user_id=user_id, label=label, created_ms=now_ms))
    return IssuedKey(key_id=key_id, token=f"{KEY_PREFIX}_{key_id}_{secret}")


def authenticate(*, session: Session, token: str) -> Principal:
    """The principal behind an API key; raises Unauthorized for a malformed, unknown or revoked key."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("malformed API key")
    _, key_id, secret = parts
    row = session.execute(
        select(ApiKey, User, Tenant.name.label("tenant_name")).join(User, User.id == ApiKey.user_id)
        .outerjoin(Tenant, Tenant.id == User.tenant_id).where(ApiKey.key_id == key_id)
    ).first()
    if row is None or row.ApiKey.revoked_ms is not None:
        raise Unauthorized("unknown or revoked API key")
    if not hmac.compare_digest(row.ApiKey.secret_hash, _hash(secret)):
        raise Unauthorized("unknown or revoked API key")
    user = row.User
    return Principal(user.id, user.name, user.role, user.tenant_id, user.provider_id, row.tenant_name)


def revoke_key(*, session: Session, principal: Principal, key_id: str, now_ms: int) -> None:
    key = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if key is None or (key.user_id != principal.user_id and not principal.is_operator):
        raise NotFound(f"no API key {key_id}")
    key.revoked_ms = now_ms


Named = TypeVar("Named", Tenant, Provider)


def _create_named(session: Session, model: type[Named], kind: str, name: str, now_ms: int) -> Named:
    check_name(kind, name)
    if session.scalar(select(model.id).where(model.name == name)) is not None:
        raise Conflict(f"{kind} {name!r} already exists")
    row = model(name=name, created_ms=now_ms)
    session.add(row)
    session.flush()
    return row


def create_tenant(*, session: Session, name: str, now_ms: int) -> Tenant:
    return _create_named(session, Tenant, "tenant", name, now_ms)


def create_provider(*, session: Session, name: str, now_ms: int) -> Provider:
    return _create_named(session, Provider, "provider", name, now_ms)


def create_user(*, session: Session, name: str, role: str, now_ms: int, tenant: str | None = None,
                provider: str | None = None) -> tuple[User, IssuedKey]:
    """A user with its first API key. Tenant users name a tenant; provider users name a provider."""
    check_name("user", name)
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists")
    tenant_id = provider_id = None
    if tenant is not None:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant))
        if tenant_id is None:
            raise NotFound(f"no tenant {tenant!r}")
    if provider is not None:
        provider_id = session.scalar(select(Provider.id).where(Provider.name == provider))
        if provider_id is None:
            raise NotFound(f"no provider {provider!r}")
    if role == "tenant" and tenant_id is None:
        raise Invalid("a tenant user needs a tenant")
    if role == "provider" and provider_id is None:
        raise Invalid("a provider user needs a provider")
    user = User(name=name, role=role, tenant_id=tenant_id, provider_id=provider_id, created_ms=now_ms)
    session.add(user)
    session.flush()
    return user, issue_key(session=session, user_id=user.id, now_ms=now_ms, label="first key")


def list_tenants(*, session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.id)))


def list_providers(*, session: Session) -> list[Provider]:
    return list(session.scalars(select(Provider).order_by(Provider.id)))
