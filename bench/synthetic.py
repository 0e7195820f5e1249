"""Seeded synthetic fleets for benchmarks: a catalog with inline OSV advisories and JSON-lines manifests.

The default sizes are the DESIGN §8 reference workload (20,000 tenants x 50 installations,
500 plugins x 40 releases, 1,000 advisories). The shape follows a real fleet rather than
uniform noise: a few core versions, mostly the stable channel, installed versions skewed
towards recent releases, tenants built from a limited number of plugin bundles, so that many
installations share the same (plugin, version, core) combination. Same arguments and seed,
byte-identical files.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Final

import msgspec

from powerx_governance.catalog_records import (
    CATALOG_SCHEMA,
    Advisory,
    Dependency,
    OsvAffected,
    OsvEvent,
    OsvPackage,
    OsvRange,
    OsvReference,
    OsvSeverity,
    Plugin,
    Release,
)
from powerx_governance.domain import ACCEPTED_CHANNELS, Channel, InstallState, Plan
from powerx_governance.inventory.models import Installation, TenantManifest

CATALOG_FILE: Final = "catalog.json"
MANIFESTS_FILE: Final = "manifests.jsonl"

# Core versions a fleet runs, with how common each is.
CORE_VERSIONS: Final = (
    ("1.21.3", 4),
    ("1.22.5", 8),
    ("1.23.2", 12),
    ("1.24.0", 18),
    ("1.24.3", 14),
    ("1.25.1", 22),
    ("1.26.0", 14),
    ("2.0.1", 8),
)
# Real-format CVSS vectors with the band their base score falls in (checked by the tests).
CVSS_VECTORS: Final = (
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CRITICAL"),  # 9.8
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", "CRITICAL"),  # 9.9
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N", "CRITICAL"),  # 9.1
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", "HIGH"),  # 8.8
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", "HIGH"),  # 7.5
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:N/A:N", "HIGH"),  # 7.7
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", "MODERATE"),  # 6.1
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", "MODERATE"),  # 6.5
    ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", "MODERATE"),  # 5.9
    ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N", "MODERATE"),  # 4.3
    ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:N", "LOW"),  # 3.8
    ("CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:L/I:N/A:N", "LOW"),  # 2.6
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "CRITICAL"),  # 9.3
    ("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "CRITICAL"),  # 9.2
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "HIGH"),  # 8.7
    ("CVSS:4.0/AV:N/AC:H/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", "HIGH"),  # 8.2
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", "HIGH"),  # 7.1
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N", "MODERATE"),  # 5.3
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:A/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N", "MODERATE"),  # 5.1
    ("CVSS:4.0/AV:L/AC:L/AT:N/PR:H/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N", "MODERATE"),  # 4.6
    ("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:A/VC:N/VI:L/VA:N/SC:L/SI:L/SA:N", "LOW"),  # 2.1
)
_NAMES: Final = (
    "base", "crm", "erp", "billing", "payments", "inventory", "hr", "payroll", "helpdesk",
    "wecom-connector", "feishu-connector", "dingtalk-connector", "sso-saml", "oauth-gateway",
    "reporting", "bi-dashboard", "workflow", "forms", "cms", "search", "mail-gateway",
    "sms-gateway", "audit-export", "backup", "i18n", "ai-assistant", "marketplace", "loyalty",
    "shipping", "tax",
)  # fmt: skip
_WEAKNESSES: Final = (
    "Stored XSS", "SQL injection", "Server-side request forgery", "Path traversal",
    "Missing authorisation check", "Open redirect", "Insecure direct object reference",
    "Token validation bypass", "Information disclosure", "Denial of service",
)  # fmt: skip
_INDUSTRIES: Final = ("retail", "finance", "healthcare", "education", "public-sector", "manufacturing")
_REGIONS: Final = ("cn", "cn", "cn", "eu", "eu", "apac", "na")
_PLANS: Final = (Plan.FREE, Plan.BASIC, Plan.BASIC, Plan.PRO, Plan.PRO, Plan.PRO)
_HISTORY_START: Final = datetime(2023, 1, 2, 2, 0, tzinfo=UTC)
_HISTORY_END: Final = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
_SCANNED_AT: Final = tuple(datetime(2026, 11, 29, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(48))
_BUNDLES: Final = 64  # distinct plugin sets tenants start from
_SWAPS: Final = 4  # plugins per tenant swapped out of its bundle
_RECENT_BIAS: Final = 0.45  # rate of the exponential "releases behind the newest" draw
_BASE_ID: Final = "com.powerx.plugins.base"


@dataclass(frozen=True, slots=True)
class SyntheticSet:
    """What `generate` wrote."""

    catalog: Path
    manifests: Path
    tenants: int
    installations: int
    plugins: int
    releases: int
    advisories: int


@dataclass(frozen=True, slots=True)
class _Line:
    """One generated release with the facts the manifests need."""

    release: Release
    admits: frozenset[int]  # indices into CORE_VERSIONS


def _core_bounds(when: datetime) -> tuple[str, str]:
    """min_core/max_core by release date: newer releases need newer cores; late ones support core 2."""
    if when.year < 2024:
        return "1.18.0", "1.99.99"
    if when.year < 2025:
        return "1.20.0", "1.99.99"
    if when.year < 2026:
        return "1.21.0", "1.99.99"
    return ("1.22.0", "1.99.99") if when.month < 8 else ("1.23.0", "2.99.99")


@lru_cache(maxsize=64)
def _admitted(min_core: str | None, max_core: str | None) -> frozenset[int]:
    """Indices of the CORE_VERSIONS a release's min_core/max_core admit."""
    low = _core_key(min_core) if min_core else (0,)
    high = _core_key(max_core) if max_core else (999,)
    return frozenset(i for i, (core, _) in enumerate(CORE_VERSIONS) if low <= _core_key(core) <= high)


