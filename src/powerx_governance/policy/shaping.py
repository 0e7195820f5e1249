"""From the security assessment to a full verdict: action, rules, priority, SLA, explanation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import msgspec

from powerx_governance.catalog_records import Lifecycle
from powerx_governance.domain import Action, Enforcement, LifecycleStatus, Severity, UpdateType
from powerx_governance.policy.index import IndexedRelease, PluginIndex
from powerx_governance.policy.rules import GovernanceRules, Notification, Rule, SlaHours
from powerx_governance.policy.security import SecurityOutcome, bits, max_severity
from powerx_governance.policy.verdict import AdvisoryFinding, PolicyMode, ReleaseNote, Verdict
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


_YANKED: Final = Lifecycle(status=LifecycleStatus.REVOKED, reason="yanked by its vendor")


def _installed_lifecycle(plugin: PluginIndex, version: Version) -> Lifecycle:
    """The worst of the plugin's lifecycle and the installed release's (yanked counts as revoked)."""
    release = plugin.release_of(version)
    candidates = [plugin.plugin.lifecycle]
    if release is not None:
        candidates += [release.lifecycle, _YANKED] if release.release.yanked else [release.lifecycle]
    return max(candidates, key=lambda lc: _LIFECYCLE_RANK[lc.status])


class Situation(msgspec.Struct, frozen=True):
    """Everything the verdict for one distinct combination depends on."""

    plugin: PluginIndex
    version: Version
    indices: tuple[int, ...]  # E: eligible releases above the installed version, ascending
    warnings: dict[int, tuple[str, ...]]  # compatibility-matrix warnings per release index
    security: SecurityOutcome
    latest: int | None  # latest eligible release after cooldown and target track
    policy_rules: tuple[Rule, ...]  # rules whose tenant/plugin conditions matched
    rules: GovernanceRules
    enforcement: Enforcement
    now: datetime
    plain: bool = False  # the upgrade policy is off: newest eligible release, no weights or SLAs
    advisory_source_problems: tuple[str, ...] = ()  # the advisory source could not be read


PLAIN_REASON: Final = (
    "upgrade policy off (flag plugin-upgrade-policy): plain behaviour, the newest eligible release,"
    " risk from advisories; no rule weighting, SLA or enforcement"
)


class _Decision(msgspec.Struct, frozen=True):
    action: Action
    clause: str
    target: int | None  # release index recommended (security target or latest), None when no target
    fired: tuple[Rule, ...]
    risk: Severity
    lifecycle: Lifecycle


def _security_action(plugin: PluginIndex, s: SecurityOutcome) -> tuple[Action, str] | None:
    """DESIGN §5.7 for installations with advisories; None when A(v) is empty."""
    if s.target is not None:
        if s.critical_patch:
            return Action.UPGRADE_NOW, "default:critical-patch"
        if max_severity(plugin, s.fixed).rank >= Severity.HIGH.rank:
            return Action.UPGRADE_NOW, "default:security-fix"
        return Action.SCHEDULE, "default:security-schedule"
    if s.avoidable:
        return Action.BLOCKED, "default:no-safe-target"
    if s.affected:
        return Action.REVIEW, "default:no-fix-available"
    return None


def _non_security_action(x: Situation, lifecycle: Lifecycle, fired: tuple[Rule, ...]) -> tuple[Action, str]:
    rule = _first(fired, "non_security_action")
    actions = (rule.non_security_action if rule else None) or x.rules.defaults.non_security_action
    if lifecycle.status is not LifecycleStatus.ACTIVE:
        if x.latest is None and not lifecycle.replacement:
            return Action.REVIEW, "default:lifecycle"  # nothing to move to: a human decides
        return actions.lifecycle, "default:lifecycle"
    if x.latest is not None:
        target = x.plugin.releases[x.latest].version
        return actions.for_update(update_type(x.version, target)), "default:non-security-update"
    return Action.NONE, "default:up-to-date"


def _fires(rule: Rule, risk: Severity, labels: dict[str, str]) -> bool:
    return (not rule.risk_levels or risk in rule.risk_levels) and all(
        labels.get(k) == v for k, v in rule.labels.items()
    )


def _first(rules: tuple[Rule, ...], attribute: str) -> Rule | None:
    if not rules:
        return None  # the usual case: no rule fired
    return next((r for r in rules if getattr(r, attribute) is not None), None)


UNREADABLE_CLAUSE: Final = "default:unreadable-security-data"


def unreadable_data(x: Situation) -> list[str]:
    """Why this installation cannot be called clean: security data that could not be read (DESIGN §7)."""
    gaps = [
        f"{a.id}: its affected versions of {x.plugin.plugin.plugin_id} could not be read"
        f" ({a.spec.unreadable}); review by hand"
        for a in x.plugin.unreadable_advisories(x.security.affected)
    ]
    problem = x.plugin.unreadable_release(x.version)
    if problem is not None:
        gaps.append(
            f"the catalog's record of release {x.version.text} could not be read ({problem}); review by hand"
        )
    gaps += [
        f"the advisory source could not be read ({p}); no installation can be called clean"
        for p in x.advisory_source_problems
    ]
    return gaps


def decide(x: Situation) -> _Decision:
    """Action, target and the rules that fired (DESIGN §5.7, then the rules file; §7 for unreadable data)."""
    s = x.security
    lifecycle = _installed_lifecycle(x.plugin, x.version)
    risk = max_severity(x.plugin, s.affected)
    if x.advisory_source_problems and risk.rank < Severity.MEDIUM.rank:
        risk = Severity.MEDIUM  # what the unread advisories say is unknown: medium, as §5.2 has it
    security = _security_action(x.plugin, s)
    candidate = s.target if security else x.latest
    if x.plain and candidate is not None:
        candidate = x.latest  # plain behaviour: always the newest eligible release
    labelled = candidate if candidate is not None else x.latest
    labels: dict[str, str] = x.plugin.releases[labelled].release.labels if labelled is not None else {}
    fired = tuple(r for r in x.policy_rules if _fires(r, risk, labels))
    action, clause = security or _non_security_action(x, lifecycle, fired)
    if s.exempted is not None:
        action, clause = Action.NONE, "default:exempted"
    target = candidate if action in (Action.UPGRADE_NOW, Action.SCHEDULE) else None
    if s.exempted is None and unreadable_data(x):
        # A human looks first; the fix for what could be read stays on the finding.
        action, clause, target = Action.REVIEW, UNREADABLE_CLAUSE, candidate if security else None
    return _Decision(action, clause, target, fired, risk, lifecycle)


def _sla_hours(x: Situation, d: _Decision) -> float | None:
    if d.target is None or x.plain:
        return None
    rule = _first(d.fired, "sla_hours")
    setting = rule.sla_hours if rule else x.rules.defaults.sla_hours
    hours = setting.for_level(d.risk) if isinstance(setting, SlaHours) else setting
    return None if hours is None else float(hours)


def _sla_deadline(x: Situation, d: _Decision) -> datetime | None:
    """From when the fix became actionable: the later of fix release and advisory publication (the
    first-seen part of DESIGN §5.8 is per installation: `Verdict.sla_deadline_for`)."""
    hours = _sla_hours(x, d)
    if hours is None or d.target is None:
        return None
    advisories = x.plugin.advisories
    starts = [x.plugin.releases[d.target].release.released_at]
    starts += [advisories[b].advisory.published for b in bits(x.security.fixed)]
    known = [t for t in starts if t is not None]
    return (max(known) if known else x.now) + timedelta(hours=hours)


def _priority(x: Situation, d: _Decision) -> int:
    if d.action is Action.NONE:
        return 0
    w, s = x.rules.risk_weights, x.security
    advisories = [x.plugin.advisories[b] for b in bits(s.affected)]
    scores = [
        a.severity.score
        if a.severity.score is not None
        else _LABEL_SCORES.get(a.severity.level, w.unknown_severity_cvss)
        for a in advisories
    ]
    if x.plain:  # no weighting: ten points per CVSS point of the worst advisory
        return max(0, min(100, round(max(scores, default=0.0) * 10)))
    # A risk no upgrade removes still matters, but less than one an upgrade fixes now.
    points = max(scores, default=0.0) * w.cvss * (1.0 if d.target is not None or not advisories else 0.5)
    points += w.exploited if any(a.exploited for a in advisories) else 0.0
    points += w.critical_patch if s.critical_patch and d.target is not None else 0.0
    points += {
        LifecycleStatus.DEPRECATED: w.deprecated,
        LifecycleStatus.SUNSET: w.sunset,
        LifecycleStatus.REVOKED: w.revoked,
    }.get(d.lifecycle.status, 0.0)
    points += min(len(x.indices) * w.version_lag, w.version_lag_cap)
    return max(0, min(100, round(points)))


def _advisory_findings(x: Situation) -> tuple[AdvisoryFinding, ...]:
    s, found = x.security, []
    for b in bits(s.affected):
        a = x.plugin.advisories[b]
        fix = next((i for i in x.indices if not s.masks[i] >> b & 1), None)
        found.append(
            AdvisoryFinding(
                id=a.id,
                aliases=a.advisory.aliases,
                summary=a.advisory.summary,
                severity=a.severity.level,
                cvss=a.severity.score,
                vector=a.severity.vector,
                exploited=a.exploited,
                fixed_in=x.plugin.releases[fix].release.version if fix is not None else None,
                unavoidable=bool(s.unavoidable >> b & 1),
                in_target=s.target is not None and bool(s.masks[s.target] >> b & 1),
            )
        )
    return tuple(sorted(found, key=lambda f: (-f.severity.rank, -(f.cvss or 0.0), f.id)))


def _security_reasons(x: Situation, d: _Decision) -> list[str]:
    s, advisories = x.security, x.plugin.advisories
    target = x.plugin.releases[d.target].release.version if d.target is not None else None
    reasons = list(s.reasons)
    for b in bits(s.fixed) if target else ():
        a = advisories[b]
        score = (
            f"CVSS {a.severity.score}"
            if a.severity.score is not None
            else f"severity from {a.severity.source}"
        )
        reasons.append(f"{a.id} ({a.severity.level}, {score}) is fixed in {target}")
    if s.partial and target and s.target is not None:
        still = ", ".join(advisories[b].id for b in bits(s.masks[s.target] & ~s.unavoidable))
        reasons.append(
            f"no eligible release is free of avoidable advisories; {target} is the least exposed"
            f" (still carries {still})"
        )
    reasons += [_unfixed_reason(x, b) for b in bits(s.unavoidable) if advisories[b].spec.unreadable is None]
    if d.target is not None:
        carried = (
            s.masks[d.target]
            & ~s.affected
            & ~(s.masks[d.target] if s.partial and d.target == s.target else 0)
        )
        if carried:
            ids = ", ".join(advisories[b].id for b in bits(carried))
            reasons.append(
                f"{target} carries {ids}, which {x.version.text} does not have; no eligible release avoids it"
            )
    for b in bits(s.affected):
        if advisories[b].severity.source == "unknown":
            reasons.append(
                f"{advisories[b].id}: severity unknown (no usable CVSS vector or label), taken as medium"
            )
        reasons.extend(advisories[b].severity.problems)
    if d.action is Action.BLOCKED:
        reasons.append("no eligible release is less exposed than the installed version")
    return reasons


def _restrictions(x: Situation, release: IndexedRelease) -> str:
    """Why a release may be out of reach, from its own metadata (tenant-independent)."""
    r = release.release
    notes = [f"channel {r.channel}"]
    notes += [f"min_core {r.min_core}"] if r.min_core else []
    notes += [f"max_core {r.max_core}"] if r.max_core else []
    notes += ["yanked"] if r.yanked else []
    notes += [f"lifecycle {r.lifecycle.status}"] if r.lifecycle.status is not LifecycleStatus.ACTIVE else []
    notes += [f"released {r.released_at.isoformat()}"] if r.released_at and r.released_at > x.now else []
    return ", ".join(notes)


def _unfixed_reason(x: Situation, bit: int) -> str:
    """An advisory no eligible release fixes; name the release that would, and what keeps it out of reach."""
    advisory = x.plugin.advisories[bit]
    above = x.plugin.first_above(x.version)
    fixing = next(
        (
            r
            for i, r in enumerate(x.plugin.releases[above:], start=above)
            if not x.plugin.release_masks[i] >> bit & 1
        ),
        None,
    )
    if fixing is None:
        return f"{advisory.id}: no release fixes it yet"
    return (
        f"{advisory.id}: no eligible release fixes it; {fixing.release.version} does but is out of reach"
        f" ({_restrictions(x, fixing)}, or the compatibility matrix of this host)"
    )


def _reasons(x: Situation, d: _Decision) -> tuple[str, ...]:
    reasons = unreadable_data(x) if d.clause == UNREADABLE_CLAUSE else []
    reasons += _security_reasons(x, d)
    lc = d.lifecycle
    if lc.status is not LifecycleStatus.ACTIVE:
        reasons.append(
            f"installed release is {lc.status}"
            + (f" ({lc.reason})" if lc.reason else "")
            + (f"; replacement: {lc.replacement}" if lc.replacement else "")
            + (f" (sunset at {lc.sunset_at.isoformat()})" if lc.sunset_at else "")
        )
    newest = x.indices[-1] if x.indices else None
    if not x.security.affected and newest is not None and x.latest != newest:
        reasons.append(
            f"{x.plugin.releases[newest].release.version} is held back by the release-age cooldown"
            " or the rule's target track"
        )
    if d.clause == "default:non-security-update" and x.latest is not None:
        reasons.append(_update_reason(x, d))
    reasons += _out_of_reach(x, d)
    if x.plain:
        reasons.append(PLAIN_REASON)
    if not reasons:
        reasons.append(_fallback_reason(x, d))
    return tuple(reasons)


def _update_reason(x: Situation, d: _Decision) -> str:
    latest = x.plugin.releases[x.latest].version if x.latest is not None else None
    kind = update_type(x.version, latest)
    reason = f"newer release {latest} is available (a {kind} update, no advisory)"
    if d.target is None:
        reason += f"; the rules leave {kind} updates to {d.action} rather than scheduling them"
    return reason


def _out_of_reach(x: Situation, d: _Decision) -> list[str]:
    """Behind the plugin's newest release with nothing eligible to move to: say what keeps it out."""
    newest = len(x.plugin.releases) - 1
    if x.indices or newest < x.plugin.first_above(x.version):
        return []  # something newer is eligible (the finding names it), or nothing is newer
    release = x.plugin.releases[newest]
    return [
        f"{release.release.version} is newer but not eligible here ({_restrictions(x, release)},"
        " or the compatibility matrix of this host)"
    ]


