"""Tenant manifests given as CycloneDX SBOMs whose components are PowerX plugins.

Only the small subset of CycloneDX JSON we need is read (bomFormat, metadata.properties,
components with name/version/purl/properties), so no SBOM library is pulled in for it.
Tenant facts come from `metadata.properties` named `powerx:<manifest field>`; plugin facts
from each component's `powerx:<field>` properties. A component is a plugin when its purl is
`pkg:powerx/...` or, without a purl, when it has a name and a version.
"""

from __future__ import annotations

from typing import Any, Final

from powerx_governance.errors import InputProblem
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.records import convert_record

_PREFIX: Final = "powerx:"
_PURL: Final = "pkg:powerx/"
_BOOLEAN: Final = frozenset({"auto_update", "pinned"})


def is_cyclonedx(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("bomFormat") == "CycloneDX"


def _properties(holder: Any) -> dict[str, str]:
    props = holder.get("properties", []) if isinstance(holder, dict) else []
    return {
        p["name"][len(_PREFIX) :]: p.get("value", "")
        for p in props
        if isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"].startswith(_PREFIX)
    }


def _plugin(component: dict[str, Any]) -> dict[str, Any] | None:
    purl = component.get("purl")
    name: Any = component.get("name")
    version: Any = component.get("version")
    if isinstance(purl, str):
        if not purl.startswith(_PURL):
            return None
        name, _, purl_version = purl[len(_PURL) :].split("?", 1)[0].partition("@")
        version = version or purl_version
    entry: dict[str, Any] = {"plugin_id": name, "version": version}
    for key, value in _properties(component).items():
        entry[key] = value.lower() == "true" if key in _BOOLEAN else value
    return entry


def manifest_from_sbom(raw: dict[str, Any], source: str) -> TenantManifest | InputProblem:
    """Map an SBOM to a manifest; the error names the property or component at fault."""
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    facts: dict[str, Any] = dict(_properties(metadata))
    if "tags" in facts:
        facts["tags"] = [t.strip() for t in str(facts["tags"]).split(",") if t.strip()]
    components = raw.get("components") or []
    facts["plugins"] = [p for c in components if isinstance(c, dict) and (p := _plugin(c)) is not None]
    tenant = facts.get("tenant_uuid") or source
    problem_or_manifest = convert_record(
        facts, TenantManifest, source=source, record=f"SBOM of tenant {tenant}", tenant_uuid=str(tenant)
    )
    if isinstance(problem_or_manifest, InputProblem) and problem_or_manifest.field:
        field = problem_or_manifest.field
        hint = (
            f"metadata.properties powerx:{field}"
            if not field.startswith("plugins")
            else f"components ({field})"
        )
        return InputProblem(source, problem_or_manifest.record, hint, problem_or_manifest.error, str(tenant))
    return problem_or_manifest