def _core_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _version_texts(rnd: random.Random, count: int) -> list[tuple[str, Channel, bool]]:
    """(version, channel, security) in ascending precedence: patches, minors, rare majors, betas."""
    major, minor, patch = rnd.randint(1, 3), rnd.randint(0, 4), 0
    lts_line = False
    out: list[tuple[str, Channel, bool]] = []
    while len(out) < count:
        roll = rnd.random()
        if out and roll < 0.05 and len(out) < count - 1:
            out.append((f"{major}.{minor}.{patch + 1}-security.1", _line_channel(lts_line), True))
            patch += 1
        elif out and roll < 0.09:
            out.append((f"{major}.{minor + 1}.0-beta.1", Channel.BETA, False))
            minor, patch, lts_line = minor + 1, 0, rnd.random() < 0.25
        elif out and roll < 0.12:
            major, minor, patch, lts_line = major + 1, 0, 0, False
        elif out and roll < 0.38:
            minor, patch, lts_line = minor + 1, 0, rnd.random() < 0.25
        elif out:
            patch += 1
        out.append((f"{major}.{minor}.{patch}", _line_channel(lts_line), False))
    return out[:count]


def _line_channel(lts: bool) -> Channel:
    return Channel.LTS if lts else Channel.STABLE


def _releases(rnd: random.Random, name: str, count: int, bounded: bool) -> list[_Line]:
    start = _HISTORY_START + timedelta(days=rnd.randint(0, 500))
    step = (_HISTORY_END - start) / max(count - 1, 1)
    depends = name != "base" and rnd.random() < 0.4
    lines: list[_Line] = []
    for i, (version, channel, security) in enumerate(_version_texts(rnd, count)):
        when = (start + step * i).replace(minute=0, second=0, microsecond=0)
        min_core, max_core = _core_bounds(when) if bounded else (None, None)
        release = Release(
            version=version,
            channel=channel,
            released_at=when,
            min_core=min_core,
            max_core=max_core,
            dependencies=(Dependency(id=_BASE_ID, version=">=1.0.0"),) if depends else (),
            changelog=f"### Fixed\n- {name}: maintenance fixes for {version}.",
            release_notes_url=f"https://docs.powerx.example/plugins/{name}/releases/{version}",
            labels={"security": "high"} if security else {},
            yanked=rnd.random() < 0.01,
        )
        lines.append(_Line(release, _admitted(min_core, max_core)))
    return lines


