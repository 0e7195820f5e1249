"""The policy engine (DESIGN §5): pure, no I/O, the evaluation time is an argument.

Work is done once per distinct combination and cached: eligibility per (plugin, core, channel,
host, track), verdicts per (plugin, installed version, eligible set, applicable policy). The
cost of a scan therefore grows with distinct combinations, not with tenants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from powerx_governance.catalog.models import CompatAction
from powerx_governance.domain import ACCEPTED_CHANNELS, Channel, Enforcement, LifecycleStatus
from powerx_governance.durations import parse_duration
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.policy.index import CatalogIndex, PluginIndex
from powerx_governance.policy.rules import Exemption, GovernanceRules, Rule, TargetTrack
from powerx_governance.policy.security import assess_security
from powerx_governance.policy.shaping import Situation, shape_verdict
from powerx_governance.policy.verdict import Verdict
from powerx_governance.versioning.semver import PrecedenceKey, Version, parse_version

_TRACK_CHANNELS = {
    TargetTrack.LTS: frozenset({Channel.LTS}),
    TargetTrack.STABLE: frozenset({Channel.LTS, Channel.STABLE}),
}


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """The rules and exemptions whose tenant/plugin conditions match one installation."""

    rules: tuple[Rule, ...]
    exemptions: tuple[Exemption, ...]

    @property
    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Identity for caching: rule and exemption ids are unique within a rules file."""
        return tuple(r.id for r in self.rules), tuple(e.id for e in self.exemptions)

    def _settled(self) -> list[Rule]:
        """Rules without outcome conditions: they decide before evaluation, first one (file order) wins."""
        return [r for r in self.rules if not r.outcome_conditions]

    @property
    def channel(self) -> Channel | None:
        return next((r.channel for r in self._settled() if r.channel is not None), None)

    @property
    def release_age(self) -> str | None:
        return next((r.release_age for r in self._settled() if r.release_age is not None), None)

    @property
    def target_track(self) -> TargetTrack | None:
        return next((r.target_version for r in self._settled() if r.target_version is not None), None)

    @property
    def enforcement(self) -> Enforcement | None:
        return next((r.enforcement for r in self._settled() if r.enforcement is not None), None)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """E for one (plugin, core, channel, host): release indices ascending, with matrix warnings."""

    indices: tuple[int, ...]
    warnings: dict[int, tuple[str, ...]]


