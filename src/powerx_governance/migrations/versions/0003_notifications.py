"""notification outbox, deliveries, digest entries and console cards

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:45:33.490644
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import powerx_governance.db.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_console_cards",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=True),
        sa.Column("recommendation_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("dismissed_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_console_cards")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notification_console_cards_idempotency_key")),
    )
    with op.batch_alter_table("notification_console_cards", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_console_cards_tenant", ["tenant_uuid", "created_at"], unique=False
        )

    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("provider_ref", sa.String(length=256), nullable=True),
        sa.Column("triggered_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notification_deliveries_idempotency_key")),
    )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_deliveries_status", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_notification_deliveries_tenant", ["tenant_uuid", "created_at"], unique=False
        )

    op.create_table(
        "notification_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=True),
        sa.Column("recommendation_id", sa.Integer(), nullable=True),
        sa.Column("change", sa.String(length=16), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("route", sa.String(length=256), nullable=True),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("triggered_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_events_dedupe_key")),
    )
    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.create_index("ix_notification_events_recommendation", ["recommendation_id"], unique=False)

    op.create_table(
        "notification_entries",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("due_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notification_deliveries.id"],
            name=op.f("fk_notification_entries_delivery_id_notification_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["notification_events.id"],
            name=op.f("fk_notification_entries_event_id_notification_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "recipient_id", name=op.f("pk_notification_entries")),
    )
    with op.batch_alter_table("notification_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_entries_digest", ["recipient_id", "tenant_uuid", "delivery_id"], unique=False
        )
        batch_op.create_index("ix_notification_entries_due", ["delivery_id", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notification_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_entries_due")
        batch_op.drop_index("ix_notification_entries_digest")

    op.drop_table("notification_entries")
    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_events_recommendation")

    op.drop_table("notification_events")
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_deliveries_tenant")
        batch_op.drop_index("ix_notification_deliveries_status")

    op.drop_table("notification_deliveries")
    with op.batch_alter_table("notification_console_cards", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_console_cards_tenant")

    op.drop_table("notification_console_cards")