def _plugin_names(count: int) -> list[str]:
    return [_NAMES[i] if i < len(_NAMES) else f"ext-{i:04d}" for i in range(count)]


def _catalog(rnd: random.Random, plugins: int, per_plugin: int) -> list[tuple[Plugin, list[_Line]]]:
    out = []
    for index, name in enumerate(_plugin_names(plugins)):
        lines = _releases(rnd, name, per_plugin, bounded=rnd.random() < 0.6)
        plugin = Plugin(
            plugin_id=f"com.powerx.plugins.{name}",
            name=name.replace("-", " ").title(),
            vendor_id=f"vnd_{index % 97:04d}",
            releases=tuple(line.release for line in lines),
        )
        out.append((plugin, lines))
    return out


def _event_ranges(rnd: random.Random, versions: Sequence[str]) -> tuple[OsvRange, ...]:
    """One interval (fixed, last_affected or open-ended), sometimes a second one (a regression)."""
    last = len(versions) - 1
    start = rnd.randint(0, max(last - 1, 0))
    end = min(last, start + rnd.randint(1, 8))
    introduced = "0" if start == 0 and rnd.random() < 0.5 else versions[start]
    roll = rnd.random()
    if roll < 0.08 or end == start:
        events: tuple[OsvEvent, ...] = (OsvEvent(introduced=introduced),)
    elif roll < 0.15:
        events = (OsvEvent(introduced=introduced), OsvEvent(last_affected=versions[end - 1]))
    else:
        events = (OsvEvent(introduced=introduced), OsvEvent(fixed=versions[end]))
    ranges = [OsvRange(type="SEMVER", events=events)]
    if rnd.random() < 0.3 and end + 2 <= last and len(events) == 2:
        again = rnd.randint(end + 1, last - 1)
        fixed = min(last, again + rnd.randint(1, 4))
        ranges.append(
            OsvRange(
                type="SEMVER", events=(OsvEvent(introduced=versions[again]), OsvEvent(fixed=versions[fixed]))
            )
        )
    return tuple(ranges)


def _severity(rnd: random.Random) -> tuple[tuple[OsvSeverity, ...], str]:
    vector, label = rnd.choice(CVSS_VECTORS)
    roll = rnd.random()
    if roll < 0.05:
        return (), label  # rated by label only
    kind = "CVSS_V4" if vector.startswith("CVSS:4") else "CVSS_V3"
    return (OsvSeverity(type=kind, score=vector),), label


def _published(plugin: Plugin, ranges: tuple[OsvRange, ...], rnd: random.Random) -> datetime:
    """When the advisory went public: with its first fix, else some weeks after the flaw shipped."""
    dates = {r.version: r.released_at for r in plugin.releases}
    events = [e for r in ranges for e in r.events]
    fixed = next((dates.get(e.fixed) for e in events if e.fixed), None)
    if fixed is not None:
        return fixed
    introduced = next((dates.get(e.introduced) for e in events if e.introduced), None)
    base = introduced or plugin.releases[rnd.randrange(len(plugin.releases))].released_at or _HISTORY_END
    return min(base + timedelta(days=rnd.randint(14, 120)), _HISTORY_END)


