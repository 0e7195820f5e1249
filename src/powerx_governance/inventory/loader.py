"""Load tenant manifests: a directory of YAML/JSON files, JSON lines, or CycloneDX SBOMs.

A manifest that fails validation makes its tenant "not scanned" (it counts against coverage
and is listed in the report's errors); the other tenants are unaffected (DESIGN §7).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec

from powerx_governance.errors import InputError, InputProblem
from powerx_governance.inventory.cyclonedx import is_cyclonedx, manifest_from_sbom
from powerx_governance.inventory.models import MANIFEST_SCHEMA, TenantManifest
from powerx_governance.records import convert_record, split_validation_error
from powerx_governance.safe_yaml import MAX_DOCUMENT_BYTES, parse_document, read_bytes
from powerx_governance.versioning.semver import InvalidVersionError, parse_version

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json", ".jsonl", ".ndjson")
_DECODER: Final = msgspec.json.Decoder(TenantManifest)
# Installed version strings known to parse: a fleet repeats a few thousand of them a million times.
_VALID_VERSIONS: set[str] = set()
_MAX_VALID_VERSIONS: Final = 200_000
_COUNT_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ManifestResult:
    """One tenant's manifest, or why it could not be used.

    `entry_problems`: plugin entries left out of a usable manifest (each named by field and
    value). `stale_since`: the manifest is the tenant's last good one, read at that time,
    standing in for one that could not be fetched or validated (`problem` says why).
    """

    source: str
    manifest: TenantManifest | None
    problem: InputProblem | None
    entry_problems: tuple[InputProblem, ...] = ()
    stale_since: datetime | None = None


def check_manifest(manifest: TenantManifest, source: str) -> InputProblem | None:
    """Checks of the manifest as a whole that msgspec cannot make: schema, tenant, core version."""
    record, tenant = f"tenant {manifest.tenant_uuid}", manifest.tenant_uuid
    if manifest.schema != MANIFEST_SCHEMA:
        return InputProblem(source, record, "schema", f"unsupported schema {manifest.schema!r}", tenant)
    if not manifest.tenant_uuid.strip():
        return InputProblem(source, record, "tenant_uuid", "must not be empty", tenant)
    try:
        parse_version(manifest.core_version)
    except InvalidVersionError as exc:
        return InputProblem(source, record, "core_version", str(exc), tenant)
    return None


def check_entries(manifest: TenantManifest, source: str) -> tuple[TenantManifest, tuple[InputProblem, ...]]:
    """The manifest without plugin entries that cannot count (an impossible version, a plugin
    listed again), and one problem per entry left out; the first listing of a plugin counts."""
    plugins = manifest.plugins
    if len({p.plugin_id for p in plugins}) == len(plugins) and _VALID_VERSIONS.issuperset(
        p.version for p in plugins
    ):
        return manifest, ()  # the usual case, in a few set operations
    record, tenant = f"tenant {manifest.tenant_uuid}", manifest.tenant_uuid
    problems: list[InputProblem] = []
    first: dict[str, int] = {}
    for i, plugin in enumerate(manifest.plugins):
        try:
            parse_version(plugin.version)
        except InvalidVersionError as exc:
            problems.append(InputProblem(source, record, f"plugins[{i}].version", str(exc), tenant))
            continue
        if len(_VALID_VERSIONS) < _MAX_VALID_VERSIONS:
            _VALID_VERSIONS.add(plugin.version)
        if plugin.plugin_id in first:
            error = f"{plugin.plugin_id!r} is listed again (first at plugins[{first[plugin.plugin_id]}])"
            problems.append(InputProblem(source, record, f"plugins[{i}].plugin_id", error, tenant))
            continue
        first[plugin.plugin_id] = i
    if not problems:
        return manifest, ()
    kept = tuple(manifest.plugins[i] for i in sorted(first.values()))
    return msgspec.structs.replace(manifest, plugins=kept), tuple(problems)


def _result(candidate: TenantManifest | InputProblem, source: str) -> ManifestResult:
    if isinstance(candidate, InputProblem):
        return ManifestResult(source, None, candidate)
    problem = check_manifest(candidate, source)
    if problem is not None:
        return ManifestResult(source, None, problem)
    manifest, entry_problems = check_entries(candidate, source)
    return ManifestResult(source, manifest, None, entry_problems)


def _tenant_hint(raw: Any, fallback: str) -> str:
    uuid = raw.get("tenant_uuid") if isinstance(raw, dict) else None
    return uuid if isinstance(uuid, str) and uuid else fallback


def manifest_from_data(raw: Any, source: str) -> ManifestResult:
    """Validate one manifest given as plain data (a file's or a service's answer)."""
    tenant = _tenant_hint(raw, source)
    if is_cyclonedx(raw):
        return _result(manifest_from_sbom(raw, source), source)
    return _result(
        convert_record(raw, TenantManifest, source=source, record=f"tenant {tenant}", tenant_uuid=tenant),
        source,
    )


def _from_jsonl(path: Path, start: int = 0, end: int | None = None) -> Iterator[ManifestResult]:
    """The manifests of a JSON-lines file, or of its lines in bytes [start, end) (cut at line ends),
    each named by its line number in the whole file."""
    with path.open("rb") as stream:
        first = _lines_before(stream, start) + 1
        stream.seek(start)
        position = start
        for number, line in enumerate(stream, start=first):
            if end is not None and position >= end:
                return
            position += len(line)
            if not line.strip():
                continue
            source = f"{path}:{number}"
            try:
                yield _result(_DECODER.decode(line), source)
            except msgspec.ValidationError as exc:
                field, message = split_validation_error(exc)
                tenant = _tenant_hint(_loose(line), source)
                yield ManifestResult(
                    source, None, InputProblem(source, f"tenant {tenant}", field, message, tenant)
                )
            except msgspec.DecodeError as exc:
                yield ManifestResult(
                    source, None, InputProblem(source, f"line {number}", None, f"invalid JSON: {exc}", source)
                )


def _lines_before(stream: BinaryIO, offset: int) -> int:
    """How many lines end before `offset` (a line's start): the line number of the line there, less one."""
    stream.seek(0)
    count = 0
    while offset > 0:
        chunk = stream.read(min(offset, _COUNT_CHUNK))
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset -= len(chunk)
    return count


def _loose(line: bytes) -> Any:
    try:
        return msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None


def _typed_manifest(data: bytes) -> TenantManifest | None:
    """A JSON manifest decoded straight into its record, the way a fleet export writes them; None
    for anything else (YAML, a list, an SBOM, a record that does not validate), which takes the
    general path and its precise errors."""
    if data[:1] != b"{" or b"bomFormat" in data or b"\\u" in data:  # key spelt with escapes: general path
        return None
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError:
        return None


def _read_manifest(path: str) -> bytes:
    """`read_bytes(path)` in one open, one fstat and one read (a tenant directory export has a file per
    tenant: pathlib's stat, buffered open and read loop cost more than decoding a small manifest).
    Anything unusual (an error, a file over the limit or growing) takes `read_bytes`, for its errors."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return read_bytes(Path(path), limit=MAX_DOCUMENT_BYTES)
    try:
        size = os.fstat(descriptor).st_size
        data = os.read(descriptor, size + 1) if size <= MAX_DOCUMENT_BYTES else None
    except OSError:
        data = None
    finally:
        os.close(descriptor)
    if data is None or len(data) > size:
        return read_bytes(Path(path), limit=MAX_DOCUMENT_BYTES)
    return data


def _from_file(path: str) -> Iterator[ManifestResult]:
    """The manifests of one file, each named by `path` (or by its place in it)."""
    if _suffix(path.rpartition("/")[2]) in (".jsonl", ".ndjson"):
        yield from _from_jsonl(Path(path))
        return
    try:
        data = _read_manifest(path)
        typed = _typed_manifest(data)
        raw = parse_document(data, path) if typed is None else None
    except InputError as exc:
        problem = exc.problem
        yield ManifestResult(
            path,
            None,
            InputProblem(problem.source, problem.record, problem.field, problem.error, Path(path).stem),
        )
        return
    if typed is not None:
        yield _result(typed, path)
        return
    items = raw if isinstance(raw, list) else [raw]
    for k, item in enumerate(items):
        yield manifest_from_data(item, path if len(items) == 1 else f"{path}[{k}]")


def manifest_files(directory: Path) -> list[str]:
    """The manifest files under `directory`, searched recursively, in path order: what
    `sorted(directory.rglob("*"))` finds (linked directories are not entered), without a stat
    per file (directory entries say what they are); each as `str()` of its path (a `Path` per
    file of a directory export costs more than decoding a small manifest)."""
    found: list[tuple[str, ...]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        parts = pending.pop()
        try:
            with os.scandir(directory.joinpath(*parts)) as entries:
                for entry in entries:
                    if entry.is_dir() and not entry.is_symlink():
                        pending.append((*parts, entry.name))
                    elif _suffix(entry.name) in MANIFEST_SUFFIXES and entry.is_file():
                        found.append((*parts, entry.name))
        except PermissionError:
            continue  # an unreadable directory is skipped, as rglob skips it
    prefix = str(directory / "_")[:-1]  # how pathlib joins a name to it ("" for ".", "/" for "/")
    return [prefix + "/".join(parts) for parts in sorted(found)]


def _suffix(name: str) -> str:
    """`PurePath(name).suffix`, without building a path."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def load_manifests(path: Path) -> Iterator[ManifestResult]:
    """Every manifest under `path` (a file or a directory, searched recursively, sorted)."""
    if path.is_dir():
        for child in manifest_files(path):
            yield from _from_file(child)
    elif path.is_file():
        yield from _from_file(str(path))
    else:
        raise InputError(InputProblem(str(path), None, None, "no such file or directory"))


@dataclass(frozen=True, slots=True)
class ManifestPart:
    """A contiguous part of the manifests under a path, in the order `load_manifests` reads them:
    whole files, or the lines of one JSON-lines file in bytes [start, end)."""

    files: tuple[str | Path, ...]
    start: int = 0
    end: int | None = None

    def load(self) -> Iterator[ManifestResult]:
        """The part's manifests, each named as `load_manifests` names it."""
        if self.end is not None:
            yield from _from_jsonl(Path(self.files[0]), self.start, self.end)
            return
        for path in self.files:
            yield from _from_file(str(path))


def split_manifests(path: Path, parts: int) -> list[ManifestPart]:
    """The manifests under `path` cut into at most `parts` contiguous parts of about equal size (a
    directory by files, a JSON-lines file by lines); read in order, the parts read what
    `load_manifests(path)` reads. Another single file is one part."""
    if path.is_dir():
        files = manifest_files(path)
        count = max(1, min(parts, len(files)))
        return [
            ManifestPart(tuple(files[len(files) * k // count : len(files) * (k + 1) // count]))
            for k in range(count)
        ]
    if not path.is_file():
        raise InputError(InputProblem(str(path), None, None, "no such file or directory"))
    if path.suffix not in (".jsonl", ".ndjson") or parts < 2:
        return [ManifestPart((path,))]
    cuts = _line_cuts(path, parts)
    return [ManifestPart((path,), start, end) for start, end in pairwise(cuts)]


def _line_cuts(path: Path, parts: int) -> list[int]:
    """Byte offsets that cut the file at line ends into about equal parts: 0 first, its size last."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as stream:
        for k in range(1, parts):
            stream.seek(max(size * k // parts, cuts[-1]))
            stream.readline()  # to the end of the line the cut falls in
            cut = stream.tell()
            if cut >= size:
                break
            if cut > cuts[-1]:
                cuts.append(cut)
    return [*cuts, size]
