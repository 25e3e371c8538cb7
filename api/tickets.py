"""Tickets: the queue, one ticket with its history, fault reports, and the desk's moves.

The routes check that the caller may see the ticket (in the query, see
``vigil.auth.visibility``), then call the service desk's functions
(``vigil.tickets.service``), which decide what the caller's role may do.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi import Request as HttpRequest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.deps import Ctx, FieldStaff, SignedIn, StaffOnly
from api.params import PathId, QueryId
from api.problems import responses
from vigil import pdf
from vigil.auth.service import Principal
from vigil.auth.visibility import device_visible, ticket_visible
from vigil.config import Settings
from vigil.db.base import utcnow
from vigil.db.enums import (
    FINAL_TICKET_STATES,
    Category,
    PauseReason,
    RoleName,
    TicketSource,
    TicketState,
)
from vigil.devices.health import decode_cursor, encode_cursor
from vigil.devices.models import Device
from vigil.errors import InvalidRequest, NotFound
from vigil.tickets import service, voucher
from vigil.tickets.models import ServiceReport, Ticket
from vigil.tickets.priority import DEFAULT_RULES_FILE, Signal, TicketRules
from vigil.tickets.schemas import (
    AssignmentIn,
    CommentIn,
    FaultReport,
    PauseIn,
    StateLiteral,
    TicketDetail,
    TicketEventOut,
    TicketOut,
    TicketPage,
    TransitionIn,
)
from vigil.tickets.transitions import Actor, ActorRole, Request
from vigil.users.models import User

router = APIRouter(prefix="/tickets", tags=["tickets"])

# The role a person acts in when they hold several: the broadest.
_ROLE_ORDER = (RoleName.ADMIN, RoleName.MANAGER, RoleName.ENGINEER, RoleName.CUSTOMER)


@cache
def ticket_rules(path: Path = DEFAULT_RULES_FILE) -> TicketRules:
    return TicketRules.load(path)


def desk_rules(request: HttpRequest) -> TicketRules:
    """The service desk's rules as configured (``desk.rules_file``), as the jobs apply them."""
    settings: Settings = request.app.state.settings
    return ticket_rules(settings.desk.rules_file or DEFAULT_RULES_FILE)


def actor_of(principal: Principal) -> Actor:
    role = next((r for r in _ROLE_ORDER if r in principal.roles), RoleName.CUSTOMER)
    return Actor(principal.username, ActorRole(role.value))


def _visible(ctx: Ctx, ticket_id: int) -> Ticket:
    ticket = ctx.db.scalar(select(Ticket).where(Ticket.id == ticket_id,
                                                ticket_visible(ctx.principal)))
    if ticket is None:
        raise NotFound(f"ticket {ticket_id} not found")
    return ticket


def _out(ticket: Ticket) -> TicketOut:
    return TicketOut.model_validate(ticket, from_attributes=True)


@router.get("", response_model=TicketPage, responses=responses(401, 403, 422),
            summary="The ticket queue the caller may see, newest first, paged by cursor")