def _advisory(rnd: random.Random, serials: dict[int, int], plugin: Plugin) -> Advisory:
    versions = [r.version for r in plugin.releases]
    listed = rnd.random() < 0.05
    ranges = () if listed else _event_ranges(rnd, versions)
    published = _published(plugin, ranges, rnd)
    serials[published.year] = serials.get(published.year, 0) + 1
    ident = f"PXSA-{published.year}-{serials[published.year]:04d}"
    affected = OsvAffected(
        package=OsvPackage(name=plugin.plugin_id, ecosystem="PowerX"),
        ranges=ranges,
        versions=tuple(rnd.sample(versions, k=min(3, len(versions)))) if listed else (),
    )
    severity, label = _severity(rnd)
    exploited = rnd.random() < 0.02
    modified = max(published, min(published + timedelta(days=rnd.randint(0, 30)), _HISTORY_END))
    return Advisory(
        id=ident,
        published=published,
        modified=modified,
        withdrawn=modified if rnd.random() < 0.01 else None,  # a withdrawal is the last modification
        aliases=(f"CVE-{published.year}-{rnd.randint(10000, 59999)}",),
        summary=f"{rnd.choice(_WEAKNESSES)} in {plugin.name or plugin.plugin_id}",
        severity=severity,
        affected=(affected,),
        references=(OsvReference(type="ADVISORY", url=f"https://docs.powerx.example/security/{ident}"),),
        database_specific={"severity": label, "exploited": True} if exploited else {"severity": label},
        schema_version="1.6.0",
    )


def _popularity(count: int) -> list[float]:
    """Zipf-like weights: a few plugins are everywhere, most are niche."""
    return [1.0 / (i + 1) ** 0.8 for i in range(count)]


def _bundles(rnd: random.Random, weights: Sequence[float], size: int) -> list[list[int]]:
    """Weighted samples without replacement (Efraimidis-Spirakis); `base` (index 0) is in every bundle."""
    out = []
    for _ in range(_BUNDLES):
        keys = sorted(range(1, len(weights)), key=lambda i: rnd.random() ** (1.0 / weights[i]), reverse=True)
        out.append([0, *keys[: size - 1]] if size else [])
    return out


class _Fleet:
    """Installed-version choices per (plugin, core, channel), shared Installation objects."""

    def __init__(self, rnd: random.Random, catalog: list[tuple[Plugin, list[_Line]]]) -> None:
        self.rnd = rnd
        self.catalog = catalog
        self._candidates: dict[tuple[int, int, Channel], tuple[int, ...]] = {}
        self._installations: dict[tuple[int, int, Channel, int], Installation] = {}

    def candidates(self, plugin: int, core: int, channel: Channel) -> tuple[int, ...]:
        key = (plugin, core, channel)
        found = self._candidates.get(key)
        if found is None:
            accepted = ACCEPTED_CHANNELS[channel]
            lines = self.catalog[plugin][1]
            found = (
                tuple(
                    i
                    for i, line in enumerate(lines)
                    if core in line.admits and line.release.channel in accepted and not line.release.yanked
                )
                or tuple(i for i, line in enumerate(lines) if not line.release.yanked)
                or (len(lines) - 1,)
            )
            self._candidates[key] = found
        return found

    def installation(self, plugin: int, core: int, channel: Channel) -> Installation:
        options = self.candidates(plugin, core, channel)
        behind = min(int(self.rnd.expovariate(_RECENT_BIAS)), len(options) - 1)
        release = options[-1 - behind]
        roll = self.rnd.random()  # 0 plain, 1 auto_update, 2 pinned, 3 disabled
        flags = 0 if roll < 0.62 else 1 if roll < 0.9 else 2 if roll < 0.95 else 3
        key = (plugin, release, channel, flags)
        found = self._installations.get(key)
        if found is None:
            found = Installation(
                plugin_id=self.catalog[plugin][0].plugin_id,
                version=self.catalog[plugin][1][release].release.version,
                channel=channel,
                state=InstallState.DISABLED if flags == 3 else InstallState.ENABLED,
                auto_update=flags == 1,
                pinned=flags == 2,
            )
            self._installations[key] = found
        return found


