"""Baselines and drift of one group, from the policy engine's eligibility (DESIGN §5.3, §5.4).

Pure: plain data in, plain data out, no I/O, no clock (the engine holds the evaluation time).
A derived baseline is the highest release that is eligible for every member running the plugin
(its core range, channel and compatibility matrix, exactly as the engine decides them) and free
of the advisories that member could avoid. Members with the same eligibility share one answer,
so the work grows with distinct (core, channel, host) combinations, not with members.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from powerx_governance.baselines.model import (
    Baseline,
    BaselineMode,
    BaselineStatus,
    Drift,
    DriftStatus,
    ExplicitBaseline,
    Split,
    Subgroup,
)
from powerx_governance.catalog_records import CompatAction
from powerx_governance.domain import ACCEPTED_CHANNELS, Channel
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.policy.engine import PolicyEngine, TenantContext
from powerx_governance.policy.index import PluginIndex
from powerx_governance.policy.security import bits, exposure
from powerx_governance.versioning.ranges import Constraint, ConstraintError, parse_constraint
from powerx_governance.versioning.semver import InvalidVersionError, Version, parse_version


@dataclass(frozen=True, slots=True)
class Fit:
    """What one eligibility class of members may run: E (ascending indices) and its escapable advisories."""

    eligible: frozenset[int]
    escapable: int  # advisories some release of E escapes (DESIGN §5.4's avoidable ones)
    core: Version
    channel: Channel
    host: str

    def clean(self, plugin: PluginIndex, index: int) -> bool:
        return index in self.eligible and plugin.release_masks[index] & self.escapable == 0


@dataclass(frozen=True, slots=True)
class Member:
    """A member as evaluation sees it: its context and what it runs."""

    tenant_uuid: str
    context: TenantContext
    installed: dict[str, Installation]


def members_of(engine: PolicyEngine, manifests: Iterable[TenantManifest]) -> list[Member]:
    return [Member(m.tenant_uuid, engine.context(m), {p.plugin_id: p for p in m.plugins}) for m in manifests]


Runner = tuple[Member, Installation]
FitCache = dict[tuple[str, int, Channel], Fit]


def runners_by_plugin(members: Iterable[Member]) -> dict[str, list[Runner]]:
    """plugin id → the members running it, with their installation."""
    found: dict[str, list[Runner]] = {}
    for member in members:
        for plugin_id, installation in member.installed.items():
            found.setdefault(plugin_id, []).append((member, installation))
    return found


def _fit_of(engine: PolicyEngine, plugin: PluginIndex, runner: Runner, cache: FitCache) -> Fit:
    """A member's fit, computed once per (plugin, tenant context, channel): members share contexts."""
    member, installation = runner
    key = (plugin.plugin.plugin_id, member.context.id, installation.channel)
    found = cache.get(key)
    if found is None:
        found = cache[key] = _fit(engine, plugin, member, installation)
    return found


def _fit(engine: PolicyEngine, plugin: PluginIndex, member: Member, installation: Installation) -> Fit:
    policy = engine.policy_for(member.context, plugin.plugin.plugin_id)
    channel = policy.channel or installation.channel
    ctx = member.context
    indices = engine.eligibility(plugin, ctx.core, channel, ctx.host).indices
    unavoidable = ~0 if indices else 0
    for i in indices:
        unavoidable &= plugin.release_masks[i]
    return Fit(frozenset(indices), ~unavoidable if indices else 0, ctx.core, channel, ctx.host)


def _highest_clean(plugin: PluginIndex, fits: Sequence[Fit]) -> int | None:
    for index in range(len(plugin.releases) - 1, -1, -1):
        if all(f.clean(plugin, index) for f in fits):
            return index
    return None


