"""pushes are a source of their own: pushed releases and advisories, the catalog source's records kept

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import powerx_governance.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = powerx_governance.db.base.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pushed_releases",
        sa.Column("plugin_id", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("pushed_at", _TIME, nullable=False),
        sa.Column("pushed_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("plugin_id", "version", name=op.f("pk_pushed_releases")),
    )
    op.create_table(
        "pushed_advisories",
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("modified", _TIME, nullable=True),
        sa.Column("withdrawn", _TIME, nullable=True),
        sa.Column("pushed_at", _TIME, nullable=False),
        sa.Column("pushed_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("advisory_id", name=op.f("pk_pushed_advisories")),
    )
    with op.batch_alter_table("plugins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("catalog_document", _JSON, nullable=True))
        batch_op.add_column(sa.Column("catalog_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("advisories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=16), nullable=False, server_default="catalog")
        )
        batch_op.add_column(sa.Column("catalog_document", _JSON, nullable=True))
        batch_op.add_column(sa.Column("catalog_hash", sa.String(length=64), nullable=True))
    # Records stored before this revision are taken as the catalog source's; the next full scan
    # re-reads the catalog source, and pushes from now on are kept apart.
    op.execute("UPDATE plugins SET catalog_document = document, catalog_hash = content_hash")
    op.execute("UPDATE advisories SET catalog_document = document, catalog_hash = content_hash")


def downgrade() -> None:
    with op.batch_alter_table("advisories", schema=None) as batch_op:
        batch_op.drop_column("catalog_hash")
        batch_op.drop_column("catalog_document")
        batch_op.drop_column("origin")
    with op.batch_alter_table("plugins", schema=None) as batch_op:
        batch_op.drop_column("catalog_hash")
        batch_op.drop_column("catalog_document")
    op.drop_table("pushed_advisories")
    op.drop_table("pushed_releases")
