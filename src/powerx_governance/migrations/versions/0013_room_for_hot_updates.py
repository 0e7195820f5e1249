"""PostgreSQL: room in each page of the rows a push rewrites, so their updates stay in the page

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 00:40:00.000000

A push for a plugin every tenant runs rewrites 20,000 recommendations and 20,000 tenants' kept sums.
An update that changes no indexed column and finds room in its row's page is a heap-only tuple (HOT)
update: no new entry in any of the table's indexes (five on `recommendations`). Pages filled to
100% leave no room, so every such update went to another page with an entry in every index. The
storage parameter applies to pages written from now on (a table rewritten by `VACUUM FULL` gets it
throughout). SQLite has no such parameter: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FILLFACTOR = {"recommendations": 85, "tenant_findings": 50}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in FILLFACTOR.items():
        op.execute(f'ALTER TABLE "{table}" SET (fillfactor = {percent})')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FILLFACTOR:
        op.execute(f'ALTER TABLE "{table}" RESET (fillfactor)')