def _best(plugin: PluginIndex, fit: Fit) -> int | None:
    """What one class would run alone: its highest clean release, else its least exposed one (DESIGN §5.4:
    exposure first, then the highest version), when every eligible release carries something avoidable."""
    clean = _highest_clean(plugin, [fit])
    if clean is not None or not fit.eligible:
        return clean
    return min(fit.eligible, key=lambda i: (exposure(plugin, plugin.release_masks[i] & fit.escapable), -i))


def derive(engine: PolicyEngine, plugin: PluginIndex, running: Sequence[Runner], cache: FitCache) -> Baseline:
    """The derived baseline of the members running `plugin`: a version, or a conflict naming who splits."""
    plugin_id = plugin.plugin.plugin_id
    classes: dict[Fit, list[str]] = {}
    for runner in running:
        classes.setdefault(_fit_of(engine, plugin, runner, cache), []).append(runner[0].tenant_uuid)
    found = _highest_clean(plugin, list(classes))
    if found is not None:
        version = plugin.releases[found].version.text
        reason = (
            f"{version} is the highest release eligible and free of avoidable advisories"
            f" for all {len(running)} members running it"
        )
        return Baseline(plugin_id, BaselineMode.DERIVED, BaselineStatus.SET, version, reason)
    best = {fit: _best(plugin, fit) for fit in classes}
    shared = set(best.values())
    index = shared.pop() if len(shared) == 1 else None
    if index is not None:
        version = plugin.releases[index].version.text
        carried = sorted(
            {
                plugin.advisories[b].id
                for f in classes
                for b in bits(plugin.release_masks[index] & f.escapable)
            }
        )
        reason = (
            f"{version} is eligible for all {len(running)} members running it and the least exposed such"
            f" release; no eligible release avoids {', '.join(carried)}"
        )
        return Baseline(plugin_id, BaselineMode.DERIVED, BaselineStatus.SET, version, reason)
    return _conflict(engine, plugin, classes, best)


def _conflict(
    engine: PolicyEngine, plugin: PluginIndex, classes: dict[Fit, list[str]], chosen: dict[Fit, int | None]
) -> Baseline:
    best: dict[int | None, list[str]] = {}
    for fit, tenants in classes.items():
        best.setdefault(chosen[fit], []).extend(tenants)
    ordered = sorted(best.items(), key=lambda item: -1 if item[0] is None else item[0], reverse=True)
    subgroups = tuple(
        Subgroup(None if i is None else plugin.releases[i].version.text, tuple(sorted(t))) for i, t in ordered
    )
    splits: list[Split] = []
    for index, _ in ordered:
        if index is None:
            continue
        version = plugin.releases[index].version.text
        refused: dict[str, list[str]] = {}
        for fit, tenants in classes.items():
            if chosen[fit] != index and not fit.clean(plugin, index):
                refused.setdefault(why_not(engine, plugin, fit, index), []).extend(tenants)
        splits += [Split(version, why, tuple(sorted(t))) for why, t in sorted(refused.items())]
    text = "; ".join(f"{s.version} {s.constraint}: excludes {', '.join(s.members)}" for s in splits[:5])
    reason = f"no release of {plugin.plugin.plugin_id} is eligible and clean for every member ({text})"
    return Baseline(
        plugin.plugin.plugin_id,
        BaselineMode.DERIVED,
        BaselineStatus.CONFLICT,
        None,
        reason[:2000],
        subgroups,
        tuple(splits),
    )


def why_not(engine: PolicyEngine, plugin: PluginIndex, fit: Fit, index: int) -> str:
    """The constraint that keeps release `index` from members of this eligibility class."""
    release = plugin.releases[index]
    if release.channel not in ACCEPTED_CHANNELS[fit.channel]:
        return f"is on the {release.channel} channel, which members following {fit.channel} do not take"
    if release.min_core is not None and fit.core.key < release.min_core.key:
        return f"needs core >= {release.min_core.text} (min_core), members run core {fit.core.text}"
    if release.max_core is not None and fit.core.key > release.max_core.key:
        return f"allows core <= {release.max_core.text} (max_core), members run core {fit.core.text}"
    compat = engine.index.matrix.verdict(fit.host, plugin.plugin.plugin_id, release.version)
    if compat.action is CompatAction.BLOCK:
        return f"is blocked on {fit.host} by the compatibility matrix"
    if index not in fit.eligible:
        return "is not available (yanked, sunset, revoked or not yet released)"
    carried = [plugin.advisories[b].id for b in bits(plugin.release_masks[index] & fit.escapable)]
    return f"carries {', '.join(carried)}, which a release eligible for these members avoids"


