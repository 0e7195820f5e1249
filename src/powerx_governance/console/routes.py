"""The console's pages under `/console` (and `/` → `/console`): parse, call a service, render.

Every page needs a console session (else: 303 to the sign-in page); every POST needs the
session's CSRF token and, when the browser sends one, a same-origin `Origin`. Errors are pages:
another tenant's card is a 404 page, a stale decision is shown on its card with status 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from powerx_governance.api.bounds import parse_id
from powerx_governance.api.deps import ServiceDep, client_address, refuse_cross_tenant
from powerx_governance.api.problems import status_of
from powerx_governance.auth.model import Role
from powerx_governance.auth.throttle import Channel
from powerx_governance.auth.tokens import authenticate
from powerx_governance.catalog.queries import plugin_names
from powerx_governance.console import pages, queries
from powerx_governance.console.config import ConsoleSettings
from powerx_governance.console.deps import (
    HOME,
    SIGN_IN_PATH,
    ConsoleRoute,
    FormDep,
    Page,
    PageDep,
    PostedDep,
    page_settings,
    safe_next,
    same_origin,
    secure_cookies,
    see_other,
)
from powerx_governance.console.flash import clear_flash, read_flash, set_flash
from powerx_governance.console.forms import (
    FormData,
    FormError,
    bulk_selection,
    bulk_template,
    decision_request,
    local_datetime,
    new_form_key,
)
from powerx_governance.console.rendering import SECURITY_HEADERS, render
from powerx_governance.console.sessions import (
    CONSOLE_ROLES,
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SIGN_IN,
    SIGN_OUT,
    csrf_matches,
    csrf_token,
    decode_session,
    encode_session,
    new_claims,
    new_login_nonce,
    record_session_event,
    resume,
)
from powerx_governance.console.summary import summary_for
from powerx_governance.console.views import ACTION_NAMES, OPERATION_WORDS, confirmation, parse_time, time_tag
from powerx_governance.db.session import transaction
from powerx_governance.decisions.model import DecisionKind, IgnoreScope
from powerx_governance.decisions.service import (
    DecisionError,
    DecisionRequest,
    ReopenRequest,
    decide,
    decide_many,
    reopen,
)
from powerx_governance.recommendations.queries import CursorError, get_recommendation

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.queries import get_scan, scan_progress

LOGIN_COOKIE_SECONDS: Final = 3600
BULK_WORDS: Final = {"upgrade": "Upgrade now", "schedule": "Schedule the upgrade", "ignore": "Ignore"}
SESSION_ENDED: Final = {
    "revoked": "Your session ended because its access token was revoked or removed."
    " Sign in with a current token; an operator can issue one.",
    "expired": "Your session expired. Sign in again to continue where you were.",
}

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


# -- sign-in / sign-out ---------------------------------------------------------------------------


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=307)


def _sign_in_page(
    request: Request,
    settings: ConsoleSettings,
    *,
    next_path: str,
    error: str | None,
    status: int,
    notice: str | None = None,
) -> Response:
    nonce = new_login_nonce()
    response = render(
        "sign_in.html",
        {
            "user": None,
            "nav": None,
            "csrf": csrf_token(settings.secret, f"sign-in:{nonce}"),
            "next": next_path,
            "error": error,
            "notice": notice,
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_COOKIE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, settings),
    )
    return response


def _signed_in(request: Request, svc: GovernanceService, settings: ConsoleSettings) -> bool:
    claims = decode_session(settings.secret, request.cookies.get(SESSION_COOKIE), svc.clock())
    if claims is None:
        return False
    with svc.factory() as session:
        return resume(session, claims) is not None


@router.get("/console/sign-in")
def sign_in_form(
    request: Request,
    svc: ServiceDep,
    next_path: Annotated[str | None, Query(alias="next")] = None,
    signed_out: str | None = None,
    ended: str | None = None,
) -> Response:
    settings = page_settings(request, svc)
    if not signed_out and _signed_in(request, svc, settings):
        return see_other(safe_next(next_path))
    notice = "You are signed out." if signed_out else SESSION_ENDED.get(ended or "")
    return _sign_in_page(
        request, settings, next_path=safe_next(next_path), error=None, status=200, notice=notice
    )


@router.post("/console/sign-in")
def sign_in(request: Request, svc: ServiceDep, form: FormDep) -> Response:
    settings = page_settings(request, svc)
    next_path = safe_next(form.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if (
        not nonce
        or not same_origin(request)
        or not csrf_matches(settings.secret, f"sign-in:{nonce}", form.get("csrf_token"))
    ):
        return _sign_in_page(
            request,
            settings,
            next_path=next_path,
            status=403,
            error="The sign-in form expired or came from another site. Please try again.",
        )
    token = form.get("token")
    if token is None:
        return _sign_in_page(
            request, settings, next_path=next_path, status=422, error="Enter your access token."
        )
    address = client_address(request)
    wait = svc.auth_throttle.retry_after(Channel.CONSOLE, address, token)
    if wait is not None:
        page = _sign_in_page(
            request,
            settings,
            next_path=next_path,
            status=429,
            error=f"Too many failed sign-ins from this address or with this token. Try again in {wait} s.",
        )
        page.headers["Retry-After"] = str(wait)
        return page
    now = svc.clock()
    with transaction(svc.factory) as session:
        who = authenticate(session, token, now)
        if who is not None and who.role in CONSOLE_ROLES:
            claims = new_claims(who.token_id, now, int(settings.session_ttl.total_seconds()))
            record_session_event(
                session, SIGN_IN, who, claims, now, request.client.host if request.client else None
            )
    if who is None:
        svc.auth_throttle.failed(Channel.CONSOLE, address, token)
        return _sign_in_page(
            request,
            settings,
            next_path=next_path,
            status=401,
            error="That token is unknown or has been revoked.",
        )
    if who.role not in CONSOLE_ROLES:
        return _sign_in_page(
            request,
            settings,
            next_path=next_path,
            status=403,
            error=f"A {who.role.value} token is for machines; sign in with an operator, tenant admin"
            " or viewer token.",
        )
    response = see_other(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        encode_session(settings.secret, claims),
        max_age=int(settings.session_ttl.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request, settings),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/console/sign-out")
def sign_out(posted: PostedDep) -> Response:
    page = posted.page
    client = page.request.client.host if page.request.client else None
    with transaction(page.svc.factory) as session:
        record_session_event(
            session, SIGN_OUT, page.user.principal, page.user.claims, page.svc.clock(), client
        )
    response = see_other(f"{SIGN_IN_PATH}?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


# -- overview -------------------------------------------------------------------------------------


def _overview(page: Page, tenant_uuid: str | None) -> Response:
    params = dict(page.request.query_params)
    try:
        filters = pages.filters_from(params)
        with page.svc.factory() as session:
            context = pages.overview(
                session,
                tenant_uuid=tenant_uuid,
                filters=filters,
                cursor=params.get("cursor"),
                now=page.svc.clock(),
                summary=summary_for(page.request.app.state, page.svc.factory, page.svc.clock),
            )
    except (pages.FilterError, CursorError) as exc:
        raise page.error(400, "Invalid filter", str(exc)) from exc
    base = f"{HOME}/tenants/{tenant_uuid}" if tenant_uuid and page.user.fleet_wide else HOME
    return page.render("overview.html", {**context, "base": base, "urlencode": urlencode}, nav="overview")


@router.get("/console")
def overview(page: PageDep) -> Response:
    """The fleet for operators, the own tenant for tenant-bound users."""
    return _overview(page, page.scope(None))


@router.get("/console/tenants")
def tenants(page: PageDep, q: str | None = None) -> Response:
    """Operators find a tenant by uuid, key or name; tenant-bound users go to their own tenant."""
    if not page.user.fleet_wide:
        return see_other(HOME)
    query = (q or "").strip()
    with page.svc.factory() as session:
        exact = queries.tenant(session, query) if query else None
        matches = queries.find_tenants(session, query) if exact is None else []
    if exact is not None:
        return see_other(f"{HOME}/tenants/{exact.tenant_uuid}")
    if query and len(matches) == 1:
        return see_other(f"{HOME}/tenants/{matches[0].label.tenant_uuid}")
    return page.render("tenants.html", {"q": query, "matches": matches}, nav="tenants")


@router.get("/console/tenants/{tenant_uuid}")
def tenant_overview(tenant_uuid: str, page: PageDep) -> Response:
    scope = page.scope(tenant_uuid)
    with page.svc.factory() as session:
        if scope is None or queries.tenant(session, scope) is None:
            raise page.not_found("tenant")
    return _overview(page, scope)


@router.get("/console/advisories")
def advisories(page: PageDep) -> Response:
    """The open work grouped by advisory: one row each, expandable to its plugins, targets and tenants."""
    scope = page.scope(None)
    summary = summary_for(page.request.app.state, page.svc.factory, page.svc.clock)
    with page.svc.factory() as session:
        context = pages.advisories(session, tenant_uuid=scope, now=page.svc.clock(), summary=summary)
    return page.render("advisories.html", {**context, "urlencode": urlencode}, nav="overview")


# -- cards and decisions --------------------------------------------------------------------------


DECISION_FIELDS: Final = (
    "decision",
    "revision",
    "scheduled_for",
    "tz",
    "reason",
    "scope",
    "until",
    "approver",
)


def _card_context(page: Page, rec_id: int) -> dict[str, Any]:
    """The card's page context, or a 404 page for a card that is missing or not the user's."""
    with page.svc.factory() as session:
        context = pages.recommendation(session, rec_id, page.svc.clock())
    if context is None:
        raise page.not_found("recommendation")
    if not page.user.principal.may_read(context["card"]["tenant_uuid"]):
        refuse_cross_tenant(page.user.principal, context["card"]["tenant_uuid"], page.request.url.path)
        raise page.not_found("recommendation")
    return context


def _card(page: Page, rec_id: int) -> Response:
    secret = page_settings(page.request, page.svc).secret
    flash = read_flash(page.request, secret, page.user.claims.sid) or {}
    context = _card_context(page, rec_id)
    params = page.request.query_params
    response = page.render(
        "card.html",
        {
            **context,
            "error": flash.get("error"),
            "chosen": flash.get("chosen") or params.get("action"),
            "values": flash.get("values") or {},
            "done": params.get("done"),
            "scopes": [s.value for s in IgnoreScope],
            "operation_words": OPERATION_WORDS,
            "action_names": ACTION_NAMES,
        },
        nav="overview",
    )
    clear_flash(page.request, response)
    return response


def _back_to_card(page: Page, rec_id: int, form: FormData, error: dict[str, Any]) -> Response:
    """Post/redirect/get for a refused decision: the card shows the error and the values once."""
    values = {k: v for k in DECISION_FIELDS if k != "revision" and (v := form.get(k))}
    chosen = form.get("decision")
    response = see_other(f"{HOME}/recommendations/{rec_id}{f'?action={chosen}' if chosen else ''}#decide")
    secret = page_settings(page.request, page.svc).secret
    return set_flash(
        response, secret, page.user.claims.sid, {"error": error, "values": values, "chosen": chosen}
    )


def _rec_id(page: Page, text: str) -> int:
    """A card's id from its path: anything but an id in range is a card that does not exist."""
    rec_id = parse_id(text)
    if rec_id is None:
        raise page.not_found("recommendation")
    return rec_id


