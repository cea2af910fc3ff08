"""Who is asking, and what roles may see and do."""

from __future__ import annotations

from dataclasses import dataclass

from computegrid.services.errors import Forbidden

ROLES = ("operator", "provider", "tenant")


@dataclass(frozen=True)
class Principal:
    user_id: int
    name: str
    role: str
    tenant_id: int | None
    provider_id: int | None
    tenant_name: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def require_operator(self) -> None:
        if not self.is_operator:
            raise Forbidden("only an operator may do this")

    def require_role(self, *roles: str) -> None:
        if self.role not in roles and not self.is_operator:
            raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {self.role}")

    def can_manage_provider(self, provider_id: int) -> bool:
        return self.is_operator or (self.role == "provider" and self.provider_id == provider_id)

    def can_see_tenant(self, tenant_id: int) -> bool:
        return self.is_operator or self.tenant_id == tenant_id
