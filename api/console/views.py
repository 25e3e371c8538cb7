"""The web console: server-rendered pages on the API's own routes, auth and services.

Each page calls the API's route functions (``api.devices``, ``api.tickets``,
``api.auth``) with the caller's context, so the console sees and may do exactly
what the API allows that caller, checked by the same code. The session cookie
and CSRF token are the API's; htmx sends the CSRF token on every write
(``static/console.js``). Errors become pages here, not problem documents: an
object the caller may not see is a plain "not found".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import select

from api import auth as auth_api
from api import devices as devices_api
from api import diagnosis as diagnosis_api
from api import predictions as predictions_api
from api import tickets as tickets_api
from api import users as users_api
from api.admission import Overloaded
from api.console import queries
from api.deps import Ctx, Db, SignedIn, after_commit
from api.params import PathId
from api.problems import status_of
from vigil.auth.schemas import ConsoleSession, Credentials
from vigil.auth.service import Throttled, Unauthenticated
from vigil.auth.visibility import ticket_visible
from vigil.config import Settings
from vigil.db.base import utcnow
from vigil.db.enums import (
    FINAL_TICKET_STATES,
    Category,
    Milestone,
    RoleName,
    TicketScope,
    TicketState,
)
from vigil.devices.schemas import DeviceIn
from vigil.diagnosis import service as diagnosis_service
from vigil.diagnosis.bus import DiagnosisBus
from vigil.diagnosis.rules import DIAGNOSING_ROLES, is_active
from vigil.diagnosis.schemas import CommandIn, SessionIn
from vigil.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
)
from vigil.knowledge import service as knowledge
from vigil.reports import render as report_render
from vigil.reports.quality import GroupBy, QualityReport, service_quality
from vigil.reports.render import PUBLISHABLE_GROUPS
from vigil.schemas import MAX_ID
from vigil.telemetry.store import TelemetryError
from vigil.tickets import survey as survey_service
from vigil.tickets.models import Ticket
from vigil.tickets.priority import DEFAULT_RULES_FILE, TicketRules
from vigil.tickets.schemas import (
    AssignmentIn,
    CommentIn,
    FaultReport,
    PauseIn,
    TransitionIn,
)
from vigil.tickets.transitions import (
    ActorRole,
    Requirement,
    TicketFacts,
    allowed_targets,
    check,
)
from vigil.tickets.transitions import Request as TransitionRequest
from vigil.users.models import User
from vigil.users.schemas import NewUser, UserIn

PREFIX = "/console"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# A device's answer as it sent it: readable JSON (the page escapes it like any text).
templates.env.filters["pretty_json"] = lambda value: json.dumps(
    value, indent=2, sort_keys=True, ensure_ascii=False)
templates.env.filters["reject_keys"] = lambda value, *keys: {
    k: v for k, v in value.items() if k not in keys}

# Scripts and styles come from this origin only; nothing on a page runs inline code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

FLEET_PAGE = 50
PERIODS = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# Page titles for the statuses the API's one mapping (``api.problems.STATUS_OF``) gives.
TITLE_OF_STATUS = {403: "Not allowed", 404: "Not found", 409: "Not possible now",
                   429: "Too many attempts"}


def _status_of(exc: Exception) -> tuple[int, str]:
    status, _kind = status_of(exc)
    return status, TITLE_OF_STATUS.get(status, "Not accepted")


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _to_sign_in(request: Request) -> Response:
    """Back to the sign-in page, returning to this page afterwards (htmx follows the header)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = f"{PREFIX}/sign-in?" + urlencode({"next": here if request.method == "GET" else ""})
    if _is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return templates.TemplateResponse(request, "error.html", {
        "title": title, "detail": detail, "status": status, "user": None, "nav": []},
        status_code=status)