def _tenant(
    rnd: random.Random, fleet: _Fleet, bundles: list[list[int]], index: int, plugins: int
) -> TenantManifest:
    chosen = list(rnd.choice(bundles))
    present = set(chosen)
    for _ in range(_SWAPS):
        if len(chosen) < 2 or len(present) >= plugins:
            break
        slot, replacement = rnd.randrange(1, len(chosen)), rnd.randrange(1, plugins)
        if replacement not in present:
            present.discard(chosen[slot])
            present.add(replacement)
            chosen[slot] = replacement
    core = rnd.choices(range(len(CORE_VERSIONS)), weights=[w for _, w in CORE_VERSIONS])[0]
    roll = rnd.random()
    channel = Channel.LTS if roll < 0.1 else Channel.BETA if roll < 0.14 else Channel.STABLE
    tags = [rnd.choice(_INDUSTRIES), rnd.choice(_REGIONS)] + (["pilot"] if rnd.random() < 0.05 else [])
    return TenantManifest(
        tenant_uuid=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        tenant_key=f"syn-{index:06d}",
        name=f"Synthetic Tenant {index:06d}",
        plan=rnd.choice(_PLANS),
        tags=tuple(tags),
        core_version=CORE_VERSIONS[core][0],
        scanned_at=rnd.choice(_SCANNED_AT),
        plugins=tuple(fleet.installation(p, core, channel) for p in chosen),
    )


def _check(tenants: int, installations_per_tenant: int, plugins: int, releases: int, advisories: int) -> None:
    if min(tenants, installations_per_tenant, advisories) < 0 or min(plugins, releases) < 1:
        raise ValueError("counts must be non-negative, with at least one plugin and one release each")
    if installations_per_tenant > plugins:
        raise ValueError(
            f"installations_per_tenant ({installations_per_tenant}) cannot exceed plugins ({plugins}):"
            " a tenant installs each plugin at most once"
        )


def generate(
    out_dir: Path,
    *,
    tenants: int = 20_000,
    installations_per_tenant: int = 50,
    plugins: int = 500,
    releases_per_plugin: int = 40,
    advisories: int = 1_000,
    seed: int = 0,
) -> SyntheticSet:
    """Write `catalog.json` and `manifests.jsonl` under `out_dir`; same arguments, same bytes."""
    _check(tenants, installations_per_tenant, plugins, releases_per_plugin, advisories)
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data, nothing secret
    catalog = _catalog(rnd, plugins, releases_per_plugin)
    popularity = _popularity(plugins)
    cumulative = list(accumulate(popularity))
    serials: dict[int, int] = {}
    records = []
    for _ in range(advisories):
        index = rnd.choices(range(plugins), cum_weights=cumulative)[0]
        records.append(_advisory(rnd, serials, catalog[index][0]))
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog_path, manifests_path = out_dir / CATALOG_FILE, out_dir / MANIFESTS_FILE
    document = {"schema": CATALOG_SCHEMA, "plugins": [p for p, _ in catalog], "advisories": records}
    catalog_path.write_bytes(msgspec.json.encode(document))
    fleet = _Fleet(rnd, catalog)
    bundles = _bundles(rnd, popularity, installations_per_tenant)
    encoder = msgspec.json.Encoder()
    with manifests_path.open("wb") as stream:
        for index in range(tenants):
            stream.write(encoder.encode(_tenant(rnd, fleet, bundles, index, plugins)) + b"\n")
    return SyntheticSet(
        catalog=catalog_path,
        manifests=manifests_path,
        tenants=tenants,
        installations=tenants * installations_per_tenant,
        plugins=plugins,
        releases=plugins * releases_per_plugin,
        advisories=advisories,
    )


__all__ = ["CATALOG_FILE", "CVSS_VECTORS", "MANIFESTS_FILE", "SyntheticSet", "generate"]
