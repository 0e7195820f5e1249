"""Manifest files: JSON records decoded straight into manifests read exactly as the general path reads
them, and a manifest directory is searched in the order (and with the reach) of `sorted(rglob)`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerx_governance.inventory.loader import (
    MANIFEST_SUFFIXES,
    ManifestPart,
    load_manifests,
    manifest_files,
    manifest_from_data,
)

TENANT = "7d0e5a52-3c1f-4f7e-9a51-0c8f1d2b9e11"
CRM = {"plugin_id": "com.powerx.plugins.crm", "version": "2.3.0"}


def _manifest(**fields: Any) -> dict[str, Any]:
    return {"schema": "powerx.manifest/v1", "tenant_uuid": TENANT, "core_version": "1.24.0", **fields}


CASES = {
    "plain": _manifest(plugins=[CRM]),
    "every field": _manifest(
        tenant_key="acme",
        name="Acme Retail",
        plan="pro",
        tags=["finance", "apac"],
        host="px.host.custom",
        scanned_at="2026-11-29T08:00:00Z",
        extra={"ignored": True},
        plugins=[{**CRM, "channel": "lts", "state": "disabled", "auto_update": True, "pinned": True}],
    ),
    "entries left out": _manifest(plugins=[CRM, {**CRM, "version": "2.4.0"}, {**CRM, "version": "2.x"}]),
    "bad field": _manifest(core_version=5, plugins=[CRM]),
    "bad nested field": _manifest(plugins=[{**CRM, "version": 3}]),
    "naive time": _manifest(scanned_at="2026-11-29T08:00:00", plugins=[CRM]),
    "bad schema": _manifest(schema="powerx.manifest/v9"),
    "escaped key": _manifest(plugins=[CRM]),
    "sbom": {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "tenant_uuid": TENANT,
        "core_version": "1.24.0",
        "metadata": {
            "properties": [
                {"name": "powerx:tenant_uuid", "value": TENANT},
                {"name": "powerx:core_version", "value": "1.25.0"},
            ]
        },
        "components": [
            {"name": CRM["plugin_id"], "version": "2.3.0", "purl": "pkg:powerx/com.powerx.plugins.crm"}
        ],
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_json_file_reads_as_its_parsed_document(tmp_path: Path, case: str) -> None:
    text = json.dumps(CASES[case], ensure_ascii=case == "escaped key")
    if case == "escaped key":
        text = text.replace('"tenant_uuid"', '"tenant\\u005fuuid"')
    path = tmp_path / "tenant.json"
    path.write_text(text, encoding="utf-8")
    [read] = load_manifests(path)
    assert read == manifest_from_data(json.loads(text), str(path))


def test_an_sbom_in_a_json_file_is_read_as_an_sbom(tmp_path: Path) -> None:
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(CASES["sbom"]), encoding="utf-8")
    [read] = load_manifests(path)
    assert read.manifest is not None
    assert read.manifest.core_version == "1.25.0"  # from the SBOM's properties, not its top level


def test_the_directory_is_searched_as_sorted_rglob_does(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "linked.json").write_text("{}")
    root = tmp_path / "fleet"
    for name in (
        "a/b/x.json",
        "a-b/y.yaml",
        "a.json",
        ".hidden/z.yml",
        "d.jsonl",
        "e.ndjson",
        "c.JSON",
        ".json",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    (root / "a" / "b.").mkdir()
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    (root / "linked-file.json").symlink_to(outside / "linked.json")
    (root / "dangling.json").symlink_to(tmp_path / "missing.json")
    expected = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    assert manifest_files(root) == [str(p) for p in expected]
    assert [p.relative_to(root).as_posix() for p in expected] == [
        ".hidden/z.yml",
        "a/b/x.json",
        "a-b/y.yaml",
        "a.json",
        "d.jsonl",
        "e.ndjson",
        "linked-file.json",
    ]


@pytest.mark.parametrize("where", [".", "fleet", "fleet/", "./fleet"])
def test_files_are_named_as_their_paths_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A report names a manifest file by `str()` of its path: relative to `.` without a `./`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fleet" / "eu").mkdir(parents=True)
    for name in ("fleet/a.json", "fleet/eu/b.yaml"):
        (tmp_path / name).write_text("{}")
    root = Path(where)
    expected = sorted(p for p in root.rglob("*") if p.is_file())
    assert manifest_files(root) == [str(p) for p in expected]
    assert [item.source for item in load_manifests(root)] == [str(p) for p in expected]


def test_a_manifest_file_that_cannot_be_read_is_a_problem_of_its_tenant(tmp_path: Path) -> None:
    """The one-read path tells what `read_bytes` tells: an empty file, and one gone by the time it is
    read (listed before), each become that file's problem; the files around them read as ever."""
    (tmp_path / "a-empty.json").write_bytes(b"")
    (tmp_path / "b-good.json").write_text(json.dumps(CASES["plain"]))
    listed = ManifestPart((tmp_path / "a-empty.json", tmp_path / "b-good.json", tmp_path / "c-gone.json"))
    empty, good, gone = listed.load()
    assert good.manifest is not None
    assert good.manifest.tenant_uuid == TENANT
    assert empty.manifest is None
    assert empty.problem is not None
    assert empty.problem.source == str(tmp_path / "a-empty.json")
    assert gone.manifest is None
    assert gone.problem is not None
    assert gone.problem.error == "cannot read: No such file or directory"
    assert gone.problem.tenant_uuid == "c-gone"
