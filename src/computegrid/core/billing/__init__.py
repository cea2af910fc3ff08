"""Billing: a double-entry ledger in integer fen, prices, charges, prepaid products, vouchers and invoices.

Pure rules (no I/O, no clock): times and ids are arguments. Use-case functions check
limits and produce `Posting`s; the caller records them in a ledger (`Ledger` here, the
database ledger in services/). See docs/billing.md for the accounting rules.
"""

from computegrid.core.billing.accounts import (
    BREAKAGE_REVENUE,
    DISCOUNT_EXPENSE,
    EXTERNAL,
    FEE_REVENUE,
    Account,
    AccountKind,
    payout,
    prepaid,
    receivable,
    voucher_budget,
    wallet,
)
from computegrid.core.billing.charges import Charge, ChargeSlice, charge_usage, ran_until
from computegrid.core.billing.errors import (
    BillingError,
    CardExpired,
    CardNotApplicable,
    ChargeError,
    DuplicateKeyConflict,
    IneligibleVoucher,
    InsufficientFunds,
    InvalidAmount,
    LedgerError,
    PriceError,
    ProductInactive,
    UnknownProduct,
)
from computegrid.core.billing.holdings import (
    CardDraw,
    DrawDown,
    Holding,
    HoldingState,
    draw_down,
    draw_from,
    expire_holding,
    refund_holding,
)
from computegrid.core.billing.invoice import (
    Invoice,
    InvoiceLine,
    UsageLine,
    build_invoice,
    invoice_csv,
    invoice_id_for,
    usage_line,
)
from computegrid.core.billing.ledger import Entry, Ledger, Posting, iso_utc, posting_from_amounts, transfer
from computegrid.core.billing.money import round_half_up
from computegrid.core.billing.payouts import confirm_payout, fail_payout, start_payout
from computegrid.core.billing.prices import (
    PriceRule,
    PriceSchedule,
    TimeBand,
    band_at,
    check_interruptible_price,
    price_fen_per_du,
)
from computegrid.core.billing.products import (
    HourCard,
    Product,
    Purchase,
    TrainingPackage,
    purchase_product,
    resolve_accelerator_class,
)
from computegrid.core.billing.reports import RedemptionRow, redemption_report, redemption_report_csv
from computegrid.core.billing.vouchers import (
    DOMESTIC_VENDORS,
    TenantProfile,
    VoucherGrant,
    VoucherProgram,
    VoucherUsage,
    check_redemption,
    fund_voucher_program,
    grant_voucher,
    is_domestic,
    redemption_ineligibility,
    tenant_ineligibility,
    voucher_share,
)
from computegrid.core.billing.wallets import ensure_can_debit, top_up, withdraw

__all__ = [
    "BREAKAGE_REVENUE", "DISCOUNT_EXPENSE", "DOMESTIC_VENDORS", "EXTERNAL", "FEE_REVENUE",
    "Account", "AccountKind", "BillingError", "CardDraw", "CardExpired", "CardNotApplicable", "Charge",
    "ChargeError", "ChargeSlice", "DrawDown", "DuplicateKeyConflict", "Entry", "Holding", "HoldingState",
    "HourCard", "IneligibleVoucher", "InsufficientFunds", "InvalidAmount", "Invoice", "InvoiceLine", "Ledger",
    "LedgerError", "Posting", "PriceError", "PriceRule", "PriceSchedule", "Product", "ProductInactive", "Purchase",
    "RedemptionRow", "TenantProfile", "TimeBand", "TrainingPackage", "UnknownProduct", "UsageLine", "VoucherGrant",
    "VoucherProgram", "VoucherUsage",
    "band_at", "build_invoice", "charge_usage", "check_interruptible_price", "check_redemption", "confirm_payout",
    "draw_down", "draw_from", "ensure_can_debit", "expire_holding", "fail_payout", "fund_voucher_program",
    "grant_voucher", "invoice_csv", "invoice_id_for", "is_domestic", "iso_utc", "payout", "posting_from_amounts",
    "prepaid", "price_fen_per_du", "purchase_product", "ran_until", "receivable", "redemption_ineligibility",
    "redemption_report", "redemption_report_csv", "refund_holding", "resolve_accelerator_class", "round_half_up",
    "start_payout", "tenant_ineligibility", "top_up", "transfer", "usage_line", "voucher_budget", "voucher_share",
    "wallet", "withdraw",
]
