"""Policy versions: every governance rules document in force gets a number, a hash, an author.

A change of the rules file (noticed on the scheduler tick) or a document submitted over the
API/CLI becomes version N+1 and current; `rollback` makes an earlier version current again.
Both are audited and queue a full re-scan, and every recommendation names the version that
produced it. An invalid document is refused with the field named, and the version in force
stays: a refused file is audited once (per content) and not read again until it changes.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.db.locks import transaction_lock
from powerx_governance.db.session import transaction
from powerx_governance.errors import InputError
from powerx_governance.kernel import Rescan
from powerx_governance.policy.loader import rules_from_data
from powerx_governance.policy.rules import DEFAULT_RULES, GovernanceRules
from powerx_governance.policy_versions.model import (
    CurrentPolicy,
    PolicySource,
    PolicyVersionError,
    UnknownPolicyVersionError,
)
from powerx_governance.policy_versions.tables import PolicyStateRow, PolicyVersionRow
from powerx_governance.safe_yaml import parse_document, read_bytes

log = logging.getLogger("powerx.policy")
_STATE_ID = 1
_LOCK_CLASS = 0x504F4C49  # "POLI"
MAX_POLICY_BYTES = 1024 * 1024


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def builtin_content() -> str:
    """The built-in defaults as a rules document (what runs when no rules file is configured)."""
    header = "# built-in defaults (no rules file configured): DESIGN §5 exactly\n"
    return header + yaml.safe_dump(msgspec.to_builtins(DEFAULT_RULES), sort_keys=False)


def parse_content(content: str, source: str) -> GovernanceRules:
    """Validate a rules document; InputError naming the field when it is refused."""
    return rules_from_data(parse_document(content.encode(), source), source)


def versions(session: Session) -> list[PolicyVersionRow]:
    return list(session.execute(select(PolicyVersionRow).order_by(PolicyVersionRow.number)).scalars())


def get_version(session: Session, number: int) -> PolicyVersionRow:
    row = session.get(PolicyVersionRow, number)
    if row is None:
        raise UnknownPolicyVersionError(number)
    return row


def state(session: Session) -> PolicyStateRow | None:
    return session.get(PolicyStateRow, _STATE_ID)


def current_number(session: Session) -> int | None:
    return session.execute(
        select(PolicyStateRow.current_version).where(PolicyStateRow.id == _STATE_ID)
    ).scalar_one_or_none()


def version_dict(row: PolicyVersionRow, current: int | None, *, content: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {
        "number": row.number,
        "current": row.number == current,
        "content_hash": row.content_hash,
        "source": row.source,
        "author": row.author,
        "note": row.note,
        "created_at": row.created_at,
    }
    return found | ({"content": row.content} if content else {})


def diff(older: PolicyVersionRow, newer: PolicyVersionRow) -> str:
    """A unified diff of two versions' documents."""
    return "".join(
        difflib.unified_diff(
            older.content.splitlines(keepends=True),
            newer.content.splitlines(keepends=True),
            fromfile=f"policy version {older.number}",
            tofile=f"policy version {newer.number}",
        )
    )


def _set_current(
    session: Session, number: int, actor: str, now: datetime, file_hash: str | None
) -> int | None:
    row = state(session)
    if row is None:
        session.add(
            PolicyStateRow(
                id=_STATE_ID, current_version=number, file_hash=file_hash, changed_by=actor, changed_at=now
            )
        )
        session.flush()
        return None
    previous = row.current_version
    row.current_version, row.changed_by, row.changed_at = number, actor, now
    if file_hash is not None:
        row.file_hash = file_hash
    return previous


def add_version(
    session: Session,
    content: str,
    *,
    source: PolicySource,
    author: str,
    now: datetime,
    rescan: Rescan,
    note: str | None = None,
    file_hash: str | None = None,
) -> PolicyVersionRow:
    """Validate `content` (InputError when refused), store it as the next version and make it current."""
    parse_content(content, f"policy ({source.value} by {author})")
    transaction_lock(session, _LOCK_CLASS, "policy")  # numbers are handed out one at a time
    number = (session.execute(select(func.max(PolicyVersionRow.number))).scalar() or 0) + 1
    digest = content_hash(content)
    row = PolicyVersionRow(
        number=number,
        content_hash=digest,
        content=content,
        source=source.value,
        author=author,
        note=note,
        created_at=now,
    )
    session.add(row)
    session.flush()
    previous = _set_current(session, number, author, now, file_hash)
    if previous is None:  # the first version a store runs with is its starting point, not a change
        return row
    scan_id = rescan(session, author, now)
    _audit(
        session,
        "policy.version_created",
        author,
        now,
        number,
        previous,
        content_hash=digest,
        source=source.value,
        note=note,
        scan_id=scan_id,
    )
    return row


