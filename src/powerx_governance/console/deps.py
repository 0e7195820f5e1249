"""The console's request plumbing: the signed-in page, checked form posts, error pages and redirects.

Every page needs a console session (else: 303 to the sign-in page); every POST needs the
session's CSRF token and, when the browser sends one, a same-origin `Origin`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from powerx_governance.api.deps import ServiceDep, refuse_cross_tenant
from powerx_governance.console import queries
from powerx_governance.console.config import ConsoleSettings, CookieSecurity
from powerx_governance.console.forms import (
    FormData,
    parse_form,
)
from powerx_governance.console.rendering import render
from powerx_governance.console.sessions import (
    SESSION_COOKIE,
    ConsoleUser,
    csrf_matches,
    csrf_token,
    decode_session,
    resume,
)
from powerx_governance.feature_flags import Flag
from powerx_governance.kernel import Component, NavEntry

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

log = logging.getLogger("powerx.console")
HOME: Final = "/console"
CONSOLE_COMPONENT: Final = "console"  # its own pages lead the main navigation
SIGN_IN_PATH: Final = "/console/sign-in"


class PageError(Exception):
    """A page that answers with an error page (404, 403, 400) instead of its content."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        user: ConsoleUser | None = None,
        nav_entries: Sequence[NavEntry] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.user = status, title, message, user
        self.nav_entries = nav_entries


def nav_entries(components: Sequence[Component], user: ConsoleUser) -> list[NavEntry]:
    """The main navigation the user sees: the console's own pages, then those of the other
    components in install order; pages of the whole fleet only for fleet-wide roles."""
    ordered = sorted(components, key=lambda c: c.name != CONSOLE_COMPONENT)
    return [e for c in ordered for e in c.console_nav if user.fleet_wide or not e.fleet_wide]


class SignInRequiredError(Exception):
    def __init__(self, next_path: str, ended: str | None = None) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.ended = ended  # why a session the browser still had ended: expired | revoked


def _error_page(exc: PageError) -> Response:
    return render(
        "error.html",
        {
            "user": exc.user,
            "title": exc.title,
            "message": exc.message,
            "status": exc.status,
            "nav": None,
            "nav_entries": exc.nav_entries,
        },
        status=exc.status,
    )


class ConsoleRoute(APIRoute):
    """Turns the console's exceptions into pages and redirects, for this router only."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequiredError as exc:
                query = {"next": exc.next_path, **({"ended": exc.ended} if exc.ended else {})}
                return RedirectResponse(f"{SIGN_IN_PATH}?{urlencode(query)}", status_code=303)
            except PageError as exc:
                return _error_page(exc)

        return handler


def page_settings(request: Request, svc: GovernanceService) -> ConsoleSettings:
    return svc.section("console", ConsoleSettings)


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(value: str | None) -> str:
    """Only paths inside the console: never another site (`//evil`, `/\\evil`, `https://...`)."""
    if not value or not value.startswith(HOME) or "//" in value or "\\" in value:
        return HOME
    if urlsplit(value).netloc or any(ord(c) < 32 for c in value):
        return HOME
    return value


def secure_cookies(request: Request, settings: ConsoleSettings) -> bool:
    if settings.cookie_secure is CookieSecurity.AUTO:
        forwarded = request.headers.get("x-forwarded-proto", "")
        return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"
    return settings.cookie_secure is CookieSecurity.ALWAYS


@dataclass(frozen=True, slots=True)
class Page:
    """A signed-in request: the service, the user and what every template needs."""

    request: Request
    svc: GovernanceService
    user: ConsoleUser
    tenant: queries.TenantLabel | None  # the user's own tenant (tenant-bound roles)

    def render(
        self, template: str, context: dict[str, Any], *, nav: str | None, status: int = 200
    ) -> Response:
        flags = self.svc.flags()
        base = {
            "user": self.user,
            "own_tenant": self.tenant,
            "flags": {"governance": flags[Flag.GOVERNANCE], "upgrade_policy": flags[Flag.UPGRADE_POLICY]},
            "nav": nav,
            "nav_entries": self.nav_entries(),
            "now": self.svc.clock(),
            "here": _here(self.request),
        }
        return render(template, {**base, **context}, status=status)

    def error(self, status: int, title: str, message: str) -> PageError:
        return PageError(status, title, message, self.user, self.nav_entries())

    def nav_entries(self) -> list[NavEntry]:
        return nav_entries(self.svc.installed.components, self.user)

    def not_found(self, what: str = "page") -> PageError:
        return self.error(404, "Not found", f"There is no such {what}, or it is not yours to see.")

    def require_governance(self) -> None:
        if not self.svc.enabled(Flag.GOVERNANCE):
            raise self.error(
                503,
                "Governance is off",
                "Plugin version governance is turned off (feature flag plugin-version-governance):"
                " decisions and scans are paused until an operator turns it on. Nothing was recorded.",
            )

    def require_operator(self) -> None:
        if not self.user.fleet_wide:
            raise self.error(403, "Operators only", "This page is for operators; it shows the whole fleet.")

    def scope(self, requested: str | None) -> str | None:
        """The tenant a page is limited to: a tenant-bound user asking for another tenant gets 404."""
        who = self.user.principal
        if who.fleet_wide:
            return requested
        if requested is not None and requested != who.tenant_uuid:
            refuse_cross_tenant(who, requested, self.request.url.path)  # logs the attempt
            raise self.not_found("tenant")
        return who.tenant_uuid


def current_page(request: Request, svc: ServiceDep) -> Page:
    settings = page_settings(request, svc)
    cookie = request.cookies.get(SESSION_COOKIE)
    claims = decode_session(settings.secret, cookie, svc.clock())
    if claims is None:
        raise SignInRequiredError(_here(request), "expired" if cookie else None)
    with svc.factory() as session:
        principal = resume(session, claims)
        own = queries.tenant(session, principal.tenant_uuid) if principal and principal.tenant_uuid else None
    if principal is None:
        raise SignInRequiredError(_here(request), "revoked")
    return Page(request, svc, ConsoleUser(principal, claims, csrf_token(settings.secret, claims.sid)), own)


PageDep = Annotated[Page, Depends(current_page)]


async def posted_form(request: Request) -> FormData:
    return parse_form(request.headers.get("content-type", ""), await request.body())


FormDep = Annotated[FormData, Depends(posted_form)]


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # no header: not a browser form post from another site
    return urlsplit(origin).netloc == request.headers.get("host", "")


@dataclass(frozen=True, slots=True)
class Posted:
    page: Page
    form: FormData


def checked_post(page: PageDep, form: FormDep) -> Posted:
    """A POST with the session's CSRF token from the same origin; a 403 page otherwise."""
    settings = page_settings(page.request, page.svc)
    if not same_origin(page.request) or not csrf_matches(
        settings.secret, page.user.claims.sid, form.get("csrf_token")
    ):
        log.warning("console form refused: CSRF token or origin", extra={"path": page.request.url.path})
        raise page.error(
            403,
            "Form refused",
            "This form was not sent from a console page of this session. Reload the page and try again.",
        )
    return Posted(page, form)


PostedDep = Annotated[Posted, Depends(checked_post)]


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
