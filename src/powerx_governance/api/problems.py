"""Errors as RFC 9457 problem details, mapped in one place; validation errors name the field."""

from __future__ import annotations

from typing import Any, Final, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from powerx_governance.errors import (
    ConflictError,
    DeniedError,
    DomainError,
    InputError,
    InvalidError,
    NotFoundError,
)

PROBLEM = "application/problem+json"

# The kinds of domain error and the status each becomes, in one place (the first matching kind
# wins: an error of two kinds, e.g. a decision error that is also "not found", takes the first).
# Services raise these and never speak HTTP; the title is the error's own.
DOMAIN_ERRORS: Final[tuple[tuple[type[DomainError], int], ...]] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (DeniedError, 403),
    (InvalidError, 422),
)


def status_of(exc: Exception) -> tuple[int, str]:
    """The HTTP status and title a domain error becomes (the console answers with the same)."""
    if isinstance(exc, DomainError):
        return next((status for kind, status in DOMAIN_ERRORS if isinstance(exc, kind)), 422), exc.title
    return 500, "Error"


PROBLEM_TITLES: Final = {
    400: "Bad request: the body could not be read",
    401: "Authentication required: no token, or an unknown or revoked one",
    403: "Forbidden: the caller's role may not do this",
    404: "Not found (another tenant's resources do not exist for a tenant-bound caller)",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid request: `errors` names each field",
    429: "Too many failed authentication attempts: wait Retry-After seconds",
    503: "Governance is off (feature flag), or the store is unavailable",
}


DECLARED_PROBLEM: Final = "x-problem"  # marks a declared refusal until api.openapi gives it its media type


def declared(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: problem answers beyond those its signature implies (see api.openapi)."""
    return {status: {"description": PROBLEM_TITLES[status], DECLARED_PROBLEM: True} for status in statuses}


class ProblemError(Exception):
    """An error the API reports as problem details."""

    def __init__(
        self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers, extra


def problem_response(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _error_field(error: Any) -> str:
    """A body that is not JSON at all is the body's fault, not the character offset's."""
    return "body" if error.get("type") == "json_invalid" else _field(error.get("loc", ()))


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    invalid = cast(RequestValidationError, exc)  # registered for this type only
    errors = [
        {
            "field": "body" if e.get("type") == "json_invalid" else _field(e.get("loc", ())),
            "error": e.get("msg", "invalid"),
        }
        for e in invalid.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['error']}" for e in errors)
    return problem_response(422, "Invalid request", detail, errors=errors)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    refused = cast(StarletteHTTPException, exc)  # registered for this type only
    headers = dict(refused.headers) if refused.headers else None
    return problem_response(refused.status_code, "Request refused", str(refused.detail), headers=headers)


async def _problem(_: Request, exc: Exception) -> JSONResponse:
    problem = cast(ProblemError, exc)  # registered for this type only
    return problem_response(
        problem.status, problem.title, problem.detail, headers=problem.headers, **problem.extra
    )


async def _input(_: Request, exc: Exception) -> JSONResponse:
    """A document (e.g. a rules file) refused as a whole: 422 naming its field."""
    problem = cast(InputError, exc).problem  # registered for this type only
    field = problem.field or "body"
    return problem_response(
        422, "Invalid document", str(problem), errors=[{"field": field, "error": problem.error}]
    )


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    """A domain error as problem details; `field`, when the error names one, is in `errors`."""
    status, title = status_of(exc)
    extra = exc.problem_extra() if isinstance(exc, DomainError) else {}
    field = getattr(exc, "field", None)
    if field is None:
        return problem_response(status, title, str(exc), **extra)
    return problem_response(status, title, f"{field}: {exc}", errors=[{"field": field, "error": str(exc)}])


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(InputError, _input)
    app.add_exception_handler(DomainError, _domain)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is sent.

    A body without a declared length is read (up to the limit) before the app sees it, so the
    refusal is a clean 413 rather than a parse error halfway through.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        body, complete = await self._read(receive)
        if not complete:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, "Request body too large", f"the limit is {self.limit} bytes")
        await response(scope, receive, send)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app `body` (already read) first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
