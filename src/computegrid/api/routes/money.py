"""The money endpoints under /v1, as one router: wallets and payouts, prices and products,
vouchers, charges and invoices (see docs/money.md)."""

from __future__ import annotations

from fastapi import APIRouter

from computegrid.api.routes import money_catalog, money_invoices, money_vouchers, money_wallets

router = APIRouter()
for _module in (money_wallets, money_catalog, money_vouchers, money_invoices):
    router.include_router(_module.router)
