"""jobs.stop_by_ms (the end of a preempted attempt's notice), jobs.price_kind and price_fen_per_du

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("stop_by_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("price_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("price_fen_per_du", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("price_fen_per_du")
        batch.drop_column("price_kind")
        batch.drop_column("stop_by_ms")
