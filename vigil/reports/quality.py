"""The service-quality report: how well the desk kept its promises over a period.

For tickets opened in ``[start, end)`` and worked on their own (device tickets
grouped under a site ticket are counted through it; a fleet ticket, which only
links device tickets for the service manager, is not counted: its device tickets
are), grouped by site, device model, engineer or priority, with a total row:

- tickets opened, by source;
- response, diagnosis and restore times in service hours (median and 90th
  percentile), from the service time kept on each ticket when it met the
  milestone (the contract's calendar; restore without pauses);
- compliance per milestone: met by its deadline, out of the milestones met or
  past their deadline by ``as_of`` (a cancelled ticket's unmet milestones do not count);
- MTTR (mean restore time, failures only), first-time-fix rate (finished
  failures never reopened), remote-fix rate (finished failures resolved remotely);
- satisfaction mean, and answers out of surveys sent;
- predicted failures: analytics tickets confirmed by a diagnosis or cancelled as
  false alarms, with the lead time the prediction gave (``hours_to_failure`` in
  the data of the first evidence piece kept, which the ticket row holds as
  ``lead_hours``).

Beside the rows: MTBF per device model (operating hours over failures),
planned-maintenance completion, high-risk devices separately, and per analytics
rule (the signature: ``anomaly:<metric>``, ``prediction:<fault type>``) the tickets
it opened and how many an engineer cancelled as false alarms, so that a noisy rule
shows (``cancellations_by_rule``).

With ``customer_id`` everything (the rows, reliability and maintenance) counts only
that customer's sites and their devices, in the queries themselves: what a
customer's users may see.

Counts and sums are one grouped SQL query on either database. Percentiles are
``percentile_cont`` with grouping sets on PostgreSQL; SQLite has neither, so
there the duration columns are read and ``metrics.percentile`` (the same
interpolation) computes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Date,
    Float,
    Select,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from vigil.db.enums import MaintenanceKind, Milestone, TicketScope, TicketSource, TicketState
from vigil.devices.models import Device, Site
from vigil.errors import InvalidRequest
from vigil.maintenance.models import MaintenanceDue, MaintenancePlan, MaintenanceRecord
from vigil.maintenance.service import HIGH_RISK_CLASSES
from vigil.reports import metrics
from vigil.tickets.models import Ticket
from vigil.tickets.priority import TicketRules
from vigil.users.models import User

FINISHED = (TicketState.CLOSED.value, TicketState.RESOLVED_REMOTELY.value)
TOTAL = "(all)"


class GroupBy(StrEnum):
    SITE = "site"
    MODEL = "model"
    ENGINEER = "engineer"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class Times:
    """Hours of service time: how many tickets met the milestone, median and 90th percentile."""

    count: int
    median_h: float | None
    p90_h: float | None


@dataclass(frozen=True, slots=True)
class Compliance:
    met: int
    decided: int
    rate: float | None


@dataclass(frozen=True, slots=True)
class Predicted:
    opened: int
    confirmed: int
    false_alarms: int
    pending: int
    precision: float | None
    median_lead_h: float | None


@dataclass(frozen=True, slots=True)
class Row:
    group: str
    opened: int
    by_source: dict[str, int]
    times: dict[str, Times]
    compliance: dict[str, Compliance]
    mttr_h: float | None
    finished: int
    first_time_fix_rate: float | None
    remote_fix_rate: float | None
    satisfaction_mean: float | None
    satisfaction_answers: int
    surveys_sent: int
    survey_response_rate: float | None
    predicted: Predicted


@dataclass(frozen=True, slots=True)
class Reliability:
    model: str
    devices: int
    device_hours: float
    failures: int
    mtbf_h: float | None


@dataclass(frozen=True, slots=True)
class RuleCancellations:
    """One analytics rule over the period: tickets it opened, and those cancelled as false
    alarms (``share``: of those opened)."""

    signature: str
    opened: int
    cancelled: int
    share: float | None


@dataclass(frozen=True)
class QualityReport:
    start: datetime
    end: datetime
    as_of: datetime
    group_by: GroupBy
    rows: list[Row]
    total: Row
    reliability: list[Reliability]
    maintenance: dict[str, metrics.Completion] = field(default_factory=dict)
    # Noisiest first: most cancellations, then the highest share.
    cancellations_by_rule: list[RuleCancellations] = field(default_factory=list)


# --- the counts: one grouped query ------------------------------------------------

_MET = {Milestone.RESPOND: ("responded_at", "respond_by"),
        Milestone.DIAGNOSE: ("diagnosed_at", "diagnose_by"),
        Milestone.RESTORE: ("restored_at", "restore_by")}


def _key(group_by: GroupBy) -> tuple[Any, Any]:
    """The grouping key and its label."""
    if group_by is GroupBy.SITE:
        return Ticket.site_id, Site.name
    if group_by is GroupBy.MODEL:
        return Device.model, Device.model
    if group_by is GroupBy.ENGINEER:
        return Ticket.assigned_to_id, User.display_name
    return Ticket.priority, Ticket.priority


# The statements are built once per grouping with the period as parameters: building one
# cost about 3 ms of Python per report, a tenth of the whole report on PostgreSQL.
def _moment(name: str) -> BindParameter[datetime]:
    return bindparam(name, type_=Ticket.created_at.type)


START, END, AS_OF = _moment("start"), _moment("end"), _moment("as_of")
CUSTOMER = bindparam("customer_id", type_=Site.customer_id.type)


def _period(start: datetime, end: datetime, as_of: datetime | None,
            customer_id: int | None) -> dict[str, Any]:
    """The statements' parameters (``as_of`` for those that judge deadlines)."""
    period: dict[str, Any] = {"start": start, "end": end}
    if as_of is not None:
        period["as_of"] = as_of
    if customer_id is not None:
        period["customer_id"] = customer_id
    return period


