"""What is for sale and at what price: provider price schedules, prepaid products, purchases and holdings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.routes.money_common import IdempotencyKey, answer, writing
from computegrid.api.schemas_money import (
    PriceScheduleIn,
    ProductCreate,
    PurchaseCreate,
    exact_du,
    name_path,
    name_query,
    ref_path,
)
from computegrid.services.billing import prices, products

router = APIRouter(prefix="/v1", tags=["money"])


@router.put("/prices/{provider}")
def set_prices(body: PriceScheduleIn, principal: CurrentPrincipal, state: StateDep,
               provider: str = name_path("provider")) -> dict[str, Any]:
    """Post a provider's price schedule (the provider itself, or an operator); replaces the previous one."""
    data = body.model_dump(exclude={"utc_offset_min"}, exclude_none=True)
    with writing(state) as session:
        return prices.set_prices(session=session, principal=principal, provider=provider, data=data,
                                 utc_offset_min=body.utc_offset_min, catalog=state.catalog,
                                 now_ms=state.clock.now_ms())


@router.get("/prices")
def list_prices(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    """Every provider's posted prices."""
    with state.db.reading() as session:
        return prices.list_prices(session=session)


@router.get("/prices/{provider}")
def get_prices(principal: CurrentPrincipal, state: StateDep, provider: str = name_path("provider")) -> dict[str, Any]:
    with state.db.reading() as session:
        return prices.get_prices(session=session, provider=provider)


@router.get("/products")
def list_products(principal: CurrentPrincipal, state: StateDep, include_retired: bool = False) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return products.list_products(session=session, include_retired=include_retired)


@router.post("/products", status_code=201)
def define_product(body: ProductCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: a new hour card or training package."""
    du = exact_du(body.du, "du")
    with writing(state) as session:
        return products.define_product(
            session=session, principal=principal, catalog=state.catalog, product_id=body.product_id, kind=body.kind,
            name=body.name, du=du, price_fen=body.price_fen, validity_days=body.validity_days, models=body.models,
            accelerator_class=body.accelerator_class, priority=body.priority,
            now_ms=state.clock.now_ms())


@router.post("/products/{product_id}/retire")
def retire_product(principal: CurrentPrincipal, state: StateDep,
                   product_id: str = name_path("product")) -> dict[str, Any]:
    """Operator: stop selling a product (holdings already bought stay valid)."""
    with writing(state) as session:
        return products.retire_product(session=session, principal=principal, product_id=product_id)


@router.post("/purchases", status_code=201)
def buy(body: PurchaseCreate, principal: CurrentPrincipal, state: StateDep,
        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Buy a product from your wallet (within your credit limit)."""
    with writing(state) as session:
        return answer(products.purchase(session=session, principal=principal, tenant=body.tenant,
                                        product_id=body.product_id, quantity=body.quantity, key=idempotency_key,
                                        now_ms=state.clock.now_ms()))


@router.get("/holdings")
def list_holdings(principal: CurrentPrincipal, state: StateDep,
                  tenant: str | None = name_query("tenant")) -> list[dict[str, Any]]:
    """Your hour cards and packages, with du left and validity."""
    with state.db.reading() as session:
        return products.list_holdings(session=session, principal=principal, tenant=tenant)


@router.post("/holdings/{holding_id}/refund")
def refund_holding(principal: CurrentPrincipal, state: StateDep,
                   holding_id: str = ref_path("holding")) -> dict[str, Any]:
    """Return a valid holding's unused value to the wallet; an expired one cannot be refunded."""
    with writing(state) as session:
        return products.refund(session=session, principal=principal, holding_id=holding_id,
                               now_ms=state.clock.now_ms())


@router.post("/holdings/expire")
def expire_holdings(principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Operator: write off holdings past their expiry (unused value becomes breakage revenue)."""
    with writing(state) as session:
        return products.expire_due(session=session, principal=principal, now_ms=state.clock.now_ms())
