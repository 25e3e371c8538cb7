"""Dependencies every route shares: the request's transaction and the caller's identity.

The transaction is the request's unit of work: committed when the route returns
(before the response is sent, so a client never sees a success that was not
saved), rolled back when it raises. Read requests run in a plain transaction;
writes take SQLite's write lock up front (see ``vigil.db.session.transaction``).

An authenticated route identifies its caller inside the request's own
transaction (a second session per request cost about 1.5 ms of every request).
A token's last use, written at most once a minute, goes into the request's
transaction for writes, which already hold the write lock, and into a short
transaction of its own after a read has finished, so a read never waits on a
writer (or for a second pooled connection) to record it. Streams, which hold
no transaction, identify their caller with ``current_principal``.

Each of these first takes a database slot (``api.admission``), waiting in the
event loop, and holds it until its transaction is torn down: a request never
waits for a pooled connection in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from api.admission import Admission
from vigil.auth.models import SessionKind
from vigil.auth.service import (
    ACCESS_PREFIX,
    API_TOKEN_PREFIX,
    Principal,
    Unauthenticated,
    check_csrf,
    note_use,
    principal_from_access_token,
    principal_from_api_token,
)
from vigil.db.enums import RoleName
from vigil.db.session import transaction
from vigil.errors import Forbidden

log = logging.getLogger(__name__)

SESSION_COOKIE = "vigil_session"
CSRF_COOKIE = "vigil_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def admission(request: Request) -> Admission:
    found: Admission = request.app.state.admission
    return found


async def admitted(request: Request) -> AsyncIterator[None]:
    """A database slot, held from before the connection is checked out until after teardown.

    The dependencies that open a transaction sit under this one, so FastAPI exits
    it after theirs, whether the route returned, raised or was cancelled.
    """
    async with admission(request).slot():
        yield


# Function scope: released when the route returns, before a streamed body is sent.
Admitted = Annotated[None, Depends(admitted, scope="function")]


def _unit_of_work(request: Request) -> Iterator[Session]:
    factory = session_factory(request)
    if request.method in SAFE_METHODS:
        with factory() as session, session.begin():
            yield session
    else:
        with transaction(factory) as session:
            yield session


def get_db(request: Request, _slot: Admitted) -> Iterator[Session]:
    """One transaction for the request, for routes anyone may call."""
    yield from _unit_of_work(request)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer TOKEN'")
    return token.strip()


def identify(request: Request, session: Session) -> Principal:
    """The signed-in caller, from a bearer token, an API token, or the console's cookie.

    Cookie-authenticated writes must echo the session's CSRF token in a header;
    an API token's scopes limit it to reads ("read") and writes ("write").
    """
    token = _bearer(request)
    if token is not None and token.startswith(API_TOKEN_PREFIX):
        principal = principal_from_api_token(session, token=token)
        needed = "read" if request.method in SAFE_METHODS else "write"
        if needed not in principal.scopes:
            raise Forbidden(f"this API token lacks the {needed!r} scope")
        return principal
    if token is not None:
        if not token.startswith(ACCESS_PREFIX):
            raise Unauthenticated("the access token is not valid or has expired")
        return principal_from_access_token(session, token=token, kind=SessionKind.BEARER)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("sign in first")
    principal = principal_from_access_token(session, token=cookie, kind=SessionKind.COOKIE)
    if request.method not in SAFE_METHODS and principal.session_id is not None:
        sent = request.headers.get(CSRF_HEADER)
        if not check_csrf(session, session_id=principal.session_id, csrf_token=sent):
            raise Forbidden(f"the {CSRF_HEADER} header is missing or wrong")
    return principal


def _note_use_apart(factory: sessionmaker[Session], principal: Principal) -> None:
    # Bookkeeping only: a busy database must not fail the request.
    with contextlib.suppress(OperationalError), transaction(factory) as session:
        note_use(session, principal=principal)


def current_principal(request: Request, _slot: Admitted) -> Principal:
    """The caller, identified in a session of its own: for routes that hold no transaction.

    Its slot is held until the route returns, covering the reads a stream's route
    makes before it streams; the stream then takes a slot per read.
    """
    factory = session_factory(request)
    with factory() as session, session.begin():
        principal = identify(request, session)
    if principal.stale_use:
        _note_use_apart(factory, principal)
    return principal


@dataclass(frozen=True, slots=True)
class Ctx:
    """What an authenticated route works with: its transaction and its caller."""

    db: Session
    principal: Principal


def _context(request: Request, roles: frozenset[str] | None = None,
             refusal: str = "") -> Iterator[Ctx]:
    """The request's transaction and its caller, identified in that transaction."""
    principal = None
    for session in _unit_of_work(request):
        principal = identify(request, session)
        if roles is not None and not principal.roles & roles:
            raise Forbidden(refusal)
        if principal.stale_use and request.method not in SAFE_METHODS:
            note_use(session, principal=principal)
        yield Ctx(session, principal)
    if principal is not None and principal.stale_use and request.method in SAFE_METHODS:
        _note_use_apart(session_factory(request), principal)


