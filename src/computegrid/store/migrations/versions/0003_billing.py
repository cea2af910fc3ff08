"""billing tables: ledger, wallets, prices, products, holdings, vouchers, invoices

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("posting_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["posting_id"], ["ledger_postings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_entries_account_at", "ledger_entries", ["account", "at_ms"])
    op.create_index("ix_ledger_entries_posting", "ledger_entries", ["posting_id"])
    op.create_table(
        "money_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "key"),
    )
    op.create_table(
        "tenant_profiles",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("industry_tags", sa.Text(), nullable=False),
        sa.Column("credit_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("affiliated_providers", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "price_schedules",
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("utc_offset_min", sa.Integer(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("provider_id"),
    )
    op.create_table(
        "products",
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("du", sa.String(64), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("accelerator_class", sa.String(64), nullable=True),
        sa.Column("allowed_models", sa.Text(), nullable=True),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("product_id"),
    )
    op.create_table(
        "holdings",
        sa.Column("holding_id", sa.String(96), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("du_total", sa.String(64), nullable=False),
        sa.Column("du_used", sa.String(64), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("valid_from_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("allowed_models", sa.Text(), nullable=True),
        sa.Column("storage_gb", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("purchase_key", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["product_id"], ["products.product_id"]),
        sa.PrimaryKeyConstraint("holding_id"),
    )
    op.create_index("ix_holdings_tenant", "holdings", ["tenant_id"])
    op.create_table(
        "voucher_programs",
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("budget_fen", sa.BigInteger(), nullable=False),
        sa.Column("coverage_ratio", sa.String(32), nullable=False),
        sa.Column("domestic_coverage_ratio", sa.String(32), nullable=False),
        sa.Column("tenant_annual_cap_fen", sa.BigInteger(), nullable=False),
        sa.Column("eligible_regions", sa.Text(), nullable=False),
        sa.Column("eligible_industries", sa.Text(), nullable=False),
        sa.Column("eligible_providers", sa.Text(), nullable=False),
        sa.Column("year_start_month", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("program_id"),
    )
    op.create_table(
        "voucher_grants",
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("granted_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["program_id"], ["voucher_programs.program_id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("grant_id"),
    )
    op.create_index("ix_voucher_grants_tenant", "voucher_grants", ["tenant_id"])
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("gross_fen", sa.BigInteger(), nullable=False),
        sa.Column("card_value_fen", sa.BigInteger(), nullable=False),
        sa.Column("voucher_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("csv", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("tenant_id", "period"),
    )
    op.create_table(
        "voucher_redemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("line_key", sa.String(200), nullable=False),
        sa.Column("eligible_fen", sa.BigInteger(), nullable=False),
        sa.Column("voucher_fen", sa.BigInteger(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["voucher_programs.program_id"]),
        sa.ForeignKeyConstraint(["grant_id"], ["voucher_grants.grant_id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("line_key"),
    )
    op.create_index("ix_voucher_redemptions_program", "voucher_redemptions", ["program_id"])
    op.create_table(
        "usage_charges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("price_kind", sa.String(16), nullable=False),
        sa.Column("fixed_fen_per_du", sa.BigInteger(), nullable=True),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column("utc_offset_min", sa.Integer(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "attempt"),
    )
    op.create_index("ix_usage_charges_tenant", "usage_charges", ["tenant_id", "invoice_id"])
    op.create_table(
        "payouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payout_id", sa.String(64), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payout_id"),
    )
    op.create_index("ix_payouts_provider", "payouts", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_payouts_provider", table_name="payouts")
    op.drop_table("payouts")
    op.drop_index("ix_usage_charges_tenant", table_name="usage_charges")
    op.drop_table("usage_charges")
    op.drop_index("ix_voucher_redemptions_program", table_name="voucher_redemptions")
    op.drop_table("voucher_redemptions")
    op.drop_table("invoices")
    op.drop_index("ix_voucher_grants_tenant", table_name="voucher_grants")
    op.drop_table("voucher_grants")
    op.drop_table("voucher_programs")
    op.drop_index("ix_holdings_tenant", table_name="holdings")
    op.drop_table("holdings")
    op.drop_table("products")
    op.drop_table("price_schedules")
    op.drop_table("tenant_profiles")
    op.drop_table("money_requests")
    op.drop_index("ix_ledger_entries_posting", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_account_at", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_postings")
