"""Scheduling inputs: tenant priority classes and fair-share weight, job priority, site capabilities,
log chunks per gang rank, and operators' region RTTs.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("priority_classes", sa.String(32), nullable=False, server_default="low,normal"))
        batch.add_column(sa.Column("fair_share", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("capabilities", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("priority_class", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("package_priority", sa.Integer(), nullable=False, server_default="0"))
    # The unique key of log chunks gains the rank. Its old constraint was created unnamed, so the table is
    # rebuilt (the same on SQLite and PostgreSQL) rather than the constraint dropped by a guessed name.
    op.create_table(
        "job_log_chunks_new",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "attempt", "rank", "offset", name="uq_job_log_chunks_rank_offset"),
    )
    op.execute('INSERT INTO job_log_chunks_new (id, job_id, attempt, rank, "offset", data) '
               'SELECT id, job_id, attempt, 0, "offset", data FROM job_log_chunks')
    op.drop_table("job_log_chunks")
    op.rename_table("job_log_chunks_new", "job_log_chunks")
    if op.get_bind().dialect.name == "postgresql":  # the copied ids must not be handed out again
        op.execute("SELECT setval(pg_get_serial_sequence('job_log_chunks', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM job_log_chunks), 0) + 1, false)")
    op.create_table(
        "region_rtts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region_a", sa.String(64), nullable=False),
        sa.Column("region_b", sa.String(64), nullable=False),
        sa.Column("rtt_ms", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("region_a", "region_b", name="uq_region_rtts_pair"),
    )


def downgrade() -> None:
    op.drop_table("region_rtts")
    op.create_table(
        "job_log_chunks_old",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "attempt", "offset"),
    )
    op.execute('INSERT INTO job_log_chunks_old (id, job_id, attempt, "offset", data) '
               'SELECT id, job_id, attempt, "offset", data FROM job_log_chunks WHERE rank = 0')
    op.drop_table("job_log_chunks")
    op.rename_table("job_log_chunks_old", "job_log_chunks")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("package_priority")
        batch.drop_column("priority_class")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("capabilities")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("fair_share")
        batch.drop_column("priority_classes")
