"""Alembic environment: runs against the connection handed over by `powerx_governance.db.migrate`."""

from __future__ import annotations

from alembic import context

from powerx_governance.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through powerx_governance.db.migrate.upgrade()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
