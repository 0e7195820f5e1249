"""From the security assessment to a full verdict: action, rules, priority, SLA, explanation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from powerx_governance.catalog.models import Lifecycle
from powerx_governance.domain import Action, Enforcement, LifecycleStatus, Severity, UpdateType
from powerx_governance.policy.index import IndexedRelease, PluginIndex
from powerx_governance.policy.rules import GovernanceRules, Notification, Rule, SlaHours
from powerx_governance.policy.security import SecurityOutcome, bits, max_severity
from powerx_governance.policy.verdict import AdvisoryFinding, ReleaseNote, Verdict
from powerx_governance.versioning.semver import Version

# Stand-in CVSS scores for advisories whose severity comes from a label only.
_LABEL_SCORES: Final = {
    Severity.CRITICAL: 9.5,
    Severity.HIGH: 8.0,
    Severity.LOW: 2.0,
    Severity.NONE: 0.0,
}
_LIFECYCLE_RANK: Final = {
    LifecycleStatus.ACTIVE: 0,
    LifecycleStatus.DEPRECATED: 1,
    LifecycleStatus.SUNSET: 2,
    LifecycleStatus.REVOKED: 3,
}


def update_type(current: Version, target: Version | None) -> UpdateType:
    if target is None:
        return UpdateType.NONE
    if target.major != current.major:
        return UpdateType.MAJOR
    if target.minor != current.minor:
        return UpdateType.MINOR
    if target.patch != current.patch:
        return UpdateType.PATCH
    return UpdateType.PRERELEASE


def _installed_lifecycle(plugin: PluginIndex, version: Version) -> Lifecycle:
    """The worse of the plugin's own lifecycle and the installed release's."""
    release = plugin.release_of(version)
    candidates = [plugin.plugin.lifecycle] + ([release.lifecycle] if release else [])
    return max(candidates, key=lambda lc: _LIFECYCLE_RANK[lc.status])


def _security_action(plugin: PluginIndex, s: SecurityOutcome) -> tuple[Action, str] | None:
    """DESIGN §5.7 for installations with advisories; None when A(v) is empty."""
    if s.target is not None:
        fixes_high = max_severity(plugin, s.fixed).rank >= Severity.HIGH.rank
        if s.critical_patch:
            return Action.UPGRADE_NOW, "default:critical-patch"
        return (
            (Action.UPGRADE_NOW, "default:security-fix")
            if fixes_high
            else (
                Action.SCHEDULE,
                "default:security-schedule",
            )
        )
    if s.avoidable:
        return Action.BLOCKED, "default:no-safe-target"
    if s.affected:
        return Action.REVIEW, "default:no-fix-available"
    return None


def _non_security_action(
    update: UpdateType,
    lifecycle: Lifecycle,
    has_latest: bool,
    actions_rule: Rule | None,
    rules: GovernanceRules,
) -> tuple[Action, str]:
    actions = (
        actions_rule.non_security_action if actions_rule else None
    ) or rules.defaults.non_security_action
    if lifecycle.status is not LifecycleStatus.ACTIVE:
        return actions.lifecycle, "default:lifecycle"
    if has_latest:
        return actions.for_update(update), "default:non-security-update"
    return Action.NONE, "default:up-to-date"


def _fires(rule: Rule, risk: Severity, labels: dict[str, str]) -> bool:
    return (not rule.risk_levels or risk in rule.risk_levels) and all(
        labels.get(k) == v for k, v in rule.labels.items()
    )


def _first(rules: list[Rule], attribute: str) -> Rule | None:
    return next((r for r in rules if getattr(r, attribute) is not None), None)


def _sla_hours(fired: list[Rule], rules: GovernanceRules, risk: Severity) -> float | None:
    rule = _first(fired, "sla_hours")
    hours = rule.sla_hours if rule else rules.defaults.sla_hours
    return hours.for_level(risk) if isinstance(hours, SlaHours) else hours


def _sla_deadline(
    plugin: PluginIndex, s: SecurityOutcome, target: IndexedRelease | None, hours: float | None, now: datetime
) -> datetime | None:
    """The clock starts when the fix became actionable: the later of fix release and advisory publication."""
    if target is None or hours is None:
        return None
    starts = [target.release.released_at] + [plugin.advisories[b].advisory.published for b in bits(s.fixed)]
    known = [t for t in starts if t is not None]
    return (max(known) if known else now) + timedelta(hours=hours)


def _priority(
    plugin: PluginIndex,
    s: SecurityOutcome,
    lifecycle: Lifecycle,
    lag: int,
    rules: GovernanceRules,
    has_target: bool,
) -> int:
    w = rules.risk_weights
    advisories = [plugin.advisories[b] for b in bits(s.affected)]
    worst = max(
        (
            a.severity.score
            if a.severity.score is not None
            else _LABEL_SCORES.get(a.severity.level, w.unknown_severity_cvss)
            for a in advisories
        ),
        default=0.0,
    )
    points = worst * w.cvss * (1.0 if has_target or not advisories else 0.5)
    points += w.exploited if any(a.exploited for a in advisories) else 0.0
    points += w.critical_patch if s.critical_patch else 0.0
    points += {
        LifecycleStatus.DEPRECATED: w.deprecated,
        LifecycleStatus.SUNSET: w.sunset,
        LifecycleStatus.REVOKED: w.revoked,
    }.get(lifecycle.status, 0.0)
    points += min(lag * w.version_lag, w.version_lag_cap)
    return max(0, min(100, round(points)))


def _advisory_findings(
    plugin: PluginIndex, s: SecurityOutcome, indices: tuple[int, ...]
) -> tuple[AdvisoryFinding, ...]:
    found = []
    for b in bits(s.affected):
        a = plugin.advisories[b]
        fix = next((i for i in indices if not s.masks[i] >> b & 1), None)
        found.append(
            AdvisoryFinding(
                id=a.id,
                aliases=a.advisory.aliases,
                summary=a.advisory.summary,
                severity=a.severity.level,
                cvss=a.severity.score,
                vector=a.severity.vector,
                exploited=a.exploited,
                fixed_in=plugin.releases[fix].release.version if fix is not None else None,
                unavoidable=bool(s.unavoidable >> b & 1),
                in_target=s.target is not None and bool(s.masks[s.target] >> b & 1),
            )
        )
    return tuple(sorted(found, key=lambda f: (-f.severity.rank, -(f.cvss or 0.0), f.id)))


def _reasons(
    plugin: PluginIndex,
    s: SecurityOutcome,
    action: Action,
    target: IndexedRelease | None,
    lifecycle: Lifecycle,
    cooled_out: bool,
) -> list[str]:
    reasons = list(s.reasons)
    for b in bits(s.fixed):
        a = plugin.advisories[b]
        score = (
            f"CVSS {a.severity.score}" if a.severity.score is not None else f"severity {a.severity.source}"
        )
        reasons.append(
            f"{a.id} ({a.severity.level}, {score}) is fixed in {target.release.version if target else '?'}"
        )
    if s.partial and target is not None and s.target is not None:
        still = ", ".join(plugin.advisories[b].id for b in bits(s.masks[s.target] & ~s.unavoidable))
        reasons.append(
            f"no eligible release is free of avoidable advisories; {target.release.version} is the least"
            f" exposed (still carries {still})"
        )
    for b in bits(s.unavoidable):
        reasons.append(f"{plugin.advisories[b].id}: no eligible release fixes it")
    for b in bits(s.affected):
        if plugin.advisories[b].severity.source == "unknown":
            reasons.append(
                f"{plugin.advisories[b].id}: severity unknown (no CVSS vector or label), taken as medium"
            )
        reasons.extend(plugin.advisories[b].severity.problems)
    if action is Action.BLOCKED:
        reasons.append("no eligible release is less exposed than the installed version")
    if lifecycle.status is not LifecycleStatus.ACTIVE:
        reasons.append(
            f"installed release is {lifecycle.status}"
            + (f"; replacement: {lifecycle.replacement}" if lifecycle.replacement else "")
            + (f" (sunset at {lifecycle.sunset_at.isoformat()})" if lifecycle.sunset_at else "")
        )
    if cooled_out:
        reasons.append("newer releases are still inside the release-age cooldown")
    return reasons


def _release_notes(
    plugin: PluginIndex, indices: tuple[int, ...], upto: int | None
) -> tuple[ReleaseNote, ...]:
    if upto is None:
        return ()
    return tuple(
        ReleaseNote(r.release.version, r.release.changelog, r.release.release_notes_url)
        for r in (plugin.releases[i] for i in indices if i <= upto)
        if r.release.changelog or r.release.release_notes_url
    )


def _notification(fired: list[Rule], rules: GovernanceRules) -> str | None:
    rule = _first(fired, "notification")
    route = rule.notification if rule else None
    if isinstance(route, Notification):
        return route.route
    return route if isinstance(route, str) else rules.defaults.notification


def shape_verdict(
    *,
    plugin: PluginIndex,
    version: Version,
    indices: tuple[int, ...],
    warnings: dict[int, tuple[str, ...]],
    security: SecurityOutcome,
    latest: int | None,
    policy_rules: tuple[Rule, ...],
    rules: GovernanceRules,
    enforcement: Enforcement,
    now: datetime,
) -> Verdict:
    """Assemble the verdict; `policy_rules` are the rules whose tenant/plugin conditions matched."""
    s = security
    lifecycle = _installed_lifecycle(plugin, version)
    decided = _security_action(plugin, s)
    chosen = s.target if decided else latest
    target = plugin.releases[chosen] if chosen is not None else None
    update = update_type(version, target.version if target else None)
    risk = max_severity(plugin, s.affected)
    labels = (
        dict(
            (
                target or (plugin.releases[latest] if latest is not None else None) or plugin.releases[0]
            ).release.labels
        )
        if plugin.releases
        else {}
    )
    fired = [r for r in policy_rules if _fires(r, risk, labels)]
    if decided is None:
        decided = _non_security_action(
            update, lifecycle, latest is not None, _first(fired, "non_security_action"), rules
        )
    action, clause = decided
    if s.exempted is not None:
        action, clause = Action.NONE, "default:exempted"
    target_version = (
        target.release.version if target and action in (Action.UPGRADE_NOW, Action.SCHEDULE) else None
    )
    if target_version is None:
        target = None
    enforce_rule = _first(fired, "enforcement")
    newest_eligible = indices[-1] if indices else None
    return Verdict(
        plugin_id=plugin.plugin.plugin_id,
        current_version=version.text,
        target_version=target_version,
        latest_version=plugin.releases[latest].release.version if latest is not None else None,
        update_type=update_type(version, target.version) if target else UpdateType.NONE,
        risk_level=risk,
        priority=_priority(plugin, s, lifecycle, len(indices), rules, target is not None)
        if action is not Action.NONE
        else 0,
        action=action,
        critical_patch=s.critical_patch and target is not None,
        partial=s.partial and target is not None,
        sla_deadline=_sla_deadline(plugin, s, target, _sla_hours(fired, rules, risk), now),
        advisories=_advisory_findings(plugin, s, indices),
        release_notes=_release_notes(plugin, indices, chosen if target else None),
        reasons=tuple(
            _reasons(
                plugin,
                s,
                action,
                target,
                lifecycle,
                newest_eligible is not None and latest != newest_eligible and not s.affected,
            )
        ),
        rule_ids=(clause, *s.exemption_ids, *(r.id for r in fired)),
        enforcement=enforce_rule.enforcement if enforce_rule and enforce_rule.enforcement else enforcement,
        notification=_notification(fired, rules),
        lifecycle=lifecycle.status,
        replacement=lifecycle.replacement,
        compatibility=warnings.get(chosen, ()) if target is not None and chosen is not None else (),
        exempted=s.exempted,
        target_dependencies=tuple((d.id, d.version) for d in target.release.dependencies) if target else (),
    )
