"""SARIF 2.1.0 scan report, for code-scanning dashboards and CI annotations."""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from itertools import chain
from operator import attrgetter
from typing import Any, BinaryIO, Final

from powerx_governance import __version__
from powerx_governance.reports.markdown_report import error_text
from powerx_governance.reports.stream import (
    HEADER_KEYS,
    OUTCOME,
    Rendered,
    ReportItem,
    SharedOutcome,
    TenantFindings,
    append_file,
    encode,
    file_place,
    resume_at,
    write_report,
)

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION: Final = "2.1.0"
TOOL_NAME: Final = "powerx-version-governance"
# Placeholder until the project publishes its documentation; SARIF wants an absolute URI here.
INFORMATION_URI: Final = "https://example.invalid/powerx-version-governance"
OUTDATED_RULE: Final = "PXVG-OUTDATED"
LIFECYCLE_RULE: Final = "PXVG-LIFECYCLE"
FINGERPRINT_KEY: Final = "pxvgFinding/v1"
_FINGERPRINT_KEY: Final = f'"{FINGERPRINT_KEY}"'.encode()
_FINGERPRINT_SEPARATOR: Final = "\x1f"  # between tenant uuid, plugin id and rule id, hashed with SHA-256

_LEVELS: Final = {"critical": "error", "high": "error", "medium": "warning"}
_ENDED_LIFECYCLES: Final = frozenset({"deprecated", "sunset", "revoked"})
_RESULT_PROPERTIES: Final = (
    "tenant_uuid",
    "tenant_key",
    "plugin_id",
    "current_version",
    "target_version",
    "priority",
    "action",
    "risk_level",
    "critical_patch",
    "partial",
    "sla_deadline",
)

_TENANT_PROPERTIES: Final = frozenset({"tenant_uuid", "tenant_key"})
_FIRST: Final = b"\n  "  # before the report's first result
_SEPARATOR: Final = b",\n  "  # before every other
_PROPERTIES: Final = b'"},"properties":{'  # after a result's fingerprint
_DIGEST_HEX: Final = 2 * hashlib.sha256().digest_size

Json = dict[str, Any]
Finding = Mapping[str, Any]


