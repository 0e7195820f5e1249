"""Load the catalog (plugins, releases, OSV advisories) and the compatibility matrix, record by record.

A bad release or advisory is reported and skipped; everything else is kept (DESIGN §7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from powerx_governance.catalog.osv_intake import read_advisory, repair_timestamp
from powerx_governance.catalog_records import (
    Advisory,
    Catalog,
    CompatEntry,
    Plugin,
    Release,
    UnreadableRelease,
)
from powerx_governance.errors import InputError, InputProblem
from powerx_governance.records import convert_record
from powerx_governance.safe_yaml import load_document
from powerx_governance.versioning.ranges import ConstraintError, parse_constraint
from powerx_governance.versioning.semver import InvalidVersionError, parse_version


@dataclass
class Loaded:
    """Valid records, a problem for each part that was skipped or degraded, a warning for each repair.

    `advisory_source_problems`: the advisory source itself (a directory, a file of it, the
    catalog service's list) could not be read, so nothing can be called clean (DESIGN §7).
    """

    plugins: list[Plugin] = field(default_factory=list)
    advisories: list[Advisory] = field(default_factory=list)
    matrix: list[CompatEntry] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    warnings: list[InputProblem] = field(default_factory=list)
    advisory_source_problems: list[str] = field(default_factory=list)

    def catalog(self) -> Catalog:
        return Catalog(
            plugins=tuple(self.plugins),
            advisories=tuple(self.advisories),
            matrix=tuple(self.matrix),
            advisory_source_problems=tuple(self.advisory_source_problems),
        )

    def advisory_source_failed(self, problem: InputProblem) -> None:
        self.problems.append(problem)
        self.advisory_source_problems.append(str(problem))


def release_problem(release: Release) -> tuple[str, str] | None:
    """(field, error) for the first semantically invalid field of a release."""
    for name, text in (
        ("version", release.version),
        ("min_core", release.min_core),
        ("max_core", release.max_core),
    ):
        if text is None:
            continue
        try:
            parse_version(text)
        except InvalidVersionError as exc:
            return name, str(exc)
    for i, dep in enumerate(release.dependencies):
        try:
            parse_constraint(dep.version)
        except ConstraintError as exc:
            return f"dependencies[{i}].version", str(exc)
    return None


def _repaired_release(item: Any, source: str, record: str, out: Loaded) -> Any:
    """`released_at` written as a date only is midnight UTC (DESIGN §7), with a warning."""
    text = item.get("released_at") if isinstance(item, dict) else None
    repaired = repair_timestamp(text) if isinstance(text, str) else None
    if repaired is None:
        return item
    out.warnings.append(
        InputProblem(source, record, "released_at", f"{text!r} has no time or zone; read as {repaired}")
    )
    return {**item, "released_at": repaired}


def _load_releases(
    raw: list[Any], plugin_id: str, source: str, out: Loaded
) -> tuple[tuple[Release, ...], tuple[UnreadableRelease, ...]]:
    """The plugin's valid releases, and the versions of those that had to be skipped."""
    releases: dict[tuple[Any, ...], Release] = {}
    skipped: list[UnreadableRelease] = []
    for j, item in enumerate(raw):
        label = item.get("version") if isinstance(item, dict) else None
        record = f"{plugin_id} releases[{j}]" + (f" {label}" if label else "")
        release = convert_record(
            _repaired_release(item, source, record, out), Release, source=source, record=record
        )
        if not isinstance(release, InputProblem) and (bad := release_problem(release)) is not None:
            release = InputProblem(source, record, bad[0], bad[1])
        if isinstance(release, InputProblem):
            out.problems.append(release)
            skipped.append(UnreadableRelease(version=str(label or ""), problem=str(release)))
            continue
        key = parse_version(release.version).key
        if key in releases:
            out.problems.append(
                InputProblem(source, record, "version", "duplicate release; the first one is kept")
            )
            continue
        releases[key] = release
    return tuple(releases.values()), tuple(skipped)


def load_plugins(raw: Any, source: str, out: Loaded) -> None:
    if not isinstance(raw, list):
        out.problems.append(InputProblem(source, None, "plugins", "expected a list of plugins"))
        return
    seen: set[str] = set()
    for i, item in enumerate(raw):
        pid = item.get("plugin_id") if isinstance(item, dict) else None
        record = f"plugins[{i}]" + (f" {pid}" if pid else "")
        shell = {k: v for k, v in item.items() if k != "releases"} if isinstance(item, dict) else item
        plugin = convert_record(shell, Plugin, source=source, record=record)
        if isinstance(plugin, InputProblem):
            out.problems.append(plugin)
            continue
        if plugin.plugin_id in seen:
            out.problems.append(
                InputProblem(source, record, "plugin_id", "duplicate plugin; the first one is kept")
            )
            continue
        seen.add(plugin.plugin_id)
        releases_raw = item.get("releases") or []
        if not isinstance(releases_raw, list):
            out.problems.append(InputProblem(source, record, "releases", "expected a list of releases"))
            releases_raw = []
        releases, skipped = _load_releases(releases_raw, plugin.plugin_id, source, out)
        out.plugins.append(msgspec.structs.replace(plugin, releases=releases, unreadable_releases=skipped))


def add_advisory(raw: Any, source: str, out: Loaded, record: str) -> Advisory | None:
    """Read one OSV record, repaired and salvaged (DESIGN §7); None only when it is not a record at all."""
    intake = read_advisory(raw, source=source, record=record)
    out.warnings += intake.warnings
    out.problems += intake.problems
    if intake.advisory is None:
        out.advisory_source_problems += [str(p) for p in intake.problems]
        return None
    out.advisories.append(intake.advisory)
    return intake.advisory


def _load_advisory_dir(directory: Path, out: Loaded) -> None:
    if not directory.is_dir():
        out.advisory_source_failed(InputProblem(str(directory), None, "advisories", "not a directory"))
        return
    for path in sorted(directory.rglob("*.json")):
        try:
            raw = load_document(path)
        except InputError as exc:
            out.advisory_source_failed(exc.problem)
            continue
        for k, item in enumerate(raw if isinstance(raw, list) else [raw]):
            add_advisory(item, str(path), out, f"advisory {k}")


def load_advisories(raw: Any, base: Path, source: str, out: Loaded) -> None:
    """Advisories inline (a list of OSV records) or a directory of OSV JSON files (a path)."""
    if isinstance(raw, str):
        _load_advisory_dir((base / raw).resolve(), out)
    elif isinstance(raw, list):
        for k, item in enumerate(raw):
            add_advisory(item, source, out, f"advisories[{k}]")
    elif raw is not None:
        out.advisory_source_failed(
            InputProblem(source, None, "advisories", "expected a list of OSV records or a directory")
        )


def load_catalog(path: Path, out: Loaded) -> None:
    """Read a catalog file (`powerx.catalog/v1`) into `out`; InputError if it is unusable as a whole."""
    raw = load_document(path)
    if not isinstance(raw, dict):
        raise InputError(InputProblem(str(path), None, None, "expected a mapping with `plugins`"))
    schema = raw.get("schema", "powerx.catalog/v1")
    if schema != "powerx.catalog/v1":
        raise InputError(InputProblem(str(path), None, "schema", f"unsupported schema {schema!r}"))
    load_plugins(raw.get("plugins", []), str(path), out)
    load_advisories(raw.get("advisories"), path.parent, str(path), out)
    load_matrix_entries(raw.get("matrix"), str(path), out)


def load_matrix_entries(raw: Any, source: str, out: Loaded) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        out.problems.append(InputProblem(source, None, "matrix", "expected a list of entries"))
        return
    for i, item in enumerate(raw):
        entry = convert_record(item, CompatEntry, source=source, record=f"matrix[{i}]")
        if isinstance(entry, InputProblem):
            out.problems.append(entry)
            continue
        bad = next((f for f in ("min_version", "max_version") if not _valid_version(getattr(entry, f))), None)
        if bad:
            out.problems.append(
                InputProblem(source, f"matrix[{i}]", bad, f"{getattr(entry, bad)!r} is not SemVer")
            )
            continue
        out.matrix.append(entry)


def _valid_version(text: str | None) -> bool:
    if text is None:
        return True
    try:
        parse_version(text)
    except InvalidVersionError:
        return False
    return True


def load_matrix(path: Path, out: Loaded) -> None:
    """`config/version/compat_matrix.yaml`: `matrix: [{host, plugin, min_version, max_version, action}]`."""
    raw = load_document(path)
    entries = raw.get("matrix") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or entries is None:
        raise InputError(InputProblem(str(path), None, "matrix", "expected a mapping with a `matrix` list"))
    load_matrix_entries(entries, str(path), out)