def _may_decide(page: Page) -> None:
    if not page.user.may_decide:
        raise page.error(403, "Read only", "A viewer may look, not decide. Ask a tenant admin.")


@router.get("/console/recommendations/{rec_id}")
def recommendation(rec_id: str, page: PageDep) -> Response:
    return _card(page, _rec_id(page, rec_id))


def _precheck(card: dict[str, Any], req: DecisionRequest, now: datetime) -> str | None:
    """Why the confirmation step refuses this decision (None: it may be confirmed)."""
    if req.revision != card["revision"]:
        return "conflict"
    if req.kind is not DecisionKind.IGNORE and not card["upgradable"]:
        return "no release fixes this yet: there is nothing to upgrade to"
    if req.scheduled_for is not None and req.scheduled_for <= now:
        return "choose an upgrade time in the future"
    return None


@router.get("/console/recommendations/{rec_id}/confirm")
def confirm_decision(rec_text: Annotated[str, Path(alias="rec_id")], page: PageDep) -> Response:
    """The confirmation step: what will be recorded, with warnings (late schedule, co-upgrades)."""
    rec_id = _rec_id(page, rec_text)
    _may_decide(page)
    form = FormData({k: [v] for k, v in page.request.query_params.items()})
    try:
        req = decision_request(form, rec_id)
    except FormError as exc:
        return _back_to_card(page, rec_id, form, {"field": exc.field, "message": str(exc)})
    context = _card_context(page, rec_id)
    card = context["card"]
    refused = _precheck(card, req, page.svc.clock())
    if refused == "conflict":
        return _back_to_card(page, rec_id, form, {"field": "revision", "message": refused, "status": 409})
    if refused is not None:
        return _back_to_card(page, rec_id, form, {"field": "scheduled_for", "message": refused})
    return page.render(
        "confirm.html",
        {
            "card": card,
            "asked": {"decision": req.kind.value, "until": req.until},
            "confirm": confirmation(card, req.kind.value, scheduled_for=req.scheduled_for),
            "values": {k: v for k in DECISION_FIELDS if (v := form.get(k))},
            "decision_key": new_form_key(),
        },
        nav="overview",
    )


