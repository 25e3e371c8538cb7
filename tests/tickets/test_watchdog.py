"""The SLA watchdog and its escalation, delivered to real receivers (HTTP and SMTP) on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.tickets.receivers import Inbox, Receiver, message_of
from tests.tickets.support import Org, seed
from vigil.db.enums import (
    AlertState,
    Channel,
    Milestone,
    NotificationStatus,
    PauseReason,
    Severity,
    TicketSource,
    TicketState,
)
from vigil.errors import Forbidden
from vigil.tickets import service
from vigil.tickets.escalation import EscalationPolicy
from vigil.tickets.models import Notification, TicketAlert
from vigil.tickets.notifiers import SmtpNotifier, WebhookNotifier, verify_signature
from vigil.tickets.priority import Signal, TicketRules, read_rules_document
from vigil.tickets.transitions import Actor, ActorRole
from vigil.tickets.watchdog import Recipients, deliver_due, run_pass

DOC = read_rules_document()
RULES = TicketRules.from_document(DOC)
POLICY = EscalationPolicy.from_document(DOC)
SECRET = b"desk-webhook-secret"
# Wednesday 2 December 2026, 09:00 in Berlin: Eve (office hours) is on duty.
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
ENGINEER = Actor("eve", ActorRole.ENGINEER)


@pytest.fixture
def org(factory: sessionmaker[Session]) -> Org:
    return seed(factory)


def critical_ticket(factory: sessionmaker[Session], device: str = "vent-1") -> int:
    """A P1 ticket (a ventilator's critical code): respond within 1 h, 24 x 7."""
    with factory() as s, s.begin():
        return service.open_or_join(
            s, device_id=device, signature="event:E900",
            signal=Signal(TicketSource.DEVICE_EVENT, severity=Severity.CRITICAL),
            title="Ventilator cannot start", evidence=service.Evidence(at=T0), now=T0,
            rules=RULES).ticket.id


def watch(factory: sessionmaker[Session], at: datetime, recipients: Recipients) -> None:
    with factory() as s, s.begin():
        run_pass(s, now=at, policy=POLICY, recipients=recipients)


def notifications(factory: sessionmaker[Session]) -> list[Notification]:
    with factory() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def test_at_risk_then_breached_escalates_step_by_step(
        factory: sessionmaker[Session], org: Org, receiver: Receiver,
        inbox: tuple[Inbox, int]) -> None:
    ticket_id = critical_ticket(factory)
    hook = receiver.url("/desk")
    recipients = Recipients(webhooks=(hook,), email=True)
    watch(factory, T0 + timedelta(minutes=30), recipients)
    assert notifications(factory) == []  # half the response time used: nothing to say

    # 45 of 60 minutes: at risk. Nobody is assigned, so the engineers on duty are told.
    watch(factory, T0 + timedelta(minutes=45), recipients)
    queued = notifications(factory)
    assert {(n.channel, n.recipient) for n in queued} == {
        (Channel.EMAIL, "eve@service.example"), (Channel.WEBHOOK, hook)}
    watch(factory, T0 + timedelta(minutes=46), recipients)
    assert len(notifications(factory)) == 2  # the same step is never queued twice

    handler, port = inbox
    notifiers = {Channel.WEBHOOK: WebhookNotifier(SECRET),
                 Channel.EMAIL: SmtpNotifier("127.0.0.1", port, "desk@service.example")}
    report = deliver_due(factory, notifiers=notifiers,
                         clock=lambda: T0 + timedelta(minutes=46))
    assert (report.sent, report.retried, report.failed) == (2, 0, 0)
    [posted] = receiver.received
    payload = json.loads(posted.body)
    assert payload["data"]["ticket_id"] == ticket_id
    assert payload["data"]["milestone"] == "respond" and payload["data"]["alert"] == "at_risk"
    assert verify_signature(SECRET, posted.headers["X-Vigil-Timestamp"], posted.body,
                            posted.headers["X-Vigil-Signature"],
                            now=int(posted.headers["X-Vigil-Timestamp"]))
    [mail] = handler.envelopes
    assert mail.rcpt_tos == ["eve@service.example"]
    assert "at risk" in str(message_of(mail)["Subject"])
    assert deliver_due(factory, notifiers=notifiers,
                       clock=lambda: T0 + timedelta(minutes=47)).sent == 0  # sent once

    # 61 minutes: breached; the breach takes over from the warning.
    watch(factory, T0 + timedelta(minutes=61), recipients)
    with factory() as s:
        alerts = {(a.milestone, a.state): a for a in s.scalars(select(TicketAlert))}
        assert alerts[(Milestone.RESPOND, AlertState.AT_RISK)].acknowledged_by == "vigil"
        assert alerts[(Milestone.RESPOND, AlertState.BREACHED)].acknowledged_at is None
    # 15 and 30 minutes into the breach: the on-duty group, then the managers.
    watch(factory, T0 + timedelta(minutes=77), recipients)
    watch(factory, T0 + timedelta(minutes=92), recipients)
    mails = [n.recipient for n in notifications(factory) if n.channel == Channel.EMAIL]
    assert mails == ["eve@service.example", "eve@service.example", "eve@service.example",
                     "mia@service.example"]

    # Responding stops the escalation: no more steps however long it takes.
    with factory() as s, s.begin():
        service.transition(s, ticket_id=ticket_id, to=TicketState.ACKNOWLEDGED, actor=ENGINEER,
                           now=T0 + timedelta(minutes=95))
    before = len(notifications(factory))
    watch(factory, T0 + timedelta(hours=2, minutes=30), recipients)
    assert len(notifications(factory)) == before
    # Diagnosis is a promise of its own: at 3 of its 4 hours it is at risk.
    watch(factory, T0 + timedelta(hours=3), recipients)
    assert {n.data["milestone"] for n in notifications(factory)[before:]} == {"diagnose"}


def test_the_assignee_is_told_first_and_a_paused_restore_clock_is_quiet(
        factory: sessionmaker[Session], org: Org) -> None:
    ticket_id = critical_ticket(factory)
    with factory() as s, s.begin():
        service.assign(s, ticket_id=ticket_id, assignee_id=org.night_engineer_user_id,
                       actor=ENGINEER, now=T0)
        service.transition(s, ticket_id=ticket_id, to=TicketState.DIAGNOSING, actor=ENGINEER,
                           now=T0 + timedelta(minutes=5))
        service.pause(s, ticket_id=ticket_id, reason=PauseReason.CUSTOMER, actor=ENGINEER,
                      now=T0 + timedelta(minutes=10))
    recipients = Recipients(email=True)
    # 3.5 h of 4 to diagnose: at risk, to the assignee. Restore is paused: nothing about it.
    watch(factory, T0 + timedelta(hours=3, minutes=30), recipients)
    queued = notifications(factory)
    assert [(n.recipient, n.data["milestone"]) for n in queued] == [
        ("nick@service.example", "diagnose")]
    # 23 h of 24: restore would be at risk, but its clock stands still.
    watch(factory, T0 + timedelta(hours=23), recipients)
    assert all(n.data["milestone"] != "restore" for n in notifications(factory))


def test_failed_deliveries_are_retried_or_kept(factory: sessionmaker[Session], org: Org,
                                               receiver: Receiver) -> None:
    critical_ticket(factory)
    recipients = Recipients(webhooks=(receiver.url("/fail"), receiver.url("/bad")), email=False)
    watch(factory, T0 + timedelta(minutes=50), recipients)
    at = T0 + timedelta(minutes=50)
    report = deliver_due(factory, notifiers={Channel.WEBHOOK: WebhookNotifier(SECRET)},
                         clock=lambda: at)
    assert (report.sent, report.retried, report.failed) == (0, 1, 1)
    rows = {n.recipient.rsplit("/", 1)[1]: n for n in notifications(factory)}
    assert rows["fail"].status == NotificationStatus.PENDING
    assert rows["fail"].next_attempt_at == at + timedelta(seconds=30)
    assert rows["bad"].status == NotificationStatus.FAILED  # kept, for a person to see
    # Not due yet: nothing is sent again before the backoff has passed.
    assert deliver_due(factory, notifiers={Channel.WEBHOOK: WebhookNotifier(SECRET)},
                       clock=lambda: at + timedelta(seconds=10)).retried == 0


def test_acknowledging_an_alert_stops_its_chain(factory: sessionmaker[Session], org: Org) -> None:
    critical_ticket(factory)
    recipients = Recipients(email=True)
    watch(factory, T0 + timedelta(minutes=61), recipients)  # breached: step 1 queued
    with factory() as s, s.begin():
        alert = s.scalars(select(TicketAlert).where(
            TicketAlert.state == AlertState.BREACHED)).one()
        with pytest.raises(Forbidden):
            service.acknowledge_alert(s, alert_id=alert.id, actor=Actor("nora", ActorRole.CUSTOMER),
                                      now=T0 + timedelta(minutes=62))
        service.acknowledge_alert(s, alert_id=alert.id, actor=ENGINEER,
                                  now=T0 + timedelta(minutes=62))
    before = len(notifications(factory))
    watch(factory, T0 + timedelta(minutes=120), recipients)  # steps 2 and 3 would be due
    assert len(notifications(factory)) == before
