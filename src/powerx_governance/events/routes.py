"""Event subscriptions (operators) and the pull feed (operators and service tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from powerx_governance.api.deps import Operator, ServiceDep, require
from powerx_governance.api.problems import declared
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.db.session import transaction
from powerx_governance.events import service
from powerx_governance.events.jobs import EventsConfig
from powerx_governance.events.model import EventType
from powerx_governance.events.outbox import newest_seq

router = APIRouter(prefix="/internal/version/governance", tags=["events"])
Manager = Annotated[Principal, Depends(require(Role.OPERATOR))]
_SUBSCRIPTION = "/events/subscriptions/{ref}"
_MAX_SEQ = 2**63 - 1


class SubscriptionBody(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    types: list[EventType] = Field(default_factory=list)
    tenants: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)
    batch_size: Annotated[int, Field(ge=1, le=service.MAX_BATCH)] = 1
    max_attempts: Annotated[int, Field(ge=1, le=service.MAX_ATTEMPTS)] = service.DEFAULT_MAX_ATTEMPTS
    secret: Annotated[str, Field(max_length=256)] | None = None


class ReplayBody(BaseModel):
    after: Annotated[int, Field(ge=0, le=_MAX_SEQ)]


@router.post("/events/subscriptions", status_code=201, responses=declared(409))
def create_subscription(body: SubscriptionBody, who: Manager, svc: ServiceDep) -> dict[str, Any]:
    """Subscribe a webhook; the answer carries the signing secret, shown this once."""
    spec = service.SubscriptionSpec(
        name=body.name,
        url=body.url,
        types=tuple(body.types),
        tenants=tuple(body.tenants),
        batch_size=body.batch_size,
        max_attempts=body.max_attempts,
        secret=body.secret,
    )
    with transaction(svc.factory) as session:
        row, secret = service.create(
            session, spec, svc.require(EventsConfig).destinations, who.name, svc.clock()
        )
        return {**service.view(row, row.cursor), "secret": secret}


@router.get("/events/subscriptions")
def list_subscriptions(_: Manager, svc: ServiceDep) -> dict[str, Any]:
    with svc.factory() as session:
        return {"items": service.listing(session)}


@router.get(_SUBSCRIPTION)
def show_subscription(ref: str, _: Manager, svc: ServiceDep) -> dict[str, Any]:
    """Status, cursor, lag (newest seq - cursor), failures and the last error."""
    with svc.factory() as session:
        return service.show(session, ref)


def _change(
    svc: ServiceDep, ref: str, who: Principal, action: str, after: int | None = None
) -> dict[str, Any]:
    with transaction(svc.factory) as session:
        now = svc.clock()
        if action == "pause":
            row = service.pause(session, ref, who.name, now)
        elif action == "resume":
            row = service.resume(session, ref, who.name, now)
        else:
            row = service.replay(session, ref, after or 0, who.name, now)
        result = service.view(row, newest_seq(session))
    svc.wake()
    return result


@router.post(_SUBSCRIPTION + "/pause")
def pause_subscription(ref: str, who: Manager, svc: ServiceDep) -> dict[str, Any]:
    return _change(svc, ref, who, "pause")


@router.post(_SUBSCRIPTION + "/resume")
def resume_subscription(ref: str, who: Manager, svc: ServiceDep) -> dict[str, Any]:
    """Deliver again from the cursor; a suspended subscription starts with a clean failure count."""
    return _change(svc, ref, who, "resume")


@router.post(_SUBSCRIPTION + "/replay")
def replay_subscription(ref: str, body: ReplayBody, who: Manager, svc: ServiceDep) -> dict[str, Any]:
    """Deliver every matching event after seq `after` again, in order (reactivates a suspended one)."""
    return _change(svc, ref, who, "replay", body.after)


@router.delete(_SUBSCRIPTION, status_code=204)
def delete_subscription(ref: str, who: Manager, svc: ServiceDep) -> Response:
    with transaction(svc.factory) as session:
        service.remove(session, ref, who.name, svc.clock())
    return Response(status_code=204)


@router.get("/events")
def get_events(
    _: Operator,
    svc: ServiceDep,
    after: Annotated[int, Query(ge=0, le=_MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_FEED_PAGE)] = 100,
    event_type: Annotated[list[EventType] | None, Query(alias="type")] = None,
    tenant_uuid: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """The event log after a cursor, as CloudEvents; continue with `after=next_cursor`."""
    with svc.factory() as session:
        page = service.feed(
            session,
            after=after,
            limit=limit,
            types=[t.value for t in event_type or ()],
            tenant_uuid=tenant_uuid,
            source=svc.require(EventsConfig).source,
        )
    return {"events": page.events, "next_cursor": page.next_cursor}