def _fallback_reason(x: Situation, d: _Decision) -> str:
    if x.security.exempted is not None:
        return f"exempted by {x.security.exempted.id}: {x.security.exempted.reason}"
    return f"{d.action}: {d.clause.removeprefix('default:').replace('-', ' ')}"


def _release_notes(x: Situation, upto: int | None) -> tuple[ReleaseNote, ...]:
    if upto is None:
        return ()
    return tuple(
        ReleaseNote(r.release.version, r.release.changelog, r.release.release_notes_url)
        for r in (x.plugin.releases[i] for i in x.indices if i <= upto)
        if r.release.changelog or r.release.release_notes_url
    )


def _notification(fired: tuple[Rule, ...], rules: GovernanceRules) -> str | None:
    rule = _first(fired, "notification")
    route = rule.notification if rule else None
    if isinstance(route, Notification):
        return route.route
    return route if isinstance(route, str) else rules.defaults.notification


def shape_verdict(x: Situation) -> Verdict:
    """Assemble the verdict of one distinct combination."""
    d = decide(x)
    target = x.plugin.releases[d.target] if d.target is not None else None
    enforce_rule = _first(d.fired, "enforcement")
    return Verdict(
        plugin_id=x.plugin.plugin.plugin_id,
        current_version=x.version.text,
        target_version=target.release.version if target else None,
        latest_version=x.plugin.releases[x.latest].release.version if x.latest is not None else None,
        update_type=update_type(x.version, target.version if target else None),
        risk_level=d.risk,
        priority=_priority(x, d),
        action=d.action,
        critical_patch=x.security.critical_patch and target is not None,
        partial=x.security.partial and target is not None,
        sla_deadline=_sla_deadline(x, d),
        sla_hours=_sla_hours(x, d),
        advisories=_advisory_findings(x),
        release_notes=_release_notes(x, d.target),
        reasons=_reasons(x, d),
        rule_ids=(d.clause, *x.security.exemption_ids, *(r.id for r in d.fired)),
        policy_mode=PolicyMode.PLAIN if x.plain else PolicyMode.GOVERNED,
        enforcement=enforce_rule.enforcement if enforce_rule and enforce_rule.enforcement else x.enforcement,
        notification=_notification(d.fired, x.rules),
        lifecycle=d.lifecycle.status,
        replacement=d.lifecycle.replacement,
        compatibility=x.warnings.get(d.target, ()) if d.target is not None else (),
        exempted=x.security.exempted,
        target_dependencies=tuple((dep.id, dep.version) for dep in target.release.dependencies)
        if target
        else (),
        reportable=d.action is not Action.NONE or x.security.exempted is not None,
    )