class SarifWriter:
    """One SARIF run: results streamed as findings come; rules (one per advisory met) and the
    invocation (errors as failed notifications, repairs as warnings) follow them."""

    def __init__(self, out: BinaryIO, *, continued: bool = False) -> None:
        self._out = out
        self._rules = _static_rules()
        self._static = len(self._rules)
        self._rule_index = {rule["id"]: i for i, rule in enumerate(self._rules)}
        self._header: Mapping[str, Any] = {}
        self._written = 0
        self._continued = continued  # a later part of a report: results came before
        self._documents: dict[SharedOutcome, Finding] = {}  # met by `learn`, not yet templated
        self._counts: dict[SharedOutcome, int] = {}  # results per finding, met by `learn`
        self._results: Rendered[SharedOutcome, _Results] = Rendered(
            lambda o: self._learn(self._documents.pop(o) if o in self._documents else o.document())
        )

    def start(self, header: Mapping[str, Any]) -> None:
        self._header = header
        self._out.write(
            b'{"$schema": %s, "version": %s, "runs": [{"results": ['
            % (encode(SARIF_SCHEMA), encode(SARIF_VERSION))
        )

    def add_tenant(self, batch: TenantFindings) -> None:
        templates = self._tenant_templates(batch)
        if templates:
            self._write(_Tenant.of(batch.tenant_uuid, batch.tenant_key).results(templates), len(templates))

    def add(self, items: Iterable[ReportItem]) -> None:
        for item in items:
            templates = self._learn(item.document()).templates
            if templates:
                self._write(_Tenant.of(item.tenant_uuid, item.tenant_key).results(templates), len(templates))

    def _tenant_results(self, batch: TenantFindings) -> list[_Results]:
        return list(map(self._results.__getitem__, map(OUTCOME, batch.parts)))

    def _tenant_templates(self, batch: TenantFindings) -> list[_Template]:
        return list(chain.from_iterable(map(_TEMPLATES, self._tenant_results(batch))))

    def _write(self, results: bytes, count: int) -> None:
        """`count` results, joined by separators, after the report's results so far."""
        self._out.write(_FIRST if self._written == 0 and not self._continued else _SEPARATOR)
        self._out.write(results)
        self._written += count

    def size(self, batches: Sequence[TenantFindings], before: int) -> int:
        """The bytes `add_tenant` writes for `batches` after `before` results of the report (rules
        numbered: after `follow`)."""
        total, written = 0, bool(before or self._written or self._continued)
        for batch in batches:
            results = self._tenant_results(batch)
            count = sum(map(_COUNT, results))
            if count:
                tenant = _Tenant.size(batch.tenant_uuid, batch.tenant_key)
                total += len(_SEPARATOR if written else _FIRST) + (count - 1) * len(_SEPARATOR)
                total += sum(map(_LENGTH, results)) + count * tenant
                written = True
        return total

    def place(self) -> tuple[int, int] | None:
        return file_place(self._out)

    def write_at(self, out: BinaryIO, before: int) -> None:
        """Write this later part's results onto `out`, a stream at their place, after `before` results."""
        self._out, self._continued = out, before > 0

    def resume(self, handoff: tuple[int, list[Json]], end: int) -> None:
        """A later part written at its place (its `handoff`, in report order): the report goes on at `end`."""
        written, rules = handoff
        self._add_rules(rules)
        self._written += written
        resume_at(self._out, end)

    def _learn(self, finding: Finding) -> _Results:
        """The finding's results without their tenant, registering a rule for each new advisory."""
        self._register(finding)
        return _Results.of(_templates(finding, self._rule_index))

    def _register(self, finding: Finding) -> None:
        for advisory in finding.get("advisories") or []:
            if str(advisory["id"]) not in self._rule_index:
                self._rule_index[str(advisory["id"])] = len(self._rule_index)
                self._rules.append(_advisory_rule(advisory))

    def learn(self, batch: TenantFindings) -> int:
        """Register the rules of a tenant's findings without writing them: the first of two passes
        over a part of a split report, whose rules are numbered after the parts before it. How many
        results `add_tenant` will write for the tenant."""
        counts = self._counts
        results = 0
        for outcome in map(OUTCOME, batch.parts):
            count = counts.get(outcome)
            if count is None and outcome in self._results:  # written already: numbered then
                count = counts[outcome] = self._results[outcome].count
            elif count is None:
                self._register(document := outcome.document())
                self._documents[outcome] = document
                count = counts[outcome] = _result_count(document)
            results += count
        return results

    def rules_met(self) -> list[str]:
        """The ids of the advisory rules registered so far, in the order they were met."""
        return [str(rule["id"]) for rule in self._rules[self._static :]]

    def follow(self, prior: Sequence[str]) -> None:
        """Number the rules as the whole report does: those the parts before this one met (`prior`,
        in order) first, then this part's others, in the order this part met them."""
        known = set(prior)
        self._rules[self._static :] = [r for r in self._rules[self._static :] if r["id"] not in known]
        ids = [*(str(r["id"]) for r in self._rules[: self._static]), *prior]
        ids += [str(r["id"]) for r in self._rules[self._static :]]
        self._rule_index = {rule_id: i for i, rule_id in enumerate(ids)}

    def continuation(self, out: BinaryIO) -> SarifWriter:
        return SarifWriter(out, continued=True)

    def handoff(self) -> tuple[int, list[Json]]:
        """Results written, and the rules this part met first (after `follow`)."""
        return self._written, self._rules[self._static :]

    def _add_rules(self, rules: list[Json]) -> None:
        for rule in rules:
            self._rule_index[str(rule["id"])] = len(self._rule_index)
            self._rules.append(rule)

    def join(self, handoff: tuple[int, list[Json]], body: BinaryIO) -> None:
        written, rules = handoff
        self._add_rules(rules)
        if written:  # the part's first result is the report's first: no comma before it
            append_file(self._out, body, skip=0 if self._written else len(b","))
            self._written += written

    def finish(self, summary: Mapping[str, Any]) -> None:
        driver = {
            "name": TOOL_NAME,
            "version": __version__,
            "informationUri": INFORMATION_URI,
            "rules": self._rules,
        }
        rest = {
            "tool": {"driver": driver},
            "invocations": [_invocation(summary.get("errors") or [], summary.get("warnings") or [])],
            "properties": {
                **{k: self._header.get(k) for k in HEADER_KEYS},
                "coverage": summary.get("coverage"),
            },
        }
        tail = encode(rest)[1:]  # the run's other members, after its results
        self._out.write(b"\n], " + tail + b"]}\n")


def render(report: Mapping[str, Any]) -> str:
    """Render the report as a SARIF 2.1.0 log (JSON text)."""
    buffer = BytesIO()
    write_report(report, SarifWriter(buffer))
    return buffer.getvalue().decode("utf-8")


