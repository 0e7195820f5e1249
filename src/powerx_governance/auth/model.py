"""Who a token speaks for: the roles of API tokens and console users."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SERVICE = "service"  # internal routes (scheduler, webhooks, other PowerX services)
    OPERATOR = "operator"  # all tenants
    TENANT_ADMIN = "tenant_admin"  # one tenant, may decide
    VIEWER = "viewer"  # one tenant, read only
