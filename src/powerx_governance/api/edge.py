"""The edge guard: input no store or parser should see is refused before any route runs.

- NUL characters (PostgreSQL text cannot hold them) in the path, a query parameter, a JSON
  body or a form body: 422 naming the parameter or field.
- JSON bodies nested deeper than `MAX_JSON_DEPTH`: 422, decided by scanning the raw bytes
  before anything parses them (a deep document costs recursion in every later reader: the
  validator, the audit chain's canonical form, the JSON encoder of every page that shows it).
- Times anywhere in a JSON body (a release's `released_at`, a manifest's `scanned_at`, an
  advisory's `modified`...) whose UTC equivalent leaves years 1-9999: 422 naming the field,
  since the store keeps every time in UTC.

Numeric and time bounds of parameters are part of each route's declared types (`api.bounds`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from powerx_governance.api.bounds import to_utc
from powerx_governance.api.problems import problem_response, replay_body

MAX_JSON_DEPTH: Final = 32
_JSON_TOKENS: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_NUL_ESCAPE: Final = b"\\u0000"
# only a time in the first or last year can leave years 1-9999 when converted to UTC
_EDGE_YEAR: Final = re.compile(rb'"(?:9999|0001)-\d\d-\d\d[T ]')
_DATETIME: Final = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
_NUL: Final = "NUL characters are not allowed"
_OUT_OF_RANGE: Final = "the time is out of range once converted to UTC (years 1-9999)"
_FORM: Final = "application/x-www-form-urlencoded"
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RefusedInputError(ValueError):
    """Input refused at the edge; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit` (strings are skipped)."""
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        first = token.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif first in _CLOSE:
            depth -= 1
    return False


def _out_of_range(text: str) -> bool:
    if not _DATETIME.match(text):
        return False
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False  # not a time after all: the route's own validation decides
    return moment.tzinfo is not None and to_utc(moment) is None


def _refusals(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Where a parsed (depth-checked) JSON document holds a NUL character or an out-of-range time."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path, _NUL
        elif _out_of_range(value):
            yield path, _OUT_OF_RANGE
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield path, _NUL
            yield from _refusals(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _refusals(item, (*path, str(index)))


def check_path(path: str) -> None:
    if "\x00" in path:
        raise RefusedInputError("path", _NUL)


def check_query(query: bytes) -> None:
    if b"%00" not in query and b"\x00" not in query:
        return
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            raise RefusedInputError(name.replace("\x00", "") or "query", _NUL)
    raise RefusedInputError("query", _NUL)


def check_json(body: bytes) -> None:
    if json_too_deep(body):
        raise RefusedInputError("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if _NUL_ESCAPE not in body and b"\x00" not in body and not _EDGE_YEAR.search(body):
        return
    try:
        document = json.loads(body)
    except ValueError:
        return  # not JSON: the route's own parsing says so
    for path, message in _refusals(document):
        raise RefusedInputError(".".join(path) or "body", message)


def check_form(body: bytes) -> None:
    if b"%00" in body or b"\x00" in body:
        check_query(body)


def _content_type(scope: Scope) -> str:
    raw: bytes = dict(scope.get("headers", [])).get(b"content-type", b"")
    return raw.decode("latin-1").split(";", maxsplit=1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    """What FastAPI would parse as JSON: application/json, */*+json, and no content type at all."""
    return content_type in ("", "application/json") or content_type.endswith("+json")


PageRefusal = Callable[[str], Response]
"""Renders a refused console request (the detail) as a page; the console provides it."""
CONSOLE_PREFIX: Final = "/console"


class EdgeGuard:
    """ASGI middleware applying the checks above; the body is read once and replayed to the app."""

    def __init__(self, app: ASGIApp, *, pages: PageRefusal | None = None) -> None:
        self.app = app
        self.pages = pages  # how a refused console request is answered (an HTML page), when served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope["path"])
            check_query(scope.get("query_string", b""))
            receive = await self._checked_body(scope, receive)
        except RefusedInputError as exc:
            await self._refusal(scope, exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _checked_body(self, scope: Scope, receive: Receive) -> Receive:
        content_type = _content_type(scope)
        if scope["method"] not in _BODY_METHODS or not (_is_json(content_type) or content_type == _FORM):
            return receive
        body = await _read(receive)
        if content_type == _FORM:
            check_form(body)
        else:
            check_json(body)
        return replay_body(body, receive)

    def _refusal(self, scope: Scope, exc: RefusedInputError) -> Response:
        detail = f"{exc.field}: {exc}"
        if self.pages is not None and scope["path"].startswith(CONSOLE_PREFIX):
            return self.pages(detail)
        return problem_response(
            422, "Invalid request", detail, errors=[{"field": exc.field, "error": str(exc)}]
        )


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
