"""`/internal/audit/version`: ingest audit events (idempotent by event id) and list them."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import JSONResponse

from powerx_governance.api.bounds import Instant, Seq
from powerx_governance.api.deps import Internal, ServiceDep, SessionDep, tenant_scope
from powerx_governance.api.problems import ProblemError, declared
from powerx_governance.audit.service import (
    LIMITS,
    AuditEvent,
    AuditEventError,
    EventConflictError,
    EventFilter,
    Recorded,
    ingest,
    list_events,
    record_view,
)

router = APIRouter(prefix="/internal/audit", tags=["audit"])
MAX_BATCH: Final = 1000
_EVENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


def _text(name: str, *, required: bool = True) -> Any:
    return Field(... if required else None, min_length=1, max_length=LIMITS[name])


class AuditEventIn(BaseModel):
    """One audit event in PowerX's field names."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(None, min_length=1, max_length=LIMITS["event_id"], pattern=_EVENT_ID_PATTERN)
    occurred_at: Instant | None = None
    tenant_uuid: str | None = _text("tenant_uuid", required=False)
    correlation_id: str | None = _text("correlation_id", required=False)
    source: str = _text("source")
    operation: str = _text("operation")
    resource_type: str = _text("resource_type")
    resource_id: str | None = _text("resource_id", required=False)
    outcome: str = Field("success", min_length=1, max_length=LIMITS["outcome"])
    severity: str = Field("info", min_length=1, max_length=LIMITS["severity"])
    actor: str = _text("actor")
    changes: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("changes")
    @classmethod
    def _before_after(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - {"before", "after"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}: changes holds 'before' and 'after'")
        return value

    def event(self) -> AuditEvent:
        return AuditEvent(**self.model_dump())


class AuditBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[AuditEventIn] = Field(min_length=1, max_length=MAX_BATCH)


_EVENT_SCHEMA: Final = AuditEventIn.model_json_schema()
_BODY_SCHEMA: Final = {
    "oneOf": [
        _EVENT_SCHEMA,
        {
            "type": "object",
            "title": "AuditBatchIn",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1, "maxItems": MAX_BATCH}
            },
        },
    ]
}


def parse_events(body: Any) -> list[AuditEvent]:
    """One event, or `{"events": [...]}`; a RequestValidationError naming the field otherwise."""
    batch = isinstance(body, dict) and "events" in body
    try:
        items = AuditBatchIn.model_validate(body).events if batch else [AuditEventIn.model_validate(body)]
    except ValidationError as exc:
        raise RequestValidationError(
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from exc
    events = []
    for index, item in enumerate(items):
        try:
            events.append(item.event())
        except AuditEventError as exc:  # value checks beyond the schema: NaN, NUL characters
            where = ("events", index) if batch else ()
            loc = ("body", *where, *exc.field.split("."))
            raise RequestValidationError([{"loc": loc, "msg": exc.message, "type": "value_error"}]) from exc
    return events


@router.post(
    "/version",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
    responses={
        200: {"description": "every event id was already recorded: the existing records"},
        **declared(409),
    },
)
def post_events(body: Annotated[Any, Body()], who: Internal, svc: ServiceDep) -> JSONResponse:
    """Record one event or a batch; 201 when something new was recorded, 200 when all ids were known."""
    events = parse_events(body)
    try:
        # committed before answering: an acknowledged event is durable
        with svc.factory() as session, session.begin():
            recorded = ingest(session, events, svc.clock())
            views = [_view(r) for r in recorded]
    except EventConflictError as exc:
        raise ProblemError(409, "Conflict", str(exc), event_id=exc.event_id) from exc
    status = 201 if any(r.created for r in recorded) else 200
    if isinstance(body, dict) and "events" in body:
        created = sum(r.created for r in recorded)
        return JSONResponse({"items": views, "created": created}, status_code=status)
    return JSONResponse(views[0], status_code=status)


def _view(recorded: Recorded) -> dict[str, Any]:
    return {**record_view(recorded.row), "created": recorded.created}


@router.get("/version")
def get_events(
    session: SessionDep,
    scope: Annotated[str | None, Depends(tenant_scope(stored=False))],
    start: Instant | None = None,
    end: Instant | None = None,
    operation: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Seq | None = None,
) -> dict[str, Any]:
    """Audit records in seq order; tenant-bound callers see their own tenant's records only."""
    wanted = EventFilter(
        tenant_uuid=scope,
        start=start,
        end=end,
        operation=operation,
        resource_type=resource_type,
        resource_id=resource_id,
    )
    items, next_cursor = list_events(session, wanted, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": None if next_cursor is None else str(next_cursor)}
