"""each open recommendation's report digest, and each tenant's open findings summed up

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 15:30:00.000000

A scan's audit record digests its report from these sums instead of re-reading every finding, and
a full scan skips the tenants whose findings match their kept fingerprints (recommendations/
digests.py). Existing recommendations get their digests and sums computed here, from their rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from powerx_governance.recommendations.store import rebuild_tenant_findings

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("recommendations", sa.Column("report_digest", sa.String(length=64), nullable=True))
    op.create_table(
        "tenant_findings",
        sa.Column("tenant_uuid", sa.String(length=128), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("fingerprints", sa.String(length=64), nullable=False),
        sa.Column("report_sum", sa.LargeBinary(), nullable=False),
        sa.Column("by_risk", _JSON, nullable=False),
        sa.Column("by_action", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("tenant_uuid", name=op.f("pk_tenant_findings")),
    )
    with Session(bind=op.get_bind()) as session:
        rebuild_tenant_findings(session)
        session.flush()


def downgrade() -> None:
    op.drop_table("tenant_findings")
    op.drop_column("recommendations", "report_digest")  # SQLite ≥ 3.35 drops a column in place