def _late_unaccepted(page: Page, req: DecisionRequest, form: FormData) -> bool:
    """A schedule after the SLA deadline that the admin did not acknowledge on the confirmation step."""
    if req.kind is not DecisionKind.SCHEDULE or req.scheduled_for is None or form.get("accept_late") == "1":
        return False
    with page.svc.factory() as session:
        found = get_recommendation(session, req.recommendation_id)
    due = parse_time(found["sla_deadline"]) if found else None
    return due is not None and req.scheduled_for > due


@router.post("/console/recommendations/{rec_id}/decision")
def post_decision(rec_text: Annotated[str, Path(alias="rec_id")], posted: PostedDep) -> Response:
    """Upgrade, schedule or ignore at the revision the admin saw; errors go back to the card (PRG)."""
    page, form = posted.page, posted.form
    rec_id = _rec_id(page, rec_text)
    _may_decide(page)
    page.require_governance()
    try:
        request = decision_request(form, rec_id)
    except FormError as exc:
        return _back_to_card(page, rec_id, form, {"field": exc.field, "message": str(exc)})
    if _late_unaccepted(page, request, form):
        late = "that time is after the SLA deadline: confirm it on the confirmation step"
        return _back_to_card(page, rec_id, form, {"field": "scheduled_for", "message": late})
    try:
        with transaction(page.svc.factory) as session:
            row, created = decide(
                session, page.svc.notifications, request, page.user.principal, page.svc.clock()
            )
            kind, scope = row.kind, row.scope
    except DecisionError as exc:
        return _refused(page, rec_id, form, exc)
    if created:
        page.svc.metrics.decisions_taken(kind, scope)
    return see_other(f"{HOME}/recommendations/{rec_id}?done={kind}")


