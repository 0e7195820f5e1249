"""Templates (autoescaped Jinja2, strict about undefined names), shipped assets, response headers."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any, Final

import jinja2
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from powerx_governance.console.forms import new_form_key
from powerx_governance.console.views import time_tag

HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = HERE / "static"
STATIC_URL: Final = "/console/static"
# Every asset is shipped: nothing loads from another origin, no inline script or style.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@cache
def asset_url(name: str) -> str:
    """A shipped asset's URL with its content hash, so browsers never keep a stale copy."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"{STATIC_URL}/{name}?v={digest}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _number(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


def _duration(seconds: float | None) -> str:
    """A duration as people say it: "under a second", "12 s", "3 min 5 s", "2 h 10 min"."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 1:
        return "under a second"
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s" if whole % 60 else f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=time_tag, percent=_percent, number=_number, duration=_duration)
    env.globals.update(asset=asset_url, form_key=new_form_key)
    return env


def render(template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


# Assets are cached (their URLs carry a content hash), but never sniffed, framed or run as a page.
STATIC_HEADERS: Final = {k: v for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"}


class _ShippedAssets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(STATIC_HEADERS)
        return response


def static_files() -> StaticFiles:
    """The shipped CSS and JS, for `app.mount(STATIC_URL, ...)`, with the console's security headers."""
    return _ShippedAssets(directory=STATIC_DIR)


def refused_page(detail: str) -> HTMLResponse:
    """A console request refused at the edge (`api.edge.EdgeGuard`) as a page, not problem JSON."""
    context = {"user": None, "title": "Invalid input", "message": detail, "status": 422, "nav": None}
    return render("error.html", context, status=422)
