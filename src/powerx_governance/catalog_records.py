"""Catalog records (DESIGN §4, schema `powerx.catalog/v1`) and OSV advisories."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

import msgspec

from powerx_governance.domain import Channel, LifecycleStatus
from powerx_governance.records import AwareDatetime

CATALOG_SCHEMA: Final = "powerx.catalog/v1"


class Dependency(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: str
    version: str = "*"


class Lifecycle(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    status: LifecycleStatus = LifecycleStatus.ACTIVE
    sunset_at: AwareDatetime | None = None
    replacement: str | None = None
    reason: str | None = None


ACTIVE: Final = Lifecycle()


class Release(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    version: str
    channel: Channel = Channel.STABLE
    released_at: AwareDatetime | None = None
    min_core: str | None = None
    max_core: str | None = None
    dependencies: tuple[Dependency, ...] = ()
    changelog: str | None = None
    release_notes_url: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    lifecycle: Lifecycle = ACTIVE
    yanked: bool = False


class UnreadableRelease(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A release record that had to be skipped: an installation of its version is sent to review."""

    version: str  # as written (may itself be the unreadable part)
    problem: str


class Plugin(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    plugin_id: str
    name: str | None = None
    vendor_id: str | None = None
    lifecycle: Lifecycle = ACTIVE
    releases: tuple[Release, ...] = ()
    unreadable_releases: tuple[UnreadableRelease, ...] = ()


class SeverityType(StrEnum):
    CVSS_V2 = "CVSS_V2"
    CVSS_V3 = "CVSS_V3"
    CVSS_V4 = "CVSS_V4"


class OsvSeverity(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    type: str
    score: str


class OsvEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    introduced: str | None = None
    fixed: str | None = None
    last_affected: str | None = None
    limit: str | None = None


class OsvRange(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    type: str
    events: tuple[OsvEvent, ...] = ()


class OsvPackage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    ecosystem: str = "PowerX"


class OsvAffected(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    package: OsvPackage
    ranges: tuple[OsvRange, ...] = ()
    versions: tuple[str, ...] = ()


class OsvReference(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    type: str = "WEB"
    url: str = ""


class Advisory(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An OSV record (OpenSSF schema), as published by OSV.dev, GitHub, PyPA, RustSec, Go."""

    id: str
    modified: AwareDatetime | None = None
    published: AwareDatetime | None = None
    withdrawn: AwareDatetime | None = None
    aliases: tuple[str, ...] = ()
    summary: str | None = None
    details: str | None = None
    severity: tuple[OsvSeverity, ...] = ()
    affected: tuple[OsvAffected, ...] = ()
    references: tuple[OsvReference, ...] = ()
    database_specific: dict[str, Any] = msgspec.field(default_factory=dict)
    schema_version: str | None = None


class CompatAction(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    WARN = "warn"


class CompatEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One row of `config/version/compat_matrix.yaml`."""

    host: str
    plugin: str
    action: CompatAction
    min_version: str | None = None
    max_version: str | None = None
    notes: str | None = None


class Catalog(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything known about plugins, releases and advisories at one moment."""

    plugins: tuple[Plugin, ...] = ()
    advisories: tuple[Advisory, ...] = ()
    matrix: tuple[CompatEntry, ...] = ()
    advisory_source_problems: tuple[str, ...] = ()  # the advisory source could not be read (DESIGN §7)
