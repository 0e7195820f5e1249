"""SARIF 2.1.0 scan report, for code-scanning dashboards and CI annotations."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from powerx_governance import __version__
from powerx_governance.reports import json_report
from powerx_governance.reports.markdown_report import error_text

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION: Final = "2.1.0"
TOOL_NAME: Final = "powerx-version-governance"
# Placeholder until the project publishes its documentation; SARIF wants an absolute URI here.
INFORMATION_URI: Final = "https://example.invalid/powerx-version-governance"
OUTDATED_RULE: Final = "PXVG-OUTDATED"
LIFECYCLE_RULE: Final = "PXVG-LIFECYCLE"
FINGERPRINT_KEY: Final = "pxvgFinding/v1"

_LEVELS: Final = {"critical": "error", "high": "error", "medium": "warning"}
_ENDED_LIFECYCLES: Final = frozenset({"deprecated", "sunset", "revoked"})
_RESULT_PROPERTIES: Final = (
    "tenant_uuid",
    "tenant_key",
    "plugin_id",
    "current_version",
    "target_version",
    "priority",
    "action",
    "risk_level",
    "critical_patch",
    "partial",
    "sla_deadline",
)

Json = dict[str, Any]
Finding = Mapping[str, Any]


def render(report: Mapping[str, Any]) -> str:
    """Render the report as a SARIF 2.1.0 log (JSON text)."""
    return json_report.render(to_sarif(report))


def to_sarif(report: Mapping[str, Any]) -> Json:
    """Build the SARIF log: one run, rules per advisory and finding kind, one result per issue."""
    findings: list[Finding] = list(report.get("findings") or [])
    rules = [*_static_rules(), *(_advisory_rule(advisory) for advisory in _distinct_advisories(findings))]
    rule_index = {rule["id"]: index for index, rule in enumerate(rules)}
    driver = {"name": TOOL_NAME, "version": __version__, "informationUri": INFORMATION_URI, "rules": rules}
    run = {
        "tool": {"driver": driver},
        "invocations": [_invocation(report.get("errors") or [], report.get("warnings") or [])],
        "results": [result for finding in findings for result in _results(finding, rule_index)],
        "properties": {key: report.get(key) for key in ("schema", "scan_id", "generated_at", "coverage")},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def level(severity: object) -> str:
    """SARIF level for a severity: error for critical/high, warning for medium, note otherwise."""
    return _LEVELS.get(str(severity), "note")


def _static_rules() -> list[Json]:
    return [
        _rule(OUTDATED_RULE, "OutdatedPlugin", "Installed release is behind the latest eligible release"),
        _rule(LIFECYCLE_RULE, "PluginLifecycleEnded", "Installed release is deprecated or sunset"),
    ]


def _rule(rule_id: str, name: str, description: str) -> Json:
    return {
        "id": rule_id,
        "name": name,
        "shortDescription": {"text": description},
        "defaultConfiguration": {"level": "note"},
        "properties": {"tags": ["maintenance"]},
    }


def _distinct_advisories(findings: Iterable[Finding]) -> list[Mapping[str, Any]]:
    first_seen: dict[str, Mapping[str, Any]] = {}
    for finding in findings:
        for advisory in finding.get("advisories") or []:
            first_seen.setdefault(str(advisory["id"]), advisory)
    return list(first_seen.values())


def _advisory_rule(advisory: Mapping[str, Any]) -> Json:
    advisory_id = str(advisory["id"])
    properties: Json = {"tags": ["security"]}
    if advisory.get("cvss") is not None:
        properties["security-severity"] = f"{advisory['cvss']:.1f}"
    if advisory.get("aliases"):
        properties["aliases"] = list(advisory["aliases"])
    return {
        "id": advisory_id,
        "shortDescription": {"text": advisory.get("summary") or f"Security advisory {advisory_id}"},
        "defaultConfiguration": {"level": level(advisory.get("severity"))},
        "properties": properties,
    }


def _results(finding: Finding, rule_index: Mapping[str, int]) -> list[Json]:
    advisories = finding.get("advisories") or []
    if not advisories:
        rule_id = LIFECYCLE_RULE if _lifecycle_status(finding) else OUTDATED_RULE
        return [_result(finding, rule_id, rule_index, level(finding.get("risk_level")))]
    return [
        _result(
            finding,
            str(advisory["id"]),
            rule_index,
            level(advisory.get("severity") or finding.get("risk_level")),
            advisory,
        )
        for advisory in advisories
    ]


def _result(
    finding: Finding,
    rule_id: str,
    rule_index: Mapping[str, int],
    result_level: str,
    advisory: Mapping[str, Any] | None = None,
) -> Json:
    tenant, plugin = str(finding.get("tenant_uuid", "")), str(finding.get("plugin_id", ""))
    return {
        "ruleId": rule_id,
        "ruleIndex": rule_index[rule_id],
        "level": result_level,
        "message": {"text": f"{_headline(finding)} {_detail(finding, advisory)}"},
        "locations": [{"logicalLocations": [{"fullyQualifiedName": f"{tenant}/{plugin}", "kind": "module"}]}],
        "partialFingerprints": {FINGERPRINT_KEY: _fingerprint(tenant, plugin, rule_id)},
        "properties": {key: finding.get(key) for key in _RESULT_PROPERTIES},
    }


def _headline(finding: Finding) -> str:
    target = finding.get("target_version") or "no upgrade target"
    version_step = f"{finding.get('current_version')} → {target}"
    return f"{finding.get('plugin_id')} {version_step} (action: {finding.get('action')})."


def _detail(finding: Finding, advisory: Mapping[str, Any] | None) -> str:
    if advisory is not None:
        return _advisory_detail(advisory)
    status = _lifecycle_status(finding)
    if status:
        replacement = finding.get("replacement")
        suffix = f"; replacement: {replacement}" if replacement else ""
        return f"The installed release is {status}{suffix}."
    return f"Latest eligible release: {finding.get('latest_version') or 'unknown'}."


def _advisory_detail(advisory: Mapping[str, Any]) -> str:
    cvss = advisory.get("cvss")
    severity = advisory.get("severity") or "unknown severity"
    rating = severity if cvss is None else f"{severity}, CVSS {cvss:.1f}"
    fixed_in = advisory.get("fixed_in")
    fix = f"fixed in {fixed_in}" if fixed_in else "no fixed release"
    return f"{advisory['id']} ({rating}): {fix}."


def _lifecycle_status(finding: Finding) -> str | None:
    # The scan report names the lifecycle as a status string; the catalog's {status: …} shape is accepted too.
    lifecycle = finding.get("lifecycle")
    status = lifecycle.get("status") if isinstance(lifecycle, Mapping) else lifecycle
    return str(status) if status in _ENDED_LIFECYCLES else None


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _invocation(errors: Iterable[Mapping[str, Any]], warnings: Iterable[Mapping[str, Any]]) -> Json:
    failed = [_notification(error, "error") for error in errors]
    # A scan that could not read every source did not fully succeed, even though it has results;
    # repaired input (warnings) did not stop it from seeing everything.
    return {
        "executionSuccessful": not failed,
        "toolExecutionNotifications": failed + [_notification(w, "warning") for w in warnings],
    }


def _notification(error: Mapping[str, Any], level: str) -> Json:
    return {
        "level": level,
        "message": {"text": error_text(error)},
        "properties": {"source": error.get("source"), "tenant_uuid": error.get("tenant_uuid")},
    }