def list_tickets(
    ctx: SignedIn,
    state: Annotated[list[StateLiteral] | None, Query(max_length=9)] = None,
    open_only: bool = False,
    priority: Annotated[list[str] | None, Query(max_length=3)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    site_id: QueryId = None,
    scope: Annotated[Literal["device", "site", "fleet"] | None, Query(
        description="fleet: the service manager's tickets for a defect across a model")] = None,
    assigned_to_id: QueryId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TicketPage:
    query = select(Ticket).where(ticket_visible(ctx.principal))
    if state:
        query = query.where(Ticket.state.in_(state))
    if open_only:
        query = query.where(Ticket.state.not_in([s.value for s in FINAL_TICKET_STATES]))
    if priority:
        query = query.where(Ticket.priority.in_(priority))
    if device_id is not None:
        query = query.where(Ticket.device_id == device_id)
    if site_id is not None:
        query = query.where(Ticket.site_id == site_id)
    if scope is not None:
        query = query.where(Ticket.scope == scope)
    if assigned_to_id is not None:
        query = query.where(Ticket.assigned_to_id == assigned_to_id)
    if cursor is not None:
        _, after = decode_cursor(cursor, "id")
        if not after.isdigit():
            raise InvalidRequest("cursor: not a cursor this list handed out")
        query = query.where(Ticket.id < int(after))
    rows = list(ctx.db.scalars(query.order_by(Ticket.id.desc()).limit(limit + 1)))
    items = rows[:limit]
    next_cursor = encode_cursor(["", str(items[-1].id)]) if len(rows) > limit else None
    return TicketPage(items=[_out(t) for t in items], next_cursor=next_cursor)


@router.get("/{ticket_id}", response_model=TicketDetail, responses=responses(401, 403, 404),
            summary="One ticket with its full history")
def get_ticket(ticket_id: PathId, ctx: SignedIn) -> TicketDetail:
    ticket = _visible(ctx, ticket_id)
    return TicketDetail(**_out(ticket).model_dump(),
                        events=[TicketEventOut.model_validate(e) for e in ticket.events])


@router.post("", response_model=TicketOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 404, 409, 422),
             summary="Report a fault on a device; a report of the same open fault joins it")
def report_fault(body: FaultReport, ctx: SignedIn, request: HttpRequest) -> TicketOut:
    device = ctx.db.scalar(select(Device).where(Device.id == body.device_id,
                                                device_visible(ctx.principal)))
    if device is None:
        raise NotFound(f"device {body.device_id!r} not found")
    now = utcnow()
    signal = Signal(source=TicketSource.CUSTOMER, emergency=body.emergency,
                    category=None if body.category is None else Category(body.category))
    opened = service.open_or_join(
        ctx.db, device_id=device.id, signature=f"report:{body.category or 'unspecified'}",
        signal=signal, title=body.title, description=body.description,
        evidence=service.Evidence(at=now, summary=body.title,
                                  data={"description": body.description[:2000]}),
        now=now, rules=desk_rules(request), actor=actor_of(ctx.principal))
    return _out(opened.ticket)


@router.post("/{ticket_id}/transitions", response_model=TicketOut,
             responses=responses(401, 403, 404, 409, 422),
             summary="Move a ticket to another state, as the transition rules allow the role")
def transition(ticket_id: PathId, body: TransitionIn, ctx: SignedIn) -> TicketOut:
    _visible(ctx, ticket_id)
    ticket = service.transition(
        ctx.db, ticket_id=ticket_id, to=TicketState(body.to), actor=actor_of(ctx.principal),
        now=utcnow(), note=body.note,
        request=Request(diagnosis_note=body.diagnosis_note,
                        verification_result=body.verification_result, reason=body.reason))
    return _out(ticket)


@router.post("/{ticket_id}/comments", response_model=TicketEventOut,
             status_code=status.HTTP_201_CREATED, responses=responses(401, 403, 404, 422),
             summary="Comment on a ticket")
def comment(ticket_id: PathId, body: CommentIn, ctx: SignedIn) -> TicketEventOut:
    _visible(ctx, ticket_id)
    event = service.comment(ctx.db, ticket_id=ticket_id, actor=actor_of(ctx.principal),
                            text=body.text, now=utcnow())
    ctx.db.flush()
    return TicketEventOut.model_validate(event)


@router.put("/{ticket_id}/assignment", response_model=TicketOut,
            responses=responses(401, 403, 404, 422),
            summary="Assign the ticket to someone of the service organisation, or nobody")
def assign(ticket_id: PathId, body: AssignmentIn, ctx: StaffOnly) -> TicketOut:
    _visible(ctx, ticket_id)
    if body.assignee_id is not None:
        assignee = ctx.db.get(User, body.assignee_id)
        if assignee is None or not assignee.active or not any(
                r.name in (RoleName.ENGINEER, RoleName.MANAGER) for r in assignee.roles):
            raise InvalidRequest("assignee_id: not an active engineer or manager")
    return _out(service.assign(ctx.db, ticket_id=ticket_id, assignee_id=body.assignee_id,
                               actor=actor_of(ctx.principal), now=utcnow()))


@router.post("/{ticket_id}/pause", response_model=TicketOut,
             responses=responses(401, 403, 404, 409, 422),
             summary="Stop the restore clock while waiting on the customer or on parts")
def pause(ticket_id: PathId, body: PauseIn, ctx: StaffOnly) -> TicketOut:
    _visible(ctx, ticket_id)
    return _out(service.pause(ctx.db, ticket_id=ticket_id, reason=PauseReason(body.reason),
                              actor=actor_of(ctx.principal), now=utcnow(), note=body.note))


@router.post("/{ticket_id}/resume", response_model=TicketOut,
             responses=responses(401, 403, 404, 409), summary="Restart the restore clock")
def resume(ticket_id: PathId, ctx: StaffOnly) -> TicketOut:
    _visible(ctx, ticket_id)
    return _out(service.resume(ctx.db, ticket_id=ticket_id, actor=actor_of(ctx.principal),
                               now=utcnow()))


@router.post("/{ticket_id}/sign-off", response_model=TicketOut,
             responses=responses(401, 403, 404, 409),
             summary="The customer accepts the verified repair")
def sign_off(ticket_id: PathId, ctx: SignedIn) -> TicketOut:
    _visible(ctx, ticket_id)
    return _out(service.sign_off(ctx.db, ticket_id=ticket_id, actor=actor_of(ctx.principal),
                                 user_id=ctx.principal.user_id, now=utcnow()))


# A voucher or published report is a standalone page with inline style and no script.
DOCUMENT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                "frame-ancestors 'none'; form-action 'none'; base-uri 'none'")