class PolicyEngine:
    """Evaluates installations against an indexed catalog and a rules set at a fixed time."""

    def __init__(self, index: CatalogIndex, rules: GovernanceRules, now: datetime) -> None:
        self.index = index
        self.rules = rules
        self.now = now
        self.default_release_age = parse_duration(rules.defaults.release_age)
        self._eligibility: dict[tuple[str, PrecedenceKey, Channel, str], Eligibility] = {}
        self._policies: dict[tuple[tuple[str, ...], str | None, str, str], AppliedPolicy] = {}
        self._verdicts: dict[tuple[object, ...], Verdict] = {}
        self._by_facts: dict[tuple[object, ...], Verdict | None] = {}

    @property
    def distinct_combinations(self) -> int:
        return len(self._verdicts)

    def policy_for(self, tenant: TenantManifest, plugin_id: str) -> AppliedPolicy:
        key = (tenant.tags, tenant.plan, plugin_id, tenant.tenant_uuid if self.rules.exemptions else "")
        policy = self._policies.get(key)
        if policy is None:
            policy = AppliedPolicy(
                tuple(r for r in self.rules.rules if _rule_applies(r, tenant, plugin_id)),
                tuple(e for e in self.rules.exemptions if _exemption_applies(e, tenant, plugin_id)),
            )
            self._policies[key] = policy
        return policy

    def eligibility(self, plugin: PluginIndex, core: Version, channel: Channel, host: str) -> Eligibility:
        key = (plugin.plugin.plugin_id, core.key, channel, host)
        found = self._eligibility.get(key)
        if found is None:
            found = _eligible(self.index, plugin, core=core, channel=channel, host=host, now=self.now)
            self._eligibility[key] = found
        return found

    def evaluate(self, tenant: TenantManifest, installation: Installation) -> Verdict | None:
        """The verdict for one installation of a validated manifest; None when the plugin is unknown.

        The first lookup is keyed on the raw facts, so a fleet where thousands of tenants share
        a combination pays one dictionary lookup per installation.
        """
        fast_key = (
            installation.plugin_id,
            installation.version,
            installation.channel,
            tenant.core_version,
            tenant.host,
            tenant.tags,
            tenant.plan,
            tenant.tenant_uuid if self.rules.exemptions else "",
        )
        verdict = self._by_facts.get(fast_key)
        if verdict is None and fast_key not in self._by_facts:
            verdict = self._evaluate(tenant, installation)
            self._by_facts[fast_key] = verdict
        return verdict

    def _evaluate(self, tenant: TenantManifest, installation: Installation) -> Verdict | None:
        plugin = self.index.plugins.get(installation.plugin_id)
        if plugin is None:
            return None
        version, core = parse_version(installation.version), parse_version(tenant.core_version)
        policy = self.policy_for(tenant, installation.plugin_id)
        channel = policy.channel or installation.channel
        eligible = self.eligibility(plugin, core, channel, tenant.host_id)
        above = plugin.first_above(version)
        indices = tuple(i for i in eligible.indices if i >= above)
        key = (plugin.plugin.plugin_id, version.key, indices, policy.key)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._decide(plugin, version, indices, eligible, policy)
            self._verdicts[key] = verdict
        return verdict

    def _decide(
        self,
        plugin: PluginIndex,
        version: Version,
        indices: tuple[int, ...],
        eligible: Eligibility,
        policy: AppliedPolicy,
    ) -> Verdict:
        enforcement = policy.enforcement or self.rules.defaults.enforcement
        security = assess_security(plugin, version, indices, policy.exemptions, enforcement, self.now)
        latest = self._latest(plugin, indices, policy)
        return shape_verdict(
            Situation(
                plugin=plugin,
                version=version,
                indices=indices,
                warnings=eligible.warnings,
                security=security,
                latest=latest,
                policy_rules=policy.rules,
                rules=self.rules,
                enforcement=enforcement,
                now=self.now,
            )
        )

    def _latest(self, plugin: PluginIndex, indices: tuple[int, ...], policy: AppliedPolicy) -> int | None:
        """Highest eligible release, after the release-age cooldown and the rule's target track."""
        age = parse_duration(policy.release_age) if policy.release_age else self.default_release_age
        channels = _TRACK_CHANNELS.get(policy.target_track) if policy.target_track else None
        for i in reversed(indices):
            release = plugin.releases[i].release
            if channels is not None and release.channel not in channels:
                continue
            if _cooled(release.released_at, age, self.now):
                return i
        return None


def _cooled(released_at: datetime | None, age: timedelta, now: datetime) -> bool:
    return age <= timedelta(0) or released_at is None or released_at + age <= now


def _eligible(
    index: CatalogIndex, plugin: PluginIndex, *, core: Version, channel: Channel, host: str, now: datetime
) -> Eligibility:
    """DESIGN §5.3 except `r > v`, which the caller applies per installed version."""
    accepted = ACCEPTED_CHANNELS[channel]
    indices: list[int] = []
    warnings: dict[int, tuple[str, ...]] = {}
    for i, r in enumerate(plugin.releases):
        release = r.release
        if (
            release.yanked
            or release.lifecycle.status in (LifecycleStatus.SUNSET, LifecycleStatus.REVOKED)
            or release.channel not in accepted
            or (release.released_at is not None and release.released_at > now)
            or not r.admits_core(core)
        ):
            continue
        compat = index.matrix.verdict(host, plugin.plugin.plugin_id, r.version)
        if compat.action is CompatAction.BLOCK:
            continue
        if compat.action is CompatAction.WARN:
            warnings[i] = compat.notes or (f"the compatibility matrix warns about {r.version} on {host}",)
        indices.append(i)
    return Eligibility(tuple(indices), warnings)


def _rule_applies(rule: Rule, tenant: TenantManifest, plugin_id: str) -> bool:
    return (
        (not rule.tenant_tags or bool(set(rule.tenant_tags) & set(tenant.tags)))
        and (not rule.plugins or any(fnmatchcase(plugin_id, p) for p in rule.plugins))
        and (not rule.plans or tenant.plan in rule.plans)
    )


def _exemption_applies(exemption: Exemption, tenant: TenantManifest, plugin_id: str) -> bool:
    scope = exemption.scope
    return (
        fnmatchcase(plugin_id, scope.plugin_id)
        and (scope.tenant_uuid is None or scope.tenant_uuid in (tenant.tenant_uuid, tenant.tenant_key))
        and (not scope.tenant_tags or bool(set(scope.tenant_tags) & set(tenant.tags)))
    )
