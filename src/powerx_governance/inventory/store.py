"""Inventory persistence: set-based upserts by manifest hash, and manifests read back for evaluation."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlalchemy import String, Text, delete, select, type_coerce, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import CopiedApart, DriverRows, bulk_insert, bulk_update, copy_field
from powerx_governance.db.chunks import among, chunks, rows_for
from powerx_governance.domain import Channel, InstallState, Plan
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.memo import Memo

_ENCODER = msgspec.json.Encoder(order="deterministic")


def manifest_hash(manifest: TenantManifest) -> str:
    """Content hash of what matters for evaluation (scanned_at excluded: a re-read is not a change)."""
    return hashlib.sha256(_ENCODER.encode(msgspec.structs.replace(manifest, scanned_at=None))).hexdigest()


def _tenant_values(m: TenantManifest, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "tenant_uuid": m.tenant_uuid,
        "tenant_key": m.tenant_key,
        "name": m.name,
        "plan": m.plan.value if m.plan else None,
        "tags": list(m.tags),
        "core_version": m.core_version,
        "host": m.host,
        "manifest_hash": digest,
        "scanned_at": m.scanned_at,
        "fetched_at": now,
        "dirty": True,
    }


def _installation_values(m: TenantManifest) -> list[dict[str, Any]]:
    return [
        {
            "tenant_uuid": m.tenant_uuid,
            "plugin_id": p.plugin_id,
            "version": p.version,
            "channel": p.channel.value,
            "state": p.state.value,
            "auto_update": p.auto_update,
            "pinned": p.pinned,
        }
        for p in m.plugins
    ]


def existing_hashes(session: Session, tenant_uuids: Sequence[str] | None) -> dict[str, str]:
    stmt = select(TenantRow.tenant_uuid, TenantRow.manifest_hash)
    if tenant_uuids is None:
        return dict(session.connection().execute(stmt).all())
    found: dict[str, str] = {}
    for part in chunks(tenant_uuids):
        found.update(
            session.connection().execute(stmt.where(among(session, TenantRow.tenant_uuid, part))).all()
        )
    return found


def upsert_manifests(session: Session, manifests: Sequence[TenantManifest], now: datetime) -> list[str]:
    """Store good manifests; only tenants whose content changed are rewritten (and marked dirty)."""
    known = existing_hashes(session, [m.tenant_uuid for m in manifests])
    digests = {m.tenant_uuid: manifest_hash(m) for m in manifests}
    changed = [m for m in manifests if known.get(m.tenant_uuid) != digests[m.tenant_uuid]]
    new = [m for m in changed if m.tenant_uuid not in known]
    updated = [m for m in changed if m.tenant_uuid in known]
    for part in chunks([m.tenant_uuid for m in updated]):
        session.execute(delete(InstallationRow).where(among(session, InstallationRow.tenant_uuid, part)))
    bulk_insert(session, TenantRow, [_tenant_values(m, digests[m.tenant_uuid], now) for m in new])
    bulk_update(
        session,
        TenantRow,
        [_tenant_values(m, digests[m.tenant_uuid], now) for m in updated],
        key="tenant_uuid",
    )
    for part in chunks(changed, 2000):  # bounded memory: a first ingest writes a million rows
        bulk_insert(session, InstallationRow, [row for m in part for row in _installation_values(m)])
    unchanged = [m.tenant_uuid for m in manifests if known.get(m.tenant_uuid) == digests[m.tenant_uuid]]
    for part in chunks(unchanged):
        session.execute(
            update(TenantRow).where(among(session, TenantRow.tenant_uuid, part)).values(fetched_at=now)
        )
    return [m.tenant_uuid for m in changed]


def load_manifests(session: Session, tenant_uuids: Sequence[str] | None = None) -> list[TenantManifest]:
    """Manifests as stored (the last good one per tenant), for evaluation without the source."""
    tenants = _tenant_rows(session, tenant_uuids)
    plugins: dict[str, list[Installation]] = {uuid: [] for uuid in tenants}
    columns = (
        InstallationRow.tenant_uuid,
        InstallationRow.plugin_id,
        InstallationRow.version,
        InstallationRow.channel,
        InstallationRow.state,
        InstallationRow.auto_update,
        InstallationRow.pinned,
    )
    stmt = select(*columns)
    # each distinct row made once and shared (installations are frozen): a plugin the whole fleet runs
    # sits in a few hundred (version, channel, state, flags) rows, and making each, with its two enum
    # look-ups, cost more than reading it
    made = Memo(_installation)
    parts = [None] if tenant_uuids is None else list(chunks(list(tenant_uuids)))
    for part in parts:
        query = stmt if part is None else stmt.where(among(session, InstallationRow.tenant_uuid, part))
        for row in session.connection().execute(query):
            bucket = plugins.get(row[0])
            if bucket is not None:
                bucket.append(made[row[1:]])
    return [msgspec.structs.replace(t, plugins=tuple(plugins[uuid])) for uuid, t in tenants.items()]


def _installation(row: tuple[str, str, str, str, bool, bool]) -> Installation:
    """An installation made from a stored row (plugin, version, channel, state, auto, pinned)."""
    plugin_id, version, channel, state, auto, pinned = row
    return Installation(
        plugin_id=plugin_id,
        version=version,
        channel=Channel(channel),
        state=InstallState(state),
        auto_update=auto,
        pinned=pinned,
    )


# Tags read as JSON text and scanned_at as stored, each distinct value converted once: a push for a
# plugin the whole fleet runs reads 20,000 tenant rows, which share a few dozen of each, and the
# generic per-row conversions (JSON, timezone) cost more than the rest of the row.
_TAGS: Final = msgspec.json.Decoder(tuple[str, ...])
_TENANT_COLUMNS: Final = (
    TenantRow.tenant_uuid,
    TenantRow.tenant_key,
    TenantRow.name,
    TenantRow.plan,
    sql_cast(TenantRow.tags, Text),
    TenantRow.core_version,
    TenantRow.host,
    type_coerce(TenantRow.scanned_at, String),
)


def _tenant_rows(session: Session, tenant_uuids: Sequence[str] | None) -> dict[str, TenantManifest]:
    dialect = session.get_bind().dialect
    moment = TenantRow.__table__.c.scanned_at.type.dialect_impl(dialect).result_processor(dialect, None)
    plans: Memo[str | None, Plan | None] = Memo(lambda plan: Plan(plan) if plan else None)
    tags_of: Memo[str, tuple[str, ...]] = Memo(_TAGS.decode)
    moments: Memo[Any, datetime | None] = Memo(
        lambda raw: raw if raw is None or moment is None else moment(raw)
    )
    found: dict[str, TenantManifest] = {}
    for uuid, key, name, plan, tags, core, host, scanned in rows_for(
        session, select(*_TENANT_COLUMNS), TenantRow.tenant_uuid, tenant_uuids
    ):
        found[uuid] = TenantManifest(
            tenant_uuid=uuid,
            tenant_key=key,
            name=name,
            plan=plans[plan],
            tags=tags_of[tags],
            core_version=core,
            host=host,
            scanned_at=moments[scanned],
        )
    if tenant_uuids is None:
        return found
    return {uuid: found[uuid] for uuid in tenant_uuids if uuid in found}  # in the order asked for


def load_installations_of(
    session: Session, plugin_ids: Sequence[str], tenant_uuids: Sequence[str] | None = None
) -> list[TenantManifest]:
    """Every tenant running one of `plugin_ids` (only those of `tenant_uuids` when given), with only
    those installations (for delta scans)."""
    if not plugin_ids or (tenant_uuids is not None and not tenant_uuids):
        return []
    by_tenant: dict[str, list[Installation]] = {}
    stmt = select(
        InstallationRow.tenant_uuid,
        InstallationRow.plugin_id,
        InstallationRow.version,
        InstallationRow.channel,
        InstallationRow.state,
        InstallationRow.auto_update,
        InstallationRow.pinned,
    )
    tenant_parts = [None] if tenant_uuids is None else list(chunks(list(tenant_uuids)))
    queries = [
        stmt.where(among(session, InstallationRow.plugin_id, part))
        if tenants is None
        else stmt.where(
            among(session, InstallationRow.plugin_id, part),
            among(session, InstallationRow.tenant_uuid, tenants),
        )
        for tenants in tenant_parts
        for part in chunks(list(plugin_ids))
    ]
    made = Memo(_installation)  # each distinct row made once (see load_manifests)
    for query in queries:
        for row in session.connection().execute(query):
            by_tenant.setdefault(row[0], []).append(made[row[1:]])
    tenants = _tenant_rows(session, sorted(by_tenant))
    return [msgspec.structs.replace(t, plugins=tuple(by_tenant[uuid])) for uuid, t in tenants.items()]


def installed_versions(
    session: Session, tenant_uuids: Sequence[str], plugin_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """tenant → {plugin → version} for the given plugins (read by plugin, which is indexed)."""
    wanted = set(tenant_uuids)
    found: dict[str, dict[str, str]] = {}
    stmt = select(InstallationRow.tenant_uuid, InstallationRow.plugin_id, InstallationRow.version)
    for part in chunks(list(plugin_ids)):
        for uuid, plugin_id, version in session.connection().execute(
            stmt.where(among(session, InstallationRow.plugin_id, part))
        ):
            if uuid in wanted:
                found.setdefault(uuid, {})[plugin_id] = version
    return found


def fetched_since(session: Session, tenant_uuids: Sequence[str], oldest: datetime) -> dict[str, datetime]:
    """tenant → when its stored (last good) manifest was last read, for those read after `oldest`."""
    found: dict[str, datetime] = {}
    stmt = select(TenantRow.tenant_uuid, TenantRow.fetched_at)
    for part in chunks(list(tenant_uuids)):
        query = stmt.where(among(session, TenantRow.tenant_uuid, part), TenantRow.fetched_at > oldest)
        for uuid, fetched_at in session.execute(query):
            found[uuid] = fetched_at
    return found


def dirty_tenants(session: Session) -> list[str]:
    return list(session.execute(select(TenantRow.tenant_uuid).where(TenantRow.dirty)).scalars())


def tenants_running(session: Session, plugin_ids: Sequence[str]) -> list[str]:
    """Tenants with an installation of any of these plugins."""
    found: set[str] = set()
    for part in chunks(list(plugin_ids)):
        stmt = (
            select(InstallationRow.tenant_uuid)
            .where(among(session, InstallationRow.plugin_id, part))
            .distinct()
        )
        found.update(session.execute(stmt).scalars())
    return sorted(found)


def mark_clean(session: Session, tenant_uuids: Sequence[str]) -> None:
    """Clear the dirty marks of `tenant_uuids`; rows already clean are left alone: a steady fleet
    scan rewrote all 20,000 tenant rows (and their `dirty` index entries) on PostgreSQL."""
    for part in chunks(list(tenant_uuids)):
        session.execute(
            update(TenantRow)
            .where(among(session, TenantRow.tenant_uuid, part), TenantRow.dirty)
            .values(dirty=False)
        )


_INSTALLATION_COLUMNS: Final = (
    "tenant_uuid",
    "plugin_id",
    "version",
    "channel",
    "state",
    "auto_update",
    "pinned",
)


def insert_new_manifests(
    session: Session, manifests: Sequence[TenantManifest], now: datetime, apart: CopiedApart | None = None
) -> None:
    """`upsert_manifests` of good manifests for a store holding none of their tenants (a first ingest
    reads a million installations): the same rows, the installations built as driver rows, each
    channel, state and flag converted once, not as a dict each. Manifests of a stored tenant (a
    source naming one tenant twice) go through `upsert_manifests`.

    PostgreSQL with `apart`: the installations go as COPY text lines that its thread sends while the
    caller goes on (the server stores them while the caller evaluates); the caller waits for it
    (`apart.wait`) before it next uses the session, as this function does first."""
    if apart is not None:
        apart.wait()
    if existing_hashes(session, [m.tenant_uuid for m in manifests]):
        upsert_manifests(session, manifests, now)
        return
    bulk_insert(session, TenantRow, [_tenant_values(m, manifest_hash(m), now) for m in manifests])
    table = DriverRows(session, InstallationRow, _INSTALLATION_COLUMNS)
    if apart is not None and table.copies_text:
        apart.start(table.copy_of(_installation_lines(table, manifests)))
        return
    channels = {c: table.repeated("channel", c.value) for c in Channel}
    states = {s: table.repeated("state", s.value) for s in InstallState}
    auto = {flag: table.repeated("auto_update", flag) for flag in (False, True)}
    pinned = {flag: table.repeated("pinned", flag) for flag in (False, True)}
    table.insert(
        [
            (
                uuid,
                p.plugin_id,
                p.version,
                channels[p.channel],
                states[p.state],
                auto[p.auto_update],
                pinned[p.pinned],
            )
            for uuid, plugins in ((m.tenant_uuid, m.plugins) for m in manifests)
            for p in plugins
        ]
    )


def _installation_lines(table: DriverRows, manifests: Sequence[TenantManifest]) -> list[str]:
    """The manifests' installations as COPY text lines, the fields of each (channel, state, flags)
    made once."""

    def fields(said: tuple[Channel, InstallState, bool, bool]) -> str:
        channel, state, auto_update, pinned = said
        return "\t".join(map(table.field, (channel.value, state.value, auto_update, pinned)))

    tails = Memo(fields)
    return [
        f"{uuid}\t{copy_field(p.plugin_id)}\t{copy_field(p.version)}"
        f"\t{tails[p.channel, p.state, p.auto_update, p.pinned]}\n"
        for uuid, plugins in ((copy_field(m.tenant_uuid), m.plugins) for m in manifests)
        for p in plugins
    ]
