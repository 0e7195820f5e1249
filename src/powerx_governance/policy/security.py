"""Security assessment (DESIGN §5.1, §5.4-5.6): A(v), avoidable advisories, the security target."""

from __future__ import annotations

from datetime import datetime

import msgspec

from powerx_governance.domain import SEVERITY_BY_RANK, Enforcement, Severity
from powerx_governance.policy.index import PluginIndex
from powerx_governance.policy.rules import Exemption
from powerx_governance.policy.verdict import Exempted
from powerx_governance.versioning.ranges import parse_constraint
from powerx_governance.versioning.semver import Version


class SecurityOutcome(msgspec.Struct, frozen=True):
    affected: int  # A(v) after waivers, bitmask over plugin.advisories
    avoidable: int  # R(v)
    unavoidable: int  # advisories every eligible release carries
    target: int | None  # release index of the security target
    partial: bool
    critical_patch: bool
    fixed: int  # advisories of R(v) the target fixes
    masks: dict[int, int]  # A(r) after waivers, per eligible release index
    exempted: Exempted | None
    reasons: tuple[str, ...]
    exemption_ids: tuple[str, ...]


def bits(mask: int) -> list[int]:
    """Indices of the set bits of a mask, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def max_severity(plugin: PluginIndex, mask: int) -> Severity:
    ranks = [plugin.advisories[b].severity.level.rank for b in bits(mask)]
    return SEVERITY_BY_RANK[max(ranks)] if ranks else Severity.NONE


def exposure(plugin: PluginIndex, mask: int) -> tuple[int, int]:
    """(highest severity, number of advisories): lower is less exposed (DESIGN §5.4)."""
    return (max_severity(plugin, mask).rank if mask else -1, mask.bit_count())


class _Waivers(msgspec.Struct, frozen=True):
    mask: int
    whole: Exempted | None
    reasons: tuple[str, ...]
    ids: tuple[str, ...]


def _waivers(
    plugin: PluginIndex,
    version: Version,
    raw: int,
    exemptions: tuple[Exemption, ...],
    level: Enforcement,
    now: datetime,
) -> _Waivers:
    mask, whole, reasons, ids = 0, None, [], []
    for ex in exemptions:
        if ex.scope.versions is not None and not parse_constraint(ex.scope.versions).admits(version):
            continue
        if ex.expires_at <= now:
            reasons.append(f"exemption {ex.id} expired at {ex.expires_at.isoformat()}; it no longer applies")
            continue
        covered = (
            raw
            if ex.scope.advisory_id is None
            else sum(1 << b for b in bits(raw) if ex.scope.advisory_id in plugin.advisories[b].names())
        )
        if (
            level is Enforcement.ENFORCE
            and ex.approver is None
            and max_severity(plugin, covered) is Severity.CRITICAL
        ):
            reasons.append(
                f"exemption {ex.id} refused: enforcement 'enforce' needs an approver for critical advisories"
            )
            continue
        ids.append(ex.id)
        if ex.scope.advisory_id is None:
            whole = whole or Exempted(ex.id, ex.reason, ex.approver, ex.expires_at)
        else:
            mask |= covered
            reasons.append(
                f"{ex.scope.advisory_id} waived by exemption {ex.id} until {ex.expires_at.isoformat()}"
            )
    return _Waivers(mask, whole, tuple(reasons), tuple(ids))


def _pick_target(
    plugin: PluginIndex, indices: tuple[int, ...], masks: dict[int, int], escapable: int, current: int
) -> tuple[int | None, bool]:
    """Lowest clean release, else the least exposed one (ties: lowest) if it beats the installed one."""
    for i in indices:
        if masks[i] & escapable == 0:
            return i, False
    best = min(indices, key=lambda i: (exposure(plugin, masks[i] & escapable), i), default=None)
    if best is not None and exposure(plugin, masks[best] & escapable) < exposure(plugin, current):
        return best, True
    return None, False


def _escapable(masks: dict[int, int], indices: tuple[int, ...]) -> int:
    """Advisories some eligible release escapes (the complement of the unavoidable ones)."""
    if not indices:
        return 0
    unavoidable = ~0
    for i in indices:
        unavoidable &= masks[i]
    return ~unavoidable


def assess_security(
    plugin: PluginIndex,
    version: Version,
    indices: tuple[int, ...],
    exemptions: tuple[Exemption, ...],
    enforcement: Enforcement,
    now: datetime,
) -> SecurityOutcome:
    raw = plugin.affected_mask(version)
    waivers = _waivers(plugin, version, raw, exemptions, enforcement, now)
    keep = ~waivers.mask
    affected = raw & keep
    masks = {i: plugin.release_masks[i] & keep for i in indices}
    escapable = _escapable(masks, indices)
    avoidable = affected & escapable
    target, partial = (
        _pick_target(plugin, indices, masks, escapable, avoidable) if avoidable else (None, False)
    )
    fixed = avoidable & ~masks[target] if target is not None else 0
    critical_patch = any(
        plugin.advisories[b].severity.level is Severity.CRITICAL
        or (plugin.advisories[b].exploited and plugin.advisories[b].severity.level.rank >= Severity.HIGH.rank)
        for b in bits(fixed)
    )
    return SecurityOutcome(
        affected=affected,
        avoidable=avoidable,
        unavoidable=affected & ~escapable,
        target=target,
        partial=partial,
        critical_patch=critical_patch,
        fixed=fixed,
        masks=masks,
        exempted=waivers.whole,
        reasons=waivers.reasons,
        exemption_ids=waivers.ids,
    )