class VoucherOut(BaseModel):
    """An issued service voucher; the document itself is at GET .../voucher."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": 7, "ticket_id": 42, "version": 1, "issued_at": "2026-12-02T16:00:00Z",
        "issued_by": "eve",
        "digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "has_pdf": True}]})

    id: int
    ticket_id: int
    version: int
    issued_at: datetime
    issued_by: str
    digest: str
    has_pdf: bool


def _voucher_out(report: ServiceReport) -> VoucherOut:
    return VoucherOut(id=report.id, ticket_id=report.ticket_id, version=report.version,
                      issued_at=report.issued_at, issued_by=report.issued_by,
                      digest=report.digest, has_pdf=report.pdf is not None)


@router.get(
    "/{ticket_id}/voucher",
    response_class=Response,
    responses={**responses(401, 403, 404, 422, 503),
               200: {"content": {"text/html": {"schema": {"type": "string"}},
                                 "application/pdf": {"schema": {"type": "string",
                                                                "format": "binary"}}},
                     "description": "the voucher as issued, HTML or PDF"}},
    summary="The ticket's service voucher as issued (the latest version, or one by number)",
)
def get_voucher(
    ticket_id: PathId,
    ctx: SignedIn,
    version: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    format: Literal["html", "pdf"] = "html",
) -> Response:
    _visible(ctx, ticket_id)
    query = select(ServiceReport).where(ServiceReport.ticket_id == ticket_id)
    if version is not None:
        query = query.where(ServiceReport.version == version)
    report = ctx.db.scalar(query.order_by(ServiceReport.version.desc()).limit(1))
    if report is None:
        raise NotFound(f"ticket {ticket_id} has no service voucher"
                       + ("" if version is None else f" version {version}"))
    digest = {"X-Voucher-Version": str(report.version), "X-Voucher-Digest": report.digest}
    if format == "pdf":
        # A voucher issued without its PDF is rendered from the HTML kept with it.
        body = report.pdf if report.pdf is not None else pdf.from_html(report.html)
        name = f"service-report_{ticket_id}_v{report.version}.pdf"
        return Response(body, media_type="application/pdf",
                        headers={**digest, "Content-Disposition": f'inline; filename="{name}"'})
    return Response(report.html, media_type="text/html; charset=utf-8",
                    headers={**digest, "Content-Security-Policy": DOCUMENT_CSP})


@router.post("/{ticket_id}/voucher", response_model=VoucherOut,
             status_code=status.HTTP_201_CREATED, responses=responses(401, 403, 404, 503),
             summary="Issue the ticket's service voucher (a new version each time; engineers "
                     "and managers)")
def issue_voucher(ticket_id: PathId, ctx: FieldStaff) -> VoucherOut:
    _visible(ctx, ticket_id)
    return _voucher_out(voucher.issue(ctx.db, ticket_id=ticket_id,
                                      actor=actor_of(ctx.principal), now=utcnow()))
