"""Import every table module so `Base.metadata` is complete (migrations, tests)."""

from powerx_governance.audit import tables as audit_tables
from powerx_governance.auth import tables as auth_tables
from powerx_governance.catalog import tables as catalog_tables
from powerx_governance.db.base import Base
from powerx_governance.decisions import tables as decision_tables
from powerx_governance.events import tables as event_tables
from powerx_governance.flags import tables as flag_tables
from powerx_governance.inventory import tables as inventory_tables
from powerx_governance.jobs import tables as job_tables
from powerx_governance.notifications import tables as notification_tables
from powerx_governance.policy_versions import tables as policy_version_tables
from powerx_governance.recommendations import tables as recommendation_tables
from powerx_governance.scans import tables as scan_tables

metadata = Base.metadata

__all__ = [
    "audit_tables",
    "auth_tables",
    "catalog_tables",
    "decision_tables",
    "event_tables",
    "flag_tables",
    "inventory_tables",
    "job_tables",
    "metadata",
    "notification_tables",
    "policy_version_tables",
    "recommendation_tables",
    "scan_tables",
]
