"""core store: inventory, catalog, scans, recommendations, tokens, jobs

Revision ID: 0001
Revises:
Create Date: 2026-11-30 09:07:13.231820
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import powerx_governance.db.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "advisories",
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("modified", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("advisory_id", name=op.f("pk_advisories")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=True),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("raised_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_kind"), ["kind"], unique=False)

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=True),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "catalog_documents",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_catalog_documents")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=128), nullable=True),
        sa.Column("locked_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status_run_after", ["status", "run_after"], unique=False)

    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("expires_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )
    op.create_table(
        "plugins",
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("plugin_id", name=op.f("pk_plugins")),
    )
    with op.batch_alter_table("plugins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plugins_dirty"), ["dirty"], unique=False)

    op.create_table(
        "scans",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=True),
        sa.Column("tenant_filter", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("schedule_slot", sa.String(length=32), nullable=True),
        sa.Column("retry_of", sa.String(length=36), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("requested_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("tenants_total", sa.Integer(), nullable=False),
        sa.Column("tenants_scanned", sa.Integer(), nullable=False),
        sa.Column("tenants_failed", sa.Integer(), nullable=False),
        sa.Column("installations", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("coverage_rate", sa.Double(), nullable=True),
        sa.Column("errors", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("timings", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("failure", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scans")),
        sa.UniqueConstraint("schedule_slot", name=op.f("uq_scans_schedule_slot")),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scans_requested_at"), ["requested_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_scans_status"), ["status"], unique=False)

    op.create_table(
        "tenants",
        sa.Column("tenant_uuid", sa.String(length=128), nullable=False),
        sa.Column("tenant_key", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("plan", sa.String(length=16), nullable=True),
        sa.Column("tags", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("core_version", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=True),
        sa.Column("manifest_hash", sa.String(length=64), nullable=False),
        sa.Column("scanned_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_uuid", name=op.f("pk_tenants")),
    )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenants_dirty"), ["dirty"], unique=False)
        batch_op.create_index(batch_op.f("ix_tenants_tenant_key"), ["tenant_key"], unique=False)

    op.create_table(
        "verdicts",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_verdicts")),
    )
    op.create_table(
        "installations",
        sa.Column("tenant_uuid", sa.String(length=128), nullable=False),
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("auto_update", sa.Boolean(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_uuid"],
            ["tenants.tenant_uuid"],
            name=op.f("fk_installations_tenant_uuid_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_uuid", "plugin_id", name=op.f("pk_installations")),
    )
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.create_index("ix_installations_plugin_version", ["plugin_id", "version"], unique=False)

    op.create_table(
        "recommendations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_uuid", sa.String(length=128), nullable=False),
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=64), nullable=False),
        sa.Column("current_version", sa.String(length=64), nullable=False),
        sa.Column("target_version", sa.String(length=64), nullable=True),
        sa.Column("latest_version", sa.String(length=64), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("critical_patch", sa.Boolean(), nullable=False),
        sa.Column("sla_deadline", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("tenant_facts", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("first_seen_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("scan_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["verdict"], ["verdicts.fingerprint"], name=op.f("fk_recommendations_verdict_verdicts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendations")),
        sa.UniqueConstraint("tenant_uuid", "plugin_id", name="uq_recommendations_tenant_plugin"),
    )
    with op.batch_alter_table("recommendations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recommendations_plugin_id"), ["plugin_id"], unique=False)
        batch_op.create_index("ix_recommendations_state_priority", ["state", "priority", "id"], unique=False)
        batch_op.create_index(
            "ix_recommendations_tenant_priority", ["tenant_uuid", "priority", "id"], unique=False
        )

    op.create_table(
        "recommendation_revisions",
        sa.Column("recommendation_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=64), nullable=False),
        sa.Column("target_version", sa.String(length=64), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("scan_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", powerx_governance.db.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendations.id"],
            name=op.f("fk_recommendation_revisions_recommendation_id_recommendations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("recommendation_id", "revision", name=op.f("pk_recommendation_revisions")),
    )


def downgrade() -> None:

    op.drop_table("recommendation_revisions")
    with op.batch_alter_table("recommendations", schema=None) as batch_op:
        batch_op.drop_index("ix_recommendations_tenant_priority")
        batch_op.drop_index("ix_recommendations_state_priority")
        batch_op.drop_index(batch_op.f("ix_recommendations_plugin_id"))

    op.drop_table("recommendations")
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_index("ix_installations_plugin_version")

    op.drop_table("installations")
    op.drop_table("verdicts")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenants_tenant_key"))
        batch_op.drop_index(batch_op.f("ix_tenants_dirty"))

    op.drop_table("tenants")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scans_status"))
        batch_op.drop_index(batch_op.f("ix_scans_requested_at"))

    op.drop_table("scans")
    with op.batch_alter_table("plugins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plugins_dirty"))

    op.drop_table("plugins")
    op.drop_table("locks")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_run_after")

    op.drop_table("jobs")
    op.drop_table("catalog_documents")
    op.drop_table("api_tokens")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_kind"))

    op.drop_table("alerts")
    op.drop_table("advisories")
