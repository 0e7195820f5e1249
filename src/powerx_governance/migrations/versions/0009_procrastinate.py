"""procrastinate's schema on PostgreSQL; the jobs table says which engine runs each job

Revision ID: 0009
Revises: 0008
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

revision = "0009"
down_revision = "0008"
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


def upgrade() -> None:
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
        op.execute("DROP FUNCTION IF EXISTS procrastinate_notify_queue_job_inserted CASCADE")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("runner")