def level(severity: object) -> str:
    """SARIF level for a severity: error for critical/high, warning for medium, note otherwise."""
    return _LEVELS.get(str(severity), "note")


def _static_rules() -> list[Json]:
    return [
        _rule(OUTDATED_RULE, "OutdatedPlugin", "Installed release is behind the latest eligible release"),
        _rule(LIFECYCLE_RULE, "PluginLifecycleEnded", "Installed release is deprecated or sunset"),
    ]


def _rule(rule_id: str, name: str, description: str) -> Json:
    return {
        "id": rule_id,
        "name": name,
        "shortDescription": {"text": description},
        "defaultConfiguration": {"level": "note"},
        "properties": {"tags": ["maintenance"]},
    }


def _advisory_rule(advisory: Mapping[str, Any]) -> Json:
    advisory_id = str(advisory["id"])
    properties: Json = {"tags": ["security"]}
    if advisory.get("cvss") is not None:
        properties["security-severity"] = f"{advisory['cvss']:.1f}"
    if advisory.get("aliases"):
        properties["aliases"] = list(advisory["aliases"])
    return {
        "id": advisory_id,
        "shortDescription": {"text": advisory.get("summary") or f"Security advisory {advisory_id}"},
        "defaultConfiguration": {"level": level(advisory.get("severity"))},
        "properties": properties,
    }


@dataclass(frozen=True, slots=True)
class _Tenant:
    """A tenant's parts of its results, encoded once per tenant."""

    location: bytes  # the opening of its results' location name: a quote and the tenant uuid
    digest: Any  # hashlib sha256 of the fingerprint's tenant part, copied for each result
    properties: bytes  # from the fingerprint's end: "},"properties":{"tenant_uuid":…,"tenant_key":…

    @staticmethod
    def size(tenant_uuid: str, tenant_key: str | None) -> int:
        """What the tenant adds to each of its results, in bytes."""
        uuid = encode(tenant_uuid)
        return len(uuid) - 1 + len(b'"tenant_uuid":%s,"tenant_key":%s' % (uuid, encode(tenant_key)))

    @classmethod
    def of(cls, tenant_uuid: str, tenant_key: str | None) -> _Tenant:
        uuid = encode(tenant_uuid)
        return cls(
            uuid[:-1],
            hashlib.sha256(f"{tenant_uuid}{_FINGERPRINT_SEPARATOR}".encode()),
            _PROPERTIES + b'"tenant_uuid":%s,"tenant_key":%s' % (uuid, encode(tenant_key)),
        )

    def results(self, templates: Sequence[_Template]) -> bytes:
        """The tenant's results of `templates`, as JSON joined by separators, in one piece: a fleet
        has millions of results, so each is a few list items rather than a bytes object of its own."""
        copy, location, properties = self.digest.copy, self.location, self.properties
        pieces: list[bytes] = []
        extend = pieces.extend
        for template in templates:
            digest = copy()
            digest.update(template.fingerprinted)
            extend(
                (
                    _SEPARATOR,
                    template.head,
                    location,
                    template.location_rest,
                    binascii.hexlify(digest.digest()),
                    properties,
                    template.properties,
                )
            )
        pieces[0] = b""  # the first result's separator is the caller's
        return b"".join(pieces)


@dataclass(frozen=True, slots=True)
class _Template:
    """One result of a finding, all but the tenant, pre-encoded: a fleet has thousands of distinct
    results and a million tenants' copies of them, so only the tenant's parts are added per copy.

    A result is `head`, the tenant's location, `location_rest`, the fingerprint, the tenant's
    properties, then `properties` (JSON strings escape character by character, so a location
    name encoded in two pieces is the name encoded whole).
    """

    head: bytes  # ruleId, ruleIndex, level, message, up to the location name
    location_rest: bytes  # "/<plugin id>", to the fingerprint's value
    fingerprinted: bytes  # what the fingerprint hashes after the tenant uuid
    properties: bytes  # the result properties after tenant_uuid and tenant_key, to the result's end
    length: int  # the bytes of this result but the tenant's (`_Tenant.size`)

    @classmethod
    def of(cls, head: bytes, location_rest: bytes, fingerprinted: bytes, properties: bytes) -> _Template:
        length = len(head) + len(location_rest) + _DIGEST_HEX + len(_PROPERTIES) + len(properties)
        return cls(head, location_rest, fingerprinted, properties, length)


