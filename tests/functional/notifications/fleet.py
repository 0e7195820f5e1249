"""Small hand-made fleets: N tenants running M plugins at 1.0.0, with 1.0.1 available, optional advisories."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8


@dataclass(frozen=True)
class Fleet:
    catalog: Path
    manifests: Path
    tenants: list[dict[str, Any]]
    plugin_ids: list[str]
    plugin_names: list[str]

    def env(self) -> dict[str, str]:
        """Service settings reading this fleet instead of the example one."""
        return {"POWERX_TENANT_SOURCE": str(self.manifests), "POWERX_CATALOG_SOURCE": str(self.catalog)}

    def write_catalog(
        self,
        *,
        advisories: Sequence[dict[str, Any]] = (),
        extra_release: bool = False,
        notes_url: str | None = None,
    ) -> None:
        """Rewrite the catalog (the next full scan reads it again)."""
        pairs = zip(self.plugin_ids, self.plugin_names, strict=True)
        plugins = [_plugin(pid, name, extra_release, notes_url) for pid, name in pairs]
        document = {"schema": "powerx.catalog/v1", "plugins": plugins, "advisories": list(advisories)}
        self.catalog.write_text(
            yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )


def _plugin(plugin_id: str, name: str, extra_release: bool, notes_url: str | None) -> dict[str, Any]:
    releases = [
        _release(plugin_id, "1.0.0", "2025-01-10T00:00:00Z", notes_url),
        _release(plugin_id, "1.0.1", "2026-01-10T00:00:00Z", notes_url),
    ]
    if extra_release:
        releases.append(_release(plugin_id, "1.0.2", "2026-02-10T00:00:00Z", notes_url))
    return {"plugin_id": plugin_id, "name": name, "vendor_id": "vnd_test", "releases": releases}


def _release(plugin_id: str, version: str, released_at: str, notes_url: str | None) -> dict[str, Any]:
    return {
        "version": version,
        "channel": "stable",
        "released_at": released_at,
        "changelog": f"### Fixed\n- {plugin_id} {version} fixes.",
        "release_notes_url": notes_url or f"https://docs.powerx.test/{plugin_id}/{version}",
    }


def critical_advisory(
    advisory_id: str, plugin_id: str, summary: str = "Remote code execution"
) -> dict[str, Any]:
    """An OSV record affecting every version below 1.0.1 of `plugin_id`, CVSS 9.8."""
    return {
        "id": advisory_id,
        "aliases": [f"CVE-2026-{abs(hash(advisory_id)) % 90000 + 10000}"],
        "summary": summary,
        "published": "2026-06-01T00:00:00Z",
        "modified": "2026-06-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": CRITICAL_VECTOR}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": plugin_id},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}],
            }
        ],
    }


def write_fleet(
    directory: Path,
    *,
    tenants: int,
    plugins: int,
    plugin_names: Sequence[str] | None = None,
    seed: str = "fleet",
) -> Fleet:
    """`tenants` tenants, each running every one of `plugins` plugins at 1.0.0 (one finding each)."""
    directory.mkdir(parents=True, exist_ok=True)
    plugin_ids = [f"com.powerx.test.plugin{i:03d}" for i in range(plugins)]
    names = list(plugin_names) if plugin_names else [f"Test Plugin {i:03d}" for i in range(plugins)]
    rows = []
    for i in range(tenants):
        rows.append(
            {
                "schema": "powerx.manifest/v1",
                "tenant_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{i}")),
                "tenant_key": f"tenant-{i:03d}",
                "name": f"Tenant {i:03d}",
                "plan": "pro",
                "tags": [],
                "core_version": "1.24.0",
                "plugins": [
                    {"plugin_id": pid, "version": "1.0.0", "channel": "stable", "state": "enabled"}
                    for pid in plugin_ids
                ],
            }
        )
    manifests = directory / "manifests.jsonl"
    manifests.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    fleet = Fleet(directory / "catalog.yaml", manifests, rows, plugin_ids, names)
    fleet.write_catalog()
    return fleet
