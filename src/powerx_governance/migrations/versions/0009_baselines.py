"""tenant groups, explicit baseline revisions, and the last evaluation: members, baselines, drift

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 11:31:23.217321
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import powerx_governance.db.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baseline_drift",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=False),
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("installed", sa.String(length=64), nullable=True),
        sa.Column("baseline", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("opened_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_baseline_drift")),
        sa.UniqueConstraint("group_id", "tenant_uuid", "plugin_id", name="uq_baseline_drift_item"),
    )
    with op.batch_alter_table("baseline_drift", schema=None) as batch_op:
        batch_op.create_index("ix_baseline_drift_tenant", ["tenant_uuid"], unique=False)

    op.create_table(
        "baseline_revisions",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec", sa.String(length=256), nullable=True),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "plugin_id", "revision", name=op.f("pk_baseline_revisions")),
    )
    op.create_table(
        "group_baselines",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.String(length=256), nullable=True),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column(
            "conflict",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("evaluated_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "plugin_id", name=op.f("pk_group_baselines")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "tenant_uuid", name=op.f("pk_group_members")),
    )
    with op.batch_alter_table("group_members", schema=None) as batch_op:
        batch_op.create_index("ix_group_members_tenant", ["tenant_uuid"], unique=False)

    op.create_table(
        "tenant_groups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("route", sa.String(length=256), nullable=True),
        sa.Column(
            "selector",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tenants",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_groups")),
    )


def downgrade() -> None:
    op.drop_table("tenant_groups")
    with op.batch_alter_table("group_members", schema=None) as batch_op:
        batch_op.drop_index("ix_group_members_tenant")

    op.drop_table("group_members")
    op.drop_table("group_baselines")
    op.drop_table("baseline_revisions")
    with op.batch_alter_table("baseline_drift", schema=None) as batch_op:
        batch_op.drop_index("ix_baseline_drift_tenant")

    op.drop_table("baseline_drift")
