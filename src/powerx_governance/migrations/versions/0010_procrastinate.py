"""procrastinate's schema on PostgreSQL; the jobs table says which engine runs each job; scan shards

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 12:00:00.000000

On PostgreSQL the schema procrastinate ships for the pinned version (`SchemaManager.get_schema()`,
procrastinate 3.10) is applied in the current schema (the connection's search_path), so stores
sharing one database in different schemas each have their own queue. SQLite gets only the
`jobs.runner` column: the embedded default runs the local jobs table. Upgrading procrastinate
past 3.10 needs a migration applying its shipped SQL migrations (`SchemaManager.get_migrations_path()`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PROCRASTINATE_OBJECTS = (
    "TABLE procrastinate_events",
    "TABLE procrastinate_periodic_defers",
    "TABLE procrastinate_jobs",
    "TABLE procrastinate_workers",
    "TYPE procrastinate_job_to_defer_v1",
    "TYPE procrastinate_job_event_type",
    "TYPE procrastinate_job_status",
)


def _scan_shard_tables() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    when = sa.DateTime(timezone=True)
    op.create_table(
        "scan_plans",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("shards_finished", sa.Integer(), nullable=False),
        sa.Column("evaluated_at", when, nullable=False),
        sa.Column("dirty_plugins", json, nullable=False),
        sa.Column("errors", json, nullable=False),
        sa.Column("warnings", json, nullable=False),
        sa.Column("security_data_problems", sa.Integer(), nullable=False),
        sa.Column("timings", json, nullable=False),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scan_plans")),
    )
    op.create_table(
        "scan_shards",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("tenants", json, nullable=False),
        sa.Column("problems", json, nullable=False),
        sa.Column("loose", json, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("started_at", when, nullable=True),
        sa.Column("finished_at", when, nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("tenants_total", sa.Integer(), nullable=False),
        sa.Column("tenants_scanned", sa.Integer(), nullable=False),
        sa.Column("tenants_stale", sa.Integer(), nullable=False),
        sa.Column("installations", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("changes", json, nullable=False),
        sa.Column("errors", json, nullable=False),
        sa.Column("warnings", json, nullable=False),
        sa.Column("unscanned", json, nullable=False),
        sa.Column("failure", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("scan_id", "shard", name=op.f("pk_scan_shards")),
    )


def upgrade() -> None:
    _scan_shard_tables()
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runner", sa.String(length=16), nullable=False, server_default="local"))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # psycopg runs the whole script in one execute; `%` doubled because SQLAlchemy passes parameters
        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name in PROCRASTINATE_OBJECTS:
            op.execute(f"DROP {name} CASCADE")
        # every procrastinate function of this schema, whatever its signature (a later upgrade
        # creates them again and would find the ones no table or type took with it)
        op.execute(
            r"""
            DO $$
            DECLARE fn record;
            BEGIN
                FOR fn IN
                    SELECT p.oid::regprocedure AS signature
                    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE p.proname LIKE 'procrastinate\_%' AND n.nspname = current_schema()
                LOOP
                    EXECUTE 'DROP FUNCTION IF EXISTS ' || fn.signature || ' CASCADE';
                END LOOP;
            END $$
            """
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("runner")
    op.drop_table("scan_shards")
    op.drop_table("scan_plans")
