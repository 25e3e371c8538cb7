"""Who may move a ticket from which state to which, and what each move requires.

The table ``MOVES`` is the whole state machine of DESIGN.md:

    open -> acknowledged -> diagnosing -> (dispatched ->) repaired -> verified -> closed

with ``cancelled`` (a false alarm, kept as a label for the detectors) and
``resolved_remotely`` as shortcuts, and ``closed -> open`` as a reopening
within a window of days. ``check`` is a pure function: it looks at the facts
of a ticket and a request and says which service-level milestones the move
meets, or raises. The service applies the answer to the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from vigil.db.enums import Milestone, RoleName, TicketScope, TicketState
from vigil.errors import Forbidden, InvalidTransition

# How long after closing a customer or engineer may reopen a ticket (it then counts
# against first-time fix); later, the fault is a new ticket.
DEFAULT_REOPEN_WINDOW = timedelta(days=14)


class ActorRole(StrEnum):
    """Who acts: a person in one of the roles, or Vigil itself (analytics, the watchdog)."""

    ADMIN = RoleName.ADMIN.value
    MANAGER = RoleName.MANAGER.value
    ENGINEER = RoleName.ENGINEER.value
    CUSTOMER = RoleName.CUSTOMER.value
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Actor:
    """The name written into the history and audit log, and the role that decides permissions."""

    name: str
    role: ActorRole


SYSTEM = Actor("vigil", ActorRole.SYSTEM)


class Requirement(StrEnum):
    """What must be on record before a move, so the history explains itself."""

    DIAGNOSIS_NOTE = "a diagnosis note"
    VERIFICATION_RESULT = "a verification result"
    SIGN_OFF = "the customer's sign-off"
    REASON = "a reason"
    WITHIN_REOPEN_WINDOW = "closing within the reopen window"


@dataclass(frozen=True, slots=True)
class Move:
    roles: frozenset[ActorRole]
    requires: tuple[Requirement, ...] = ()
    # Service-level milestones this move meets, if not met already.
    meets: tuple[Milestone, ...] = ()


S = TicketState
_SERVICE = frozenset({ActorRole.ENGINEER, ActorRole.MANAGER})
_ANYONE_HUMAN = frozenset({ActorRole.ENGINEER, ActorRole.MANAGER, ActorRole.CUSTOMER})
_CANCEL = Move(_SERVICE, (Requirement.REASON,))

MOVES: Mapping[tuple[TicketState, TicketState], Move] = {
    (S.OPEN, S.ACKNOWLEDGED): Move(_SERVICE, meets=(Milestone.RESPOND,)),
    (S.OPEN, S.DIAGNOSING): Move(_SERVICE, meets=(Milestone.RESPOND,)),
    (S.OPEN, S.CANCELLED): _CANCEL,
    (S.ACKNOWLEDGED, S.DIAGNOSING): Move(_SERVICE),
    (S.ACKNOWLEDGED, S.CANCELLED): _CANCEL,
    (S.DIAGNOSING, S.DISPATCHED): Move(
        _SERVICE, (Requirement.DIAGNOSIS_NOTE,), meets=(Milestone.DIAGNOSE,)),
    (S.DIAGNOSING, S.REPAIRED): Move(
        _SERVICE, (Requirement.DIAGNOSIS_NOTE,), meets=(Milestone.DIAGNOSE, Milestone.RESTORE)),
    (S.DIAGNOSING, S.RESOLVED_REMOTELY): Move(
        _SERVICE, (Requirement.DIAGNOSIS_NOTE, Requirement.VERIFICATION_RESULT),
        meets=(Milestone.DIAGNOSE, Milestone.RESTORE)),
    (S.DIAGNOSING, S.CANCELLED): _CANCEL,
    (S.DISPATCHED, S.REPAIRED): Move(
        _SERVICE, (Requirement.DIAGNOSIS_NOTE,), meets=(Milestone.RESTORE,)),
    (S.REPAIRED, S.VERIFIED): Move(_SERVICE, (Requirement.VERIFICATION_RESULT,)),
    # A repair that fails its verification goes back to diagnosis.
    (S.REPAIRED, S.DIAGNOSING): Move(_SERVICE, (Requirement.REASON,)),
    (S.VERIFIED, S.CLOSED): Move(_ANYONE_HUMAN, (Requirement.SIGN_OFF,)),
    (S.CLOSED, S.OPEN): Move(_ANYONE_HUMAN, (Requirement.REASON,
                                             Requirement.WITHIN_REOPEN_WINDOW)),
}


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What the rules look at: a snapshot of the ticket, not the row."""

    state: TicketState
    scope: TicketScope = TicketScope.DEVICE
    diagnosis_note: str | None = None
    verification_result: str | None = None
    signed_off: bool = False
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """What the actor brings with the move."""

    diagnosis_note: str | None = None
    verification_result: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    move: Move
    meets: tuple[Milestone, ...]
    reopens: bool


def allowed_targets(state: TicketState, role: ActorRole) -> list[TicketState]:
    """The states an actor of ``role`` may try to move a ticket in ``state`` to (for the UI)."""
    return [to for (src, to), move in MOVES.items() if src == state and role in move.roles]


def _present(text: str | None) -> bool:
    return text is not None and text.strip() != ""


def _unmet(requirement: Requirement, facts: TicketFacts, request: Request, role: ActorRole,
           now: datetime, reopen_window: timedelta) -> bool:
    if requirement is Requirement.DIAGNOSIS_NOTE:
        return not (_present(request.diagnosis_note) or _present(facts.diagnosis_note))
    if requirement is Requirement.VERIFICATION_RESULT:
        return not (_present(request.verification_result) or _present(facts.verification_result))
    if requirement is Requirement.REASON:
        return not _present(request.reason)
    if requirement is Requirement.SIGN_OFF:
        # The customer closing is the sign-off; a fleet-wide defect has no single customer.
        return not (facts.signed_off or role is ActorRole.CUSTOMER
                    or facts.scope is TicketScope.FLEET)
    if requirement is Requirement.WITHIN_REOPEN_WINDOW:
        return facts.closed_at is None or now - facts.closed_at > reopen_window
    raise AssertionError(requirement)


def check(facts: TicketFacts, to: TicketState, role: ActorRole, request: Request, *,
          now: datetime, reopen_window: timedelta = DEFAULT_REOPEN_WINDOW) -> Outcome:
    """The outcome of moving a ticket to ``to``, or the reason it may not move.

    Raises ``InvalidTransition`` when the table has no such move or a requirement
    is missing, ``Forbidden`` when the move exists but not for this role.
    """
    move = MOVES.get((facts.state, to))
    if move is None:
        raise InvalidTransition(f"a ticket cannot go from {facts.state} to {to}")
    if role not in move.roles:
        raise Forbidden(f"a {role} may not move a ticket from {facts.state} to {to}")
    missing = [r for r in move.requires
               if _unmet(r, facts, request, role, now, reopen_window)]
    if missing:
        raise InvalidTransition(
            f"moving from {facts.state} to {to} needs {', '.join(r.value for r in missing)}")
    return Outcome(move=move, meets=move.meets, reopens=(facts.state, to) == (S.CLOSED, S.OPEN))
