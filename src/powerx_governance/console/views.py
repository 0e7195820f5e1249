"""What the templates show: cards from stored recommendations, countdowns, changelog blocks, times."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from markupsafe import Markup

from powerx_governance.inventory.queries import TenantLabel
from powerx_governance.notifications.templates import finding_context
from powerx_governance.recommendations.model import UNRESOLVED

ACTION_LABELS: Final = {
    "upgrade": "Upgrade now",
    "schedule": "Schedule",
    "ignore": "Ignore",
    "open": "Open in console",
}
STATE_LABELS: Final = {
    "open": "Open",
    "decided": "Decided",
    "ignored": "Ignored",
    "resolved": "Resolved",
    "superseded": "Superseded",
}
ACTION_NAMES: Final = {
    "upgrade_now": "Upgrade now",
    "schedule": "Schedule an upgrade",
    "review": "Review: no fix is available",
    "blocked": "Blocked: no eligible release fixes it",
    "none": "Nothing to do",
}
OPERATION_WORDS: Final = {
    "decision.upgrade": "Upgrade decided",
    "decision.schedule": "Upgrade scheduled",
    "decision.ignore": "Ignored",
    "decision.reopen": "Decision withdrawn, reopened",
    "decision.fulfilled": "Decision done: target reached",
    "decision.broken": "Ignore broken by a new advisory",
    "decision.expired": "Ignore expired",
    "decision.superseded": "Decision replaced",
    "decision.breached": "Scheduled upgrade missed",
    "sla.breach": "SLA deadline passed",
    "recommendation.state_repaired": "State repaired by reconcile",
}
UPDATE_WORDS: Final = {
    "major": "Major update: expect breaking changes",
    "minor": "Minor update",
    "patch": "Patch update",
    "none": None,
}


def parse_time(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def time_tag(value: datetime | str | None, empty: str = "—") -> Markup:
    """A `<time>` the page's script shows in the viewer's zone; UTC text without script, UTC on hover."""
    moment = parse_time(value)
    if moment is None:
        return Markup("{}").format(empty)
    stamp = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    text = utc_text(moment)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(stamp, text, text)


@dataclass(frozen=True, slots=True)
class Countdown:
    text: str
    css: str  # overdue | soon | ok | none


def _span(seconds: float) -> str:
    minutes = int(abs(seconds)) // 60
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} d {hours} h" if hours and days < 3 else f"{days} d"
    return f"{hours} h {mins} min" if hours else f"{mins} min"


def countdown(deadline: datetime | str | None, now: datetime, *, state: str = "open") -> Countdown:
    """SLA time left (or overdue by), as text and a style; only unresolved findings run late
    (`recommendations.model.past_sla`, the tiles' and the breach job's definition)."""
    due = parse_time(deadline)
    if state not in UNRESOLVED:
        return Countdown("installed" if state == "resolved" else "no longer applies", "none")
    if due is None:
        return Countdown("no deadline", "none")
    left = (due - now).total_seconds()
    if left < 0:
        return Countdown(f"overdue by {_span(left)}", "overdue")
    return Countdown(f"due in {_span(left)}", "soon" if left < 72 * 3600 else "ok")


@dataclass(frozen=True, slots=True)
class ChangelogEntry:
    version: str
    blocks: list[tuple[str, list[str]]]  # (heading or "", lines or bullet items)


def changelog_entries(lines: list[str]) -> list[ChangelogEntry]:
    """`2.4.0: ### Added\\n- item` entries as headings and bullet lists (no markup from the data)."""
    entries = []
    for line in lines:
        version, _, text = line.partition(": ")
        blocks: list[tuple[str, list[str]]] = []
        for raw in text.splitlines():
            stripped = raw.strip()
            if stripped.startswith("#"):
                blocks.append((stripped.lstrip("#").strip(), []))
            elif stripped.startswith(("- ", "* ")):
                blocks = blocks or [("", [])]
                blocks[-1][1].append(stripped[2:])
            elif stripped and blocks and blocks[-1][1]:
                blocks[-1][1][-1] += " " + stripped  # a wrapped bullet continues
            elif stripped:
                blocks.append(("", [stripped]))
        entries.append(ChangelogEntry(version, blocks))
    return entries


# The engine's reason when the target brings an advisory the installed version does not have
# (policy/shaping.py); the verdict has no field for it, so the card reads the reason.
_NEW_IN_TARGET: Final = re.compile(r"^\S+ carries (.+?), which \S+ does not have")


def _carried(rec: dict[str, Any]) -> list[str]:
    """Advisories the target still carries or newly brings: "target also carries …" on every card."""
    still = [str(a.get("id")) for a in rec.get("advisories") or [] if a.get("in_target")]
    brought = [m.group(1) for r in rec.get("reasons") or [] if (m := _NEW_IN_TARGET.match(str(r)))]
    return list(dict.fromkeys([*still, *brought]))


def _action_label(rec: dict[str, Any]) -> str:
    if rec["action"] == "review" and not rec.get("advisories"):
        return "Review the update: no security fix in it"
    return ACTION_NAMES.get(rec["action"], str(rec["action"]))


def card(
    rec: dict[str, Any], *, plugin_name: str | None, tenant: TenantLabel | None, now: datetime
) -> dict[str, Any]:
    """A recommendation as a card: the notification context's finding plus console facts."""
    finding = finding_context(
        rec, change=None, plugin_name=plugin_name, console_url="/console", labels=ACTION_LABELS
    )
    return {
        **finding,
        "tenant_uuid": rec["tenant_uuid"],
        "tenant": tenant,
        "revision": rec["revision"],
        "state": rec["state"],
        "state_label": STATE_LABELS.get(rec["state"], rec["state"]),
        "action_label": _action_label(rec),
        "countdown": countdown(rec.get("sla_deadline"), now, state=rec["state"]),
        "rule_ids": list(rec.get("rule_ids") or []),
        "changelog_entries": changelog_entries(list(rec.get("changelog") or [])),
        "first_seen_at": rec.get("first_seen_at"),
        "updated_at": rec.get("updated_at"),
        "resolved_at": rec.get("resolved_at"),
        "lifecycle": rec.get("lifecycle"),
        "replacement": rec.get("replacement"),
        "exempted": rec.get("exempted"),
        "policy_mode": rec.get("policy_mode") or "governed",
        "policy_version": rec.get("policy_version"),
        "manifest_stale": bool(rec.get("manifest_stale")),
        "manifest_as_of": rec.get("manifest_as_of"),
        "core_version": rec.get("core_version"),
        "channel": rec.get("channel"),
        "decidable": rec["state"] != "resolved",
        "upgradable": bool(rec.get("target_version") or rec.get("latest_version")),
        "exploited": any(a.get("exploited") for a in rec.get("advisories") or []),
        "carries": _carried(rec),
        "update_words": UPDATE_WORDS.get(rec.get("update_type") or "none"),
        "standing": None,  # the active decision, when the page looked it up
    }


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What a decision will record, in words, and what the admin should know before confirming."""

    title: str
    lines: list[tuple[str, Markup | str]]
    warnings: list[str]
    late: bool  # a schedule after the SLA deadline: the admin must say so explicitly


def confirmation(
    c: dict[str, Any], kind: str, *, scheduled_for: datetime | None, tenants: int = 1
) -> Confirmation:
    """The confirmation step of one card's (or a bulk) decision."""
    to = c.get("target_version") or c.get("latest_version")
    lines: list[tuple[str, Markup | str]] = [
        (
            "Plugin",
            f"{c['plugin_name']} {c['current_version']}" + (f" → {to}" if to and kind != "ignore" else ""),
        ),
        ("Tenants", f"{tenants:,}"),
    ]
    if scheduled_for is not None:
        lines.append(("Upgrade at", time_tag(scheduled_for)))
    warnings = [f"Needs a co-upgrade: {n}." for n in c["compatibility"]["co_upgrades"]]
    warnings += [f"Compatibility note: {n}." for n in c["compatibility"]["notes"]]
    if c.get("carries") and kind != "ignore":
        warnings.append(f"The target still carries {', '.join(c['carries'])}: no eligible release avoids it.")
    due = parse_time(c.get("sla_deadline"))
    late = bool(kind == "schedule" and due and scheduled_for and scheduled_for > due)
    if late and due is not None:
        warnings.append(
            f"This is after the SLA deadline ({utc_text(due)}): the finding will count as past its SLA."
        )
    if kind == "ignore" and c.get("critical_patch"):
        warnings.append(
            "This is a critical patch: ignoring it leaves a critical or exploited advisory in place."
        )
    titles = {
        "upgrade": "Confirm: upgrade now",
        "schedule": "Confirm: schedule the upgrade",
        "ignore": "Confirm: ignore",
    }
    return Confirmation(titles.get(kind, "Confirm"), lines, warnings, late)
