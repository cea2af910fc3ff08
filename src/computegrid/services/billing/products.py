"""Prepaid products (operators define them), buying them from a wallet, and the holdings bought.

A purchase moves the price from `wallet:<tenant>` to `prepaid:<tenant>` (key `purchase:<id>`)
and creates one holding per unit; invoices draw usage down from the holdings first.
"""

from __future__ import annotations

import json
import secrets
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core
from computegrid.core.billing.invoice import format_du
from computegrid.core.catalog import Catalog
from computegrid.services.billing import ledger
from computegrid.services.billing.errors import refusing
from computegrid.services.billing.idempotency import Replay, once
from computegrid.services.billing.parties import MAX_FEN, lock_tenant, tenant_for
from computegrid.services.billing.wallets import profile_of, wallet_view
from computegrid.services.errors import Conflict, Forbidden, Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Tenant
from computegrid.store.models_billing import HoldingRow, ProductRow

KINDS = ("hour_card", "training_package")
MAX_QUANTITY = 1000


def _models(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(json.loads(text))


def product_from_row(row: ProductRow) -> core.Product:
    if row.kind == "hour_card":
        return core.HourCard(product_id=row.product_id, name=row.name, du=Fraction(row.du), price_fen=row.price_fen,
                             validity_days=row.validity_days, allowed_models=_models(row.allowed_models),
                             active=row.active)
    return core.TrainingPackage(product_id=row.product_id, name=row.name,
                                accelerator_class=row.accelerator_class or "",
                                allowed_models=_models(row.allowed_models) or frozenset(), du=Fraction(row.du),
                                priority=row.priority, price_fen=row.price_fen,
                                validity_days=row.validity_days, active=row.active)


def product_view(row: ProductRow) -> dict[str, Any]:
    du = Fraction(row.du)
    return {"product_id": row.product_id, "kind": row.kind, "name": row.name, "du": format_du(du),
            "price_fen": row.price_fen, "fen_per_du": format_du(row.price_fen / du, 2),
            "validity_days": row.validity_days, "accelerator_class": row.accelerator_class,
            "models": None if row.allowed_models is None else sorted(json.loads(row.allowed_models)),
            "priority": row.priority, "active": row.active}


def define_product(*, session: Session, principal: Principal, catalog: Catalog, product_id: str, kind: str,
                   name: str, du: Fraction, price_fen: int, validity_days: int, models: list[str] | None = None,
                   accelerator_class: str | None = None, priority: int = 0,
                   now_ms: int) -> dict[str, Any]:
    """Operator: a new hour card or training package. Model names may be classes (`A100`, `ascend`).

    A package's `priority` becomes Job.package_priority of its holder's jobs while it is active.
    Storage is not sold, so the storage_gb columns are always written 0.
    """
    principal.require_operator()
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if session.get(ProductRow, product_id) is not None:
        raise Conflict(f"product {product_id!r} already exists")
    with refusing():
        if price_fen > MAX_FEN:
            raise core.InvalidAmount(f"price must be at most {MAX_FEN} fen, got {price_fen}")
        if kind == "hour_card":
            if accelerator_class is not None or priority:
                raise core.BillingError("an hour card has no accelerator_class or priority; "
                                        "use models to limit it, or kind training_package")
            allowed = (frozenset().union(*(core.resolve_accelerator_class(m, catalog) for m in models))
                       if models else None)
            product: core.Product = core.HourCard(product_id=product_id, name=name, du=du, price_fen=price_fen,
                                                  validity_days=validity_days, allowed_models=allowed)
        else:
            if not accelerator_class:
                raise core.BillingError("a training package needs an accelerator_class (e.g. A100)")
            if models:
                raise core.BillingError("a training package covers its accelerator_class; leave models out")
            product = core.TrainingPackage(
                product_id=product_id, name=name, accelerator_class=accelerator_class,
                allowed_models=core.resolve_accelerator_class(accelerator_class, catalog), du=du,
                priority=priority, price_fen=price_fen, validity_days=validity_days)
    row = ProductRow(product_id=product.product_id, kind=kind, name=product.name, du=str(product.du),
                     price_fen=product.price_fen, validity_days=product.validity_days,
                     accelerator_class=accelerator_class,
                     allowed_models=None if product.allowed_models is None
                     else json.dumps(sorted(product.allowed_models)),
                     storage_gb=0, priority=priority, active=True, created_ms=now_ms)
    session.add(row)
    session.flush()
    return product_view(row)


def retire_product(*, session: Session, principal: Principal, product_id: str) -> dict[str, Any]:
    """Operator: stop selling a product; holdings already bought stay valid."""
    principal.require_operator()
    row = session.get(ProductRow, product_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no product {product_id!r}")
    row.active = False
    return product_view(row)


def list_products(*, session: Session, include_retired: bool = False) -> list[dict[str, Any]]:
    query = select(ProductRow).order_by(ProductRow.product_id)
    if not include_retired:
        query = query.where(ProductRow.active.is_(True))
    return [product_view(r) for r in session.scalars(query)]


def holding_from_row(row: HoldingRow, tenant: str) -> core.Holding:
    return core.Holding(holding_id=row.holding_id, tenant=tenant, product_id=row.product_id,
                        du_total=Fraction(row.du_total), price_fen=row.price_fen, valid_from_ms=row.valid_from_ms,
                        expires_ms=row.expires_ms, allowed_models=_models(row.allowed_models),
                        du_used=Fraction(row.du_used), state=core.HoldingState(row.state), priority=row.priority)


def holding_view(h: core.Holding) -> dict[str, Any]:
    return {"holding_id": h.holding_id, "tenant": h.tenant, "product_id": h.product_id,
            "du_total": format_du(h.du_total), "du_used": format_du(h.du_used), "du_left": format_du(h.du_left),
            "price_fen": h.price_fen, "value_left_fen": h.value_left_fen, "valid_from": iso(h.valid_from_ms),
            "expires": iso(h.expires_ms), "models": None if h.allowed_models is None else sorted(h.allowed_models),
            "priority": h.priority, "state": str(h.state)}


def save_holding(row: HoldingRow, holding: core.Holding) -> None:
    """Write back what a rule changed: du used and state."""
    row.du_used = str(holding.du_used)
    row.state = str(holding.state)


def tenant_holdings(session: Session, tenant: Tenant) -> list[tuple[HoldingRow, core.Holding]]:
    rows = session.scalars(select(HoldingRow).where(HoldingRow.tenant_id == tenant.id)
                           .order_by(HoldingRow.expires_ms, HoldingRow.holding_id)).all()
    return [(r, holding_from_row(r, tenant.name)) for r in rows]


def list_holdings(*, session: Session, principal: Principal, tenant: str | None) -> list[dict[str, Any]]:
    return [holding_view(h) for _, h in tenant_holdings(session, tenant_for(session, principal, tenant))]


def purchase(*, session: Session, principal: Principal, tenant: str | None, product_id: str, quantity: int,
             key: str | None, now_ms: int) -> Replay:
    """A tenant buys `quantity` of a product from its wallet (within its credit limit)."""
    if principal.role == "provider":
        raise Forbidden("providers do not buy products; a tenant's user does")
    buyer = tenant_for(session, principal, tenant, lock=True)
    body = {"tenant": buyer.name, "product_id": product_id, "quantity": quantity}

    def run() -> dict[str, Any]:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise Invalid(f"quantity must be a whole number from 1 to {MAX_QUANTITY}, got {quantity!r}")
        products = {r.product_id: product_from_row(r) for r in session.scalars(select(ProductRow))}
        purchase_id = secrets.token_hex(8)
        with refusing():
            bought = core.purchase_product(
                products=products, product_id=product_id, tenant=buyer.name, purchase_id=purchase_id, at_ms=now_ms,
                wallet_balance_fen=ledger.balance(session=session, account=core.wallet(buyer.name)),
                credit_limit_fen=profile_of(session, buyer).credit_limit_fen, quantity=quantity)
        ledger.post(session=session, posting=bought.posting, now_ms=now_ms)
        for h in bought.holdings:
            session.add(HoldingRow(
                holding_id=h.holding_id, tenant_id=buyer.id, product_id=h.product_id, du_total=str(h.du_total),
                du_used=str(h.du_used), price_fen=h.price_fen, valid_from_ms=h.valid_from_ms, expires_ms=h.expires_ms,
                allowed_models=None if h.allowed_models is None else json.dumps(sorted(h.allowed_models)),
                storage_gb=0, priority=h.priority, state=str(h.state), purchase_key=bought.posting.key))
        session.flush()
        return {"purchase_id": purchase_id, "key": bought.posting.key, "tenant": buyer.name,
                "product_id": product_id, "quantity": quantity, "amount_fen": -bought.posting.amount_for(
                    core.wallet(buyer.name)), "holdings": [holding_view(h) for h in bought.holdings],
                "wallet": wallet_view(session, buyer)}

    return once(session=session, user_id=principal.user_id, action="purchase", key=key, body=body, now_ms=now_ms,
                run=run)


def refund(*, session: Session, principal: Principal, holding_id: str, now_ms: int) -> dict[str, Any]:
    """Return a valid holding's unused value to the wallet (key `refund:<holding>`); an expired one is refused."""
    row = session.get(HoldingRow, holding_id)
    if row is None or not principal.can_see_tenant(row.tenant_id):
        raise NotFound(f"no holding {holding_id!r}")
    tenant = lock_tenant(session, row.tenant_id)
    session.refresh(row)
    if row.state != core.HoldingState.ACTIVE.value:
        raise Conflict(f"holding {holding_id!r} is already {row.state}; nothing to refund")
    with refusing():
        closed, posting = core.refund_holding(holding_from_row(row, tenant.name), now_ms)
    if posting is not None:
        ledger.post(session=session, posting=posting, now_ms=now_ms)
    save_holding(row, closed)
    return {"holding": holding_view(closed), "refunded_fen": posting.amount_for(core.wallet(tenant.name))
            if posting else 0, "wallet": wallet_view(session, tenant)}


def expire_due(*, session: Session, principal: Principal, now_ms: int) -> dict[str, Any]:
    """Operator: write off every holding past its expiry; unused value becomes breakage revenue."""
    principal.require_operator()
    rows = session.execute(select(HoldingRow, Tenant.name).join(Tenant, Tenant.id == HoldingRow.tenant_id)
                           .where(HoldingRow.state == core.HoldingState.ACTIVE.value,
                                  HoldingRow.expires_ms <= now_ms).with_for_update(of=HoldingRow)).all()
    expired = []
    for row, tenant in rows:
        with refusing():
            closed, posting = core.expire_holding(holding_from_row(row, tenant), now_ms)
        if posting is not None:
            ledger.post(session=session, posting=posting, now_ms=now_ms)
        save_holding(row, closed)
        expired.append({"holding_id": row.holding_id, "tenant": tenant,
                        "breakage_fen": posting.amount_for(core.BREAKAGE_REVENUE) if posting else 0})
    return {"expired": expired}
