"""Message templates: Jinja2 in a sandbox, strict about undefined names, escaping per output format.

Each message kind (a batch of findings, a digest, a decision, an SLA breach, a broken ignore,
an alert) has one template per part: console card title and body, email subject, text and
HTML, an IM title, IM markdown (WeCom, DingTalk, Feishu) and Slack mrkdwn. Every value a
template prints is escaped for the part's format (HTML entities, markdown punctuation, Slack
control characters), so a hostile plugin name or advisory summary cannot inject markup; the
`url` filter passes only http(s) links. Templates are compiled and rendered against a sample
context when the file is loaded, so a typo fails at start-up naming the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote, urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from powerx_governance.errors import InputError, InputProblem
from powerx_governance.notifications.config import TemplatesFile
from powerx_governance.notifications.model import MessageKind

ACTIONS: Final = ("upgrade", "schedule", "ignore")
LABELS: Final = (*ACTIONS, "open")
_SINGLE_LINE_LIMIT: Final = 250


class Part(StrEnum):
    CARD_TITLE = "card_title"
    CARD_BODY = "card_body"
    EMAIL_SUBJECT = "email_subject"
    EMAIL_TEXT = "email_text"
    EMAIL_HTML = "email_html"
    IM_TITLE = "im_title"
    MARKDOWN = "markdown"
    SLACK = "slack"


class Format(StrEnum):
    TEXT = "text"
    HTML = "html"
    MARKDOWN = "markdown"
    SLACK = "slack"


PART_FORMAT: Final = {
    Part.EMAIL_HTML: Format.HTML,
    Part.MARKDOWN: Format.MARKDOWN,
    Part.SLACK: Format.SLACK,
}
SINGLE_LINE: Final = frozenset({Part.CARD_TITLE, Part.EMAIL_SUBJECT, Part.IM_TITLE})
CARD_PARTS: Final = frozenset({Part.CARD_TITLE, Part.CARD_BODY})


def required_parts(kind: MessageKind) -> frozenset[Part]:
    """A digest has no card of its own: the console shows one card per finding instead."""
    return frozenset(Part) - CARD_PARTS if kind is MessageKind.DIGEST else frozenset(Part)


def card_kind(kind: MessageKind) -> MessageKind:
    """Whose card templates render the items of a message of this kind."""
    return MessageKind.FINDING if kind is MessageKind.DIGEST else kind


# -- escaping -------------------------------------------------------------------------------------


class Trusted(str):
    """Text a filter already made safe for its format (links): printed as it is."""

    __slots__ = ()


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>])")


def escape_markdown(text: str) -> str:
    """Backslash-escape markdown punctuation; angle brackets and ampersands become entities."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("@", "@\u200b")  # no @all / @mentions


def escape_slack(text: str) -> str:
    """Slack mrkdwn control characters (and no <!channel>-style mentions through them)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, Trusted) or value is None:
            return "" if value is None else value
        return escape(str(value))

    return finalize


def safe_url(value: Any) -> str | None:
    """An http(s) URL with characters that break markup links percent-encoded; None otherwise."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(text, safe="/:?&=#%+,;@!$'*~.-_")


def _url_markdown(value: Any) -> Trusted:
    return Trusted(safe_url(value) or "#")


def _url_slack(value: Any) -> Trusted:
    return Trusted((safe_url(value) or "#").replace("|", "%7C"))


def _url_plain(value: Any) -> str:
    return safe_url(value) or ""


def format_time(value: Any) -> str:
    """An RFC 3339 instant as `2026-11-30 08:00 UTC`; anything else as given."""
    if not value:
        return "none"
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_score(value: Any) -> str:
    """A CVSS score with one decimal, or `n/a`."""
    return f"{float(value):.1f}" if isinstance(value, int | float) else "n/a"


