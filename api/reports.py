"""The service-quality report: as JSON, as CSV, and the published version (HTML or PDF).

Managers and administrators see every customer, or one with ``customer_id``; a
customer's users see their own customer only: the filter is part of the
report's queries (``vigil.reports.quality``), never applied to its results.
Engineers work the tickets the report judges; it is not theirs (as in the console).
The published version names no customer, site, engineer or device
(``vigil.reports.render``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from api.deps import Ctx, SignedIn
from api.params import QueryId
from api.problems import responses
from api.tickets import DOCUMENT_CSP, desk_rules
from vigil.db.base import utcnow
from vigil.db.enums import RoleName
from vigil.devices import registry
from vigil.errors import Forbidden, InvalidRequest
from vigil.reports import render
from vigil.reports.quality import GroupBy, QualityReport, service_quality

router = APIRouter(prefix="/reports", tags=["reports"])

# As the console's report page: two years at most.
MAX_PERIOD = timedelta(days=731)
PUBLISHER = "Vigil service"

GroupByLiteral = Literal["site", "model", "engineer", "priority"]
PublishableLiteral = Literal["model", "priority"]
Organisation = Annotated[str, Query(min_length=1, max_length=200,
                                    description="who publishes the report")]


class TimesOut(BaseModel):
    count: int
    median_h: float | None
    p90_h: float | None


class ComplianceOut(BaseModel):
    met: int
    decided: int
    rate: float | None


class PredictedOut(BaseModel):
    opened: int
    confirmed: int
    false_alarms: int
    pending: int
    precision: float | None
    median_lead_h: float | None


class RowOut(BaseModel):
    group: str
    opened: int
    by_source: dict[str, int]
    times: dict[str, TimesOut]
    compliance: dict[str, ComplianceOut]
    mttr_h: float | None
    finished: int
    first_time_fix_rate: float | None
    remote_fix_rate: float | None
    satisfaction_mean: float | None
    satisfaction_answers: int
    surveys_sent: int
    survey_response_rate: float | None
    predicted: PredictedOut


class ReliabilityOut(BaseModel):
    model: str
    devices: int
    device_hours: float
    failures: int
    mtbf_h: float | None


class CompletionOut(BaseModel):
    due: int
    done: int
    on_time: int
    rate: float | None
    on_time_rate: float | None


class RuleCancellationsOut(BaseModel):
    """An analytics rule (its ticket signature) over the period: tickets it opened, and
    those an engineer cancelled as false alarms, as a share of them."""

    signature: str
    opened: int
    cancelled: int
    share: float | None


class QualityReportOut(BaseModel):
    """Tickets opened in [start, end), grouped, with a total row; times in service hours."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "start": "2026-11-01T00:00:00+00:00", "end": "2026-12-01T00:00:00+00:00",
        "as_of": "2026-12-01T00:00:00+00:00", "group_by": "model", "customer_id": None,
        "rows": [], "total": {
            "group": "(all)", "opened": 0,
            "by_source": {"analytics": 0, "device_event": 0, "customer": 0,
                          "maintenance_plan": 0},
            "times": {}, "compliance": {}, "mttr_h": None, "finished": 0,
            "first_time_fix_rate": None, "remote_fix_rate": None, "satisfaction_mean": None,
            "satisfaction_answers": 0, "surveys_sent": 0, "survey_response_rate": None,
            "predicted": {"opened": 0, "confirmed": 0, "false_alarms": 0, "pending": 0,
                          "precision": None, "median_lead_h": None}},
        "reliability": [], "maintenance": {},
        "cancellations_by_rule": [{"signature": "anomaly:motor_current_a", "opened": 12,
                                   "cancelled": 3, "share": 0.25}]}]})

    start: datetime
    end: datetime
    as_of: datetime
    group_by: GroupByLiteral
    customer_id: int | None
    rows: list[RowOut]
    total: RowOut
    reliability: list[ReliabilityOut]
    maintenance: dict[str, CompletionOut]
    cancellations_by_rule: list[RuleCancellationsOut]


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidRequest(f"{name}: give a time zone (e.g. 2026-12-01T00:00:00Z)")
    return value.astimezone(UTC)


