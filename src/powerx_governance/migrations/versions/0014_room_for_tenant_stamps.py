"""PostgreSQL: room in each page of `tenants`, so a full scan's `fetched_at` updates stay in the page

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 18:20:00.000000

Every full scan stamps `fetched_at` on each tenant whose manifest it read unchanged: 20,000 rows of
the reference fleet. The column is not indexed, so the update can be heap-only (HOT: no new entry in
the table's three indexes) when the row's page has room for the new version; pages filled to 100%
had none, and 140,000 such updates over seven steady scans were 232 HOT ones. Each scan writes a new
version of every row, so a page holds its rows twice (the old versions are pruned by the next).
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

FILLFACTOR = {"tenants": 50}


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