def _worked_in_period(query: Any, of_customer: bool) -> Any:
    """The tickets opened in the period and worked on their own (not grouped under a site
    ticket; not a fleet ticket, which links device tickets counted themselves);
    ``of_customer``: only those of the ``customer_id`` parameter."""
    query = query.where(Ticket.created_at >= START, Ticket.created_at < END,
                        Ticket.parent_id.is_(None), Ticket.scope != TicketScope.FLEET.value)
    if of_customer:
        # A device ticket may carry only its device; a site ticket only its site.
        sites = select(Site.id).where(Site.customer_id == CUSTOMER)
        query = query.where(or_(Ticket.site_id.in_(sites), Ticket.device_id.in_(
            select(Device.id).where(Device.site_id.in_(sites)))))
    return query


def _scope(query: Any, group_by: GroupBy, of_customer: bool, labels: bool = True) -> Any:
    """The period's tickets (``_worked_in_period``); ``labels``: joined to the sites or
    people naming the groups (the model is joined always, it is the key)."""
    query = _worked_in_period(query, of_customer)
    if group_by is GroupBy.SITE and labels:
        query = query.outerjoin(Site, Site.id == Ticket.site_id)
    elif group_by is GroupBy.MODEL:
        query = query.outerjoin(Device, Device.id == Ticket.device_id)
    elif group_by is GroupBy.ENGINEER and labels:
        query = query.outerjoin(User, User.id == Ticket.assigned_to_id)
    return query


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """Rows meeting ``condition``, as a FILTER: the others skip the aggregate instead of
    feeding it a CASE's NULL (with the lead time's FILTER below, the grouped statement by
    site took 14.4 against 14.9 ms, best of 15 runs)."""
    return func.count().filter(condition)


def _lead_hours() -> ColumnElement[Any]:
    """The lead time a confirmed prediction gave, in hours; NULL for any other ticket."""
    return case((_confirmed_prediction(), Ticket.lead_hours))


def _confirmed_prediction() -> ColumnElement[bool]:
    return and_(Ticket.source == TicketSource.ANALYTICS.value,
                Ticket.state != TicketState.CANCELLED.value, Ticket.diagnosed_at.is_not(None))


