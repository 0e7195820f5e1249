"""The policy engine (DESIGN §5): pure, no I/O, the evaluation time is an argument.

Work is done once per distinct combination and cached: eligibility per (plugin, core, channel,
host, track), verdicts per (plugin, installed version, eligible set and its matrix warnings,
applicable policy). The cost of a scan therefore grows with distinct combinations, not with tenants.
Tenant contexts that see a plugin alike (equal eligible set, matrix warnings and policy) share a
`Route`, so an installed version met in one of them is looked up, not worked out, in the others.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

import msgspec

from powerx_governance.catalog_records import CompatAction
from powerx_governance.domain import ACCEPTED_CHANNELS, Channel, Enforcement, LifecycleStatus, tags_match
from powerx_governance.durations import parse_duration
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.policy.index import CatalogIndex, IndexedRelease, PluginIndex
from powerx_governance.policy.rules import Exemption, GovernanceRules, Rule, TargetTrack
from powerx_governance.policy.security import assess_security
from powerx_governance.policy.shaping import Situation, shape_verdict
from powerx_governance.policy.verdict import Verdict
from powerx_governance.versioning.semver import Version, parse_version

_WITHDRAWN = (LifecycleStatus.SUNSET, LifecycleStatus.REVOKED)
_TRACK_CHANNELS = {
    TargetTrack.LTS: frozenset({Channel.LTS}),
    TargetTrack.STABLE: frozenset({Channel.LTS, Channel.STABLE}),
}


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """The rules and exemptions whose tenant/plugin conditions match one installation.

    The settings that decide eligibility come from rules without outcome conditions, the
    first one (file order) that sets each; they are resolved once, when the policy is built.
    """

    rules: tuple[Rule, ...]
    exemptions: tuple[Exemption, ...]
    key: tuple[tuple[str, ...], tuple[str, ...]]  # rule and exemption ids: unique within a rules file
    channel: Channel | None
    release_age: str | None
    target_track: TargetTrack | None
    enforcement: Enforcement | None

    @classmethod
    def of(cls, rules: tuple[Rule, ...], exemptions: tuple[Exemption, ...]) -> AppliedPolicy:
        settled = [r for r in rules if not r.outcome_conditions]
        return cls(
            rules,
            exemptions,
            (tuple(r.id for r in rules), tuple(e.id for e in exemptions)),
            next((r.channel for r in settled if r.channel is not None), None),
            next((r.release_age for r in settled if r.release_age is not None), None),
            next((r.target_version for r in settled if r.target_version is not None), None),
            next((r.enforcement for r in settled if r.enforcement is not None), None),
        )


class Eligibility(msgspec.Struct, frozen=True):
    """E for one (plugin, core, channel, host): release indices ascending, with matrix warnings."""

    indices: tuple[int, ...]
    warnings: dict[int, tuple[str, ...]]


class Route:
    """How one plugin is evaluated in the tenant contexts that see it alike: the plugin, its eligible
    releases and the policy that applies, with the verdict of each installed version met so far."""

    __slots__ = ("eligible", "plugin", "policy", "verdicts")

    def __init__(self, plugin: PluginIndex, eligible: Eligibility, policy: AppliedPolicy) -> None:
        self.plugin, self.eligible, self.policy = plugin, eligible, policy
        self.verdicts: dict[str, Verdict] = {}  # by installed version, as the manifest spells it


class TenantContext(msgspec.Struct, frozen=True):
    """A tenant's facts as evaluation sees them, resolved once per tenant per scan.

    `id` is shared by every tenant with the same core, host and tenant-matched rules and
    exemptions, so installations of different tenants hit the same cache entries.
    """

    tenant: TenantManifest
    core: Version
    host: str
    rules: tuple[Rule, ...]
    exemptions: tuple[Exemption, ...]
    id: int


class PolicyEngine:
    """Evaluates installations against an indexed catalog and a rules set at a fixed time."""

    def __init__(
        self, index: CatalogIndex, rules: GovernanceRules, now: datetime, *, plain: bool = False
    ) -> None:
        """`plain`: the upgrade policy is off (flag `plugin-upgrade-policy`): the newest eligible
        release, risk from advisories, and no rules, exemptions, weights, SLAs, enforcement or cooldown."""
        self.index = index
        self.rules = rules
        self.now = now
        self.plain = plain
        self.default_release_age = timedelta(0) if plain else parse_duration(rules.defaults.release_age)
        self._eligibility: dict[tuple[str, str, Channel, str], Eligibility] = {}
        self._available: dict[str, tuple[IndexedRelease, ...]] = {}
        self._admitted: dict[tuple[str, str], tuple[IndexedRelease, ...]] = {}
        self._tenant_rules: dict[tuple[tuple[str, ...], str | None], tuple[Rule, ...]] = {}
        self._contexts: dict[tuple[object, ...], int] = {}
        self._policies: dict[tuple[int, str], AppliedPolicy] = {}
        self._verdicts: dict[tuple[object, ...], Verdict] = {}
        self._routes: dict[tuple[int, str, Channel], Route | None] = {}  # None: not in the catalog
        self._shared_routes: dict[tuple[object, ...], Route] = {}

    @property
    def distinct_combinations(self) -> int:
        return len(self._verdicts)

    def context(self, tenant: TenantManifest) -> TenantContext:
        """Resolve a validated manifest's core version, host and tenant-level policy once."""
        facts = (tenant.tags, tenant.plan)
        rules = self._tenant_rules.get(facts)
        if rules is None:
            rules = self._tenant_rules[facts] = tuple(
                r for r in self.rules.rules if not self.plain and _rule_fits_tenant(r, tenant)
            )
        exemptions = tuple(
            e for e in self.rules.exemptions if not self.plain and _exemption_fits_tenant(e, tenant)
        )
        host = tenant.host_id
        key = (tenant.core_version, host, tuple(r.id for r in rules), tuple(e.id for e in exemptions))
        ident = self._contexts.setdefault(key, len(self._contexts))
        return TenantContext(tenant, parse_version(tenant.core_version), host, rules, exemptions, ident)

    def policy_for(self, ctx: TenantContext, plugin_id: str) -> AppliedPolicy:
        key = (ctx.id, plugin_id)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = AppliedPolicy.of(
                tuple(
                    r for r in ctx.rules if not r.plugins or any(fnmatchcase(plugin_id, p) for p in r.plugins)
                ),
                tuple(e for e in ctx.exemptions if fnmatchcase(plugin_id, e.scope.plugin_id)),
            )
        return policy

    def eligibility(self, plugin: PluginIndex, core: Version, channel: Channel, host: str) -> Eligibility:
        key = (plugin.plugin.plugin_id, core.text, channel, host)
        found = self._eligibility.get(key)
        if found is None:
            found = self._eligibility[key] = _eligible(
                self.index, plugin, self._admitting(plugin, core), channel=channel, host=host
            )
        return found

    def _admitting(self, plugin: PluginIndex, core: Version) -> tuple[IndexedRelease, ...]:
        """The available releases that admit `core`: the same for every channel and host."""
        key = (plugin.plugin.plugin_id, core.text)
        found = self._admitted.get(key)
        if found is None:
            available = self._available.get(plugin.plugin.plugin_id)
            if available is None:
                available = self._available[plugin.plugin.plugin_id] = _available(plugin, self.now)
            found = self._admitted[key] = tuple(r for r in available if r.admits_core(core))
        return found

    def evaluate(self, ctx: TenantContext, installation: Installation) -> Verdict | None:
        """The verdict for one installation of a validated manifest; None when the plugin is unknown.

        Looked up through the installation's route first, so a fleet where thousands of tenants
        share a combination pays two dictionary lookups per installation.
        """
        facts = (ctx.id, installation.plugin_id, installation.channel)
        route = self._routes.get(facts)
        if route is None:
            if facts in self._routes:
                return None
            route = self._routes[facts] = self._route(ctx, installation)
            if route is None:
                return None
        verdict = route.verdicts.get(installation.version)
        if verdict is None:
            verdict = route.verdicts[installation.version] = self._verdict(route, installation.version)
        return verdict

    def _route(self, ctx: TenantContext, installation: Installation) -> Route | None:
        plugin = self.index.plugins.get(installation.plugin_id)
        if plugin is None:
            return None
        policy = self.policy_for(ctx, installation.plugin_id)
        eligible = self.eligibility(plugin, ctx.core, policy.channel or installation.channel, ctx.host)
        key = (installation.plugin_id, eligible.indices, tuple(eligible.warnings.items()), policy.key)
        route = self._shared_routes.get(key)
        if route is None:
            route = self._shared_routes[key] = Route(plugin, eligible, policy)
        return route

    def _verdict(self, route: Route, installed: str) -> Verdict:
        plugin, eligible = route.plugin, route.eligible
        version = parse_version(installed)
        indices = eligible.indices[bisect_left(eligible.indices, plugin.first_above(version)) :]
        key = (plugin.plugin.plugin_id, version.key, indices, route.policy.key, _warned(eligible, indices))
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = self._decide(plugin, version, indices, eligible, route.policy)
        return verdict

    def _decide(
        self,
        plugin: PluginIndex,
        version: Version,
        indices: tuple[int, ...],
        eligible: Eligibility,
        policy: AppliedPolicy,
    ) -> Verdict:
        enforcement = (
            Enforcement.ADVISORY if self.plain else policy.enforcement or self.rules.defaults.enforcement
        )
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
                plain=self.plain,
                advisory_source_problems=self.index.advisory_source_problems,
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


