"""honest scan signals: fleet scans, per-tenant outcomes, alert state, resolution and cause

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import powerx_governance.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fleet", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("unscanned", _JSON, nullable=False, server_default="{}"))
        batch_op.create_index("ix_scans_fleet_finished_at", ["fleet", "finished_at"], unique=False)
    empty = (
        "jsonb_array_length(tenant_filter) = 0"
        if op.get_context().dialect.name == "postgresql"
        else ("json_array_length(tenant_filter) = 0")
    )
    op.execute(f"UPDATE scans SET fleet = true WHERE kind = 'full' AND {empty}")  # noqa: S608 - constant SQL
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=16), nullable=False, server_default="firing"))
        batch_op.add_column(
            sa.Column("resolved_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("cause", sa.String(length=2000), nullable=True))
        batch_op.create_index(batch_op.f("ix_alerts_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_state"))
        batch_op.drop_column("cause")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("state")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index("ix_scans_fleet_finished_at")
        batch_op.drop_column("unscanned")
        batch_op.drop_column("fleet")
