"""Reading OSV advisories as the feeds publish them: repair, salvage, never drop (DESIGN §7).

A security tool that drops an advisory it cannot fully read tells a vulnerable tenant it is
safe. So a record is repaired where the repair has one obvious meaning (a date without a time
is midnight UTC; a number where a version string belongs is that version), every part that
cannot be read costs only itself (a field, a range, an event, a listed version), and what is
left is kept. The repairs are returned as warnings, the losses as errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from powerx_governance.catalog_records import Advisory
from powerx_governance.errors import InputProblem
from powerx_governance.policy.matching import read_affected
from powerx_governance.policy.severity import advisory_severity
from powerx_governance.records import split_validation_error

_TIME_FIELDS: Final = ("published", "modified", "withdrawn")
_DATE_ONLY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAIVE_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_EVENT_KINDS: Final = ("introduced", "fixed", "last_affected", "limit")
_MAX_SALVAGE_STEPS: Final = 256
# Fields whose loss leaves the advisory usable: its identity and its affected data are kept apart.
_DROPPABLE: Final = frozenset(
    {
        "modified",
        "published",
        "withdrawn",
        "aliases",
        "summary",
        "details",
        "severity",
        "references",
        "database_specific",
        "schema_version",
    }
)


@dataclass
class AdvisoryIntake:
    """One record read: the advisory (None only when it is not a mapping), repairs and losses."""

    advisory: Advisory | None
    warnings: list[InputProblem] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    unreadable_plugins: dict[str, str] = field(default_factory=dict)  # plugin id → why nothing was read


def repair_timestamp(text: str) -> str | None:
    """RFC 3339 for a date-only or zone-less OSV timestamp (OSV times are UTC); None if neither."""
    stripped = text.strip()
    if _DATE_ONLY.match(stripped):
        return f"{stripped}T00:00:00Z"
    if _NAIVE_TIME.match(stripped):
        return stripped.replace(" ", "T") + "Z"
    return None


class _Intake:
    def __init__(self, source: str, record: str) -> None:
        self.source, self.record = source, record
        self.result = AdvisoryIntake(None)

    def warn(self, field_name: str | None, message: str) -> None:
        self.result.warnings.append(InputProblem(self.source, self.record, field_name, message))

    def lose(self, field_name: str | None, message: str) -> None:
        self.result.problems.append(InputProblem(self.source, self.record, field_name, message))

    def times(self, raw: dict[str, Any]) -> None:
        for name in _TIME_FIELDS:
            text = raw.get(name)
            repaired = repair_timestamp(text) if isinstance(text, str) else None
            if repaired is not None:
                raw[name] = repaired
                self.warn(name, f"{text!r} has no time or zone; read as {repaired} (UTC, as OSV specifies)")

    def version_text(self, value: Any, field_name: str) -> Any:
        """A version where YAML or a feed wrote a number: the number's digits (a repair); else as is."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return json.dumps(value, default=str)  # unreadable as a version: the matcher reports it
        text = str(value)
        self.warn(field_name, f"the number {text} read as the version string {text!r}")
        return text

    def affected(self, raw: Any) -> Any:
        if not isinstance(raw, list):
            return raw
        return [self._entry(entry, i) for i, entry in enumerate(raw)]

    def _entry(self, entry: Any, i: int) -> Any:
        if not isinstance(entry, dict):
            return entry
        entry = dict(entry)
        if isinstance(entry.get("versions"), list):
            entry["versions"] = [
                self.version_text(v, f"affected[{i}].versions[{k}]") for k, v in enumerate(entry["versions"])
            ]
        if isinstance(entry.get("ranges"), list):
            entry["ranges"] = [
                self._range(r, f"affected[{i}].ranges[{j}]") for j, r in enumerate(entry["ranges"])
            ]
        return entry

    def _range(self, osv_range: Any, where: str) -> Any:
        if not isinstance(osv_range, dict) or not isinstance(osv_range.get("events"), list):
            return _unreadable_range(osv_range)
        events = []
        for k, event in enumerate(osv_range["events"]):
            if not isinstance(event, dict):
                events.append({"introduced": json.dumps(event, default=str)})
                continue
            events.append(
                {
                    kind: self.version_text(value, f"{where}.events[{k}].{kind}")
                    for kind, value in event.items()
                    if kind in _EVENT_KINDS
                }
            )
        if not isinstance(osv_range.get("type"), str):
            self.warn(f"{where}.type", "no range type; read as SEMVER (PowerX versions are SemVer)")
            osv_range = {**osv_range, "type": "SEMVER"}
        return {**osv_range, "events": events}


