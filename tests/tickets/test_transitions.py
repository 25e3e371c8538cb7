"""The ticket state machine as a pure table: who may move where, with what on record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.db.enums import Milestone, TicketScope, TicketState
from vigil.errors import Forbidden, InvalidTransition
from vigil.tickets.transitions import (
    MOVES,
    ActorRole,
    Request,
    TicketFacts,
    allowed_targets,
    check,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
S = TicketState
E, M, C, SYS = ActorRole.ENGINEER, ActorRole.MANAGER, ActorRole.CUSTOMER, ActorRole.SYSTEM


def test_the_happy_path_meets_each_milestone_once() -> None:
    path = [
        (S.OPEN, S.ACKNOWLEDGED, Request(), (Milestone.RESPOND,)),
        (S.ACKNOWLEDGED, S.DIAGNOSING, Request(), ()),
        (S.DIAGNOSING, S.DISPATCHED, Request(diagnosis_note="worn bearing"),
         (Milestone.DIAGNOSE,)),
        (S.DISPATCHED, S.REPAIRED, Request(), (Milestone.RESTORE,)),
        (S.REPAIRED, S.VERIFIED, Request(verification_result="self-test passed"), ()),
    ]
    note = None
    for source, target, request, meets in path:
        facts = TicketFacts(state=source, diagnosis_note=note)
        outcome = check(facts, target, E, request, now=NOW)
        assert outcome.meets == meets
        note = note or request.diagnosis_note
    closing = check(TicketFacts(state=S.VERIFIED), S.CLOSED, C, Request(), now=NOW)
    assert not closing.reopens


@pytest.mark.parametrize(("source", "target"), [
    (S.OPEN, S.REPAIRED), (S.OPEN, S.CLOSED), (S.CLOSED, S.DIAGNOSING),
    (S.CANCELLED, S.OPEN), (S.RESOLVED_REMOTELY, S.OPEN), (S.VERIFIED, S.OPEN),
])
def test_moves_outside_the_table_are_refused(source: TicketState, target: TicketState) -> None:
    with pytest.raises(InvalidTransition, match=f"from {source} to {target}"):
        check(TicketFacts(state=source), target, M, Request(reason="x"), now=NOW)


def test_repaired_needs_a_diagnosis_note() -> None:
    with pytest.raises(InvalidTransition, match="a diagnosis note"):
        check(TicketFacts(state=S.DIAGNOSING), S.REPAIRED, E, Request(), now=NOW)
    with pytest.raises(InvalidTransition, match="a diagnosis note"):
        check(TicketFacts(state=S.DIAGNOSING), S.REPAIRED, E,
              Request(diagnosis_note="   "), now=NOW)
    check(TicketFacts(state=S.DIAGNOSING, diagnosis_note="on record"), S.REPAIRED, E,
          Request(), now=NOW)


def test_verified_needs_a_verification_result() -> None:
    with pytest.raises(InvalidTransition, match="a verification result"):
        check(TicketFacts(state=S.REPAIRED), S.VERIFIED, E, Request(), now=NOW)


def test_closing_needs_the_customers_sign_off() -> None:
    with pytest.raises(InvalidTransition, match="sign-off"):
        check(TicketFacts(state=S.VERIFIED), S.CLOSED, E, Request(), now=NOW)
    check(TicketFacts(state=S.VERIFIED, signed_off=True), S.CLOSED, E, Request(), now=NOW)
    check(TicketFacts(state=S.VERIFIED), S.CLOSED, C, Request(), now=NOW)
    # A fleet-wide defect has no single customer to sign off.
    check(TicketFacts(state=S.VERIFIED, scope=TicketScope.FLEET), S.CLOSED, M, Request(), now=NOW)


def test_cancelling_needs_a_reason() -> None:
    with pytest.raises(InvalidTransition, match="a reason"):
        check(TicketFacts(state=S.OPEN), S.CANCELLED, E, Request(), now=NOW)
    check(TicketFacts(state=S.OPEN), S.CANCELLED, E, Request(reason="false alarm"), now=NOW)


def test_reopening_within_the_window_counts_and_later_is_refused() -> None:
    closed = TicketFacts(state=S.CLOSED, closed_at=NOW - timedelta(days=3))
    outcome = check(closed, S.OPEN, C, Request(reason="alarm again"), now=NOW)
    assert outcome.reopens
    old = TicketFacts(state=S.CLOSED, closed_at=NOW - timedelta(days=30))
    with pytest.raises(InvalidTransition, match="reopen window"):
        check(old, S.OPEN, C, Request(reason="alarm again"), now=NOW)
    check(old, S.OPEN, C, Request(reason="alarm again"), now=NOW,
          reopen_window=timedelta(days=31))


@pytest.mark.parametrize("role", [C, SYS, ActorRole.ADMIN])
def test_only_the_service_organisation_works_a_ticket(role: ActorRole) -> None:
    with pytest.raises(Forbidden):
        check(TicketFacts(state=S.OPEN), S.ACKNOWLEDGED, role, Request(), now=NOW)


def test_allowed_targets_follow_the_table() -> None:
    assert allowed_targets(S.VERIFIED, C) == [S.CLOSED]
    assert allowed_targets(S.OPEN, C) == []
    assert set(allowed_targets(S.DIAGNOSING, E)) == {
        S.DISPATCHED, S.REPAIRED, S.RESOLVED_REMOTELY, S.CANCELLED}
    every_state_is_reachable = {target for _, target in MOVES} | {S.OPEN}
    assert every_state_is_reachable == set(TicketState)
