"""Load and validate `governance_rules.yaml`; an invalid file is refused as a whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from powerx_governance.durations import parse_duration
from powerx_governance.errors import InputError, InputProblem
from powerx_governance.policy.rules import RULES_SCHEMA, Exemption, GovernanceRules, Rule
from powerx_governance.records import convert_record
from powerx_governance.safe_yaml import load_document
from powerx_governance.versioning.ranges import ConstraintError, parse_constraint


def _defaults_problem(rules: GovernanceRules) -> tuple[str, str] | None:
    for name in ("scan_interval", "max_report_age", "release_age"):
        try:
            parse_duration(getattr(rules.defaults, name))
        except ValueError as exc:
            return f"defaults.{name}", str(exc)
    if not 0.0 <= rules.defaults.min_coverage <= 1.0:
        return "defaults.min_coverage", "expected a rate between 0 and 1"
    return None


def _rule_problem(i: int, rule: Rule, seen: set[str]) -> tuple[str, str] | None:
    if rule.id in seen:
        return f"rules[{i}].id", f"duplicate rule id {rule.id!r}"
    seen.add(rule.id)
    if rule.outcome_conditions and rule.changes_eligibility:
        return (
            f"rules[{i}]",
            "a rule matched on labels or risk_levels cannot set channel, release_age or target_version"
            " (those decide eligibility before any outcome is known)",
        )
    if rule.release_age is not None:
        try:
            parse_duration(rule.release_age)
        except ValueError as exc:
            return f"rules[{i}].release_age", str(exc)
    return None


def _exemption_problem(i: int, ex: Exemption, seen: set[str]) -> tuple[str, str] | None:
    if ex.id in seen:
        return f"exemptions[{i}].id", f"duplicate exemption id {ex.id!r}"
    seen.add(ex.id)
    if not ex.reason.strip():
        return f"exemptions[{i}].reason", "a reason is required"
    if ex.scope.versions is not None:
        try:
            parse_constraint(ex.scope.versions)
        except ConstraintError as exc:
            return f"exemptions[{i}].scope.versions", str(exc)
    return None


def _semantic_problem(rules: GovernanceRules) -> tuple[str, str] | None:
    """(field, error) for what the types alone cannot check."""
    rule_ids: set[str] = set()
    exemption_ids: set[str] = set()
    problems = [
        _defaults_problem(rules),
        *(_rule_problem(i, r, rule_ids) for i, r in enumerate(rules.rules)),
        *(_exemption_problem(i, e, exemption_ids) for i, e in enumerate(rules.exemptions)),
    ]
    return next((p for p in problems if p is not None), None)


def rules_from_data(raw: Any, source: str) -> GovernanceRules:
    """Validate rules given as plain data; InputError names the field."""
    if isinstance(raw, dict):
        raw = {"schema": RULES_SCHEMA, **raw}
    rules = convert_record(raw, GovernanceRules, source=source, record="governance rules")
    if not isinstance(rules, GovernanceRules):
        raise InputError(rules)
    if rules.schema != RULES_SCHEMA:
        raise InputError(
            InputProblem(source, "governance rules", "schema", f"unsupported schema {rules.schema!r}")
        )
    problem = _semantic_problem(rules)
    if problem is not None:
        raise InputError(InputProblem(source, "governance rules", problem[0], problem[1]))
    return rules


def load_rules(path: Path) -> GovernanceRules:
    return rules_from_data(load_document(path), str(path))
