"""`vigil report`: the service-quality report from the command line.

For managers' spreadsheets (CSV, JSON, every grouping) and for publishing (HTML
or PDF, grouped by device model or priority, with no customer, site or
engineer named). The period is whole days in UTC, ``--to`` exclusive; by
default the last 90 days up to today.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from vigil.reports.quality import GroupBy

FORMATS = ("csv", "json", "html", "pdf")


def day_argument(text: str) -> date:
    """A command-line day as YYYY-MM-DD, refused with a clear message otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a day as YYYY-MM-DD, not {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=day_argument,
                        help="first day of the period (default: 90 days before --to)")
    parser.add_argument("--to", dest="end", type=day_argument,
                        help="day after the period (default: tomorrow, so today is in it)")
    parser.add_argument("--group-by", choices=[g.value for g in GroupBy], default="model")
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help="csv and json hold every figure; html and pdf are the published "
                             "version (grouped by model or priority, no one named)")
    parser.add_argument("--section", choices=["groups", "rules"], default="groups",
                        help="which table a CSV holds: the groups with their total, or the "
                             "analytics rules with the tickets cancelled as false alarms")
    parser.add_argument("--organisation", default="Vigil service",
                        help="the service organisation named on the published version")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")


def run(args: argparse.Namespace) -> int:
    from vigil.config import get_settings
    from vigil.db.session import make_engine, make_session_factory
    from vigil.errors import InvalidRequest
    from vigil.reports import render
    from vigil.reports.quality import service_quality
    from vigil.tickets.priority import DEFAULT_RULES_FILE, TicketRules

    end_day = args.end or datetime.now(UTC).date() + timedelta(days=1)
    start_day = args.start or end_day - timedelta(days=90)
    start = datetime.combine(start_day, time(), UTC)
    end = datetime.combine(end_day, time(), UTC)
    if args.format == "pdf" and args.out is None and sys.stdout.isatty():
        print("vigil report: a PDF goes to a file; add --out FILE", file=sys.stderr)
        return 2
    settings = get_settings()
    engine = make_engine(settings.sql_url)
    try:
        with make_session_factory(engine)() as session:
            rules = TicketRules.load(settings.desk.rules_file or DEFAULT_RULES_FILE)
            report = service_quality(session, start=start, end=min(end, datetime.now(UTC)),
                                     group_by=GroupBy(args.group_by), rules=rules)
        if args.format == "csv":
            output: str | bytes = render.as_csv(report, args.section)
        elif args.format == "json":
            output = json.dumps(render.as_json(report), indent=2) + "\n"
        else:
            html = render.publishable_html(report, organisation=args.organisation)
            output = html if args.format == "html" else render.pdf_from_html(html)
    except InvalidRequest as exc:
        print(f"vigil report: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    data = output.encode() if isinstance(output, str) else output
    if args.out is None:
        sys.stdout.buffer.write(data)
    else:
        args.out.write_bytes(data)
        print(f"vigil report: {len(report.rows)} {args.group_by} rows, "
              f"{report.total.opened} tickets, to {args.out}", file=sys.stderr)
    return 0
