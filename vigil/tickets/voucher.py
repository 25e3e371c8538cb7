"""The service voucher: the document the handbook asks for at the end of each job.

Device identity (serial number, model, UDI where known, site), the dates of
report, response, diagnosis and restoration, the engineer, the work done,
parts used, test and calibration results, and the customer's sign-off.
``voucher_html`` is a pure function of ``VoucherData``; ``issue`` gathers the
data, renders HTML and PDF and keeps both with the ticket (``ServiceReport``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil import pdf
from vigil.audit.service import record
from vigil.db.enums import TicketEventKind
from vigil.errors import InvalidRequest
from vigil.maintenance.models import MaintenanceRecord
from vigil.tickets.models import ServiceReport, Ticket, TicketPart
from vigil.tickets.service import get_ticket, record_event
from vigil.tickets.transitions import Actor, ActorRole
from vigil.users.models import User


@dataclass(frozen=True, slots=True)
class Part:
    part_number: str
    description: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    value: float
    low: float | None
    high: float | None
    unit: str
    within: bool


@dataclass(frozen=True)
class VoucherData:
    ticket_id: int
    title: str
    priority: str
    state: str
    serial: str | None
    model: str | None
    udi: str | None
    site: str | None
    reported_at: datetime
    responded_at: datetime | None
    diagnosed_at: datetime | None
    restored_at: datetime | None
    engineer: str | None
    diagnosis: str | None
    verification: str | None
    work: Sequence[str] = ()
    parts: Sequence[Part] = ()
    measurements: Sequence[Measurement] = ()
    signed_off_at: datetime | None = None
    signed_off_by: str | None = None
    issued_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "–"


def _text(value: object) -> str:
    return escape("–" if value is None or value == "" else str(value))


def voucher_html(data: VoucherData) -> str:
    """The voucher as a standalone HTML page (printable, and what the PDF is made from)."""
    def rows(pairs: Sequence[tuple[str, str]]) -> str:
        return "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)

    parts = "".join(f"<tr><td>{_text(p.part_number)}</td><td>{_text(p.description)}</td>"
                    f"<td>{p.quantity}</td></tr>" for p in data.parts) or \
        '<tr><td colspan="3">no parts used</td></tr>'

    def limit(value: float | None) -> str:
        return "–" if value is None else f"{value:g}"

    checks = "".join(
        f"<tr><td>{_text(m.name)}</td><td>{m.value:g} {_text(m.unit)}</td>"
        f"<td>{limit(m.low)} .. {limit(m.high)}</td>"
        f"<td>{'within' if m.within else 'OUT OF TOLERANCE'}</td></tr>"
        for m in data.measurements) or '<tr><td colspan="4">no measurements</td></tr>'
    work = "".join(f"<li>{_text(w)}</li>" for w in data.work) or "<li>–</li>"
    sign = (f"Signed off {_when(data.signed_off_at)} by {_text(data.signed_off_by)}"
            if data.signed_off_at else "Not signed off by the customer")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Service report, ticket {data.ticket_id}</title><style>
body {{ font-family: 'DejaVu Sans', sans-serif; font-size: 10pt; margin: 1.5cm; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 1em; }}
th, td {{ border: 1px solid #999; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ width: 30%; background: #f2f2f2; }}
</style></head><body>
<h1>Service report: ticket #{data.ticket_id}</h1>
<p>{_text(data.title)} ({_text(data.priority)}, {_text(data.state)})</p>
<h2>Device</h2><table>{rows([("Serial number", _text(data.serial)),
                             ("Model", _text(data.model)), ("UDI", _text(data.udi)),
                             ("Site", _text(data.site))])}</table>
<h2>Dates</h2><table>{rows([("Reported", _when(data.reported_at)),
                            ("Responded", _when(data.responded_at)),
                            ("Diagnosed", _when(data.diagnosed_at)),
                            ("Restored", _when(data.restored_at))])}</table>
<h2>Work</h2><table>{rows([("Engineer", _text(data.engineer)),
                           ("Diagnosis", _text(data.diagnosis)),
                           ("Verification", _text(data.verification))])}</table>
<ul>{work}</ul>
<h2>Parts used</h2><table><tr><th>Part number</th><th>Description</th><th>Quantity</th></tr>
{parts}</table>
<h2>Tests and calibration</h2><table><tr><th>Quantity</th><th>Measured</th><th>Tolerance</th>
<th>Result</th></tr>{checks}</table>
<h2>Customer sign-off</h2><p>{sign}</p>
<p>Issued {_when(data.issued_at)}.</p>
</body></html>"""