def _refused(page: Page, rec_id: int, form: FormData, exc: DecisionError) -> Response:
    status, _ = status_of(exc)
    if status == 404:
        raise page.not_found("recommendation") from exc
    return _back_to_card(page, rec_id, form, {"field": exc.field, "message": str(exc), "status": status})


@router.post("/console/recommendations/{rec_id}/reopen")
def post_reopen(rec_text: Annotated[str, Path(alias="rec_id")], posted: PostedDep) -> Response:
    """Withdraw the standing decision: the finding is open again (audited)."""
    page, form = posted.page, posted.form
    rec_id = _rec_id(page, rec_text)
    _may_decide(page)
    page.require_governance()
    revision = parse_id(form.get("revision"))
    if revision is None:
        lost = "the form lost its revision: reload the card"
        return _back_to_card(page, rec_id, form, {"field": "revision", "message": lost})
    wanted = ReopenRequest(rec_id, revision, form.get("reason"))
    try:
        with transaction(page.svc.factory) as session:
            reopen(session, wanted, page.user.principal, page.svc.clock())
    except DecisionError as exc:
        return _refused(page, rec_id, form, exc)
    return see_other(f"{HOME}/recommendations/{rec_id}?done=reopen")


# -- bulk decisions (operators) -------------------------------------------------------------------