def _warned(eligible: Eligibility, indices: tuple[int, ...]) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """The compatibility-matrix warnings about `indices` (they differ between hosts with the same
    eligible releases, and a verdict names its target's): part of what a verdict is shared on."""
    if not eligible.warnings:
        return ()  # the usual case: the matrix says nothing about this plugin on this host
    return tuple((i, eligible.warnings[i]) for i in indices if i in eligible.warnings)


def _cooled(released_at: datetime | None, age: timedelta, now: datetime) -> bool:
    return age <= timedelta(0) or released_at is None or released_at + age <= now


def _available(plugin: PluginIndex, now: datetime) -> tuple[IndexedRelease, ...]:
    """Releases any tenant could get at `now`: released, not yanked, not sunset or revoked."""
    if plugin.plugin.lifecycle.status in _WITHDRAWN:
        return ()  # a sunset plugin gets no upgrades: the way out is its replacement
    return tuple(
        r
        for r in plugin.releases
        if not r.release.yanked
        and r.release.lifecycle.status not in _WITHDRAWN
        and (r.release.released_at is None or r.release.released_at <= now)
    )


def _eligible(
    index: CatalogIndex,
    plugin: PluginIndex,
    admitting: tuple[IndexedRelease, ...],
    *,
    channel: Channel,
    host: str,
) -> Eligibility:
    """DESIGN §5.3 for one (core, channel, host), except `r > v`, which the caller applies per version;
    `admitting`: the available releases that admit the core."""
    accepted = ACCEPTED_CHANNELS[channel]
    if not index.matrix.concerns(host, plugin.plugin.plugin_id):  # most pairs: no matrix entry
        return Eligibility(tuple(r.position for r in admitting if r.release.channel in accepted), {})
    matrix = index.matrix
    indices: list[int] = []
    warnings: dict[int, tuple[str, ...]] = {}
    for r in admitting:
        if r.release.channel not in accepted:
            continue
        compat = matrix.verdict(host, plugin.plugin.plugin_id, r.version)
        if compat.action is CompatAction.BLOCK:
            continue
        if compat.action is CompatAction.WARN:
            warnings[r.position] = compat.notes or (
                f"the compatibility matrix warns about {r.version} on {host}",
            )
        indices.append(r.position)
    return Eligibility(tuple(indices), warnings)


def _rule_fits_tenant(rule: Rule, tenant: TenantManifest) -> bool:
    return tags_match(rule.tenant_tags, tenant.tags) and (not rule.plans or tenant.plan in rule.plans)


def _exemption_fits_tenant(exemption: Exemption, tenant: TenantManifest) -> bool:
    scope = exemption.scope
    in_scope = scope.tenant_uuid is None or scope.tenant_uuid in (tenant.tenant_uuid, tenant.tenant_key)
    return in_scope and tags_match(scope.tenant_tags, tenant.tags)
