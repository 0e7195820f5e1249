"""Tenant manifest records (DESIGN §4, schema `powerx.manifest/v1`)."""

from __future__ import annotations

from typing import Final

import msgspec

from powerx_governance.domain import Channel, InstallState, Plan
from powerx_governance.records import AwareDatetime

MANIFEST_SCHEMA: Final = "powerx.manifest/v1"


class Installation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False, gc=False):
    """One plugin installed in a tenant."""

    plugin_id: str
    version: str
    channel: Channel = Channel.STABLE
    state: InstallState = InstallState.ENABLED
    auto_update: bool = False
    pinned: bool = False


class TenantManifest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What one tenant runs: its core version and its plugins."""

    tenant_uuid: str
    core_version: str
    plugins: tuple[Installation, ...] = ()
    schema: str = MANIFEST_SCHEMA
    tenant_key: str | None = None
    name: str | None = None
    plan: Plan | None = None
    tags: tuple[str, ...] = ()
    host: str | None = None
    scanned_at: AwareDatetime | None = None

    @property
    def host_id(self) -> str:
        """The PowerX host id: the manifest's `host`, else `px.host.v<major of core_version>`."""
        if self.host:
            return self.host
        return f"px.host.v{self.core_version.lstrip('vV').split('.', 1)[0]}"