def signed_in(request: Request, _slot: Admitted) -> Iterator[Ctx]:
    yield from _context(request)


def _allowing(roles: frozenset[str], refusal: str) -> Callable[..., Iterator[Ctx]]:
    """A dependency that lets through only callers holding one of ``roles``."""

    def dependency(request: Request, _slot: Admitted) -> Iterator[Ctx]:
        yield from _context(request, roles, refusal)

    return dependency


# The service organisation: admins, managers and engineers.
staff_only = _allowing(frozenset({RoleName.ADMIN, RoleName.MANAGER, RoleName.ENGINEER}),
                       "only the service organisation may do this")
admin_only = _allowing(frozenset({RoleName.ADMIN}), "only administrators may do this")
# Those who plan the service.
managers_only = _allowing(frozenset({RoleName.ADMIN, RoleName.MANAGER}),
                          "only managers and administrators may do this")
# Those who do the service work.
field_staff = _allowing(frozenset({RoleName.ENGINEER, RoleName.MANAGER}),
                        "only engineers and managers may do this")


Db = Annotated[Session, Depends(get_db, scope="function")]
SignedIn = Annotated[Ctx, Depends(signed_in, scope="function")]
StaffOnly = Annotated[Ctx, Depends(staff_only, scope="function")]
AdminOnly = Annotated[Ctx, Depends(admin_only, scope="function")]
ManagersOnly = Annotated[Ctx, Depends(managers_only, scope="function")]
FieldStaff = Annotated[Ctx, Depends(field_staff, scope="function")]


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run ``action`` once the request's transaction has committed (never if it rolls back).

    For side effects outside the database that must reflect committed state only,
    such as the broker's password file. A failure is logged: the request has succeeded.
    SQLAlchemy also emits ``after_commit`` when a savepoint is released, so actions
    wait for the outermost commit, and one registered in a savepoint that rolled back
    is dropped with it.
    """
    pending: list[tuple[SessionTransaction, Callable[[], object]]] | None = \
        session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _run_committed)
        event.listen(session, "after_soft_rollback", _drop_rolled_back)
    where = session.get_nested_transaction() or session.get_transaction()
    assert where is not None, "after_commit needs a transaction in progress"
    pending.append((where, action))


_PENDING = "vigil.after_commit"


def _run_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return
    pending = session.info.get(_PENDING, [])
    actions = [action for _where, action in pending]
    pending.clear()
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("action after commit failed")


def _drop_rolled_back(session: Session, previous: SessionTransaction) -> None:
    def inside(where: SessionTransaction | None) -> bool:
        while where is not None:
            if where is previous:
                return True
            where = where.parent
        return False

    pending = session.info.get(_PENDING, [])
    pending[:] = [(where, action) for where, action in pending if not inside(where)]
