"""Billing tables: the ledger, tenant profiles, prices, products, holdings, vouchers, charges, invoices, payouts.

Money is integer fen (BIGINT); du and ratios are exact fractions stored as text ("3/8");
times are epoch milliseconds. Core ids are names: `wallet:<tenant name>`,
`receivable:<provider name>`, so ledger accounts read the same in the database and in core.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from computegrid.store.models import Base


class LedgerPosting(Base):
    """One balanced money movement, keyed by the business event that caused it."""

    __tablename__ = "ledger_postings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the entries, to tell a replay from a conflict
    created_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_at", "account", "at_ms"),
                      Index("ix_ledger_entries_posting", "posting_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    posting_id: Mapped[int] = mapped_column(ForeignKey("ledger_postings.id"))
    account: Mapped[str] = mapped_column(String(200))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    at_ms: Mapped[int] = mapped_column(BigInteger)  # the posting's time, repeated so balances need no join


class MoneyRequest(Base):
    """A request made with an Idempotency-Key: its body's digest and the answer given."""

    __tablename__ = "money_requests"
    __table_args__ = (UniqueConstraint("scope", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # "<user id>:<action>"
    key: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class TenantProfileRow(Base):
    __tablename__ = "tenant_profiles"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    region: Mapped[str] = mapped_column(String(64), default="")
    industry_tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    credit_limit_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    affiliated_providers: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of provider names
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class PriceScheduleRow(Base):
    __tablename__ = "price_schedules"
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), primary_key=True)
    schedule: Mapped[str] = mapped_column(Text)  # JSON of the core PriceSchedule (see services/billing/prices.py)
    utc_offset_min: Mapped[int] = mapped_column(Integer, default=480)  # the bands are in this local time
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ProductRow(Base):
    __tablename__ = "products"
    product_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))  # hour_card | training_package
    name: Mapped[str] = mapped_column(String(128))
    du: Mapped[str] = mapped_column(String(64))
    price_fen: Mapped[int] = mapped_column(BigInteger)
    validity_days: Mapped[int] = mapped_column(Integer)
    accelerator_class: Mapped[str | None] = mapped_column(String(64))
    allowed_models: Mapped[str | None] = mapped_column(Text)  # JSON list; None = any model
    storage_gb: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class HoldingRow(Base):
    __tablename__ = "holdings"
    __table_args__ = (Index("ix_holdings_tenant", "tenant_id"),)
    holding_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"))
    du_total: Mapped[str] = mapped_column(String(64))
    du_used: Mapped[str] = mapped_column(String(64), default="0")
    price_fen: Mapped[int] = mapped_column(BigInteger)
    valid_from_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    allowed_models: Mapped[str | None] = mapped_column(Text)
    storage_gb: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="active")
    purchase_key: Mapped[str] = mapped_column(String(200))


class VoucherProgramRow(Base):
    __tablename__ = "voucher_programs"
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(128))
    budget_fen: Mapped[int] = mapped_column(BigInteger)
    coverage_ratio: Mapped[str] = mapped_column(String(32))
    domestic_coverage_ratio: Mapped[str] = mapped_column(String(32))
    tenant_annual_cap_fen: Mapped[int] = mapped_column(BigInteger)
    eligible_regions: Mapped[str] = mapped_column(Text, default="[]")
    eligible_industries: Mapped[str] = mapped_column(Text, default="[]")
    eligible_providers: Mapped[str] = mapped_column(Text, default="[]")
    year_start_month: Mapped[int] = mapped_column(Integer, default=1)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class VoucherGrantRow(Base):
    __tablename__ = "voucher_grants"
    __table_args__ = (Index("ix_voucher_grants_tenant", "tenant_id"),)
    grant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("voucher_programs.program_id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)  # None: up to the program's annual cap
    granted_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)


class VoucherRedemption(Base):
    """What a grant paid of one invoice line: the voucher usage counters and the issuer's report."""

    __tablename__ = "voucher_redemptions"
    __table_args__ = (UniqueConstraint("line_key"), Index("ix_voucher_redemptions_program", "program_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("voucher_programs.program_id"))
    grant_id: Mapped[str] = mapped_column(ForeignKey("voucher_grants.grant_id"))
    tenant: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    year: Mapped[int] = mapped_column(Integer)
    line_key: Mapped[str] = mapped_column(String(200))  # the usage posting key, usage:<job>:<attempt>
    eligible_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_fen: Mapped[int] = mapped_column(BigInteger)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger)


class UsageCharge(Base):
    """A job attempt that has ended, with the price captured when it ended; invoiced once.

    The unique (job, attempt) is the guard that no attempt is billed twice.
    """

    __tablename__ = "usage_charges"
    __table_args__ = (UniqueConstraint("job_id", "attempt"),
                      Index("ix_usage_charges_tenant", "tenant_id", "invoice_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    tier: Mapped[str] = mapped_column(String(8))
    price_kind: Mapped[str] = mapped_column(String(16))  # on-demand | spot | reserved | ... | unpriced
    fixed_fen_per_du: Mapped[int | None] = mapped_column(BigInteger)  # set at placement; None = the schedule
    schedule: Mapped[str | None] = mapped_column(Text)  # the provider's schedule JSON when the attempt ended
    utc_offset_min: Mapped[int] = mapped_column(Integer)
    ended_ms: Mapped[int] = mapped_column(BigInteger)  # usage after this is not charged
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM of ended_ms in billing time
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class InvoiceRow(Base):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "period"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # invoice:<tenant>:<period>
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    period: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    at_ms: Mapped[int] = mapped_column(BigInteger)
    gross_fen: Mapped[int] = mapped_column(BigInteger)
    card_value_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_fen: Mapped[int] = mapped_column(BigInteger)
    net_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)  # JSON: the lines and totals
    csv: Mapped[str] = mapped_column(Text)


class PayoutRow(Base):
    __tablename__ = "payouts"
    __table_args__ = (Index("ix_payouts_provider", "provider_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payout_id: Mapped[str] = mapped_column(String(64), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # sent | confirmed | failed
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