SELECTION_FIELDS: Final = ("plugin", "target", "tags", "tenants", "advisory")
BULK_FIELDS: Final = (
    *SELECTION_FIELDS,
    "decision",
    "scheduled_for",
    "tz",
    "reason",
    "scope",
    "until",
    "approver",
)


def _scheduled(form: FormData) -> datetime | None:
    """The bulk form's upgrade time, when it has a readable one (the preview counts late tenants)."""
    if form.get("decision") != DecisionKind.SCHEDULE.value:
        return None
    try:
        return local_datetime(form.get("scheduled_for"), form.get("tz"), "scheduled_for")
    except FormError:
        return None


def _bulk_confirmation(
    page: Page, form: FormData, preview: pages.BulkPreview, names: dict[str, str]
) -> dict[str, Any]:
    """The bulk confirmation step (may raise FormError): what will be recorded, with warnings."""
    template = bulk_template(form)
    if preview.one_target is None and template.kind is not DecisionKind.IGNORE:
        raise FormError("target", "choose one target version: a bulk upgrade goes to one version")
    if template.scheduled_for is not None and template.scheduled_for <= page.svc.clock():
        raise FormError("scheduled_for", "choose an upgrade time in the future")
    plugin = form.get("plugin") or ""
    versions = f"{', '.join(preview.from_versions)} → {preview.one_target or 'unchanged'}"
    lines: list[tuple[str, Any]] = [
        ("Decision", BULK_WORDS[template.kind.value]),
        ("Plugin", f"{names.get(plugin, plugin)}: {versions}"),
        ("Tenants", f"{preview.count:,}"),
    ]
    if template.scheduled_for is not None:
        lines.append(("Upgrade at", time_tag(template.scheduled_for)))
    late = preview.late
    warnings = [f"Needs a co-upgrade: {n}." for n in preview.co_upgrades]
    if late:
        warnings.append(f"{late:,} of these tenants would be upgraded after their SLA deadline.")
    return {"lines": lines, "warnings": warnings, "late": late}


@router.get("/console/bulk")
def bulk(page: PageDep) -> Response:
    page.require_operator()
    params = dict(page.request.query_params)
    form = FormData({k: [v] for k, v in params.items()})
    secret = page_settings(page.request, page.svc).secret
    flash = read_flash(page.request, secret, page.user.claims.sid) or {}
    preview: pages.BulkPreview | None = None
    done: list[dict[str, Any]] | None = None
    confirm: dict[str, Any] | None = None
    error = flash.get("error")
    with page.svc.factory() as session:
        names = plugin_names(session)
        if params.get("batch"):
            done = pages.batch(session, params["batch"])
        elif form.get("plugin"):
            preview = pages.bulk_preview(session, bulk_selection(form), scheduled_for=_scheduled(form))
    if preview is not None and params.get("step") == "confirm" and preview.count:
        try:
            confirm = _bulk_confirmation(page, form, preview, names)
        except FormError as exc:
            error = {"field": exc.field, "message": str(exc)}
    response = page.render(
        "bulk.html",
        {
            "values": params,
            "selection": {k: params[k] for k in SELECTION_FIELDS if params.get(k)},
            "decision_values": {k: v for k in BULK_FIELDS if (v := form.get(k))},
            "plugin_names": names,
            "preview": preview,
            "confirm": confirm,
            "done": done,
            "error": error,
            "decision_key": new_form_key(),
            "scopes": [s.value for s in IgnoreScope],
            "urlencode": urlencode,
        },
        nav="bulk",
    )
    clear_flash(page.request, response)
    return response


def _bulk_refused(page: Page, form: FormData, error: dict[str, Any]) -> Response:
    """Post/redirect/get: back to the bulk page with its selection and values, the error shown once."""
    values = {k: v for k in BULK_FIELDS if (v := form.get(k))}
    response = see_other(f"{HOME}/bulk?{urlencode(values)}#apply-title")
    secret = page_settings(page.request, page.svc).secret
    return set_flash(response, secret, page.user.claims.sid, {"error": error})


