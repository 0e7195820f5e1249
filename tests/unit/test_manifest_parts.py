"""Manifests cut into parts for a split scan: read in order, the parts read exactly what
`load_manifests` reads (sources, line numbers and problems included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powerx_governance.inventory.loader import ManifestResult, load_manifests, split_manifests
from powerx_governance.settings import load_settings


def _line(n: int) -> bytes:
    return json.dumps(
        {
            "schema": "powerx.manifest/v1",
            "tenant_uuid": f"tenant-{n:04d}",
            "core_version": "1.24.0",
            "plugins": [{"plugin_id": "com.powerx.plugins.crm", "version": "2.3.0"}],
        }
    ).encode()


def _jsonl(path: Path, count: int) -> Path:
    lines = [_line(n) for n in range(count)]
    lines[5] = b""  # blank lines are skipped but counted
    lines[17] = b"{not json"
    lines[count - 3] = b'{"schema": "powerx.manifest/v1", "tenant_uuid": "x", "core_version": 5}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _read(results: list[ManifestResult]) -> list[tuple[str, object, object]]:
    return [(r.source, r.manifest, r.problem) for r in results]


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 64])
def test_json_lines_parts_read_what_the_whole_file_reads(tmp_path: Path, parts: int) -> None:
    path = _jsonl(tmp_path / "fleet.jsonl", 40)
    cut = split_manifests(path, parts)
    assert 1 <= len(cut) <= parts
    assert _read([r for part in cut for r in part.load()]) == _read(list(load_manifests(path)))


def test_a_json_lines_file_without_a_final_newline_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "fleet.jsonl"
    path.write_bytes(b"\n".join(_line(n) for n in range(9)))
    cut = split_manifests(path, 4)
    assert _read([r for part in cut for r in part.load()]) == _read(list(load_manifests(path)))


@pytest.mark.parametrize("parts", [1, 2, 3, 50])
def test_directory_parts_are_its_files_in_order(tmp_path: Path, parts: int) -> None:
    for n in range(11):
        (tmp_path / ("nested" if n % 3 else "") / f"{n:02d}.json").parent.mkdir(exist_ok=True)
        (tmp_path / ("nested" if n % 3 else "") / f"{n:02d}.json").write_bytes(_line(n))
    (tmp_path / "broken.yaml").write_text("plugins: [", encoding="utf-8")
    cut = split_manifests(tmp_path, parts)
    assert len(cut) == min(parts, 12)
    assert _read([r for part in cut for r in part.load()]) == _read(list(load_manifests(tmp_path)))


def test_an_empty_directory_is_one_empty_part(tmp_path: Path) -> None:
    assert [list(part.load()) for part in split_manifests(tmp_path, 4)] == [[]]


def test_a_single_document_is_one_part(tmp_path: Path) -> None:
    path = tmp_path / "tenant.json"
    path.write_bytes(_line(1))
    assert [p.files for p in split_manifests(path, 4)] == [(path,)]


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("1", 1), (" 3 ", 3)])
def test_scan_workers_setting(value: str | None, expected: int | None) -> None:
    env = {} if value is None else {"POWERX_SCAN_WORKERS": value}
    assert load_settings(env).scan_workers == expected


@pytest.mark.parametrize("value", ["0", "-1", "two", "65"])
def test_scan_workers_setting_refuses_nonsense(value: str) -> None:
    with pytest.raises(ValueError, match="POWERX_SCAN_WORKERS"):
        load_settings({"POWERX_SCAN_WORKERS": value})
