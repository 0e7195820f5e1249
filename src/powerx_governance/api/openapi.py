"""The OpenAPI document, completed with what the routes' signatures cannot say.

Every refusal is `application/problem+json` (RFC 9457). Which refusals an operation can give
follows from its place and shape: every `/internal/` route authenticates (401, 403, 429), a
body can be unreadable or too large (400, 413), path parameters and the tenant scope give 404,
validation 422 (always); a route declares the rest (409, 503 while governance is off, a second
success status) with `responses=problems.declared(...)`.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from powerx_governance.api.problems import DECLARED_PROBLEM, PROBLEM, PROBLEM_TITLES

_REF: Final = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: Final = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `errors` names each field at fault",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "error"],
                "properties": {"field": {"type": "string"}, "error": {"type": "string"}},
            },
        },
    },
}
_TENANT_SCOPED: Final = frozenset({"tenant"})


def refusals(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The problem statuses an operation can answer with, from its path, method and parameters."""
    statuses = {422}
    if path.startswith("/internal/"):
        statuses |= {401, 403, 429}
    if "requestBody" in operation or method in ("post", "put", "patch"):
        statuses |= {400, 413}
    names = {p["name"] for p in operation.get("parameters", ())}
    if "{" in path or names & _TENANT_SCOPED:
        statuses.add(404)
    return statuses


def _problem(status: int) -> dict[str, Any]:
    return {"description": PROBLEM_TITLES[status], "content": {PROBLEM: {"schema": _REF}}}


def _complete(document: dict[str, Any]) -> dict[str, Any]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            statuses = refusals(path, method, operation)
            statuses |= {int(s) for s, r in responses.items() if r.pop(DECLARED_PROBLEM, False)}
            for status in statuses:
                responses[str(status)] = _problem(status)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _complete(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
