"""Billing errors. Each one means: the input was refused and no money moved."""

from __future__ import annotations


class BillingError(ValueError):
    """Bad billing input; the operation was refused before any posting was produced."""


class InvalidAmount(BillingError):
    """An amount is not a positive (or, where stated, non-negative) integer number of fen or du."""


class LedgerError(BillingError):
    """A posting is ill-formed: unbalanced, a zero or non-integer entry, no key, a bad account."""


class DuplicateKeyConflict(LedgerError):
    """A posting reuses the idempotency key of an earlier posting but moves different money."""


class InsufficientFunds(BillingError):
    """The debit would take a wallet below its credit limit."""


class PriceError(BillingError):
    """A price schedule is ill-formed (negative price, overlapping bands) or a price is below a floor."""


class ChargeError(BillingError):
    """Usage cannot be charged (no accelerator model, no du rating)."""


class UnknownProduct(BillingError):
    """No prepaid product has this id."""


class ProductInactive(BillingError):
    """The product exists but is no longer sold."""


class CardExpired(BillingError):
    """An hour card or package was used, refunded or drawn outside its validity period."""


class CardNotApplicable(BillingError):
    """A card was used for a model it does not cover, or for more du than it has left."""


class IneligibleVoucher(BillingError):
    """A voucher grant or redemption breaks the program's eligibility rules."""