def customer_scope(ctx: Ctx, customer_id: int | None) -> int | None:
    """The customer the report covers: any (or one) for managers and administrators; a
    customer's users get their own, and another's id answers 404 like a missing one."""
    roles = ctx.principal.roles
    if ctx.principal.is_staff and not roles & {RoleName.MANAGER, RoleName.ADMIN}:
        raise Forbidden("the service-quality report is for managers, administrators and "
                        "customers")
    if customer_id is not None:
        return registry.get_customer(ctx.db, principal=ctx.principal,
                                     customer_id=customer_id).id
    if ctx.principal.is_staff:
        return None
    own = registry.list_customers(ctx.db, principal=ctx.principal)
    if not own:
        raise Forbidden("this user is attached to no customer's site")
    if len(own) > 1:
        raise InvalidRequest("customer_id: this user has sites of several customers; name one")
    return own[0].id


def _report(request: Request, ctx: Ctx, start: datetime, end: datetime, group_by: str,
            customer_id: int | None) -> tuple[QualityReport, int | None]:
    """The report and the customer it covers (None: all of them)."""
    scope = customer_scope(ctx, customer_id)
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InvalidRequest("end: must be after start")
    if end - start > MAX_PERIOD:
        raise InvalidRequest(f"end: a report covers at most {MAX_PERIOD.days} days")
    return service_quality(ctx.db, start=start, end=end, group_by=GroupBy(group_by),
                           rules=desk_rules(request), as_of=min(end, utcnow()),
                           customer_id=scope), scope


def _name(report: QualityReport, extension: str) -> str:
    return (f"service-quality_{report.group_by.value}_{report.start:%Y%m%d}_"
            f"{report.end:%Y%m%d}.{extension}")


@router.get(
    "/quality",
    response_model=QualityReportOut,
    responses={**responses(401, 403, 404, 422),
               200: {"content": {"application/json": {}, "text/csv": {}},
                     "description": "the report, as JSON or as CSV (``section=groups``: one "
                                    "line per group and a total line; ``section=rules``: one "
                                    "line per analytics rule with its false alarms)"}},
    summary="Service quality over a period: SLA compliance, times, MTTR, fixes, satisfaction "
            "(managers, administrators, and customers for their own)",
)
def quality(
    request: Request,
    ctx: SignedIn,
    start: datetime,
    end: datetime,
    group_by: GroupByLiteral = "model",
    customer_id: QueryId = None,
    format: Literal["json", "csv"] = "json",
    section: Annotated[render.CsvSection, Query(
        description="which table a CSV holds: the groups, or the analytics rules")] = "groups",
) -> QualityReportOut | Response:
    report, scope = _report(request, ctx, start, end, group_by, customer_id)
    if format == "csv":
        name = _name(report, "csv" if section == "groups" else "rules.csv")
        return Response(render.as_csv(report, section), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    doc = render.as_json(report)
    doc["customer_id"] = scope
    return QualityReportOut.model_validate(doc)


@router.get(
    "/quality/published",
    response_class=Response,
    responses={**responses(401, 403, 404, 422, 503),
               200: {"content": {"text/html": {"schema": {"type": "string"}},
                                 "application/pdf": {"schema": {"type": "string",
                                                                "format": "binary"}}},
                     "description": "the publishable document"}},
    summary="The published report: by device model or priority, naming no customer, site, "
            "engineer or device; HTML or PDF",
)
def published(
    request: Request,
    ctx: SignedIn,
    start: datetime,
    end: datetime,
    organisation: Organisation = PUBLISHER,
    group_by: PublishableLiteral = "model",
    customer_id: QueryId = None,
    format: Literal["html", "pdf"] = "html",
) -> Response:
    report, _scope = _report(request, ctx, start, end, group_by, customer_id)
    html = render.publishable_html(report, organisation=organisation)
    if format == "pdf":
        return Response(render.pdf_from_html(html), media_type="application/pdf",
                        headers={"Content-Disposition":
                                 f'inline; filename="{_name(report, "pdf")}"'})
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": DOCUMENT_CSP})