def _count_columns() -> list[ColumnElement[Any]]:
    failure = Ticket.source != TicketSource.MAINTENANCE_PLAN.value
    finished = and_(Ticket.state.in_(FINISHED), failure)
    analytics = Ticket.source == TicketSource.ANALYTICS.value
    columns: list[ColumnElement[Any]] = [
        func.count(Ticket.id).label("opened"),
        *(_count(Ticket.source == s.value).label(f"source_{s.value}") for s in TicketSource),
        func.sum(case((failure, Ticket.restore_minutes))).label("mttr_sum"),
        _count(and_(failure, Ticket.restore_minutes.is_not(None))).label("mttr_n"),
        _count(finished).label("finished"),
        _count(and_(finished, Ticket.reopen_count == 0)).label("first_time"),
        _count(and_(finished, Ticket.state == TicketState.RESOLVED_REMOTELY.value))
        .label("remote"),
        func.sum(Ticket.satisfaction_score).label("score_sum"),
        func.count(Ticket.satisfaction_score).label("answers"),
        # Kept on the ticket: an outer join to the surveys scanned all of them (see migration 0011).
        _count(Ticket.surveyed.is_(True)).label("surveys"),
        _count(_confirmed_prediction()).label("confirmed"),
        _count(and_(analytics, Ticket.state == TicketState.CANCELLED.value)).label("false"),
    ]
    for milestone, (met_at, due_at) in _MET.items():
        met, due = getattr(Ticket, met_at), getattr(Ticket, due_at)
        columns.append(_count(and_(met.is_not(None), met <= due)).label(f"{milestone}_met"))
        columns.append(_count(or_(met.is_not(None), and_(
            due < AS_OF, Ticket.state != TicketState.CANCELLED.value)))
            .label(f"{milestone}_decided"))
    return columns


@cache
def _counts_statement(group_by: GroupBy, of_customer: bool) -> Select[Any]:
    key, label = _key(group_by)
    query = select(key.label("key"), label.label("label"), *_count_columns())
    return _scope(query.select_from(Ticket), group_by, of_customer).group_by(key, label)


def _counts(session: Session, group_by: GroupBy, start: datetime, end: datetime,
            as_of: datetime, customer_id: int | None) -> dict[Any, dict[str, Any]]:
    """Every count and sum per group, in one grouped query (any database)."""
    rows = session.connection().execute(_counts_statement(group_by, customer_id is not None),
                                        _period(start, end, as_of, customer_id))
    return {row.key: row._asdict() for row in rows}


# --- the percentiles -------------------------------------------------------------

_DURATIONS = ("respond_minutes", "diagnose_minutes", "restore_minutes", "lead")


def _spread_names(name: str) -> tuple[str, str, str]:
    """The columns of a duration's spread in a group: how many values, median, 90th percentile."""
    return f"{name}_n", f"{name}_median", f"{name}_p90"


# A group's figures by column name: the counts and sums, and each duration's spread.
Figures = dict[str, Any]
_NO_SPREAD: Figures = {column: value for name in _DURATIONS
                       for column, value in zip(_spread_names(name), (0, None, None), strict=True)}


def _percentile_columns() -> list[ColumnElement[Any]]:
    """Count and both quantiles (an array) of each duration; the lead time only of confirmed
    predictions (a FILTER, as ``_lead_hours`` selects them)."""
    values: list[tuple[str, Any, ColumnElement[bool] | None]] = [
        (name, getattr(Ticket, name), None) for name in _DURATIONS[:3]]
    values.append(("lead", Ticket.lead_hours, _confirmed_prediction()))
    columns: list[ColumnElement[Any]] = []
    for name, value, only in values:
        count: Any = func.count(value)
        # Both quantiles from one sort of the group's values.
        quantiles: Any = func.percentile_cont(postgresql.array([0.5, 0.9]),
                                              type_=postgresql.ARRAY(Float)).within_group(value)
        if only is not None:
            count, quantiles = count.filter(only), quantiles.filter(only)
        columns += [count.label(f"{name}_n"), quantiles.label(f"{name}_q")]
    return columns