def record_part(session: Session, *, ticket_id: int, part_number: str, quantity: int,
                actor: Actor, now: datetime, description: str = "") -> TicketPart:
    if actor.role not in (ActorRole.ENGINEER, ActorRole.MANAGER):
        raise InvalidRequest("parts are recorded by the service organisation")
    if not part_number.strip() or quantity <= 0:
        raise InvalidRequest("a part needs a part number and a positive quantity")
    ticket = get_ticket(session, ticket_id=ticket_id)
    part = TicketPart(ticket_id=ticket.id, part_number=part_number.strip(),
                      description=description, quantity=quantity, recorded_at=now,
                      recorded_by=actor.name)
    session.add(part)
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                 note=f"part {part.part_number} x{quantity} used",
                 data={"part_number": part.part_number, "quantity": quantity})
    return part


def gather(session: Session, ticket: Ticket, now: datetime) -> VoucherData:
    engineer = session.get(User, ticket.assigned_to_id) if ticket.assigned_to_id else None
    signer = session.get(User, ticket.signed_off_by_id) if ticket.signed_off_by_id else None
    parts = session.scalars(select(TicketPart).where(TicketPart.ticket_id == ticket.id)
                            .order_by(TicketPart.id))
    records = session.scalars(select(MaintenanceRecord).where(
        MaintenanceRecord.ticket_id == ticket.id).order_by(MaintenanceRecord.id)).all()
    measurements = [Measurement(m["name"], m["value"], m.get("low"), m.get("high"),
                                m.get("unit", ""), m["within"])
                    for r in records for m in r.measurements]
    work = [f"{e.at:%Y-%m-%d %H:%M} {e.actor}: {e.note}" for e in ticket.events
            if e.kind == TicketEventKind.COMMENT and e.note]
    work += [f"{r.kind} by {r.performed_by} on {r.performed_at:%Y-%m-%d}: {r.results}"
             for r in records]
    device = ticket.device
    return VoucherData(
        ticket_id=ticket.id, title=ticket.title, priority=ticket.priority, state=ticket.state,
        serial=device.serial if device else None, model=ticket.device_model,
        udi=device.udi if device else None, site=ticket.site.name if ticket.site else None,
        reported_at=ticket.created_at, responded_at=ticket.responded_at,
        diagnosed_at=ticket.diagnosed_at, restored_at=ticket.restored_at,
        engineer=engineer.display_name if engineer else None, diagnosis=ticket.diagnosis_note,
        verification=ticket.verification_result, work=work,
        parts=[Part(p.part_number, p.description, p.quantity) for p in parts],
        measurements=measurements, signed_off_at=ticket.signed_off_at,
        signed_off_by=signer.display_name if signer else None, issued_at=now)


def issue(session: Session, *, ticket_id: int, actor: Actor, now: datetime,
          with_pdf: bool = True) -> ServiceReport:
    """Render and keep the ticket's voucher (a new version each time it is issued)."""
    ticket = get_ticket(session, ticket_id=ticket_id, lock=True)
    html = voucher_html(gather(session, ticket, now))
    version = (session.scalar(select(func.max(ServiceReport.version))
                              .where(ServiceReport.ticket_id == ticket.id)) or 0) + 1
    report = ServiceReport(ticket_id=ticket.id, version=version, issued_at=now,
                           issued_by=actor.name, html=html,
                           pdf=pdf.from_html(html) if with_pdf else None,
                           digest=hashlib.sha256(html.encode("utf-8")).hexdigest())
    session.add(report)
    session.flush()
    record_event(session, ticket, kind=TicketEventKind.COMMENT, actor=actor, at=now,
                 note=f"service report v{version} issued",
                 data={"service_report_id": report.id, "digest": report.digest})
    record(session, actor=actor.name, action="ticket.voucher", object_type="ticket",
           object_id=ticket.id, at=now, details={"version": version, "digest": report.digest})
    return report