def _unreadable_range(osv_range: Any) -> dict[str, Any]:
    """A range that is not even shaped like one: kept as a range whose start cannot be read, so the
    matcher counts it as lost instead of the plugin silently having no range at all."""
    return {"type": "SEMVER", "events": [{"introduced": json.dumps(osv_range, default=str)}]}


def _convert(raw: dict[str, Any], intake: _Intake) -> Advisory | None:
    """Convert, dropping each top-level field that cannot be read (an error each), until it fits."""
    data = dict(raw)
    for _ in range(_MAX_SALVAGE_STEPS):
        try:
            return msgspec.convert(data, Advisory)
        except msgspec.ValidationError as exc:
            path, message = split_validation_error(exc)
            top = re.split(r"[.\[]", path or "", maxsplit=1)[0]
            if top == "id":
                data["id"] = _synthetic_id(raw)
                intake.lose("id", f"{message}; named {data['id']} from its content")
            elif top in _DROPPABLE and top in data:
                del data[top]
                intake.lose(path, f"{message}; the field is left out")
            elif top == "affected":
                data["affected"] = _drop_affected_part(data["affected"], path or "", intake, message)
            else:
                intake.lose(path, message)
                return None
    return None


def _drop_affected_part(affected: list[Any], path: str, intake: _Intake, message: str) -> list[Any]:
    """Make the broken part of `affected` unreadable (so it is counted as lost), keep the rest."""
    match = re.match(r"affected\[(\d+)\](?:\.ranges\[(\d+)\])?", path)
    if match is None or not isinstance(affected, list):
        intake.lose(path, f"{message}; no affected data could be read")
        return []
    i = int(match[1])
    entry = affected[i] if isinstance(affected[i], dict) else {}
    package = entry.get("package")
    out = list(affected)
    if match[2] is not None and isinstance(entry.get("ranges"), list):
        ranges = list(entry["ranges"])
        ranges[int(match[2])] = _unreadable_range(ranges[int(match[2])])
        out[i] = {**entry, "ranges": ranges}
        intake.lose(path, f"{message}; the range is left out")
    elif isinstance(package, dict) and isinstance(package.get("name"), str):
        out[i] = {"package": package, "ranges": [_unreadable_range(entry)]}
        intake.lose(path, f"{message}; the entry's ranges and versions are left out")
    else:
        del out[i]
        intake.lose(path, f"{message}; the entry names no readable package and is left out")
    return out


def _synthetic_id(raw: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return f"UNIDENTIFIED-{digest[:12]}"


def read_advisory(raw: Any, *, source: str, record: str) -> AdvisoryIntake:
    """Read one OSV record as DESIGN §7 says: repaired, salvaged, and kept whenever it is a mapping."""
    intake = _Intake(source, record)
    if not isinstance(raw, dict):
        intake.lose(None, f"expected an OSV record (a mapping), got {type(raw).__name__}")
        return intake.result
    if isinstance(raw.get("id"), str) and raw["id"].strip():
        intake.record = raw["id"]
    data = dict(raw)
    intake.times(data)
    data["affected"] = intake.affected(data.get("affected", []))
    advisory = _convert(data, intake)
    intake.result.advisory = advisory
    if advisory is None:
        return intake.result
    intake.record = advisory.id
    _read_affected_data(advisory, intake)
    for problem in advisory_severity(advisory).problems:
        intake.lose("severity", f"{problem}; the next usable severity decides")
    return intake.result


def _read_affected_data(advisory: Advisory, intake: _Intake) -> None:
    reading = read_affected(advisory)
    for note in reading.repairs:
        intake.warn(note.field, note.message)
    for note in reading.problems:
        intake.lose(note.field, note.message)
    for plugin_id, spec in reading.specs.items():
        if spec.unreadable is not None:
            intake.result.unreadable_plugins[plugin_id] = spec.unreadable
            intake.lose(
                "affected",
                f"nothing of its affected data for {plugin_id} could be read; every installation"
                " of that plugin is sent to review",
            )