def _everything_sql(session: Session, group_by: GroupBy, start: datetime, end: datetime,
                    as_of: datetime, customer_id: int | None) -> dict[Any, Figures]:
    """PostgreSQL: counts and percentiles of every group and of the total in one pass.

    Grouping sets give the total row its own percentiles (they cannot be summed
    from the groups'); one scan of the period's tickets instead of two. A row becomes
    its figures by name in one ``dict(zip(...))``.
    """
    result = session.connection().execute(
        _everything_statement(group_by, customer_id is not None),
        _period(start, end, as_of, customer_id))
    names = tuple(result.keys())
    found: dict[Any, Figures] = {}
    for row in result.all():
        figures = dict(zip(names, row, strict=True))
        found[TOTAL if figures["is_total"] else figures["key"]] = figures
    return found


@cache
def _everything_statement(group_by: GroupBy, of_customer: bool) -> Select[Any]:
    """Names are joined to the groups once counted, not to each ticket before: a tenth less
    database time by site (backend CPU over 6,100 tickets, median of 15 runs at load 19:
    33.8 against 37.5 ms; by engineer 33.8 against 35.3 ms). The quantiles come out as
    plain numbers, not arrays: reading the rows by site took 1.6 instead of 2.5 ms of
    client CPU."""
    key, _label = _key(group_by)
    query = select(key.label("key"), func.grouping(key).label("is_total"), *_count_columns(),
                   *_percentile_columns())
    groups = (_scope(query.select_from(Ticket), group_by, of_customer, labels=False)
              .group_by(func.grouping_sets(tuple_(key), tuple_())).subquery())
    columns: list[Any] = [c for c in groups.c if not c.name.endswith("_q")]
    for name in _DURATIONS:
        _n, median, p90 = _spread_names(name)
        quantiles = type_coerce(groups.c[f"{name}_q"], postgresql.ARRAY(Float))
        columns += [quantiles[1].label(median), quantiles[2].label(p90)]
    if group_by is GroupBy.SITE:
        return select(*columns, Site.name.label("label")).select_from(
            groups.outerjoin(Site, Site.id == groups.c.key))
    if group_by is GroupBy.ENGINEER:
        return select(*columns, User.display_name.label("label")).select_from(
            groups.outerjoin(User, User.id == groups.c.key))
    return select(*columns, groups.c.key.label("label"))


