"""Per-entry manifest problems: the entry is left out and named, the rest of the manifest counts."""

from __future__ import annotations

from powerx_governance.inventory.loader import manifest_from_data

TENANT = "7d0e5a52-3c1f-4f7e-9a51-0c8f1d2b9e11"


def _manifest(*plugins: dict[str, str], core: str = "1.24.0") -> dict[str, object]:
    return {
        "schema": "powerx.manifest/v1",
        "tenant_uuid": TENANT,
        "core_version": core,
        "plugins": list(plugins),
    }


def test_bad_entries_are_left_out_one_by_one() -> None:
    result = manifest_from_data(
        _manifest(
            {"plugin_id": "com.powerx.plugins.crm", "version": "2.3.0"},
            {"plugin_id": "com.powerx.plugins.base", "version": "1.x"},
            {"plugin_id": "com.powerx.plugins.crm", "version": "2.4.0"},
            {"plugin_id": "com.powerx.plugins.hr", "version": "4.4.0"},
        ),
        "tenants.yaml",
    )
    assert result.problem is None
    assert result.manifest is not None
    assert [(p.plugin_id, p.version) for p in result.manifest.plugins] == [
        ("com.powerx.plugins.crm", "2.3.0"),
        ("com.powerx.plugins.hr", "4.4.0"),
    ]
    assert [(p.record, p.field, p.tenant_uuid) for p in result.entry_problems] == [
        (f"tenant {TENANT}", "plugins[1].version", TENANT),
        (f"tenant {TENANT}", "plugins[2].plugin_id", TENANT),
    ]
    assert "'1.x' is not a SemVer 2.0.0 version" in result.entry_problems[0].error
    assert result.entry_problems[1].error == "'com.powerx.plugins.crm' is listed again (first at plugins[0])"


def test_a_bad_core_version_still_fails_the_whole_manifest() -> None:
    result = manifest_from_data(
        _manifest({"plugin_id": "com.powerx.plugins.crm", "version": "2.3.0"}, core="1.24"), "tenants.yaml"
    )
    assert result.manifest is None
    assert result.problem is not None
    assert result.problem.field == "core_version"
    assert result.entry_problems == ()
