"""Tenants, providers, users and API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.schemas import ProviderCreate, TenantCreate, TenantUpdate, UserCreate
from computegrid.services import accounts, tenants

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.get("/me")
def me(principal: CurrentPrincipal) -> dict[str, Any]:
    return {"user": principal.name, "role": principal.role, "tenant_id": principal.tenant_id,
            "provider_id": principal.provider_id}


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    principal.require_operator()
    with state.db.transaction() as session:
        tenant = accounts.create_tenant(session=session, name=body.name, now_ms=state.clock.now_ms())
        return tenants.tenant_view(tenant)


@router.get("/tenants")
def list_tenants(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    principal.require_operator()
    with state.db.reading() as session:
        return [tenants.tenant_view(t) for t in accounts.list_tenants(session=session)]


@router.get("/tenants/{name}")
def show_tenant(name: str, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """A tenant's scheduling limits (operators: any tenant; a tenant's users: their own)."""
    with state.db.reading() as session:
        return tenants.tenant_view(tenants.get_tenant(session=session, principal=principal, name=name))


@router.patch("/tenants/{name}")
def update_tenant(name: str, body: TenantUpdate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: set a tenant's allowed priority classes and/or fair-share weight (fields left out keep theirs)."""
    with state.db.transaction() as session:
        tenant = tenants.set_limits(session=session, principal=principal, name=name,
                                    priority_classes=body.priority_classes, fair_share=body.fair_share)
        return tenants.tenant_view(tenant)


@router.post("/providers", status_code=201)
def create_provider(body: ProviderCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    principal.require_operator()
    with state.db.transaction() as session:
        provider = accounts.create_provider(session=session, name=body.name, now_ms=state.clock.now_ms())
        return {"id": provider.id, "name": provider.name}


@router.get("/providers")
def list_providers(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return [{"id": p.id, "name": p.name} for p in accounts.list_providers(session=session)]


@router.post("/users", status_code=201)
def create_user(body: UserCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Create a user and its first API key; the key is shown only in this response."""
    principal.require_operator()
    with state.db.transaction() as session:
        user, key = accounts.create_user(session=session, name=body.name, role=body.role, tenant=body.tenant,
                                         provider=body.provider, now_ms=state.clock.now_ms())
        return {"id": user.id, "name": user.name, "role": user.role, "api_key": key.token}


@router.post("/keys", status_code=201)
def issue_key(principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.transaction() as session:
        key = accounts.issue_key(session=session, user_id=principal.user_id, now_ms=state.clock.now_ms())
        return {"key_id": key.key_id, "api_key": key.token}


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, principal: CurrentPrincipal, state: StateDep) -> None:
    with state.db.transaction() as session:
        accounts.revoke_key(session=session, principal=principal, key_id=key_id, now_ms=state.clock.now_ms())
    state.forget_keys()