class ConsoleRoute(APIRoute):
    """Pages answer errors with pages: sign-in for a missing session, a message otherwise."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except Unauthenticated:
                response = _to_sign_in(request)
            except DomainError as exc:
                status, title = _status_of(exc)
                response = _error_page(request, status, title, str(exc))
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
                response = _error_page(request, 422, "Not accepted",
                                       f"{field}: {first.get('msg', 'invalid')}")
            except TelemetryError:
                response = _error_page(request, 503, "Readings unavailable",
                                       "the telemetry store cannot be reached; try again shortly")
            except Overloaded as exc:
                status, _kind = status_of(exc)
                response = _error_page(request, status, "Busy",
                                       "Vigil has more requests than it can answer just now; "
                                       "try again in a few seconds")
                response.headers["Retry-After"] = str(exc.retry_after)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return guarded


router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
root = APIRouter(include_in_schema=False)


# --- who is signed in ------------------------------------------------------------------


def acting_role(ctx: Ctx) -> ActorRole:
    return tickets_api.actor_of(ctx.principal).role


def home_of(roles: set[str] | frozenset[str] | list[str]) -> str:
    """Where a person lands after signing in: a customer on their own devices."""
    if RoleName.MANAGER in roles:
        return f"{PREFIX}/dashboard"
    if RoleName.ADMIN in roles:
        return f"{PREFIX}/fleet"
    if RoleName.ENGINEER in roles:
        return f"{PREFIX}/tickets"
    return f"{PREFIX}/portal"


def _nav(ctx: Ctx) -> list[tuple[str, str]]:
    staff = [("Dashboard", f"{PREFIX}/dashboard"), ("Fleet", f"{PREFIX}/fleet"),
             ("Tickets", f"{PREFIX}/tickets")]
    if _sees_quality(ctx):
        staff.append(("Service quality", f"{PREFIX}/reports/quality"))
    if ctx.principal.is_admin:
        return [*staff, ("Administration", f"{PREFIX}/admin")]
    if ctx.principal.is_staff:
        return staff
    return [("My devices", f"{PREFIX}/portal"), ("Tickets", f"{PREFIX}/tickets")]


def render(request: Request, ctx: Ctx, name: str, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    user = ctx.db.get(User, ctx.principal.user_id)
    return templates.TemplateResponse(request, name, {
        "user": user, "role": acting_role(ctx), "nav": _nav(ctx), "path": request.url.path,
        "is_staff": ctx.principal.is_staff, "may_diagnose": _may_diagnose(ctx), **context},
        status_code=status_code)


async def _form_fields(request: Request) -> dict[str, str]:
    """A form's text fields, for a form whose fields depend on what it sends (a command's
    arguments)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def _safe_next(target: str | None) -> str | None:
    """Only a path of the console itself: never another site (an open redirect)."""
    if not target or not target.startswith(f"{PREFIX}/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return None
    return target


def _same_origin(request: Request) -> bool:
    """A form posted from another site is refused (the sign-in form has no session yet)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


# --- signing in and out ---------------------------------------------------------------


@root.get("/", include_in_schema=False)
def root_page() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@root.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    """Browsers ask for it on pages without an icon link, such as the published report."""
    return RedirectResponse(f"{PREFIX}/static/favicon.svg", status_code=308)


@router.get("/")
def console_home(ctx: SignedIn) -> RedirectResponse:
    return RedirectResponse(home_of(ctx.principal.roles), status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: Annotated[str | None, Query(max_length=500)] = None
                 ) -> HTMLResponse:
    return templates.TemplateResponse(request, "sign_in.html", {
        "next": _safe_next(next) or "", "error": None, "username": "", "user": None, "nav": []})


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    db: Db,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def again(error: str, status: int) -> HTMLResponse:
        return templates.TemplateResponse(request, "sign_in.html", {
            "next": _safe_next(next) or "", "error": error, "username": username, "user": None,
            "nav": []}, status_code=status)

    if not _same_origin(request):
        return again("This form must be sent from Vigil's own sign-in page.", 403)
    try:
        credentials = Credentials(username=username.strip(), password=password)
    except ValidationError:
        return again("Enter your user name and password.", 422)
    redirect = RedirectResponse(f"{PREFIX}/", status_code=303)
    try:
        answer = auth_api.sign_in_console(credentials, request, redirect, db)
    except Throttled as exc:
        return again(f"Too many failed attempts. Try again in {exc.retry_after // 60 + 1} "
                     "minutes.", 429)
    if not isinstance(answer, ConsoleSession):
        return again("The user name or password is wrong, or the account is disabled.", 401)
    redirect.headers["location"] = _safe_next(next) or home_of(answer.user.roles)
    return redirect


@router.post("/sign-out")
def sign_out(request: Request, ctx: SignedIn) -> Response:
    ended = auth_api.sign_out(ctx)
    response = Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/sign-in"})
    for name, value in ended.raw_headers:
        if name == b"set-cookie":
            response.raw_headers.append((name, value))
    return response


# --- the fleet ------------------------------------------------------------------------

FleetSort = Literal["risk", "last_seen", "id", "model"]
_ORDER = {"risk": "desc", "last_seen": "asc", "id": "asc", "model": "asc"}


def _int_or_none(value: str | None) -> int | None:
    """An id from a form's select; anything else (or out of range) means "any"."""
    if not value or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        return None
    return int(value)


def _bool_or_none(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get(value or "")


def _filters(request: Request, **longest: int) -> dict[str, str]:
    """A list page's filters as typed ("" for any), each within its length, for links too."""
    filters = {}
    for name, limit in longest.items():
        value = request.query_params.get(name, "")
        if len(value) > limit:
            raise InvalidRequest(f"{name}: at most {limit} characters")
        filters[name] = value
    return filters


# A list page's template and the one of its results, which htmx swaps alone when a filter changes.
LIST_PAGES = {"fleet": ("fleet.html", "_fleet_results.html", "fleet-results"),
              "tickets": ("tickets.html", "_queue_results.html", "queue-results")}


def _list_url(name: str, filters: dict[str, str], **more: str | int | None) -> str | None:
    """The list page with its filters and a cursor or page number; None without one."""
    extra = {k: v for k, v in more.items() if v is not None}
    if more and not extra:
        return None
    return f"{PREFIX}/{name}?" + urlencode({**filters, **extra})


def _list_page(request: Request, ctx: Ctx, name: str, context: dict[str, Any],
               whole_page: Callable[[], dict[str, Any]] | None = None) -> HTMLResponse:
    """A list page, or only its results when htmx asks (``whole_page`` adds what they skip)."""
    page, results, target = LIST_PAGES[name]
    if _is_htmx(request) and request.headers.get("hx-target") == target:
        return render(request, ctx, results, context)
    return render(request, ctx, page, {**context, **(whole_page() if whole_page else {})})


@router.get("/fleet", response_class=HTMLResponse)
def fleet(
    request: Request,
    ctx: SignedIn,
    sort: FleetSort = "risk",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Devices most at risk first, filtered, a page at a time (keyset pages stay fast)."""
    filters = {**_filters(request, site=12, model=64, online=3, tickets=3, q=64), "sort": sort}
    page = devices_api.device_page(
        ctx, site_id=_int_or_none(filters["site"]), model=filters["model"] or None,
        online=_bool_or_none(filters["online"]),
        has_open_tickets=_bool_or_none(filters["tickets"]), q=filters["q"].strip() or None,
        sort=sort, order="desc" if _ORDER[sort] == "desc" else "asc", limit=FLEET_PAGE,
        cursor=cursor)
    context: dict[str, Any] = {
        "devices": page.items, "filters": filters,
        "next_url": _list_url("fleet", filters, cursor=page.next_cursor),
        "first_url": _list_url("fleet", filters) if cursor else None,
        "site_names": {s.id: s.name for s in queries.sites(ctx.db, ctx.principal)},
        "sites": queries.sites(ctx.db, ctx.principal),
        "models": queries.models(ctx.db, ctx.principal),
        "now": utcnow(),
    }
    return _list_page(request, ctx, "fleet", context, lambda: {
        "summary": queries.fleet_summary(ctx.db, ctx.principal)})


DeviceId = Annotated[str, PathParam(max_length=64)]


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    request: Request,
    device_id: DeviceId,
    ctx: SignedIn,
    period: Annotated[str, Query(max_length=4)] = "24h",
) -> HTMLResponse:
    """One device: health, readings chart with ticket markers, predictions, events, tickets."""
    detail = devices_api.get_device(device_id, ctx, request)
    site_names = queries.site_names(ctx.db, ctx.principal, {detail.site_id})
    markers = [{"id": t.id, "at": t.created_at.astimezone(UTC).isoformat(),
                "title": t.title, "priority": t.priority} for t in detail.tickets]
    chart = {"device": detail.id, "period_s": PERIODS.get(period, PERIODS["24h"]),
             "metrics": sorted(detail.readings), "markers": markers,
             "telemetry": f"/api/v1/devices/{detail.id}/telemetry"}
    return render(request, ctx, "device.html", {
        "device": detail, "site_name": site_names.get(detail.site_id or -1),
        "periods": list(PERIODS), "period": period if period in PERIODS else "24h",
        "chart_json": json.dumps(chart), "now": utcnow(),
        "categories": [c.value for c in Category],
    })


@router.get("/devices/{device_id}/latest", response_class=HTMLResponse)
def latest_readings(request: Request, device_id: DeviceId, ctx: SignedIn,
                    every: Literal["3s", "30s"] = "30s") -> HTMLResponse:
    """The latest readings, which the device page polls, and a diagnosis session faster."""
    detail = devices_api.get_device(device_id, ctx, request)
    return render(request, ctx, "_latest_readings.html", {"device": detail,
                                                          "readings_every": every})


# --- remote diagnosis -----------------------------------------------------------------

# The transcript is polled this often while the session is active; readings a little slower.
TRANSCRIPT_POLL = "1s"
READINGS_POLL = "3s"


def _may_diagnose(ctx: Ctx) -> bool:
    return bool(DIAGNOSING_ROLES & ctx.principal.roles)


def _diagnoser(ctx: Ctx) -> None:
    """Engineers and managers; customers do not learn the page exists."""
    if not ctx.principal.is_staff:
        raise NotFound("this page is for the service organisation")
    if not _may_diagnose(ctx):
        raise Forbidden("only engineers and managers run diagnosis sessions")


def _diagnosis_start(request: Request, ctx: Ctx, device_id: str, ticket: int | None = None,
                     error: str | None = None, status_code: int = 200,
                     template: str = "diagnosis_start.html") -> HTMLResponse:
    detail = devices_api.get_device(device_id, ctx, request)
    open_tickets = [t for t in detail.tickets
                    if TicketState(t.state) not in FINAL_TICKET_STATES]
    sessions = queries.diagnosis_sessions(ctx.db, device_id)
    return render(request, ctx, template, {
        "device": detail, "tickets": open_tickets, "ticket": ticket, "error": error,
        "sessions": sessions, "now": utcnow(),
        "names": queries.user_names(ctx.db, {s.engineer_id for s in sessions}),
    }, status_code=status_code)


@router.get("/devices/{device_id}/diagnosis", response_class=HTMLResponse)
def diagnosis_start(request: Request, device_id: DeviceId, ctx: SignedIn,
                    ticket: Annotated[str | None, Query(max_length=12)] = None) -> HTMLResponse:
    """Open a session on a device, for one of its open tickets or standalone."""
    _diagnoser(ctx)
    return _diagnosis_start(request, ctx, device_id, _int_or_none(ticket))


@router.post("/diagnosis", response_class=HTMLResponse)
def open_diagnosis(request: Request, ctx: SignedIn,
                   device_id: Annotated[str, Form(max_length=64)] = "",
                   ticket: Annotated[str, Form(max_length=12)] = "") -> Response:
    _diagnoser(ctx)
    opened: list[int] = []

    def act() -> None:
        body = SessionIn(device_id=device_id, ticket_id=_int_or_none(ticket))
        opened.append(diagnosis_api.open_session(body, ctx).id)

    error, status = _apply(ctx, act)
    if error is None:
        return Response(status_code=204,
                        headers={"HX-Redirect": f"{PREFIX}/diagnosis/{opened[0]}"})
    return _diagnosis_start(request, ctx, device_id, _int_or_none(ticket), error, status,
                            "_diagnosis_open.html")


def _session_context(request: Request, ctx: Ctx, session_id: int) -> dict[str, Any]:
    detail = diagnosis_api.get_session(session_id, ctx)
    commands = diagnosis_api.list_commands(session_id, ctx, request)
    return {"session": detail, "commands": commands, "entries": detail.transcript,
            "after": max((e.id for e in detail.transcript), default=0),
            "names": queries.user_names(ctx.db, {detail.engineer_id}),
            "poll": TRANSCRIPT_POLL, "message": None, "error": None, "now": utcnow()}


@router.get("/diagnosis/{session_id}", response_class=HTMLResponse)
def diagnosis_page(request: Request, session_id: PathId, ctx: SignedIn) -> HTMLResponse:
    """The session: the allowed commands as buttons, the transcript and readings as they come."""
    _diagnoser(ctx)
    context = _session_context(request, ctx, session_id)
    device = devices_api.get_device(context["session"].device_id, ctx, request)
    return render(request, ctx, "diagnosis.html", {
        **context, "device": device, "readings_every": READINGS_POLL})


@router.get("/diagnosis/{session_id}/transcript", response_class=HTMLResponse)
def diagnosis_transcript(request: Request, session_id: PathId, ctx: SignedIn,
                         after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0) -> Response:
    """What the transcript gained after ``after``: nothing (204), the new entries, or a reload
    once the session is over, so the page shows it closed."""
    _diagnoser(ctx)
    session = diagnosis_service.get_session(ctx.db, session_id=session_id)
    active = is_active(expires_at=session.expires_at, closed_at=session.closed_at, now=utcnow())
    entries = diagnosis_service.entries_after(ctx.db, session_id=session_id, after_id=after)
    if not entries:
        return Response(status_code=204, headers={} if active else {"HX-Refresh": "true"})
    return render(request, ctx, "_diagnosis_entries.html", {
        "session": {"id": session_id, "active": active}, "entries": entries,
        "after": entries[-1].id, "poll": TRANSCRIPT_POLL})


@router.post("/diagnosis/{session_id}/commands", response_class=HTMLResponse)
def diagnosis_command(request: Request, session_id: PathId, ctx: SignedIn,
                      fields: Annotated[dict[str, str], Depends(_form_fields)]) -> HTMLResponse:
    """Send one allowed command; its answer (or timeout) reaches the transcript on its own."""
    _diagnoser(ctx)
    cmd = fields.get("cmd", "")
    outgoing: list[diagnosis_service.Outgoing] = []

    def act() -> None:
        spec = {c.name: c for c in diagnosis_api.list_commands(session_id, ctx, request)}.get(cmd)
        if spec is None:
            raise InvalidRequest(f"cmd: {cmd[:64]!r} is not allowed for this device")
        args: dict[str, float | int] = {}
        for arg in spec.args:
            value = fields.get(arg.name, "").strip()
            if value:
                try:
                    args[arg.name] = int(value) if arg.type == "integer" else float(value)
                except ValueError:
                    raise InvalidRequest(f"{arg.name}: must be a number") from None
        body = CommandIn(cmd=cmd, args=args)
        if bus is None:
            raise Conflict("remote diagnosis is switched off on this server")
        session = diagnosis_service.get_session(ctx.db, session_id=session_id, lock=True)
        outgoing.append(diagnosis_service.send_command(
            ctx.db, session=session, name=body.cmd, args=body.args,
            caller=diagnosis_service.Caller(ctx.principal.user_id, ctx.principal.username,
                                            ctx.principal.roles), now=utcnow(),
            allow_list=request.app.state.allow_list))

    # As the API's route does: the command is published once the request has committed.
    bus: DiagnosisBus | None = request.app.state.diagnosis
    error, status = _apply(ctx, act)
    if outgoing and bus is not None:
        after_commit(ctx.db, lambda: bus.deliver(outgoing[0]))
    context = _session_context(request, ctx, session_id)
    context.update(error=error, message=None if error else
                   f"{cmd} sent; its answer appears in the transcript.")
    return render(request, ctx, "_diagnosis_commands.html", context, status_code=status)


@router.post("/diagnosis/{session_id}/close")
def diagnosis_close(session_id: PathId, ctx: SignedIn) -> Response:
    _diagnoser(ctx)
    diagnosis_api.close_session(session_id, ctx)
    return Response(status_code=204,
                    headers={"HX-Redirect": f"{PREFIX}/diagnosis/{session_id}"})


# --- the manager's dashboard ---------------------------------------------------------

# Tickets whose next deadline falls within this time are "at risk" on the dashboard.
AT_RISK_WITHIN = timedelta(hours=4)


def _main_driver(drivers: dict[str, Any]) -> str | None:
    """The reading that pushed a prediction most."""
    numeric = {k: float(v) for k, v in drivers.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    return max(numeric, key=lambda k: abs(numeric[k])) if numeric else None


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    ctx: SignedIn,
    model: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Predicted failures ranked by risk (the API's ranking) and the tickets nearest breach."""
    if not ctx.principal.is_staff:
        raise NotFound("this page is for the service organisation")
    ranked = predictions_api.ranked(ctx, min_probability=0.0, model=model or None, limit=25)
    at_risk = queries.tickets_near_breach(ctx.db, ctx.principal, within=AT_RISK_WITHIN,
                                          now=utcnow())
    drivers = {p.device_id: _main_driver(p.drivers) for p in ranked}
    return render(request, ctx, "dashboard.html", {
        "ranked": ranked, "drivers": drivers, "model": model or "",
        "models": queries.models(ctx.db, ctx.principal),
        "site_names": {s.id: s.name for s in queries.sites(ctx.db, ctx.principal)},
        "at_risk": [(t, *queries.deadline_window(t)) for t in at_risk],
        "summary": queries.fleet_summary(ctx.db, ctx.principal),
        "breached": sum(1 for t in at_risk if (queries.deadline_window(t)[1] or utcnow())
                        < utcnow()),
        "within_h": int(AT_RISK_WITHIN.total_seconds() // 3600), "now": utcnow(),
        "quality_url": f"{PREFIX}/reports/quality" if _sees_quality(ctx) else None,
    })


# --- the service-quality report ---------------------------------------------------------

REPORT_DAYS = 30
REPORT_MAX_DAYS = 731
GROUP_LABELS = {GroupBy.SITE: "site", GroupBy.MODEL: "device model",
                GroupBy.ENGINEER: "engineer", GroupBy.PRIORITY: "priority"}
# Who the published report names as its publisher (as ``vigil report`` does by default).
PUBLISHER = "Vigil service"
# The published document is a standalone page with its own inline style and no script.
PUBLISHED_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                 "frame-ancestors 'none'; form-action 'none'; base-uri 'none'")


def _sees_quality(ctx: Ctx) -> bool:
    return bool(ctx.principal.roles & {RoleName.MANAGER, RoleName.ADMIN})


def _quality_reader(ctx: Ctx) -> None:
    """Managers and administrators. The report covers every customer, so no customer sees it."""
    if not ctx.principal.is_staff:
        raise NotFound("this page is for the service organisation")
    if not _sees_quality(ctx):
        raise Forbidden("the service-quality report is for managers and administrators")


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    """The form's period (whole days, ``last`` included) and grouping, checked."""

    first: date
    last: date
    group: GroupBy

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)

    def query(self, group: GroupBy | None = None) -> str:
        return urlencode({"from": self.first.isoformat(), "to": self.last.isoformat(),
                          "group": (group or self.group).value})


def _report_period(first: str, last: str, group: str) -> ReportPeriod:
    """The period asked for; an empty field means the last ``REPORT_DAYS`` days to today."""
    today = utcnow().date()
    try:
        end = date.fromisoformat(last) if last else today
        start = date.fromisoformat(first) if first else end - timedelta(days=REPORT_DAYS - 1)
    except ValueError:
        raise InvalidRequest("dates are written YYYY-MM-DD") from None
    if group and group not in GroupBy.__members__.values():
        raise InvalidRequest(f"group: one of {', '.join(g.value for g in GroupBy)}")
    if end < start:
        raise InvalidRequest("the period ends before it starts")
    if (end - start).days >= REPORT_MAX_DAYS:
        raise InvalidRequest(f"a report covers at most {REPORT_MAX_DAYS} days")
    return ReportPeriod(start, end, GroupBy(group or GroupBy.SITE))


def _quality(request: Request, ctx: Ctx, period: ReportPeriod) -> QualityReport:
    """The report as things stand now (a period running into the future is counted to now),
    with the service desk's own rules file for the devices' risk classes."""
    settings: Settings = request.app.state.settings
    rules = TicketRules.load(settings.desk.rules_file or DEFAULT_RULES_FILE)
    return service_quality(ctx.db, start=period.start, end=period.end, group_by=period.group,
                           rules=rules, as_of=min(period.end, utcnow()))


ReportField = Annotated[str, Query(max_length=20)]
# ``from`` is a Python keyword: the form's field has its own name here.
ReportFrom = Annotated[str, Query(alias="from", max_length=20)]


@router.get("/reports/quality", response_class=HTMLResponse)
def quality_page(request: Request, ctx: SignedIn, first: ReportFrom = "",
                 to: ReportField = "", group: ReportField = "") -> HTMLResponse:
    """The service-quality report for a period and grouping, with its CSV and published form."""
    _quality_reader(ctx)
    form = {"from": first, "to": to, "group": group or GroupBy.SITE.value}
    context: dict[str, Any] = {"form": form, "groups": GROUP_LABELS, "report": None,
                               "error": None}
    try:
        period = _report_period(first, to, group)
    except InvalidRequest as exc:
        context["error"] = str(exc)
        return render(request, ctx, "quality.html", context, status_code=422)
    published_group = period.group if period.group in PUBLISHABLE_GROUPS else GroupBy.MODEL
    context.update(
        form={"from": period.first.isoformat(), "to": period.last.isoformat(),
              "group": period.group.value},
        report=_quality(request, ctx, period), period=period,
        csv_url=f"{PREFIX}/reports/quality.csv?{period.query()}",
        rules_csv_url=f"{PREFIX}/reports/quality.csv?{period.query()}&section=rules",
        published_url=f"{PREFIX}/reports/quality/published?{period.query(published_group)}",
        published_group=GROUP_LABELS[published_group],
        milestones=[m.value for m in Milestone])
    return render(request, ctx, "quality.html", context)


@router.get("/reports/quality.csv")
def quality_csv(request: Request, ctx: SignedIn, first: ReportFrom = "", to: ReportField = "",
                group: ReportField = "", section: ReportField = "groups") -> Response:
    """The report's rows and total as CSV: rates are shares (0..1), times hours; with
    ``section=rules``, the analytics rules and their false alarms."""
    _quality_reader(ctx)
    period = _report_period(first, to, group)
    chosen = next((s for s in report_render.CSV_SECTIONS if s == section), None)
    if chosen is None:
        raise InvalidRequest(f"section: one of {', '.join(report_render.CSV_SECTIONS)}")
    part = f"by-{period.group.value}" if chosen == "groups" else "rules"
    name = f"service-quality-{period.first}-{period.last}-{part}.csv"
    return Response(report_render.as_csv(_quality(request, ctx, period), chosen),
                    media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/reports/quality/published", response_class=HTMLResponse)
def quality_published(request: Request, ctx: SignedIn, first: ReportFrom = "",
                      to: ReportField = "", group: ReportField = "") -> HTMLResponse:
    """The version to publish: by device model or priority, naming no customer, site or person."""
    _quality_reader(ctx)
    period = _report_period(first, to, group or GroupBy.MODEL.value)
    document = report_render.publishable_html(_quality(request, ctx, period),
                                              organisation=PUBLISHER)
    return HTMLResponse(document, headers={"Content-Security-Policy": PUBLISHED_CSP})


# --- tickets --------------------------------------------------------------------------


@router.get("/tickets", response_class=HTMLResponse)
def ticket_queue(
    request: Request,
    ctx: SignedIn,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """The queue by the deadline closest to breach; countdowns tick in the browser."""
    filters = _filters(request, priority=2, state=20, mine=3, closed=3)
    f = queries.QueueFilter(
        priority=filters["priority"] or None, state=filters["state"] or None,
        mine=filters["mine"] == "yes", include_closed=filters["closed"] == "yes")
    result = queries.ticket_queue(ctx.db, ctx.principal, f, page)
    context = {
        "tickets": [(t, *queries.deadline_window(t)) for t in result.tickets],
        "filters": filters, "page": result.page,
        "next_url": _list_url("tickets", filters, page=page + 1) if result.has_next else None,
        "prev_url": _list_url("tickets", filters, page=page - 1) if page > 1 else None,
        "names": queries.user_names(ctx.db, {t.assigned_to_id for t in result.tickets}),
        "site_names": queries.site_names(ctx.db, ctx.principal,
                                         {t.site_id for t in result.tickets}),
        "states": [s.value for s in TicketState], "now": utcnow(),
    }
    return _list_page(request, ctx, "tickets", context)


# What the buttons say: the move, not the state it leads to.
MOVE_LABELS = {
    "acknowledged": "Acknowledge", "diagnosing": "Start diagnosis", "dispatched": "Dispatch",
    "repaired": "Mark repaired", "verified": "Mark verified", "closed": "Close",
    "cancelled": "Cancel as false alarm", "resolved_remotely": "Resolved remotely",
    "open": "Reopen",
}
_FIELDS = (Requirement.DIAGNOSIS_NOTE, Requirement.VERIFICATION_RESULT, Requirement.REASON)


def _moves(ticket: Ticket, role: ActorRole) -> list[dict[str, Any]]:
    """The moves this role may make now, with the fields each still asks for.

    A move whose other conditions are not met (closing before the customer's
    sign-off, reopening after the window) is left out: the rules decide, with
    every field assumed filled in.
    """
    facts = TicketFacts(
        state=TicketState(ticket.state), scope=TicketScope(ticket.scope),
        diagnosis_note=ticket.diagnosis_note, verification_result=ticket.verification_result,
        signed_off=ticket.signed_off_at is not None, closed_at=ticket.closed_at)
    filled = TransitionRequest(diagnosis_note="-", verification_result="-", reason="-")
    on_record = {Requirement.DIAGNOSIS_NOTE: bool(ticket.diagnosis_note),
                 Requirement.VERIFICATION_RESULT: bool(ticket.verification_result),
                 Requirement.REASON: False}
    out = []
    for target in allowed_targets(facts.state, role):
        try:
            outcome = check(facts, target, role, filled, now=utcnow())
        except (InvalidTransition, Forbidden):
            continue
        needs = [r.name.lower() for r in outcome.move.requires
                 if r in _FIELDS and not on_record[r]]
        out.append({"to": target.value, "needs": needs, "label": MOVE_LABELS[target.value]})
    return out


# The readings shown with a ticket: from half a day before its first evidence, at most a month.
EVIDENCE_BEFORE = timedelta(hours=12)
EVIDENCE_MAX = timedelta(days=30)


def _evidence_chart(ticket: Ticket) -> str | None:
    """The chart of the device's readings around the ticket, marking its evidence."""
    if ticket.device_id is None:
        return None
    end = ticket.closed_at + timedelta(hours=2) if ticket.closed_at else utcnow()
    start = max((ticket.first_seen_at or ticket.created_at) - EVIDENCE_BEFORE, end - EVIDENCE_MAX)
    seen = {ticket.created_at.astimezone(UTC).isoformat()}
    for piece in (ticket.evidence or {}).get("recent", []):
        if isinstance(piece, dict) and isinstance(piece.get("at"), str):
            seen.add(piece["at"])
    markers = [{"at": at} for at in sorted(seen)]
    return json.dumps({"device": ticket.device_id, "start": start.astimezone(UTC).isoformat(),
                       "end": end.astimezone(UTC).isoformat(), "markers": markers,
                       "telemetry": f"/api/v1/devices/{ticket.device_id}/telemetry"})


def _ticket_context(ctx: Ctx, ticket_id: int, message: str | None = None,
                    error: str | None = None) -> dict[str, Any]:
    detail = tickets_api.get_ticket(ticket_id, ctx)
    role = acting_role(ctx)
    row = ctx.db.get(Ticket, ticket_id)
    assert row is not None
    milestones = [("Respond", detail.respond_by, detail.responded_at),
                  ("Diagnose", detail.diagnose_by, detail.diagnosed_at),
                  ("Restore", detail.restore_by, detail.restored_at)]
    customer = role is ActorRole.CUSTOMER
    latest = (row.evidence or {}).get("latest") or {}
    return {
        "chart_json": _evidence_chart(row), "latest_evidence": latest.get("summary"),
        # The knowledge base is the service organisation's; engineers and managers rate it.
        "articles": knowledge.suggest(ctx.db, ticket_id=ticket_id)
        if ctx.principal.is_staff else [],
        "verdicts": queries.article_verdicts(ctx.db, ticket_id) if ctx.principal.is_staff
        else {},
        "can_rate": role in RATING_ROLES,
        "ticket": detail, "row": row,
        # The customer closes by signing off, in its own panel.
        "moves": [m for m in _moves(row, role) if not (customer and m["to"] == "closed")],
        "milestones": milestones,
        "names": queries.user_names(ctx.db, {detail.assigned_to_id}),
        "assignees": queries.assignees(ctx.db) if ctx.principal.is_staff else [],
        "site_names": queries.site_names(ctx.db, ctx.principal, {detail.site_id}),
        "can_sign_off": customer and detail.state == TicketState.VERIFIED,
        "can_survey": customer and detail.state == TicketState.CLOSED
        and row.satisfaction_score is None,
        "is_open": TicketState(detail.state) not in FINAL_TICKET_STATES,
        "message": message, "error": error, "now": utcnow(),
    }


# Who may say whether a suggested article helped (``knowledge.service.feedback`` decides too).
RATING_ROLES = frozenset({ActorRole.ENGINEER, ActorRole.MANAGER})


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(request: Request, ticket_id: PathId, ctx: SignedIn) -> HTMLResponse:
    return render(request, ctx, "ticket.html", _ticket_context(ctx, ticket_id))


def _apply(ctx: Ctx, action: Callable[[], object]) -> tuple[str | None, int]:
    """Run one write in a savepoint; a refusal undoes it and becomes the message shown."""
    try:
        with ctx.db.begin_nested():
            action()
    except Unauthenticated:
        raise
    except NotFound:
        raise
    except DomainError as exc:
        return str(exc), _status_of(exc)[0]
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", 422
    return None, 200


def _after_write(request: Request, ctx: Ctx, ticket_id: int, done: str,
                 outcome: tuple[str | None, int]) -> HTMLResponse:
    error, status = outcome
    context = _ticket_context(ctx, ticket_id, message=None if error else done, error=error)
    return render(request, ctx, "_ticket_body.html", context, status_code=status)


def _text(value: str) -> str | None:
    return value.strip() or None


@router.post("/tickets/{ticket_id}/transitions", response_class=HTMLResponse)
def move_ticket(
    request: Request,
    ticket_id: PathId,
    ctx: SignedIn,
    to: Annotated[str, Form(max_length=20)],
    note: Annotated[str, Form(max_length=4000)] = "",
    diagnosis_note: Annotated[str, Form(max_length=4000)] = "",
    verification_result: Annotated[str, Form(max_length=4000)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    def act() -> None:
        body = TransitionIn.model_validate({
            "to": to, "note": note.strip(), "diagnosis_note": _text(diagnosis_note),
            "verification_result": _text(verification_result), "reason": _text(reason)})
        tickets_api.transition(ticket_id, body, ctx)

    return _after_write(request, ctx, ticket_id, f"Moved to {to.replace('_', ' ')}.",
                        _apply(ctx, act))


@router.post("/tickets/{ticket_id}/comments", response_class=HTMLResponse)
def comment(request: Request, ticket_id: PathId, ctx: SignedIn,
            text: Annotated[str, Form(max_length=4000)] = "") -> HTMLResponse:
    return _after_write(request, ctx, ticket_id, "Comment added.", _apply(
        ctx, lambda: tickets_api.comment(ticket_id, CommentIn(text=text.strip()), ctx)))


@router.post("/tickets/{ticket_id}/assignment", response_class=HTMLResponse)
def assign(request: Request, ticket_id: PathId, ctx: SignedIn,
           assignee: Annotated[str, Form(max_length=12)] = "") -> HTMLResponse:
    def act() -> None:
        if not ctx.principal.is_staff:
            raise Forbidden("only the service organisation assigns tickets")
        body = AssignmentIn(assignee_id=_int_or_none(assignee))
        tickets_api.assign(ticket_id, body, ctx)

    return _after_write(request, ctx, ticket_id, "Assignment saved.", _apply(ctx, act))


@router.post("/tickets/{ticket_id}/pause", response_class=HTMLResponse)
def pause(request: Request, ticket_id: PathId, ctx: SignedIn,
          reason: Annotated[str, Form(max_length=20)] = "",
          note: Annotated[str, Form(max_length=1000)] = "") -> HTMLResponse:
    def act() -> None:
        if not ctx.principal.is_staff:
            raise Forbidden("only the service organisation pauses the restore clock")
        tickets_api.pause(ticket_id, PauseIn.model_validate({"reason": reason,
                                                             "note": note.strip()}), ctx)

    return _after_write(request, ctx, ticket_id, "Restore clock paused.", _apply(ctx, act))


@router.post("/tickets/{ticket_id}/resume", response_class=HTMLResponse)
def resume(request: Request, ticket_id: PathId, ctx: SignedIn) -> HTMLResponse:
    def act() -> None:
        if not ctx.principal.is_staff:
            raise Forbidden("only the service organisation resumes the restore clock")
        tickets_api.resume(ticket_id, ctx)

    return _after_write(request, ctx, ticket_id, "Restore clock running again.",
                        _apply(ctx, act))


@router.post("/tickets/{ticket_id}/sign-off", response_class=HTMLResponse)
def sign_off(request: Request, ticket_id: PathId, ctx: SignedIn,
             note: Annotated[str, Form(max_length=4000)] = "") -> HTMLResponse:
    """The customer accepts the verified repair, which closes the ticket."""
    def act() -> None:
        tickets_api.sign_off(ticket_id, ctx)
        tickets_api.transition(ticket_id, TransitionIn(
            to="closed", note=note.strip() or "repair accepted by the customer"), ctx)

    return _after_write(request, ctx, ticket_id, "Repair signed off; the ticket is closed.",
                        _apply(ctx, act))


@router.post("/tickets/{ticket_id}/articles/{article_id}/feedback", response_class=HTMLResponse)
def article_feedback(request: Request, ticket_id: PathId, article_id: PathId, ctx: SignedIn,
                     helpful: Annotated[str, Form(max_length=3)] = "") -> HTMLResponse:
    """An engineer's verdict on a suggested article, which moves its rank for later tickets."""
    def act() -> None:
        tickets_api.get_ticket(ticket_id, ctx)  # the caller must see it
        if helpful not in ("yes", "no"):
            raise InvalidRequest("helpful: yes or no")
        knowledge.feedback(ctx.db, ticket_id=ticket_id, article_id=article_id,
                           helpful=helpful == "yes", actor=tickets_api.actor_of(ctx.principal),
                           now=utcnow())

    verdict = "helpful" if helpful == "yes" else "not helpful"
    return _after_write(request, ctx, ticket_id, f"Article marked {verdict}; thank you.",
                        _apply(ctx, act))


@router.post("/tickets/{ticket_id}/survey", response_class=HTMLResponse)
def survey(request: Request, ticket_id: PathId, ctx: SignedIn,
           score: Annotated[str, Form(max_length=1)] = "",
           text: Annotated[str, Form(max_length=2000)] = "") -> HTMLResponse:
    def act() -> None:
        tickets_api.get_ticket(ticket_id, ctx)  # the caller must see it
        survey_service.answer_in_portal(
            ctx.db, ticket_id=ticket_id, score=int(score) if score.isdigit() else 0,
            comment=text, actor=tickets_api.actor_of(ctx.principal), now=utcnow())

    return _after_write(request, ctx, ticket_id, "Thank you for your answer.", _apply(ctx, act))


def _survey_page(request: Request, db: Db, token: str, *, done: str | None = None,
                 error: str | None = None, status: int = 200) -> HTMLResponse:
    """The question behind a survey link: which repair, when it closed; nothing else."""
    found = survey_service.find(db, token=token)
    ticket = found.ticket
    model = ticket.device.model if ticket.device is not None else None
    return templates.TemplateResponse(request, "survey.html", {
        "ticket": ticket, "model": model, "survey": found, "token": token, "done": done,
        "error": error, "expired": utcnow() >= found.expires_at, "user": None, "nav": []},
        status_code=status)


@router.get("/survey/{token}", response_class=HTMLResponse)
def survey_by_link(request: Request, db: Db,
                   token: Annotated[str, PathParam(min_length=20, max_length=100)]
                   ) -> HTMLResponse:
    """The e-mailed link: answered without signing in, the token being the permission."""
    return _survey_page(request, db, token)


@router.post("/survey/{token}", response_class=HTMLResponse)
def answer_by_link(request: Request, db: Db,
                   token: Annotated[str, PathParam(min_length=20, max_length=100)],
                   score: Annotated[str, Form(max_length=1)] = "",
                   text: Annotated[str, Form(max_length=2000)] = "") -> HTMLResponse:
    if not _same_origin(request):
        return _survey_page(request, db, token, error="This form must be sent from Vigil's "
                            "own survey page.", status=403)
    try:
        with db.begin_nested():
            survey_service.answer(db, token=token, score=int(score) if score.isdigit() else 0,
                                  comment=text, now=utcnow())
    except (InvalidRequest, Conflict, Forbidden) as exc:
        status, _title = _status_of(exc)
        return _survey_page(request, db, token, error=str(exc), status=status)
    return _survey_page(request, db, token, done="Thank you for your answer.")


# --- the customer's portal ------------------------------------------------------------


def _portal_context(ctx: Ctx, device: str | None = None) -> dict[str, Any]:
    page = devices_api.device_page(ctx, sort="risk", order="desc", limit=200)
    tickets = list(ctx.db.scalars(
        select(Ticket).where(ticket_visible(ctx.principal))
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(12)))
    return {
        "devices": page.items, "more_devices": page.next_cursor is not None,
        "tickets": tickets, "now": utcnow(),
        "site_names": {s.id: s.name for s in queries.sites(ctx.db, ctx.principal)},
        "categories": [c.value for c in Category],
        "awaiting": [t for t in tickets if t.state == TicketState.VERIFIED],
        "survey": [t for t in tickets
                   if t.state == TicketState.CLOSED and t.satisfaction_score is None],
        "report_error": None, "report": {"device_id": device},
    }


@router.get("/portal", response_class=HTMLResponse)
def portal(request: Request, ctx: SignedIn,
           device: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    """A hospital's own devices and tickets, and the form to report a fault."""
    return render(request, ctx, "portal.html", _portal_context(ctx, device))


@router.post("/tickets", response_class=HTMLResponse)
def report_fault(
    request: Request,
    ctx: SignedIn,
    device_id: Annotated[str, Form(max_length=64)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=10_000)] = "",
    category: Annotated[str, Form(max_length=20)] = "",
    emergency: Annotated[str, Form(max_length=3)] = "",
) -> Response:
    opened: list[int] = []

    def act() -> None:
        body = FaultReport.model_validate({
            "device_id": device_id, "title": title.strip(), "description": description.strip(),
            "category": category or None, "emergency": emergency == "yes"})
        opened.append(tickets_api.report_fault(body, ctx, request).id)

    try:
        error, status = _apply(ctx, act)
    except NotFound:
        error, status = "Choose one of your devices.", 404
    if error is None:
        return Response(status_code=204,
                        headers={"HX-Redirect": f"{PREFIX}/tickets/{opened[0]}"})
    context = _portal_context(ctx)
    context.update(report_error=error, report={"device_id": device_id, "title": title,
                                               "description": description,
                                               "category": category, "emergency": emergency})
    return render(request, ctx, "_report_form.html", context, status_code=status)


# --- administration -------------------------------------------------------------------


def _admin(ctx: Ctx) -> None:
    """The API's administration routes check this in their dependency; the console here."""
    if not ctx.principal.is_admin:
        raise Forbidden("only administrators may do this")


def _admin_context(ctx: Ctx) -> dict[str, Any]:
    return {"users": users_api.list_users(ctx), "sites": queries.sites(ctx.db, ctx.principal),
            "roles": [r.value for r in RoleName], "new_device": None, "new_user": None,
            "device_error": None, "user_error": None, "revoked": None, "form": {}}


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, ctx: SignedIn) -> HTMLResponse:
    """Register devices (their MQTT credential shown once), revoke them, and add users."""
    _admin(ctx)
    return render(request, ctx, "admin.html", _admin_context(ctx))


@router.post("/admin/devices", response_class=HTMLResponse)
def register_device(
    request: Request,
    ctx: SignedIn,
    device_id: Annotated[str, Form(max_length=64)] = "",
    serial: Annotated[str, Form(max_length=64)] = "",
    model: Annotated[str, Form(max_length=64)] = "",
    site: Annotated[str, Form(max_length=12)] = "",
) -> HTMLResponse:
    _admin(ctx)
    registered: list[devices_api.RegisteredDevice] = []

    def act() -> None:
        body = DeviceIn.model_validate({
            "id": device_id.strip(), "serial": serial, "model": model,
            "site_id": _int_or_none(site)})
        registered.append(devices_api.register_device(body, ctx, request))

    error, status = _apply(ctx, act)
    context = _admin_context(ctx)
    # The form keeps what was typed only when it needs correcting.
    context.update(device_error=error, form={"device_id": device_id, "serial": serial,
                                             "model": model, "site": site} if error else {},
                   new_device=registered[0].credential if registered else None)
    return render(request, ctx, "_admin_devices.html", context, status_code=status)


@router.post("/admin/devices/revoke", response_class=HTMLResponse)
def revoke_device(request: Request, ctx: SignedIn,
                  device_id: Annotated[str, Form(max_length=64)] = "") -> HTMLResponse:
    _admin(ctx)

    def act() -> None:
        devices_api.revoke_credential(device_id.strip(), ctx, request)

    try:
        error, status = _apply(ctx, act)
    except NotFound as exc:
        error, status = str(exc), 404
    context = _admin_context(ctx)
    context.update(device_error=error, revoked=None if error else device_id.strip())
    return render(request, ctx, "_admin_devices.html", context, status_code=status)


@router.post("/admin/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    ctx: SignedIn,
    username: Annotated[str, Form(max_length=64)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    sites: Annotated[list[str] | None, Form(max_length=1000)] = None,
) -> HTMLResponse:
    _admin(ctx)
    created: list[NewUser] = []

    def act() -> None:
        body = UserIn.model_validate({
            "username": username.strip(), "display_name": display_name.strip(),
            "roles": [role], "site_ids": [i for i in map(_int_or_none, sites or []) if i]})
        created.append(users_api.create_user(body, ctx))

    error, status = _apply(ctx, act)
    context = _admin_context(ctx)
    context.update(user_error=error, new_user=created[0] if created else None,
                   form={"username": username, "display_name": display_name, "role": role}
                   if error else {})
    return render(request, ctx, "_admin_users.html", context, status_code=status)