def rollback(
    session: Session, number: int, *, actor: str, now: datetime, rescan: Rescan, reason: str | None = None
) -> tuple[int | None, str]:
    """Make version `number` current again and queue a full re-scan; (previous version, scan id)."""
    transaction_lock(session, _LOCK_CLASS, "policy")
    target = get_version(session, number)
    parse_content(target.content, f"policy version {number}")  # still valid under today's schema
    previous = _set_current(session, number, actor, now, None)
    scan_id = rescan(session, actor, now)
    _audit(
        session,
        "policy.rollback",
        actor,
        now,
        number,
        previous,
        content_hash=target.content_hash,
        reason=reason,
        scan_id=scan_id,
    )
    return previous, scan_id


def _audit(
    session: Session,
    operation: str,
    actor: str,
    now: datetime,
    number: int,
    previous: int | None,
    **meta: Any,
) -> None:
    record(
        session,
        AuditEvent(
            source="governance",
            operation=operation,
            resource_type="policy_version",
            resource_id=str(number),
            actor=actor,
            severity="warning" if operation == "policy.rollback" else "info",
            changes={"before": {"current_version": previous}, "after": {"current_version": number}},
            meta=meta,
        ),
        now,
    )


def _current_hash(session: Session, current: PolicyStateRow) -> str:
    return get_version(session, current.current_version).content_hash


def _refuse(session: Session, path: Path, digest: str, error: InputError, now: datetime) -> None:
    row = state(session)
    if row is not None:
        row.file_hash = digest  # refused once: not read again until the file changes
    record(
        session,
        AuditEvent(
            source="governance",
            operation="policy.refused",
            resource_type="policy_file",
            resource_id=str(path),
            actor=f"file:{path}",
            outcome="failure",
            severity="error",
            changes={},
            meta={
                "content_hash": digest,
                "error": str(error.problem),
                "current_version": row.current_version if row else None,
            },
        ),
        now,
    )


def sync_file(session: Session, path: Path | None, now: datetime, rescan: Rescan) -> int | None:
    """Turn a changed rules file into a new version (or the built-in defaults into version 1);
    the number of the version created, if any.

    InputError only when nothing is in force yet and the file is invalid (a scan then fails,
    naming the field); once a version exists an invalid file is refused and audited instead.
    """
    transaction_lock(session, _LOCK_CLASS, "policy")  # instances read the same file at the same tick
    current = state(session)
    if path is None:
        if current is not None:
            return None
        row = add_version(
            session, builtin_content(), source=PolicySource.BUILTIN, author="builtin", now=now, rescan=rescan
        )
        return row.number
    try:
        content = read_bytes(path, limit=MAX_POLICY_BYTES).decode("utf-8", errors="replace")
    except InputError as exc:  # missing or too large: nothing to compare, the version in force stays
        if current is None:
            raise
        log.warning("rules file unreadable; policy version %s stays: %s", current.current_version, exc)
        return None
    digest = content_hash(content)
    if current is not None and digest in (current.file_hash, _current_hash(session, current)):
        current.file_hash = digest  # e.g. a file put back to the version in force: nothing changed
        return None
    try:
        row = add_version(
            session,
            content,
            source=PolicySource.FILE,
            author=f"file:{path}",
            now=now,
            rescan=rescan,
            file_hash=digest,
            note=f"read from {path}",
        )
    except InputError as exc:
        if current is None:
            raise
        _refuse(session, path, digest, exc, now)
        log.warning("rules file refused, policy version %s stays in force: %s", current.current_version, exc)
        return None
    return row.number


class PolicyRegistry:
    """The current policy for scans, parsed once per version; reads the rules file on `sync`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        rules_path: Path | None,
        plain: Callable[[Session], bool],
        rescan: Rescan,
    ) -> None:
        self._factory = factory
        self.rescan = rescan
        self._path = rules_path
        self._plain = plain
        self._parsed: dict[int, GovernanceRules] = {}

    def sync(self, now: datetime) -> int | None:
        """Read the rules file (instances reading it at once take turns: see `sync_file`)."""
        with transaction(self._factory) as session:
            return sync_file(session, self._path, now, self.rescan)

    def current(self, now: datetime) -> CurrentPolicy:
        with self._factory() as session:
            number = current_number(session)
        if number is None:
            self.sync(now)  # the first use: raises InputError when the rules file is invalid
        with self._factory() as session:
            number = current_number(session)
            if number is None:
                raise PolicyVersionError("no policy version is in force")
            rules = self._parsed.get(number)
            if rules is None:
                content = get_version(session, number).content
                rules = self._parsed[number] = parse_content(content, f"policy version {number}")
            return CurrentPolicy(number, rules, self._plain(session))