def _percentiles_python(session: Session, group_by: GroupBy, start: datetime,
                        end: datetime, customer_id: int | None) -> dict[Any, Figures]:
    """SQLite: read the durations and interpolate as ``percentile_cont`` does."""
    key, _label = _key(group_by)
    lead = _lead_hours()
    query = _scope(select(key.label("key"), Ticket.respond_minutes, Ticket.diagnose_minutes,
                          Ticket.restore_minutes, lead.label("lead")).select_from(Ticket),
                   group_by, customer_id is not None)
    query = query.where(or_(Ticket.respond_minutes.is_not(None), lead.is_not(None)))
    samples: dict[Any, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in session.connection().execute(query, _period(start, end, None, customer_id)):
        for name, value in zip(_DURATIONS, row[1:], strict=True):
            if value is not None:
                samples[row.key][name].append(float(value))
                samples[TOTAL][name].append(float(value))
    found: dict[Any, Figures] = {}
    for group, by_name in samples.items():
        found[group] = spread = dict(_NO_SPREAD)
        for name in _DURATIONS:
            seen = by_name.get(name, [])
            count, median, p90 = _spread_names(name)
            spread.update({count: len(seen), median: metrics.percentile(seen, 0.5),
                           p90: metrics.percentile(seen, 0.9)})
    return found


# --- rows ----------------------------------------------------------------------------


def _hours(minutes: float | None) -> float | None:
    return None if minutes is None else round(minutes / 60, 3)


# Plain strings, and the column names of each built once: an enum member's ``.value`` costs
# a descriptor call and an f-string a format, per group and field.
_SOURCES = tuple((s.value, f"source_{s.value}") for s in TicketSource)
_MILESTONES = tuple((m.value, *_spread_names(f"{m.value}_minutes"), f"{m.value}_met",
                     f"{m.value}_decided") for m in Milestone)


def _row(group: str, figures: Figures) -> Row:
    times, compliance = {}, {}
    for milestone, count, median, p90, met_name, decided_name in _MILESTONES:
        times[milestone] = Times(figures[count], _hours(figures[median]), _hours(figures[p90]))
        met, decided = figures[met_name], figures[decided_name]
        compliance[milestone] = Compliance(met, decided, metrics.rate(met, decided))
    # Predictions are the analytics tickets, counted once as a source.
    predicted = figures["source_analytics"]
    confirmed, false = figures["confirmed"], figures["false"]
    score_sum = figures["score_sum"]
    return Row(
        group=group, opened=figures["opened"],
        by_source={source: figures[name] for source, name in _SOURCES},
        times=times,
        compliance=compliance,
        mttr_h=_hours(metrics.mean(figures["mttr_sum"], figures["mttr_n"])),
        finished=figures["finished"],
        first_time_fix_rate=metrics.rate(figures["first_time"], figures["finished"]),
        remote_fix_rate=metrics.rate(figures["remote"], figures["finished"]),
        satisfaction_mean=metrics.mean(None if score_sum is None else float(score_sum),
                                       figures["answers"]),
        satisfaction_answers=figures["answers"], surveys_sent=figures["surveys"],
        survey_response_rate=metrics.rate(figures["answers"], figures["surveys"]),
        predicted=Predicted(
            opened=predicted, confirmed=confirmed, false_alarms=false,
            pending=predicted - confirmed - false,
            precision=metrics.rate(confirmed, confirmed + false),
            median_lead_h=figures["lead_median"]),
    )


def _summed(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for row in rows:
        for name, value in row.items():
            if name in ("key", "label"):
                continue
            if value is not None:
                total[name] = (total.get(name) or 0) + value
            else:
                total.setdefault(name, None)
    return total


# --- beside the rows: reliability per model and planned maintenance ------------------


# The five small aggregates beside the rows (failures per model, devices per model, planned
# work done and still due, tickets per analytics rule) go as one statement: one round trip
# instead of five, each of which cost about as much as its query.
START_DAY, END_DAY = bindparam("start_day", type_=Date), bindparam("end_day", type_=Date)
DUE_UNTIL = _moment("due_until")


def _of_customer_devices(of_customer: bool) -> ColumnElement[bool]:
    """Devices at the sites of the ``customer_id`` parameter (every device without it)."""
    if not of_customer:
        return true()
    return Device.site_id.in_(select(Site.id).where(Site.customer_id == CUSTOMER))


@cache
def _rule_counts(of_customer: bool) -> Select[Any]:
    """Per analytics rule (signature): the period's tickets it opened and those cancelled.

    The source is written into the statement, not bound, so that the planner can read the
    period's analytics tickets alone through their partial index (migration 0013).
    """
    cancelled = Ticket.state == TicketState.CANCELLED.value
    analytics = literal(TicketSource.ANALYTICS.value, literal_execute=True)
    query = (select(Ticket.signature, func.count(Ticket.id).label("opened"),
                    _count(cancelled).label("cancelled"))
             .where(Ticket.source == analytics))
    return _worked_in_period(query, of_customer).group_by(Ticket.signature)


def _noisiest_first(rows: Iterable[tuple[str, int, int]]) -> list[RuleCancellations]:
    """Sorted as plain tuples (signature, opened, cancelled), then made records."""
    ordered = sorted(rows, key=lambda r: (-r[2], -(metrics.rate(r[2], r[1]) or 0.0), r[0]))
    return [RuleCancellations(signature, opened, cancelled, metrics.rate(cancelled, opened))
            for signature, opened, cancelled in ordered]


def cancellations_by_rule(session: Session, *, start: datetime, end: datetime,
                          customer_id: int | None = None) -> list[RuleCancellations]:
    """Per analytics rule (signature), the tickets opened in ``[start, end)`` and how many of
    them an engineer cancelled as false alarms; noisiest first.

    Counted as the report counts tickets: a site ticket once for the device tickets it
    grouped, fleet tickets not at all; ``customer_id``: that customer's sites and devices.
    The report reads the same counts in its statement beside the rows.
    """
    rows = session.connection().execute(_rule_counts(customer_id is not None),
                                        _period(start, end, None, customer_id))
    return _noisiest_first((signature, opened, cancelled) for signature, opened, cancelled
                           in rows)


@cache
def _beside_statement(of_customer: bool) -> CompoundSelect:
    devices = _of_customer_devices(of_customer)
    no_kind, no_day = null().cast(String), null().cast(Date)
    failures = (
        select(literal("failures").label("part"), no_kind.label("kind"), Device.model,
               no_day.label("day"), func.count(Ticket.id).label("n"),
               literal(0).label("on_time"))
        .select_from(Ticket).join(Device, Device.id == Ticket.device_id)
        .where(Ticket.created_at >= START, Ticket.created_at < END,
               Ticket.source != TicketSource.MAINTENANCE_PLAN.value,
               Ticket.state != TicketState.CANCELLED.value, devices)
        .group_by(Device.model))
    # Devices per model in service all period (no day) and installed within it (their day).
    installed = case((Device.install_date > START_DAY, Device.install_date))
    fleet = (select(literal("devices"), no_kind, Device.model, installed, func.count(),
                    literal(0))
             .where(or_(Device.install_date.is_(None), Device.install_date < END_DAY), devices)
             .group_by(Device.model, installed))
    done = (select(literal("done"), MaintenanceRecord.kind, Device.model, no_day, func.count(),
                   _count(MaintenanceRecord.performed_at <= MaintenanceRecord.due_at))
            .select_from(MaintenanceRecord)
            .join(Device, Device.id == MaintenanceRecord.device_id)
            .where(MaintenanceRecord.due_at >= START, MaintenanceRecord.due_at < END, devices)
            .group_by(MaintenanceRecord.kind, Device.model))
    due = (select(literal("due"), MaintenancePlan.kind, Device.model, no_day, func.count(),
                  literal(0))
           .select_from(MaintenanceDue)
           .join(MaintenancePlan, MaintenancePlan.id == MaintenanceDue.plan_id)
           .join(Device, Device.id == MaintenanceDue.device_id)
           .where(MaintenancePlan.active.is_(True), MaintenanceDue.next_due_at >= START,
                  MaintenanceDue.next_due_at < DUE_UNTIL, devices)
           .group_by(MaintenancePlan.kind, Device.model))
    # A rule's row carries its signature where the others carry the model.
    per_rule = _rule_counts(of_customer).subquery()
    rule_rows = select(literal("rules"), no_kind, per_rule.c.signature, no_day,
                       per_rule.c.opened, per_rule.c.cancelled)
    return union_all(failures, fleet, done, due, rule_rows)


def _beside(session: Session, rules: TicketRules, start: datetime, end: datetime,
            as_of: datetime, customer_id: int | None
            ) -> tuple[list[Reliability], dict[str, metrics.Completion], list[RuleCancellations]]:
    """Reliability per model, planned-maintenance completion and the analytics rules' false
    alarms, from one statement."""
    params: dict[str, Any] = {"start": start, "end": end, "start_day": start.date(),
                              "end_day": end.date(), "due_until": min(end, as_of)}
    if customer_id is not None:
        params["customer_id"] = customer_id
    failures: dict[str, int] = {}
    whole: dict[str, int] = {}
    partial: dict[str, list[Any]] = defaultdict(list)
    tallies: list[metrics.Tally] = []
    per_rule: list[tuple[str, int, int]] = []
    # Fetched at once rather than a fetch a row: about 1,500 rows with the bench's rules, 1.6
    # against 6.5 ms a report under cProfile.
    for part, kind, model, day, count, on_time in session.connection().execute(
            _beside_statement(customer_id is not None), params).all():
        if part == "rules":
            per_rule.append((model, count, on_time))
        elif part == "failures":
            failures[model] = count
        elif part == "devices":
            if day is None:
                whole[model] = count
            else:
                partial[model] += [day] * count
        else:
            high = rules.risk_class(model) in HIGH_RISK_CLASSES
            tallies.append(metrics.Tally(kind, high, due=count,
                                         done=count if part == "done" else 0, on_time=on_time))
    return (_reliability(start, end, failures, whole, partial), _maintenance(tallies),
            _noisiest_first(per_rule))


def _reliability(start: datetime, end: datetime, failures: Mapping[str, int],
                 whole: Mapping[str, int], partial: Mapping[str, list[Any]]) -> list[Reliability]:
    """MTBF per model from its failures and its devices: in service all period (``whole``) or
    from their installation day within it (``partial``)."""
    hours = (end - start).total_seconds() / 3600
    result = []
    for model in sorted(set(whole) | set(partial)):
        installed = partial.get(model, [])
        device_hours = whole.get(model, 0) * hours + metrics.service_hours(start, end, installed)
        count = failures.get(model, 0)
        result.append(Reliability(model=model, devices=whole.get(model, 0) + len(installed),
                                  device_hours=round(device_hours, 1), failures=count,
                                  mtbf_h=metrics.mtbf_hours(device_hours, count)))
    return result


def _maintenance(tallies: list[metrics.Tally]) -> dict[str, metrics.Completion]:
    """Work that fell due in the period: done (records by the due date they answered) or not
    (plans' devices still due, past ``as_of``), per kind, and for high-risk devices apart."""
    result = {}
    for kind in MaintenanceKind:
        of_kind = [t for t in tallies if t.kind == kind]
        result[kind.value] = metrics.combined(of_kind)
        result[f"{kind.value}_high_risk"] = metrics.combined(t for t in of_kind if t.high_risk)
    return result


def service_quality(session: Session, *, start: datetime, end: datetime, group_by: GroupBy,
                    rules: TicketRules, as_of: datetime | None = None,
                    customer_id: int | None = None) -> QualityReport:
    """The report for tickets opened in ``[start, end)``, as things stood at ``as_of``.

    ``customer_id`` limits every figure to that customer's sites and devices.
    """
    if end <= start:
        raise InvalidRequest("a report period ends after it starts")
    as_of = as_of or end
    group_by = GroupBy(group_by)
    if session.get_bind().dialect.name == "postgresql":
        groups = _everything_sql(session, group_by, start, end, as_of, customer_id)
        totals = groups.pop(TOTAL, None)
    else:
        groups = _counts(session, group_by, start, end, as_of, customer_id)
        spread = _percentiles_python(session, group_by, start, end, customer_id)
        totals = {**_summed(groups.values()), **spread.get(TOTAL, _NO_SPREAD)}
        for key, figures in groups.items():
            figures.update(spread.get(key, _NO_SPREAD))
    rows = [_row(_label(key, figures["label"]), figures) for key, figures in groups.items()]
    rows.sort(key=lambda r: r.group)
    empty: Figures = {name: 0 for name in _counts_names()}
    empty.update(_NO_SPREAD, mttr_sum=None, score_sum=None)
    total = _row(TOTAL, {**empty, **(totals or {})})
    reliability, maintenance, per_rule = _beside(session, rules, start, end, as_of,
                                                 customer_id)
    return QualityReport(start=start, end=end, as_of=as_of, group_by=group_by, rows=rows,
                         total=total, reliability=reliability, maintenance=maintenance,
                         cancellations_by_rule=per_rule)


def _label(key: Any, label: Any) -> str:
    if label is not None:
        return str(label)
    return "(none)" if key is None else str(key)


def _counts_names() -> list[str]:
    names = ["opened", "finished", "first_time", "remote", "answers", "surveys",
             "confirmed", "false", "mttr_n"]
    names += [f"source_{s.value}" for s in TicketSource]
    names += [f"{m}_{part}" for m in Milestone for part in ("met", "decided")]
    return names


