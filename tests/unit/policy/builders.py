"""Small builders for policy tests: plain dicts in, validated records out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from powerx_governance.catalog_records import Advisory, Catalog, CompatEntry, Plugin
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.index import CatalogIndex
from powerx_governance.policy.loader import rules_from_data
from powerx_governance.policy.rules import DEFAULT_RULES, GovernanceRules
from powerx_governance.policy.verdict import Verdict

NOW = datetime(2026, 11, 30, tzinfo=UTC)
OLD = "2025-01-01T00:00:00Z"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"  # 7.5
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"  # 5.3
LOW = "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:L/I:N/A:N"  # 2.6
PLUGIN = "com.powerx.plugins.test"


def release(version: str, **extra: Any) -> dict[str, Any]:
    return {"version": version, "channel": "stable", "released_at": OLD, **extra}


def advisory(
    ident: str, events: list[dict[str, str]] | None = None, *, vector: str | None = CRITICAL, **extra: Any
) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": "PowerX", "name": extra.pop("plugin", PLUGIN)}}
    if events is not None:
        affected["ranges"] = [{"type": "SEMVER", "events": events}]
    if "versions" in extra:
        affected["versions"] = extra.pop("versions")
    if "ranges" in extra:
        affected["ranges"] = [{"type": "SEMVER", "events": e} for e in extra.pop("ranges")]
    record: dict[str, Any] = {"id": ident, "published": OLD, "affected": [affected], **extra}
    if vector is not None:
        record["severity"] = [
            {"type": "CVSS_V4" if vector.startswith("CVSS:4") else "CVSS_V3", "score": vector}
        ]
    return record


def build_engine(
    releases: list[dict[str, Any]],
    advisories: Sequence[dict[str, Any]] = (),
    *,
    matrix: Sequence[dict[str, Any]] = (),
    rules: dict[str, Any] | GovernanceRules = DEFAULT_RULES,
    plugin: dict[str, Any] | None = None,
    now: datetime = NOW,
    plain: bool = False,
) -> PolicyEngine:
    catalog = Catalog(
        plugins=(msgspec.convert({"plugin_id": PLUGIN, **(plugin or {}), "releases": releases}, Plugin),),
        advisories=tuple(msgspec.convert(a, Advisory) for a in advisories),
        matrix=tuple(msgspec.convert(m, CompatEntry) for m in matrix),
    )
    parsed = rules if isinstance(rules, GovernanceRules) else rules_from_data(rules, "test rules")
    return PolicyEngine(CatalogIndex.build(catalog), parsed, now, plain=plain)


def tenant(
    version: str, *, core: str = "1.20.0", channel: str = "stable", tags: tuple[str, ...] = (), **extra: Any
) -> TenantManifest:
    return msgspec.convert(
        {
            "tenant_uuid": extra.pop("tenant_uuid", "t-1"),
            "core_version": core,
            "tags": list(tags),
            "plugins": [{"plugin_id": PLUGIN, "version": version, "channel": channel}],
            **extra,
        },
        TenantManifest,
    )


def verdict_for(engine: PolicyEngine, manifest: TenantManifest) -> Verdict:
    found = engine.evaluate(engine.context(manifest), manifest.plugins[0])
    assert found is not None
    return found


def evaluate(
    releases: list[dict[str, Any]], advisories: list[dict[str, Any]], installed: str, **options: Any
) -> Verdict:
    tenant_options = {k: options.pop(k) for k in ("core", "channel", "tags", "plan") if k in options}
    return verdict_for(build_engine(releases, advisories, **options), tenant(installed, **tenant_options))