def explicit_baseline(plugin_id: str, explicit: ExplicitBaseline) -> Baseline:
    reason = f"set by {explicit.actor} (revision {explicit.revision}): {explicit.reason}"
    return Baseline(
        plugin_id,
        BaselineMode.EXPLICIT,
        BaselineStatus.SET,
        explicit.spec,
        reason[:2000],
        revision=explicit.revision,
    )


def parse_spec(spec: str) -> Version | Constraint:
    """An exact version, else a constraint; ConstraintError when it is neither."""
    try:
        return parse_version(spec)
    except InvalidVersionError:
        return parse_constraint(spec)


def _position(
    installed: Version, target: Version | Constraint, plugin: PluginIndex | None
) -> DriftStatus | None:
    """Behind, ahead, or None when `installed` is what the baseline asks for."""
    if isinstance(target, Version):
        if installed.key == target.key:
            return None
        return DriftStatus.BEHIND if installed.key < target.key else DriftStatus.AHEAD
    if target.admits(installed):
        return None
    admitted = [r.version for r in plugin.releases if target.admits(r.version)] if plugin else []
    if admitted and installed.key > admitted[-1].key:
        return DriftStatus.AHEAD
    return DriftStatus.BEHIND


def drift(
    group_id: str,
    baseline: Baseline,
    plugin: PluginIndex | None,
    member_ids: Sequence[str],
    running: Sequence[Runner],
) -> list[Drift]:
    """Members whose installed version differs from a set baseline (missing: explicit baselines only)."""
    if baseline.status is not BaselineStatus.SET or baseline.spec is None:
        return []
    try:
        target = parse_spec(baseline.spec)
    except ConstraintError:
        return []
    found: list[Drift] = []
    if baseline.mode is BaselineMode.EXPLICIT:
        runs = {member.tenant_uuid for member, _ in running}
        found += [_missing(group_id, baseline, t) for t in member_ids if t not in runs]
    positions: dict[str, DriftStatus | None] = {}
    for member, installation in running:
        item = _member_drift(group_id, baseline, target, plugin, member.tenant_uuid, installation, positions)
        if item is not None:
            found.append(item)
    return found


def _missing(group_id: str, baseline: Baseline, tenant_uuid: str) -> Drift:
    spec = baseline.spec or ""
    reason = f"does not run {baseline.plugin_id}; the group's explicit baseline is {spec}"
    return Drift(group_id, tenant_uuid, baseline.plugin_id, DriftStatus.MISSING, None, spec, reason)


def _member_drift(
    group_id: str,
    baseline: Baseline,
    target: Version | Constraint,
    plugin: PluginIndex | None,
    tenant_uuid: str,
    installation: Installation,
    positions: dict[str, DriftStatus | None],
) -> Drift | None:
    spec, mode = baseline.spec or "", baseline.mode.value
    try:
        installed = parse_version(installation.version)
    except InvalidVersionError:
        return None
    if installation.version not in positions:
        positions[installation.version] = _position(installed, target, plugin)
    status = positions[installation.version]
    if status is None:
        return None
    where = "below" if status is DriftStatus.BEHIND else "above"
    reason = f"runs {installed.text}, {where} the group's {mode} baseline {spec}"
    return Drift(group_id, tenant_uuid, baseline.plugin_id, status, installed.text, spec, reason)
