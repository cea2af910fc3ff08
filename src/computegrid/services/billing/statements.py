"""Who may read which ledger account: statements (CSV) and balances as of any time."""

from __future__ import annotations

from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.services.billing import ledger
from computegrid.services.errors import Forbidden, Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.store.models import Provider, Tenant


def own_accounts(session: Session, principal: Principal) -> list[core.Account]:
    """The accounts a tenant's or provider's user may read; the first is their default."""
    if principal.tenant_id is not None and principal.role == "tenant":
        tenant = session.get(Tenant, principal.tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {principal.tenant_id}")
        return [core.wallet(tenant.name), core.prepaid(tenant.name)]
    if principal.provider_id is not None and principal.role == "provider":
        provider = session.get(Provider, principal.provider_id)
        if provider is None:
            raise NotFound(f"no provider {principal.provider_id}")
        return [core.receivable(provider.name), core.payout(provider.name)]
    return []


def readable_account(session: Session, principal: Principal, name: str | None) -> core.Account:
    """The account named (operators: any; others: their own), or the caller's default account."""
    own = own_accounts(session, principal)
    if name is None:
        if principal.is_operator:
            if principal.tenant_id is None:
                raise Invalid("name an account, e.g. wallet:<tenant> or fee_revenue")
            tenant = session.get(Tenant, principal.tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant {principal.tenant_id}")
            return core.wallet(tenant.name)
        if not own:
            raise Invalid("name an account")
        return own[0]
    account = ledger.parse_account(name)
    if not principal.is_operator and account not in own:
        raise Forbidden(f"you may read only your own accounts ({', '.join(str(a) for a in own) or 'none'}), "
                        f"not {account}")
    return account


def statement(*, session: Session, principal: Principal, account: str | None, since_ms: int | None,
              until_ms: int | None, now_ms: int) -> tuple[core.Account, str]:
    """CSV statement of one account for since <= time < until (defaults: from the start, up to now)."""
    chosen = readable_account(session, principal, account)
    return chosen, ledger.statement_csv(session=session, account=chosen, since_ms=since_ms or 0,
                                        until_ms=until_ms if until_ms is not None else now_ms + 1)


def all_balances(*, session: Session, principal: Principal, as_of_ms: int | None) -> dict[str, int]:
    """Operator: every account's balance as of a time; they always sum to 0."""
    principal.require_operator()
    return ledger.balances(session=session, as_of_ms=as_of_ms)
