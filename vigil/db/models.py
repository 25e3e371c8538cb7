"""Every domain's tables, in one place: what Alembic compares and migrations build.

Each domain keeps its tables in its own ``models.py`` (``vigil/devices``,
``vigil/tickets``, ...); importing this module registers all of them on the
one ``Base.metadata``. Rows hold no business rules: services decide what to
write, and the caller of a service owns the transaction.
"""

from __future__ import annotations

from vigil.audit.models import AuditLog
from vigil.auth.models import ApiToken, AuthSession, SignInAttempt
from vigil.db.base import Base, InvalidValue, UTCDateTime, storable_text, utcnow
from vigil.devices.models import (
    DEAD_LETTER_PAYLOAD_CHARS,
    DEAD_LETTER_REASON_CHARS,
    DEAD_LETTER_TOPIC_CHARS,
    Customer,
    DeadLetter,
    Device,
    DeviceEvent,
    Prediction,
    Site,
)
from vigil.diagnosis.models import DiagnosisSession, TranscriptEntry
from vigil.engineers.models import Engineer, Qualification
from vigil.knowledge.models import ArticleVersion, KnowledgeArticle, TicketArticle
from vigil.maintenance.models import MaintenanceDue, MaintenancePlan, MaintenanceRecord
from vigil.scoring.models import AnomalyAlarm, JobLease, ModelVersion, StreamState
from vigil.tickets.models import (
    OPEN_TICKET_PREDICATE,
    Contract,
    Notification,
    SatisfactionSurvey,
    ServiceReport,
    Ticket,
    TicketAlert,
    TicketEvent,
    TicketPart,
    TicketPause,
)
from vigil.users.models import Role, User, user_roles, user_sites

__all__ = [
    "DEAD_LETTER_PAYLOAD_CHARS",
    "DEAD_LETTER_REASON_CHARS",
    "DEAD_LETTER_TOPIC_CHARS",
    "OPEN_TICKET_PREDICATE",
    "AnomalyAlarm",
    "ApiToken",
    "ArticleVersion",
    "AuditLog",
    "AuthSession",
    "Base",
    "Contract",
    "Customer",
    "DeadLetter",
    "Device",
    "DeviceEvent",
    "DiagnosisSession",
    "Engineer",
    "InvalidValue",
    "JobLease",
    "KnowledgeArticle",
    "MaintenanceDue",
    "MaintenancePlan",
    "MaintenanceRecord",
    "ModelVersion",
    "Notification",
    "Prediction",
    "Qualification",
    "Role",
    "SatisfactionSurvey",
    "ServiceReport",
    "SignInAttempt",
    "Site",
    "StreamState",
    "Ticket",
    "TicketAlert",
    "TicketArticle",
    "TicketEvent",
    "TicketPart",
    "TicketPause",
    "TranscriptEntry",
    "UTCDateTime",
    "User",
    "storable_text",
    "user_roles",
    "user_sites",
    "utcnow",
]
