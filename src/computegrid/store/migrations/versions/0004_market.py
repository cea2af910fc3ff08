"""market tables: offers, bids, leases, spot price index, rounds

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market_offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("device_memory_gb", sa.String(32), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("floor_fen_per_du", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=True),
        sa.Column("window_end_ms", sa.BigInteger(), nullable=True),
        sa.Column("interruptible", sa.Boolean(), nullable=False),
        sa.Column("reseller_tenant_id", sa.Integer(), nullable=True),
        sa.Column("reservation_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.ForeignKeyConstraint(["reseller_tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_market_offers_kind_state", "market_offers", ["kind", "state"])
    op.create_index("ix_market_offers_reservation", "market_offers", ["reservation_id"])
    op.create_table(
        "market_bids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("limit_fen_per_du", sa.BigInteger(), nullable=True),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("min_device_memory_gb", sa.String(32), nullable=False),
        sa.Column("regions", sa.Text(), nullable=False),
        sa.Column("tier", sa.String(8), nullable=True),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=True),
        sa.Column("window_end_ms", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    op.create_index("ix_market_bids_state", "market_bids", ["state", "kind"])
    op.create_index("ix_market_bids_tenant", "market_bids", ["tenant_id", "id"])
    op.create_table(
        "market_leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("bid_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("limit_fen_per_du", sa.BigInteger(), nullable=True),
        sa.Column("price_fen_per_du", sa.BigInteger(), nullable=False),
        sa.Column("cost_fen", sa.BigInteger(), nullable=True),
        sa.Column("resold_devices", sa.Integer(), nullable=False),
        sa.Column("posting_key", sa.String(200), nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("preempt_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["offer_id"], ["market_offers.id"]),
        sa.ForeignKeyConstraint(["bid_id"], ["market_bids.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_market_leases_kind_state", "market_leases", ["kind", "state"])
    op.create_index("ix_market_leases_offer", "market_leases", ["offer_id"])
    op.create_index("ix_market_leases_job", "market_leases", ["job_id"])
    op.create_index("ix_market_leases_tenant", "market_leases", ["tenant_id", "id"])
    op.create_table(
        "market_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_market_rounds_at", "market_rounds", ["at_ms"])
    op.create_table(
        "spot_index_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("price_fen_per_du", sa.BigInteger(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["round_id"], ["market_rounds.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "region", "at_ms"),
    )


def downgrade() -> None:
    op.drop_table("spot_index_points")
    op.drop_index("ix_market_rounds_at", table_name="market_rounds")
    op.drop_table("market_rounds")
    for name in ("ix_market_leases_tenant", "ix_market_leases_job", "ix_market_leases_offer",
                 "ix_market_leases_kind_state"):
        op.drop_index(name, table_name="market_leases")
    op.drop_table("market_leases")
    op.drop_index("ix_market_bids_tenant", table_name="market_bids")
    op.drop_index("ix_market_bids_state", table_name="market_bids")
    op.drop_table("market_bids")
    op.drop_index("ix_market_offers_reservation", table_name="market_offers")
    op.drop_index("ix_market_offers_kind_state", table_name="market_offers")
    op.drop_table("market_offers")
