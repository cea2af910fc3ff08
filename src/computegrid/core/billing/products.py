"""Prepaid products operators define, and buying them from a wallet.

An hour card is N du at a fixed price (usually a discount), valid for a number of days,
optionally only on some accelerator models. A training package is a fixed-price bundle:
N du on a named accelerator class plus a scheduling priority. Buying moves
the price from the tenant's wallet into the tenant's prepaid liability; the du become
`Holding`s drawn down by usage (see holdings.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.billing.accounts import prepaid, wallet
from computegrid.core.billing.errors import BillingError, InvalidAmount, ProductInactive, UnknownProduct
from computegrid.core.billing.holdings import Holding
from computegrid.core.billing.ledger import Posting, transfer
from computegrid.core.billing.money import require_du, require_fen, require_time_ms
from computegrid.core.billing.wallets import ensure_can_debit
from computegrid.core.catalog import Catalog, UnknownAccelerator

MS_PER_DAY = 86_400_000


def _require_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or value != value.strip():
        raise BillingError(f"{what} must be a non-empty string without surrounding spaces, got {value!r}")


def _require_positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidAmount(f"{what} must be a positive whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class HourCard:
    """N du for `price_fen`, usable for `validity_days` after purchase; `allowed_models` None = any model."""

    product_id: str
    name: str
    du: Fraction
    price_fen: int
    validity_days: int
    allowed_models: frozenset[str] | None = None
    active: bool = True

    def __post_init__(self) -> None:
        _require_id(self.product_id, "product id")
        object.__setattr__(self, "du", require_du(self.du, f"hour card {self.product_id!r} du"))
        require_fen(self.price_fen, f"hour card {self.product_id!r} price")
        _require_positive_int(self.validity_days, f"hour card {self.product_id!r} validity in days")
        if self.allowed_models is not None and not self.allowed_models:
            raise BillingError(f"hour card {self.product_id!r}: allowed_models is empty; use None for any model")

    @property
    def fen_per_du(self) -> Fraction:
        return self.price_fen / self.du


@dataclass(frozen=True)
class TrainingPackage:
    """A fixed-price bundle: du on an accelerator class (its resolved models) and a priority.

    The whole price is attributed to the du: the priority is an entitlement the package
    includes (its holder's jobs' package priority in the queue), not separately valued (docs/billing.md).
    """

    product_id: str
    name: str
    accelerator_class: str
    allowed_models: frozenset[str]
    du: Fraction
    priority: int
    price_fen: int
    validity_days: int
    active: bool = True

    def __post_init__(self) -> None:
        _require_id(self.product_id, "product id")
        object.__setattr__(self, "du", require_du(self.du, f"package {self.product_id!r} du"))
        require_fen(self.price_fen, f"package {self.product_id!r} price")
        _require_positive_int(self.validity_days, f"package {self.product_id!r} validity in days")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise BillingError(f"package {self.product_id!r} priority must be an int, got {self.priority!r}")
        if not self.allowed_models:
            raise BillingError(f"package {self.product_id!r} covers no accelerator models")

    @property
    def fen_per_du(self) -> Fraction:
        return self.price_fen / self.du


Product = HourCard | TrainingPackage


def resolve_accelerator_class(name: str, catalog: Catalog) -> frozenset[str]:
    """Canonical models an accelerator class name stands for (model, prefix group, family or vendor)."""
    try:
        return catalog.resolve(name)
    except UnknownAccelerator as exc:
        raise BillingError(str(exc)) from None


@dataclass(frozen=True)
class Purchase:
    """What buying a product produces: the wallet -> prepaid posting and the new holdings."""

    posting: Posting
    holdings: tuple[Holding, ...]


def purchase_product(*, products: Mapping[str, Product], product_id: str, tenant: str, purchase_id: str,
                     at_ms: int, wallet_balance_fen: int, credit_limit_fen: int, quantity: int = 1) -> Purchase:
    """Buy `quantity` of a product from the tenant's wallet (key `purchase:<purchase_id>`).

    Refuses (moving nothing) an unknown or inactive product, a non-positive quantity,
    and a price that would take the wallet below -credit_limit_fen.
    """
    _require_id(tenant, "tenant")
    _require_id(purchase_id, "purchase id")
    require_time_ms(at_ms, "purchase time")
    _require_positive_int(quantity, "quantity")
    product = products.get(product_id)
    if product is None:
        raise UnknownProduct(f"no product {product_id!r}; known: {', '.join(sorted(products)) or 'none'}")
    if not product.active:
        raise ProductInactive(f"product {product_id!r} is no longer sold")
    total = product.price_fen * quantity
    ensure_can_debit(tenant=tenant, balance_fen=wallet_balance_fen, debit_fen=total, credit_limit_fen=credit_limit_fen)
    expires = at_ms + product.validity_days * MS_PER_DAY
    priority = product.priority if isinstance(product, TrainingPackage) else 0
    holdings = tuple(
        Holding(holding_id=f"{purchase_id}#{n}", tenant=tenant, product_id=product.product_id, du_total=product.du,
                price_fen=product.price_fen, valid_from_ms=at_ms, expires_ms=expires,
                allowed_models=product.allowed_models, priority=priority)
        for n in range(1, quantity + 1))
    memo = f"buy {quantity} x {product.name} ({product.product_id})"
    posting = transfer(f"purchase:{purchase_id}", at_ms, memo, wallet(tenant), prepaid(tenant), total)
    return Purchase(posting=posting, holdings=holdings)
