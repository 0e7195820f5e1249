"""Delta scans are sharded too (a shard's tenants evaluated in part); finished jobs are pruned

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 15:00:00.000000

`scan_shards.partial`: the tenants of a delta shard of which only the changed plugins'
installations are evaluated (the shard's `tenants` are evaluated whole). `ix_jobs_status_finished_at`:
the ledger pruning finds finished rows older than the retention by state and age.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("scan_shards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partial", json, nullable=False, server_default=sa.text("'[]'")))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status_finished_at", ["status", "finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_finished_at")
    with op.batch_alter_table("scan_shards", schema=None) as batch_op:
        batch_op.drop_column("partial")