def _environment(fmt: Format) -> SandboxedEnvironment:
    finalize: Callable[[Any], Any] | None = None
    if fmt is Format.MARKDOWN:
        finalize = _finalizer(escape_markdown)
    elif fmt is Format.SLACK:
        finalize = _finalizer(escape_slack)
    env = SandboxedEnvironment(
        autoescape=fmt is Format.HTML,
        undefined=jinja2.StrictUndefined,
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    url_filter = {Format.MARKDOWN: _url_markdown, Format.SLACK: _url_slack}.get(fmt, _url_plain)
    env.filters.update({"url": url_filter, "dt": format_time, "score": format_score})
    return env


_ENVIRONMENTS: Final = {fmt: _environment(fmt) for fmt in Format}


# -- the compiled set -----------------------------------------------------------------------------


def _single_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _SINGLE_LINE_LIMIT else line[: _SINGLE_LINE_LIMIT - 1] + "…"


class TemplateSet:
    """Compiled templates for every message kind and part, plus the action labels."""

    def __init__(
        self, templates: Mapping[tuple[MessageKind, Part], jinja2.Template], labels: Mapping[str, str]
    ):
        self._templates = dict(templates)
        self.labels = dict(labels)

    @classmethod
    def from_file(
        cls, data: TemplatesFile, source: str, *, console_url: str = "https://console.invalid"
    ) -> TemplateSet:
        """Compile and check a loaded templates file; InputError names the field that fails."""
        labels = _labels(data, source)
        compiled: dict[tuple[MessageKind, Part], jinja2.Template] = {}
        for kind in MessageKind:
            parts = data.messages.get(kind.value)
            if parts is None:
                raise _problem(
                    source, f"messages.{kind.value}", "templates for this message kind are missing"
                )
            compiled |= _compile_kind(kind, parts, source)
        unknown = sorted(set(data.messages) - {k.value for k in MessageKind})
        if unknown:
            raise _problem(
                source,
                f"messages.{unknown[0]}",
                f"unknown message kind (expected one of {[k.value for k in MessageKind]})",
            )
        templates = cls(compiled, labels)
        templates.check(source, console_url)
        return templates

    def render(self, kind: MessageKind, part: Part, context: Mapping[str, Any]) -> str:
        """One part of one message; single-line parts are collapsed to one line."""
        text = self._templates[(kind, part)].render(context)
        return _single_line(text) if part in SINGLE_LINE else text.strip() + "\n"

    def check(self, source: str, console_url: str) -> None:
        """Render every template against a sample context (catches undefined names at load)."""
        for (kind, part), template in self._templates.items():
            context = sample_context(kind, console_url=console_url, labels=self.labels)
            if part in CARD_PARTS:
                context = item_context(context, context["items"][0])
            try:
                template.render(context)
            except jinja2.TemplateError as exc:
                raise _problem(
                    source, f"messages.{kind.value}.{part.value}", f"{type(exc).__name__}: {exc}"
                ) from exc


def _problem(source: str, field: str, error: str) -> InputError:
    return InputError(InputProblem(source, "notification templates", field, error))


def _labels(data: TemplatesFile, source: str) -> dict[str, str]:
    missing = [name for name in LABELS if not data.actions.get(name, "").strip()]
    if missing:
        raise _problem(source, f"actions.{missing[0]}", "a label is required")
    return {name: data.actions[name] for name in LABELS}


def _compile_kind(
    kind: MessageKind, parts: Mapping[str, str], source: str
) -> dict[tuple[MessageKind, Part], jinja2.Template]:
    wanted = required_parts(kind)
    compiled: dict[tuple[MessageKind, Part], jinja2.Template] = {}
    for name, text in parts.items():
        field = f"messages.{kind.value}.{name}"
        if name not in {p.value for p in wanted}:
            raise _problem(
                source,
                field,
                f"not a part of {kind.value} messages (expected {sorted(p.value for p in wanted)})",
            )
        part = Part(name)
        try:
            compiled[(kind, part)] = _ENVIRONMENTS[PART_FORMAT.get(part, Format.TEXT)].from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise _problem(source, field, f"line {exc.lineno}: {exc.message}") from exc
    missing = sorted(p.value for p in wanted if (kind, p) not in compiled)
    if missing:
        raise _problem(source, f"messages.{kind.value}.{missing[0]}", "this template is required")
    return compiled


# -- contexts -------------------------------------------------------------------------------------


def action_links(url: str, labels: Mapping[str, str]) -> list[dict[str, str]]:
    """The three decisions an admin can take on a finding, as console links."""
    return [{"id": a, "label": labels[a], "url": f"{url}?action={a}"} for a in ACTIONS]


def _advisory(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": raw.get("id"),
        "aliases": list(raw.get("aliases") or []),
        "summary": raw.get("summary") or "",
        "severity": raw.get("severity") or "unknown",
        "cvss": raw.get("cvss"),
        "exploited": bool(raw.get("exploited")),
        "fixed_in": raw.get("fixed_in"),
    }


def _compatibility(rec: Mapping[str, Any]) -> dict[str, Any]:
    notes = [str(n) for n in rec.get("compatibility") or []]
    co_upgrades = [str(n) for n in rec.get("co_upgrades") or []]
    if rec.get("target_version") is None and rec.get("latest_version") is None:
        verdict = "no compatible target"
    elif co_upgrades:
        verdict = "compatible with co-upgrades"
    elif notes:
        verdict = "compatible with warnings"
    else:
        verdict = "compatible"
    return {"verdict": verdict, "notes": notes, "co_upgrades": co_upgrades}


def finding_context(
    rec: Mapping[str, Any],
    *,
    change: str | None,
    plugin_name: str | None,
    console_url: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """What templates know about one finding, from a stored recommendation (`recommendation_dict`)."""
    url = f"{console_url}/recommendations/{rec['id']}"
    advisories = [_advisory(a) for a in rec.get("advisories") or []]
    scores = [a["cvss"] for a in advisories if isinstance(a["cvss"], int | float)]
    notes = [n for n in rec.get("release_notes") or [] if safe_url(n.get("url"))]
    return {
        "id": rec["id"],
        "url": url,
        "change": change,
        "plugin_id": rec["plugin_id"],
        "plugin_name": plugin_name or rec["plugin_id"],
        "current_version": rec["current_version"],
        "target_version": rec.get("target_version"),
        "latest_version": rec.get("latest_version"),
        "upgrade_to": rec.get("target_version") or rec.get("latest_version"),
        "update_type": rec.get("update_type"),
        "risk_level": rec["risk_level"],
        "cvss": max(scores) if scores else None,
        "priority": rec.get("priority", 0),
        "action": rec["action"],
        "critical_patch": bool(rec.get("critical_patch")),
        "partial": bool(rec.get("partial")),
        "advisories": advisories,
        "changelog": list(rec.get("changelog") or []),
        "release_notes": notes,
        "release_notes_url": notes[-1]["url"] if notes else None,
        "compatibility": _compatibility(rec),
        "sla_deadline": rec.get("sla_deadline"),
        "reasons": list(rec.get("reasons") or []),
        "enforcement": rec.get("enforcement"),
        "state": rec.get("state"),
        "actions": action_links(url, labels),
    }


def _counts(findings: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(("critical", "high", "medium", "low", "none"), 0)
    for f in findings:
        counts[f["risk_level"]] = counts.get(f["risk_level"], 0) + 1
    return counts


def message_context(
    kind: MessageKind,
    *,
    tenant: Mapping[str, Any] | None,
    findings: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    console_url: str,
    labels: Mapping[str, str],
    generated_at: str,
    max_items: int = 50,
    period: str | None = None,
) -> dict[str, Any]:
    """What templates know about one message; `items` are what the console shows as cards (a
    message about events is about the first one; the console shows a card for each)."""
    event = events[0] if events else None
    shown = list(findings[:max_items])
    tenant_url = f"{console_url}/tenants/{tenant['uuid']}" if tenant else console_url
    if len(findings) == 1:
        actions = list(findings[0]["actions"])
    elif event is not None and event.get("finding"):
        actions = list(event["finding"]["actions"])
    else:
        actions = [{"id": "open", "label": labels["open"], "url": tenant_url}]
    items: list[dict[str, Any]] = (
        [{"finding": f} for f in findings]
        if findings
        else [{"event": e} for e in events] or [{"event": None}]
    )
    return {
        "kind": kind.value,
        "tenant": tenant,
        "tenant_url": tenant_url,
        "findings": shown,
        "total": len(findings),
        "more": len(findings) - len(shown),
        "counts": _counts(findings),
        "event": event,
        "period": period,
        "console_url": console_url,
        "actions": actions,
        "labels": dict(labels),
        "generated_at": generated_at,
        "items": items,
    }


def item_context(message: Mapping[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
    """A console card's context: the message's, narrowed to one finding or event."""
    finding = item.get("finding")
    if finding is None and item.get("event"):
        finding = item["event"].get("finding")
    return {**message, "finding": finding, "event": item.get("event") or message["event"]}


# -- sample data (load-time checks, documentation) ------------------------------------------------

_SAMPLE_REC: Final[dict[str, Any]] = {
    "id": 1,
    "plugin_id": "com.powerx.plugins.sample",
    "current_version": "1.3.0",
    "target_version": "1.3.1-security.1",
    "latest_version": "1.5.0",
    "update_type": "patch",
    "risk_level": "critical",
    "priority": 97,
    "action": "upgrade_now",
    "critical_patch": True,
    "partial": False,
    "sla_deadline": "2026-12-03T00:00:00Z",
    "advisories": [
        {
            "id": "PXSA-0000-0001",
            "aliases": ["CVE-0000-0001"],
            "summary": "Sample advisory",
            "severity": "critical",
            "cvss": 9.8,
            "exploited": True,
            "fixed_in": "1.3.1-security.1",
        }
    ],
    "changelog": ["1.3.1-security.1: ### Security\n- PXSA-0000-0001 fixed."],
    "release_notes": [{"version": "1.3.1-security.1", "url": "https://docs.powerx.example/sample/1.3.1"}],
    "compatibility": ["host px.host.v1: verified"],
    "co_upgrades": ["com.powerx.plugins.base >=1.2.0"],
    "reasons": ["PXSA-0000-0001 (critical, CVSS 9.8) is fixed in 1.3.1-security.1"],
    "enforcement": "advisory",
    "state": "open",
}
_SAMPLE_TENANT: Final = {
    "uuid": "00000000-0000-0000-0000-000000000001",
    "key": "sample",
    "name": "Sample Tenant",
    "installations": 12,
    "needing_action": 3,
    "critical": 1,
}


def _sample_event(kind: MessageKind, finding: dict[str, Any]) -> dict[str, Any] | None:
    common = {"finding": finding, "occurred_at": "2026-11-30T00:00:00Z"}
    samples: dict[MessageKind, dict[str, Any]] = {
        MessageKind.DECISION: {
            **common,
            "decision": "schedule",
            "actor": "admin@sample.example",
            "reason": "maintenance window",
            "target_version": "1.3.1-security.1",
            "scheduled_for": "2026-12-01T02:00:00Z",
            "until": None,
        },
        MessageKind.SLA_BREACH: {
            **common,
            "breach": "critical_past_deadline",
            "sla_deadline": "2026-11-29T00:00:00Z",
            "scheduled_for": None,
        },
        MessageKind.IGNORE_BROKEN: {**common, "reason": "a new advisory made it critical", "decision_id": 7},
        MessageKind.ALERT: {
            "finding": None,
            "occurred_at": "2026-11-30T00:00:00Z",
            "alert": "scan_failures",
            "message": "3 consecutive scans failed",
            "severity": "high",
            "data": {},
        },
    }
    return samples.get(kind)


def sample_context(kind: MessageKind, *, console_url: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A representative context of `kind`, built by the same functions as real messages."""
    finding = finding_context(
        _SAMPLE_REC, change="opened", plugin_name="Sample", console_url=console_url, labels=labels
    )
    event = _sample_event(kind, finding)
    is_findings = kind in (MessageKind.FINDING, MessageKind.DIGEST)
    return message_context(
        kind,
        tenant=None if kind is MessageKind.ALERT else _SAMPLE_TENANT,
        findings=[finding, {**finding, "id": 2}] if is_findings else [],
        events=[] if event is None else [event],
        console_url=console_url,
        labels=labels,
        generated_at="2026-11-30T00:00:00Z",
        period="daily" if kind is MessageKind.DIGEST else None,
    )


__all__ = [
    "ACTIONS",
    "Format",
    "Part",
    "TemplateSet",
    "Trusted",
    "card_kind",
    "escape_markdown",
    "escape_slack",
    "finding_context",
    "item_context",
    "message_context",
    "required_parts",
    "safe_url",
    "sample_context",
]
