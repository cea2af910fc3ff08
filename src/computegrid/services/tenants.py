"""Per-tenant scheduling limits operators set: the priority classes a tenant's jobs may use, and its fair share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.jobs.admission import normalise_class_list, parse_class_list
from computegrid.services.errors import Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.store.models import Tenant

MAX_FAIR_SHARE = 1_000_000


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return {"id": tenant.id, "name": tenant.name, "priority_classes": list(parse_class_list(tenant.priority_classes)),
            "fair_share": tenant.fair_share}


def get_tenant(*, session: Session, principal: Principal, name: str) -> Tenant:
    """A tenant by name: operators see any, a tenant's users only their own (others are not found)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None or not principal.can_see_tenant(tenant.id):
        raise NotFound(f"no tenant {name!r}")
    return tenant


def set_limits(*, session: Session, principal: Principal, name: str, priority_classes: list[str] | None = None,
               fair_share: int | None = None) -> Tenant:
    """Operator: set what is given (classes the tenant's jobs may ask for; fair-share weight >= 1).

    Jobs already queued keep their class; the limit applies to new submissions.
    """
    principal.require_operator()
    tenant = get_tenant(session=session, principal=principal, name=name)
    if priority_classes is None and fair_share is None:
        raise Invalid("give priority_classes and/or fair_share")
    classes = None
    if priority_classes is not None:
        try:
            classes = normalise_class_list(priority_classes)
        except ValueError as exc:
            raise Invalid(f"priority_classes: {exc}") from exc
    if fair_share is not None and (isinstance(fair_share, bool) or not 1 <= fair_share <= MAX_FAIR_SHARE):
        raise Invalid(f"fair_share must be a whole number from 1 to {MAX_FAIR_SHARE}, got {fair_share!r}")
    if classes is not None:
        tenant.priority_classes = ",".join(classes)
    if fair_share is not None:
        tenant.fair_share = fair_share
    session.flush()
    return tenant
