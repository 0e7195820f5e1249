"""Request-scoped dependencies: the session, the principal, and the tenant scope."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from powerx_governance.api.authentication import authentication
from powerx_governance.api.problems import ProblemError
from powerx_governance.auth.model import Role
from powerx_governance.auth.throttle import Channel
from powerx_governance.auth.tokens import Principal
from powerx_governance.feature_flags import Flag
from powerx_governance.inventory.queries import tenants_named

if TYPE_CHECKING:  # the composition root: routes see it as a type only, so no component imports it
    from powerx_governance.service import GovernanceService

log = logging.getLogger("powerx.auth")


async def service(request: Request) -> GovernanceService:
    """The service behind the app (async: no I/O, so FastAPI runs it without a worker thread)."""
    return cast("GovernanceService", request.app.state.service)


if TYPE_CHECKING:
    ServiceDep = Annotated[GovernanceService, Depends(service)]
else:  # FastAPI reads this at run time: the dependency is what matters, not the class
    ServiceDep = Annotated[Any, Depends(service)]


def session(svc: ServiceDep) -> Iterator[Session]:
    """A session for reading. FastAPI closes yield dependencies after the answer is sent, so a
    route that writes opens `transaction()` itself: its commit must come before the answer."""
    with svc.factory() as s, s.begin():
        yield s


SessionDep = Annotated[Session, Depends(session)]


def client_address(request: Request) -> str:
    """The peer address (the proxy's, unless uvicorn is told to trust its forwarded headers)."""
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls, and the feature flags as of that moment: read together, in one short transaction
    (the flags only for the routes `GovernanceOn` guards)."""

    who: Principal
    flags: Mapping[Flag, bool]


async def caller(request: Request) -> Caller:
    """The bearer token's principal and, for the routes `GovernanceOn` guards, the flags; read with
    the tokens of the requests of the same moment (`api.authentication`: one worker-thread hop for
    them all, not one each). The service is taken from the app as `service` takes it: every level of
    dependencies costs FastAPI a solving pass per request."""
    svc = cast("GovernanceService", request.app.state.service)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(
            401,
            "Authentication required",
            "send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    presented, address = token.strip(), client_address(request)
    wait = svc.auth_throttle.retry_after(Channel.API, address, presented)
    if wait is not None:
        raise ProblemError(
            429,
            "Too many failed attempts",
            "too many failed authentication attempts from this address or with this token;"
            f" try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    found, flags = await authentication(svc).check(presented, flags=_paused_with_governance(request))
    if found is None:
        svc.auth_throttle.failed(Channel.API, address, presented)
        raise ProblemError(
            401,
            "Authentication required",
            "the token is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return Caller(found, flags)


def _paused_with_governance(request: Request) -> bool:
    """Whether the route declares `GovernanceOn` (then `caller` reads the flags; reads need none)."""
    route = request.scope.get("route")
    if route is None:
        return True
    return any(getattr(d, "dependency", None) is governance_on for d in getattr(route, "dependencies", ()))


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only `roles`; others get 403 (and are logged). Async: it does no I/O
    (`caller` did), so FastAPI runs it without handing it to a worker thread."""

    async def check(found: Annotated[Caller, Depends(caller)], request: Request) -> Principal:
        who = found.who
        if who.role not in roles:
            log.warning(
                "role refused",
                extra={"token_id": who.token_id, "role": who.role.value, "path": request.url.path},
            )
            raise ProblemError(403, "Forbidden", f"role {who.role} may not call this route")
        return who

    return check


def refuse_cross_tenant(who: Principal, requested: str, path: str) -> ProblemError:
    """Log a cross-tenant attempt; the caller raises the 404 (another tenant's data does not exist for it)."""
    log.warning(
        "cross-tenant access refused",
        extra={
            "token_id": who.token_id,
            "tenant": who.tenant_uuid,
            "requested_tenant": requested,
            "path": path,
        },
    )
    return ProblemError(404, "Not found", "no such resource")


def scoped_tenant(who: Principal, requested: str | None, path: str) -> str | None:
    """The tenant a query is limited to. A tenant-bound caller asking for another tenant gets 404."""
    if who.fleet_wide:
        return requested
    if requested is not None and requested != who.tenant_uuid:
        raise refuse_cross_tenant(who, requested, path)
    return who.tenant_uuid


Reader = Annotated[Principal, Depends(require(Role.SERVICE, Role.OPERATOR, Role.TENANT_ADMIN, Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.SERVICE, Role.OPERATOR))]
Internal = Annotated[Principal, Depends(require(Role.SERVICE))]

TenantQuery = Annotated[
    str | None,
    Query(description="Only this tenant: its tenant_uuid or its tenant_key (as the CLI's --tenant)."),
]


def _requested_tenant(
    who: Principal, session: Session, requested: str, path: str, *, stored: bool
) -> str | None:
    """The uuid `requested` (a uuid or a key) names for `who`; see `tenant_scope`."""
    if "\x00" in requested:
        detail = "NUL is not allowed in a tenant uuid or key"
        raise ProblemError(422, "Invalid request", detail, errors=[{"field": "tenant", "error": detail}])
    uuids = tenants_named(session, requested)
    if not who.fleet_wide:
        if requested != who.tenant_uuid and who.tenant_uuid not in uuids:
            raise refuse_cross_tenant(who, requested, path)
        return who.tenant_uuid
    if len(uuids) > 1:
        detail = f"tenant key {requested!r} names {len(uuids)} tenants ({', '.join(uuids)}); give the uuid"
        raise ProblemError(422, "Invalid request", detail, errors=[{"field": "tenant", "error": detail}])
    if uuids:
        return uuids[0]
    if stored:
        raise ProblemError(404, "Not found", f"no tenant {requested!r} (by tenant_uuid or tenant_key)")
    return requested


def tenant_scope(*, stored: bool = True) -> Callable[..., str | None]:
    """A dependency: the tenant a listing is limited to, from its `tenant` query parameter (a uuid or a
    key, resolved to the uuid once). A tenant-bound caller is always limited to its own tenant and gets
    404 for another one. A fleet-wide caller naming no stored tenant gets 404, unless `stored` is off:
    then the name is taken as the uuid of a tenant that may be gone (the audit trail outlives tenants)."""

    def scope(who: Reader, session: SessionDep, request: Request, tenant: TenantQuery = None) -> str | None:
        if tenant is None:
            return None if who.fleet_wide else who.tenant_uuid
        return _requested_tenant(who, session, tenant, request.url.path, stored=stored)

    return scope


TenantScope = Annotated[str | None, Depends(tenant_scope())]


GOVERNANCE_OFF = (
    "plugin version governance is off (feature flag plugin-version-governance): scans, notifications"
    " and decisions are paused until an operator turns it on; nothing was recorded"
    " (GET /internal/version/governance/flags shows the flags)"
)


async def governance_on(found: Annotated[Caller, Depends(caller)]) -> None:
    """503 for governance work while the flag is off (checked after authentication, with the flags
    read in the same transaction as the token)."""
    if not found.flags[Flag.GOVERNANCE]:
        raise ProblemError(503, "Governance is off", GOVERNANCE_OFF, flag=Flag.GOVERNANCE.value)


GovernanceOn = Depends(governance_on)
