"""The enumerated values the SQL store accepts.

They are ``StrEnum`` so that a member compares equal to, and is stored as, its
plain text value; the database refuses anything else with a CHECK constraint.
Rules that move between these values (ticket transitions, service levels) live
with the services that own them, not here.
"""

from __future__ import annotations

from enum import StrEnum


class DeviceState(StrEnum):
    """What a device last said about itself on its status topic."""

    ONLINE = "online"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"


class Severity(StrEnum):
    """Severity of a device-raised fault code, as the wire protocol defines it."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class RoleName(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    ENGINEER = "engineer"
    CUSTOMER = "customer"


class Priority(StrEnum):
    """P1 emergency, P2 urgent, P3 routine (see the service levels in DESIGN.md)."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class Category(StrEnum):
    """Fault categories of tickets and knowledge-base articles."""

    MECHANICAL = "mechanical"
    ELECTRICAL = "electrical"
    SOFTWARE = "software"
    ENVIRONMENTAL = "environmental"


class TicketState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DIAGNOSING = "diagnosing"
    DISPATCHED = "dispatched"
    REPAIRED = "repaired"
    VERIFIED = "verified"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    RESOLVED_REMOTELY = "resolved_remotely"


# A ticket in one of these states is finished: it no longer blocks a new ticket
# for the same device and fault signature.
FINAL_TICKET_STATES: frozenset[TicketState] = frozenset(
    {TicketState.CLOSED, TicketState.CANCELLED, TicketState.RESOLVED_REMOTELY}
)
# The others, as stored: what queries for open tickets compare the state column with.
OPEN_TICKET_STATES: tuple[str, ...] = tuple(
    s.value for s in TicketState if s not in FINAL_TICKET_STATES)


class TicketSource(StrEnum):
    ANALYTICS = "analytics"
    DEVICE_EVENT = "device_event"
    CUSTOMER = "customer"
    MAINTENANCE_PLAN = "maintenance_plan"


class TicketScope(StrEnum):
    """What a ticket is about: one device, a site-wide cause, or a defect across a model's fleet."""

    DEVICE = "device"
    SITE = "site"
    FLEET = "fleet"


class TicketEventKind(StrEnum):
    TRANSITION = "transition"
    COMMENT = "comment"
    EVIDENCE = "evidence"
    ASSIGNMENT = "assignment"
    PAUSE = "pause"
    RESUME = "resume"
    ESCALATION = "escalation"
    LINK = "link"


class PauseReason(StrEnum):
    """Why the restore clock stopped: the wait is not the service organisation's to shorten."""

    CUSTOMER = "customer"
    PARTS = "parts"


class AlertState(StrEnum):
    """How close a ticket's milestone is to its deadline, as the SLA watchdog last saw it."""

    AT_RISK = "at_risk"
    BREACHED = "breached"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class TranscriptKind(StrEnum):
    COMMAND = "command"
    RESULT = "result"
    TIMEOUT = "timeout"
    NOTE = "note"


class MaintenanceKind(StrEnum):
    PREVENTIVE = "preventive"
    CALIBRATION = "calibration"


class Milestone(StrEnum):
    """The three promises a service level makes for every ticket."""

    RESPOND = "respond"
    DIAGNOSE = "diagnose"
    RESTORE = "restore"


class ArticleStatus(StrEnum):
    """A knowledge-base article is suggested only once published; a draft awaits review."""

    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"