@router.post("/console/bulk")
def post_bulk(posted: PostedDep) -> Response:
    page, form = posted.page, posted.form
    page.require_operator()
    page.require_governance()
    try:
        selection, template = bulk_selection(form), bulk_template(form)
        with transaction(page.svc.factory) as session:
            pages.bulk_check(
                session,
                selection,
                template,
                expected=form.get("expected"),
                late_accepted=form.get("accept_late") == "1",
            )
            batch_id, rows = decide_many(
                session, page.svc.notifications, selection, template, page.user.principal, page.svc.clock()
            )
    except FormError as exc:
        return _bulk_refused(page, form, {"field": exc.field, "message": str(exc)})
    except DecisionError as exc:
        return _bulk_refused(page, form, {"field": exc.field, "message": str(exc)})
    page.svc.metrics.decisions_taken(
        template.kind.value, template.scope.value if template.scope else None, len(rows)
    )
    return see_other(f"{HOME}/bulk?{urlencode({'batch': batch_id})}")


# -- adoption -------------------------------------------------------------------------------------


@router.get("/console/adoption")
def adoption(page: PageDep, tenant: str | None = None, weeks: int = 12) -> Response:
    """Trends of the fleet or one tenant; operators name the tenant by uuid, key or name."""
    wanted = (tenant or "").strip() or None
    with page.svc.factory() as session:
        if wanted and page.user.fleet_wide and queries.tenant(session, wanted) is None:
            found = queries.find_tenants(session, wanted, limit=2)
            if len(found) != 1:
                raise page.error(
                    404, "No such tenant", f"No single tenant's name, key or uuid starts with {wanted!r}."
                )
            wanted = found[0].label.tenant_uuid
    scope = page.scope(wanted)
    with page.svc.factory() as session:
        context = pages.adoption(
            session, tenant_uuid=scope, now=page.svc.clock(), weeks=min(max(weeks, 4), 52)
        )
    return page.render("adoption.html", context, nav="adoption")


# -- scans ----------------------------------------------------------------------------------------


@router.get("/console/scans")
def scans(page: PageDep) -> Response:
    page.require_operator()
    with page.svc.factory() as session:
        context = pages.scans(session)
    context["queue"] = page.svc.queue.stats().as_dict()  # the jobs queue and its dead letters
    context["dead_letters"] = [letter.as_dict() for letter in page.svc.queue.dead_letters(20)]
    return page.render("scans.html", context, nav="scans")


@router.post("/console/scans")
def trigger_scan(posted: PostedDep) -> Response:
    page, form = posted.page, posted.form
    page.require_operator()
    page.require_governance()
    try:
        kind = ScanKind(form.get("kind") or "")
    except ValueError as exc:
        raise page.error(422, "Invalid scan", "Choose a full or a delta scan.") from exc
    scan_id = page.svc.request_scan(kind, ScanTrigger.API, requested_by=page.user.principal.name)
    return see_other(f"{HOME}/scans/{scan_id}")


def _scan_row(page: Page, scan_id: str) -> dict[str, Any]:
    page.require_operator()
    with page.svc.factory() as session:
        row = get_scan(session, scan_id)
        if row is None:
            raise page.not_found("scan")
        return scan_progress(row)


@router.get("/console/scans/{scan_id}")
def scan(scan_id: str, page: PageDep) -> Response:
    return page.render("scan.html", {"scan": _scan_row(page, scan_id)}, nav="scans")


@router.get("/console/scans/{scan_id}/status")
def scan_status(scan_id: str, page: PageDep) -> JSONResponse:
    """What the progress script polls."""
    return JSONResponse(_scan_row(page, scan_id), headers={"Cache-Control": "no-store"})


# -- anything else under /console -----------------------------------------------------------------


@router.get("/console/{rest:path}")
def missing(rest: str, page: PageDep) -> Response:
    raise page.not_found()


__all__ = ["SECURITY_HEADERS", "Role", "router"]