@dataclass(frozen=True, slots=True)
class _Results:
    """A finding's results, all but the tenant: its templates, how many, and their bytes."""

    templates: tuple[_Template, ...]
    count: int
    length: int  # the templates' lengths summed

    @classmethod
    def of(cls, templates: Sequence[_Template]) -> _Results:
        return cls(tuple(templates), len(templates), sum(t.length for t in templates))


_TEMPLATES: Final = attrgetter("templates")
_COUNT: Final = attrgetter("count")
_LENGTH: Final = attrgetter("length")


def _result_count(finding: Finding) -> int:
    """How many results `_templates` makes of the finding: one per advisory, else one."""
    return len(finding.get("advisories") or ()) or 1


def _templates(finding: Finding, rule_index: Mapping[str, int]) -> list[_Template]:
    advisories = finding.get("advisories") or []
    if not advisories:
        rule_id = LIFECYCLE_RULE if _lifecycle_status(finding) else OUTDATED_RULE
        return [_template(finding, rule_id, rule_index, level(finding.get("risk_level")))]
    return [
        _template(
            finding,
            str(advisory["id"]),
            rule_index,
            level(advisory.get("severity") or finding.get("risk_level")),
            advisory,
        )
        for advisory in advisories
    ]


def _template(
    finding: Finding,
    rule_id: str,
    rule_index: Mapping[str, int],
    result_level: str,
    advisory: Mapping[str, Any] | None = None,
) -> _Template:
    head = {
        "ruleId": rule_id,
        "ruleIndex": rule_index[rule_id],
        "level": result_level,
        "message": {"text": f"{_headline(finding)} {_detail(finding, advisory)}"},
    }
    properties = {key: finding.get(key) for key in _RESULT_PROPERTIES if key not in _TENANT_PROPERTIES}
    plugin_id = str(finding.get("plugin_id", ""))
    return _Template.of(
        head=encode(head)[:-1] + b',"locations":[{"logicalLocations":[{"fullyQualifiedName":',
        location_rest=b"/"
        + encode(plugin_id)[1:]
        + b',"kind":"module"}]}],"partialFingerprints":{%s:"' % _FINGERPRINT_KEY,
        fingerprinted=f"{plugin_id}{_FINGERPRINT_SEPARATOR}{rule_id}".encode(),
        properties=b"," + encode(properties)[1:-1] + b"}}",
    )


def _headline(finding: Finding) -> str:
    target = finding.get("target_version") or "no upgrade target"
    version_step = f"{finding.get('current_version')} → {target}"
    return f"{finding.get('plugin_id')} {version_step} (action: {finding.get('action')})."


def _detail(finding: Finding, advisory: Mapping[str, Any] | None) -> str:
    if advisory is not None:
        return _advisory_detail(advisory)
    status = _lifecycle_status(finding)
    if status:
        replacement = finding.get("replacement")
        suffix = f"; replacement: {replacement}" if replacement else ""
        return f"The installed release is {status}{suffix}."
    return f"Latest eligible release: {finding.get('latest_version') or 'unknown'}."


def _advisory_detail(advisory: Mapping[str, Any]) -> str:
    cvss = advisory.get("cvss")
    severity = advisory.get("severity") or "unknown severity"
    rating = severity if cvss is None else f"{severity}, CVSS {cvss:.1f}"
    fixed_in = advisory.get("fixed_in")
    fix = f"fixed in {fixed_in}" if fixed_in else "no fixed release"
    return f"{advisory['id']} ({rating}): {fix}."


def _lifecycle_status(finding: Finding) -> str | None:
    # The scan report names the lifecycle as a status string; the catalog's {status: …} shape is accepted too.
    lifecycle = finding.get("lifecycle")
    status = lifecycle.get("status") if isinstance(lifecycle, Mapping) else lifecycle
    return str(status) if status in _ENDED_LIFECYCLES else None


def _invocation(errors: Iterable[Mapping[str, Any]], warnings: Iterable[Mapping[str, Any]]) -> Json:
    failed = [_notification(error, "error") for error in errors]
    # A scan that could not read every source did not fully succeed, even though it has results;
    # repaired input (warnings) did not stop it from seeing everything.
    return {
        "executionSuccessful": not failed,
        "toolExecutionNotifications": failed + [_notification(w, "warning") for w in warnings],
    }


def _notification(error: Mapping[str, Any], level: str) -> Json:
    return {
        "level": level,
        "message": {"text": error_text(error)},
        "properties": {"source": error.get("source"), "tenant_uuid": error.get("tenant_uuid")},
    }
