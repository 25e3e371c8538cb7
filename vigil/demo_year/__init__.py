"""`vigil demo-year`: one device's year of service, replayed through the real desk.

The demo organisation of ``vigil demo-data`` gets one device of the chosen model;
then a simulated clock runs over the year. Each morning the maintenance job
(``vigil.maintenance.scheduled.maintenance_job``) sees the device's usage-hours
counter and opens P3 tickets ahead of due plans; the device raises two fault
codes (recorded as ingest records them, filed by the desk's intake); failure
predictions on two days file a ticket through the ticket rules' prediction pass.
An engineer the desk suggests works every ticket through the real transitions,
records the planned work with its measured values (the first calibration out of
tolerance, which opens a corrective ticket), the customer signs off and answers
the survey, and each closed ticket's voucher is issued. At the end, the year's
service-quality report for the device's model.

``scenario`` (pure: which happenings on which days from the seed, and how an
engineer paces a ticket) decides; ``runner.replay`` applies it through the domain
services, one transaction per action, the clock passed in; this module prints the
timeline and writes the files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from vigil.db.enums import MaintenanceKind, TicketSource
from vigil.demo_year.runner import Year, number_text, replay
from vigil.demo_year.scenario import DEFAULT_MODEL, MODELS, plan_year
from vigil.errors import InvalidRequest
from vigil.reports import render
from vigil.reports.cli import day_argument
from vigil.reports.quality import QualityReport, Row

# --- printing and files ---------------------------------------------------------------------

REPORT_HEAD = ("group", "opened", "plan", "event", "analytics", "respond", "diagnose",
               "restore", "mttr_h", "ftf", "surveys", "score", "predicted")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def report_rows(report: QualityReport) -> list[tuple[str, ...]]:
    """The report's rows (and total) as short columns for the terminal."""
    def cells(row: Row) -> tuple[str, ...]:
        c = row.compliance
        return (row.group, str(row.opened),
                *(str(row.by_source.get(s.value, 0)) for s in (
                    TicketSource.MAINTENANCE_PLAN, TicketSource.DEVICE_EVENT,
                    TicketSource.ANALYTICS)),
                *(f"{c[m].met}/{c[m].decided}" for m in ("respond", "diagnose", "restore")),
                number_text(row.mttr_h, 1),
                _pct(row.first_time_fix_rate),
                f"{row.satisfaction_answers}/{row.surveys_sent}",
                number_text(row.satisfaction_mean, 2),
                f"{row.predicted.confirmed}/{row.predicted.opened}")
    return [cells(r) for r in [*report.rows, report.total]]


def printout(year: Year) -> Iterator[str]:
    s = year.scenario
    yield (f"vigil demo-year: {s.model} {s.device_id} at {year.site}, {s.start:%Y-%m-%d} to "
           f"{s.end:%Y-%m-%d} (exclusive), seed {s.seed}")
    yield from (line.render() for line in year.lines)
    report = year.report
    if report is None:
        return
    yield ""
    yield (f"Service-quality report {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d}, by device "
           "model (compliance: met/decided; surveys: answered/sent; predicted: confirmed/opened)")
    table = [REPORT_HEAD, *report_rows(report)]
    widths = [max(len(r[i]) for r in table) for i in range(len(REPORT_HEAD))]
    for row in table:
        yield "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
    for kind in MaintenanceKind:
        done = report.maintenance.get(kind.value)
        if done is not None:
            yield (f"{kind.value}: {done.done} of {done.due} due done ({_pct(done.rate)}), "
                   f"{done.on_time} on time ({_pct(done.on_time_rate)})")


def timeline_markdown(year: Year) -> str:
    rows = ["| when (UTC) | what | ticket | detail |", "|---|---|---|---|"]
    rows += [f"| {ln.at:%Y-%m-%d %H:%M} | {ln.what} | {'' if ln.ticket is None else ln.ticket}"
             f" | {ln.text.replace('|', '/')} |" for ln in year.lines]
    return "\n".join(rows) + "\n"


def timeline_csv(year: Year) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["at", "what", "ticket", "detail"])
    writer.writerows([ln.at.isoformat(), ln.what, ln.ticket, ln.text] for ln in year.lines)
    return out.getvalue()


def write_files(year: Year, out: Path, timeline_format: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    timeline = out / f"timeline.{timeline_format}"
    timeline.write_text(timeline_markdown(year) if timeline_format == "md"
                        else timeline_csv(year), encoding="utf-8")
    written.append(timeline)
    vouchers = out / "vouchers"
    vouchers.mkdir(exist_ok=True)
    for ticket_id, html in sorted(year.vouchers.items()):
        path = vouchers / f"ticket-{ticket_id}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    for ticket_id, pdf in sorted(year.voucher_pdfs.items()):
        path = vouchers / f"ticket-{ticket_id}.pdf"
        path.write_bytes(pdf)
        written.append(path)
    if year.report is not None:
        (out / "report.json").write_text(json.dumps(render.as_json(year.report), indent=2) + "\n",
                                         encoding="utf-8")
        (out / "report.csv").write_text(render.as_csv(year.report), encoding="utf-8")
        written += [out / "report.json", out / "report.csv"]
    return written


# --- the command ----------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device-model", default=DEFAULT_MODEL,
                        help=f"the device's model, one of {', '.join(MODELS)} "
                             f"(default {DEFAULT_MODEL})")
    parser.add_argument("--seed", type=int, default=1,
                        help="decides the days of faults and predictions, the daily use, the "
                             "calibration out of tolerance and the engineer's pace")
    parser.add_argument("--start", type=day_argument,
                        help="first day, UTC (default: --days before today)")
    parser.add_argument("--days", type=int, default=365, help="how long to replay")
    parser.add_argument("--database", choices=["fresh", "configured"], default="fresh",
                        help="fresh: a new SQLite database (year.sqlite in --out, else a "
                             "temporary one); configured: the configured database, which must "
                             "not hold the demo organisation yet")
    parser.add_argument("--out", type=Path,
                        help="also write the timeline, each voucher's HTML and the report "
                             "(JSON, CSV) into this folder")
    parser.add_argument("--format", choices=["md", "csv"], default="md",
                        help="the timeline file's format with --out")
    parser.add_argument("--pdf", action="store_true",
                        help="render each voucher as PDF as well (WeasyPrint)")


def run(args: argparse.Namespace) -> int:
    from vigil.config import get_settings
    from vigil.db import migrations
    from vigil.db.session import make_engine, make_session_factory

    try:
        start_day = args.start or datetime.now(UTC).date() - timedelta(days=args.days)
        scenario = plan_year(model=args.device_model, seed=args.seed, days=args.days,
                             start=datetime.combine(start_day, time(), UTC))
    except InvalidRequest as exc:
        print(f"vigil demo-year: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vigil-demo-year-") as scratch:
        if args.database == "configured":
            url = get_settings().sql_url
        else:
            folder = args.out or Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            database = folder / "year.sqlite"
            if database.exists():
                print(f"vigil demo-year: {database} exists; remove it or choose another --out",
                      file=sys.stderr)
                return 2
            url = f"sqlite:///{database}"
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
            year = replay(make_session_factory(engine), scenario, with_pdf=args.pdf)
        except InvalidRequest as exc:
            print(f"vigil demo-year: {exc}", file=sys.stderr)
            return 2
        finally:
            engine.dispose()
    for text in printout(year):
        print(text)
    if args.out is not None:
        written = write_files(year, args.out, args.format)
        print(f"\nvigil demo-year: {len(written)} files in {args.out}", file=sys.stderr)
    return 0
