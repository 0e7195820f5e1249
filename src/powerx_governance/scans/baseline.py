"""`powerx version scan --baseline PREVIOUS_REPORT`: when each finding was first seen (DESIGN §5.8).

A file scan has no store to remember when an installation was first seen with a finding; the
previous report does. A finding of the previous report with the same installed version, target
and advisories is the same finding: its `first_seen_at` (or, in a report that predates the field,
that report's `generated_at`) carries over, so its SLA clock keeps running across scans. Anything
else is first seen now. JSON-lines baselines are read line by line.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec

from powerx_governance.errors import InputError, InputProblem
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.verdict import Verdict
from powerx_governance.records import AwareDatetime

Identity = tuple[str, str | None, tuple[str, ...]]  # installed version, target, advisory ids


class _Advisory(msgspec.Struct):
    id: str


class _Finding(msgspec.Struct):
    tenant_uuid: str
    plugin_id: str
    current_version: str
    target_version: str | None = None
    advisories: list[_Advisory] = msgspec.field(default_factory=list)
    first_seen_at: AwareDatetime | None = None


class _Summary(msgspec.Struct):
    generated_at: AwareDatetime


class _Report(msgspec.Struct):
    generated_at: AwareDatetime
    findings: list[_Finding] = msgspec.field(default_factory=list)


def identity(verdict: Verdict) -> Identity:
    return verdict.current_version, verdict.target_version, tuple(sorted(a.id for a in verdict.advisories))


class Baseline:
    """First-seen times of the previous report's findings, by installation."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[Identity, datetime | None]] = {}
        self.generated_at: datetime | None = None

    def seen(self, tenant: TenantManifest, verdict: Verdict) -> datetime | None:
        """When the tenant's installation was first seen with this verdict; None: first seen now."""
        known = self._seen.get((tenant.tenant_uuid, verdict.plugin_id))
        if known is None or known[0] != identity(verdict):
            return None
        return known[1] or self.generated_at

    def remember(self, f: _Finding) -> None:
        ids = tuple(sorted(a.id for a in f.advisories))
        key = (f.tenant_uuid, f.plugin_id)
        self._seen[key] = ((f.current_version, f.target_version, ids), f.first_seen_at)


def load_baseline(path: Path) -> Baseline:
    """Read a previous `json` or `jsonl` scan report; InputError naming the file and line if it is not one."""
    baseline = Baseline()
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            _read_lines(path, baseline)
        else:
            report = msgspec.json.decode(path.read_bytes(), type=_Report)
            baseline.generated_at = report.generated_at
            for f in report.findings:
                baseline.remember(f)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InputError(InputProblem(str(path), None, "baseline", f"not a scan report: {exc}")) from exc
    return baseline


def _read_lines(path: Path, baseline: Baseline) -> None:
    finding, summary = msgspec.json.Decoder(_Finding), msgspec.json.Decoder(_Summary)
    with path.open("rb") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                if b'"schema"' in line and b"powerx.scan-summary/" in line:
                    baseline.generated_at = summary.decode(line).generated_at
                else:
                    baseline.remember(finding.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise msgspec.ValidationError(f"line {number}: {exc}") from exc
