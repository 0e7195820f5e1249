"""decision idempotency keys scoped to the calling token, with a digest of the request

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:00:00.000000

Keys recorded before this revision were unique across the whole table; they keep the scope
`legacy`, so no new request (always scoped to its token) ever matches another caller's key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_scope", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.execute("UPDATE decisions SET idempotency_scope = 'legacy' WHERE idempotency_key IS NOT NULL")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_decisions_idempotency_key"), type_="unique")
        batch_op.create_unique_constraint(
            "uq_decisions_idempotency", ["idempotency_scope", "idempotency_key"]
        )


def downgrade() -> None:

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_decisions_idempotency", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_decisions_idempotency_key"), ["idempotency_key"])
        batch_op.drop_column("request_digest")
        batch_op.drop_column("idempotency_scope")
