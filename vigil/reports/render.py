"""The service-quality report as data (JSON, CSV) and as a publishable document (HTML, PDF).

The published version names no customer, site, engineer or device: the seed
process asks manufacturers to publish service quality, and a hospital's
name next to its failures is not the manufacturer's to publish. It is grouped
by device model or priority only; comments are left out.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import datetime
from html import escape
from typing import Any, Literal

from vigil import pdf
from vigil.db.enums import Milestone, TicketSource
from vigil.errors import InvalidRequest
from vigil.reports.quality import GroupBy, QualityReport, Row

PUBLISHABLE_GROUPS = frozenset({GroupBy.MODEL, GroupBy.PRIORITY})
# The report's tables a CSV holds: the groups with their total, or the analytics rules.
CsvSection = Literal["groups", "rules"]
CSV_SECTIONS: tuple[CsvSection, ...] = ("groups", "rules")
RULE_COLUMNS = ("rule", "opened", "cancelled_false_alarm", "cancelled_share")


def as_json(report: QualityReport) -> dict[str, Any]:
    """Plain data: what the API returns."""
    doc = asdict(report)
    for name in ("start", "end", "as_of"):
        doc[name] = getattr(report, name).isoformat()
    doc["group_by"] = report.group_by.value
    return doc


def _flat(row: Row) -> dict[str, Any]:
    flat: dict[str, Any] = {"group": row.group, "opened": row.opened}
    flat.update({f"opened_{k}": v for k, v in row.by_source.items()})
    for milestone in Milestone:
        times = row.times[milestone.value]
        compliance = row.compliance[milestone.value]
        flat[f"{milestone}_median_h"] = times.median_h
        flat[f"{milestone}_p90_h"] = times.p90_h
        flat[f"{milestone}_compliance"] = compliance.rate
        flat[f"{milestone}_met"] = compliance.met
        flat[f"{milestone}_decided"] = compliance.decided
    flat.update({
        "mttr_h": row.mttr_h, "finished": row.finished,
        "first_time_fix_rate": row.first_time_fix_rate, "remote_fix_rate": row.remote_fix_rate,
        "satisfaction_mean": row.satisfaction_mean,
        "satisfaction_answers": row.satisfaction_answers, "surveys_sent": row.surveys_sent,
        "survey_response_rate": row.survey_response_rate,
        "predicted": row.predicted.opened, "predicted_confirmed": row.predicted.confirmed,
        "predicted_false_alarms": row.predicted.false_alarms,
        "predicted_median_lead_h": row.predicted.median_lead_h})
    return flat


def as_csv(report: QualityReport, section: CsvSection = "groups") -> str:
    """``groups``: one line per group and a total line; rates are shares (0..1), times hours.
    ``rules``: one line per analytics rule, its tickets and those cancelled as false alarms."""
    if section == "rules":
        rows = [dict(zip(RULE_COLUMNS, (r.signature, r.opened, r.cancelled, r.share),
                         strict=True)) for r in report.cancellations_by_rule]
        fields = list(RULE_COLUMNS)
    elif section == "groups":
        rows = [_flat(r) for r in [*report.rows, report.total]]
        fields = list(rows[0])
    else:
        raise InvalidRequest(f"section: one of {', '.join(CSV_SECTIONS)}")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _day(value: datetime) -> str:
    return value.date().isoformat()


# Landscape: the service-level table has eleven columns, which overran an upright A4 page.
_STYLE = """
@page { size: A4 landscape; margin: 1.5cm; }
body { font-family: 'DejaVu Sans', sans-serif; font-size: 10pt; margin: 1.5cm; }
@media print { body { margin: 0; } }
h1 { font-size: 16pt; } h2 { font-size: 12pt; margin-top: 1.2em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #999; padding: 3px 5px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; }
p.note { color: #444; font-size: 8.5pt; }
"""


def publishable_html(report: QualityReport, *, organisation: str) -> str:
    """The public document: figures by device model or priority, no one named but the maker."""
    if report.group_by not in PUBLISHABLE_GROUPS:
        raise InvalidRequest("a published report is grouped by device model or priority; "
                             "sites and engineers are not named in public")
    rows = [*report.rows, report.total]
    cells: list[str] = []

    def table(head: list[str], body: list[list[str]], totals: bool = True) -> None:
        cells.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
        for i, line in enumerate(body):
            css = ' class="total"' if totals and i == len(body) - 1 else ""
            cells.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in line)
                         + "</tr>")
        cells.append("</table>")

    cells.append(f"<h1>Service quality report: {escape(organisation)}</h1>")
    cells.append(f"<p>Tickets opened from {_day(report.start)} to {_day(report.end)} "
                 f"(exclusive), as of {_day(report.as_of)}; by {report.group_by.value}.</p>")
    cells.append("<h2>Tickets and service levels</h2>")
    table([report.group_by.value, "opened", *[s.value.replace("_", " ") for s in TicketSource],
           "respond met", "diagnose met", "restore met"],
          [[r.group, str(r.opened), *[str(r.by_source[s.value]) for s in TicketSource],
            *[_pct(r.compliance[m.value].rate) for m in Milestone]] for r in rows])
    cells.append("<h2>Times in service hours (median / 90th percentile)</h2>")
    table([report.group_by.value, "respond", "diagnose", "restore", "MTTR"],
          [[r.group, *[f"{_num(r.times[m.value].median_h)} / {_num(r.times[m.value].p90_h)}"
                       for m in Milestone], _num(r.mttr_h)] for r in rows])
    cells.append("<h2>Outcomes</h2>")
    table([report.group_by.value, "first-time fix", "remote fix", "satisfaction (1-5)",
           "survey answers", "predicted failures confirmed", "false alarms",
           "median lead time (h)"],
          [[r.group, _pct(r.first_time_fix_rate), _pct(r.remote_fix_rate),
            _num(r.satisfaction_mean, 2),
            f"{r.satisfaction_answers} of {r.surveys_sent}",
            f"{r.predicted.confirmed} of {r.predicted.opened}", str(r.predicted.false_alarms),
            _num(r.predicted.median_lead_h)] for r in rows])
    cells.append("<h2>Reliability by device model</h2>")
    table(["model", "devices", "operating hours", "failures", "MTBF (h)"],
          [[m.model, str(m.devices), _num(m.device_hours, 0), str(m.failures), _num(m.mtbf_h, 0)]
           for m in report.reliability], totals=False)
    cells.append("<h2>Planned maintenance</h2>")
    table(["work", "fell due", "done", "on time", "completion"],
          [[name.replace("_", " "), str(c.due), str(c.done), str(c.on_time), _pct(c.rate)]
           for name, c in report.maintenance.items()], totals=False)
    cells.append("<h2>False alarms by analytics rule</h2>")
    table(["rule", "tickets opened", "cancelled as false alarm", "share"],
          [[r.signature, str(r.opened), str(r.cancelled), _pct(r.share)]
           for r in report.cancellations_by_rule] or [["none opened", "0", "0", _pct(None)]],
          totals=False)
    cells.append('<p class="note">Times are service time on each contract\'s calendar; the '
                 "restore clock stops while a ticket waits on the customer or on parts. "
                 "Compliance counts milestones met or past their deadline. High-risk devices "
                 "are life-support and high-risk classes.</p>")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Service quality"
            f"</title><style>{_STYLE}</style></head><body>{''.join(cells)}</body></html>")


def pdf_from_html(html: str) -> bytes:
    """The published report as PDF."""
    return pdf.from_html(html)
