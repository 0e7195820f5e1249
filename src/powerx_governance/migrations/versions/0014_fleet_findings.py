"""every tenant's kept sums added up in one row, kept by every write

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 06:40:00.000000

A fleet scan's audit record digests its report from these sums: after a push it read all 20,000
tenants' 512-byte sums to add them up. The row is filled here from the tenants' kept sums.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from powerx_governance.recommendations.digests import FleetFindings, TenantFindings

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    fleet_findings = op.create_table(
        "fleet_findings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("report_sum", sa.LargeBinary(), nullable=False),
        sa.Column("by_risk", _JSON, nullable=False),
        sa.Column("by_action", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_findings")),
    )
    tenants = sa.table(
        "tenant_findings",
        sa.column("findings", sa.Integer()),
        sa.column("report_sum", sa.LargeBinary()),
        sa.column("by_risk", _JSON),
        sa.column("by_action", _JSON),
    )
    fleet = FleetFindings()
    for findings, report_sum, by_risk, by_action in op.get_bind().execute(sa.select(tenants)):
        fleet.add(TenantFindings(findings, 0, int.from_bytes(report_sum, "big"), by_risk, by_action))
    op.bulk_insert(fleet_findings, [{"id": 1, **fleet.row()}])


def downgrade() -> None:
    op.drop_table("fleet_findings")
