"""SemVer 2.0.0 versions and constraint ranges."""

from powerx_governance.versioning.ranges import Constraint, ConstraintError, parse_constraint
from powerx_governance.versioning.semver import InvalidVersionError, Version, parse_version

__all__ = [
    "Constraint",
    "ConstraintError",
    "InvalidVersionError",
    "Version",
    "parse_constraint",
    "parse_version",
]
