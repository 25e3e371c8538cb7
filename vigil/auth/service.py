"""Signing in and checking credentials: keyword-only functions on the caller's session.

They never commit. Sign-in records its attempt whether or not it succeeds, and
returns failure instead of raising, so the caller commits the attempt (which
throttling counts) and then answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from vigil.auth.models import ADDRESS_CHARS, ApiToken, AuthSession, SessionKind, SignInAttempt
from vigil.auth.passwords import hash_password, needs_rehash, verify_password
from vigil.db.base import storable_text, utcnow
from vigil.db.enums import RoleName
from vigil.errors import DomainError, InvalidRequest, NotFound
from vigil.users.models import Role, User, user_roles

ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=14)
COOKIE_TTL = timedelta(hours=8)
# Throttling: failures counted over this window, per account and per address.
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
# last_used_at is written at most this often per token: a write per request would cost more.
LAST_USE_RESOLUTION = timedelta(minutes=1)

# Sign-in attempts and ended sessions are kept this long for security reviews, then removed:
# throttling reads only the last THROTTLE_WINDOW, and the tables grow by a row per sign-in.
AUTH_RECORDS_KEPT = timedelta(days=90)

API_TOKEN_SCOPES = ("read", "write")
ACCESS_PREFIX = "vat_"
REFRESH_PREFIX = "vrt_"
API_TOKEN_PREFIX = "vpat_"


class Unauthenticated(DomainError):
    """No valid credential came with the request."""


class Throttled(DomainError):
    """Too many failed sign-ins; ``retry_after`` seconds until the next is considered."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the user, their roles, and how they proved it."""

    user_id: int
    username: str
    roles: frozenset[str]
    via: str  # "bearer", "cookie" or "api_token"
    session_id: int | None = None
    token_id: int | None = None
    scopes: frozenset[str] = frozenset(API_TOKEN_SCOPES)
    # True when last_used_at is older than LAST_USE_RESOLUTION and should be written.
    stale_use: bool = False

    @property
    def is_staff(self) -> bool:
        """The service organisation (admin, manager, engineer) sees every customer."""
        return bool(self.roles & {RoleName.ADMIN, RoleName.MANAGER, RoleName.ENGINEER})

    @property
    def is_admin(self) -> bool:
        return RoleName.ADMIN in self.roles


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """The secrets of a new sign-in, shown to the client once."""

    session: AuthSession
    access_token: str
    refresh_token: str | None
    csrf_token: str | None


def _address(address: str) -> str:
    return storable_text(address or "unknown", ADDRESS_CHARS)


def check_throttle(session: Session, *, username: str, address: str, now: datetime) -> None:
    """Raise Throttled while the account or the address has too many recent failures.

    An account's failures count from its last successful sign-in, so its owner
    signing in clears them; an address's do not.
    """
    since = now - THROTTLE_WINDOW
    last_success = session.scalar(
        select(func.max(SignInAttempt.at)).where(
            SignInAttempt.username == username, SignInAttempt.succeeded.is_(True)
        )
    )
    account_since = max(since, last_success) if last_success else since
    account = session.execute(
        select(func.count(), func.min(SignInAttempt.at)).where(
            SignInAttempt.username == username,
            SignInAttempt.succeeded.is_(False),
            SignInAttempt.at > account_since,
        )
    ).one()
    by_address = session.execute(
        select(func.count(), func.min(SignInAttempt.at)).where(
            SignInAttempt.address == _address(address),
            SignInAttempt.succeeded.is_(False),
            SignInAttempt.at > since,
        )
    ).one()
    for (count, oldest), limit in ((account, MAX_FAILURES_PER_ACCOUNT),
                                   (by_address, MAX_FAILURES_PER_ADDRESS)):
        if count >= limit:
            wait = int((oldest + THROTTLE_WINDOW - now).total_seconds()) + 1
            raise Throttled("too many failed sign-ins; try again later", retry_after=max(wait, 1))


def authenticate(
    session: Session, *, username: str, password: str, address: str, now: datetime | None = None
) -> User | None:
    """The active user with this name and password, or None; the attempt is recorded either way.

    Raises Throttled (recording nothing) while sign-ins from this account or address are held.
    """
    now = now or utcnow()
    name = storable_text(username, 64)
    check_throttle(session, username=name, address=address, now=now)
    user = session.scalar(select(User).where(User.username == name))
    ok = verify_password(user.password_hash if user else None, password)
    ok = ok and user is not None and user.active
    session.add(SignInAttempt(username=name, address=_address(address), at=now, succeeded=ok))
    if not ok or user is None:
        return None
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def start_session(
    session: Session, *, user: User, kind: SessionKind, address: str, now: datetime | None = None
) -> IssuedSession:
    """A new sign-in for ``user``: bearer sessions get a refresh token, cookie ones a CSRF token."""
    now = now or utcnow()
    access = new_secret(ACCESS_PREFIX)
    refresh = new_secret(REFRESH_PREFIX) if kind == SessionKind.BEARER else None
    csrf = secrets.token_urlsafe(32) if kind == SessionKind.COOKIE else None
    row = AuthSession(
        user_id=user.id,
        kind=kind,
        access_digest=digest(access),
        access_expires_at=now + (ACCESS_TTL if kind == SessionKind.BEARER else COOKIE_TTL),
        refresh_digest=digest(refresh) if refresh else None,
        refresh_expires_at=now + REFRESH_TTL if refresh else None,
        csrf_digest=digest(csrf) if csrf else None,
        address=_address(address),
        created_at=now,
        last_used_at=now,
    )
    session.add(row)
    session.flush()
    return IssuedSession(row, access, refresh, csrf)


def refresh_session(
    session: Session, *, refresh_token: str, now: datetime | None = None
) -> IssuedSession:
    """New access and refresh tokens for a live bearer session; the old refresh token dies."""
    now = now or utcnow()
    row = session.scalar(
        select(AuthSession)
        .where(AuthSession.refresh_digest == digest(refresh_token))
        .with_for_update()
    )
    if row is None:
        raise Unauthenticated("the refresh token is not valid")
    expires = row.refresh_expires_at
    if row.revoked_at is not None or expires is None or expires <= now:
        raise Unauthenticated("the refresh token is not valid")
    if not row.user.active:
        raise Unauthenticated("the refresh token is not valid")
    access = new_secret(ACCESS_PREFIX)
    refresh = new_secret(REFRESH_PREFIX)
    row.access_digest = digest(access)
    row.access_expires_at = now + ACCESS_TTL
    row.refresh_digest = digest(refresh)
    row.refresh_expires_at = now + REFRESH_TTL
    row.last_used_at = now
    return IssuedSession(row, access, refresh, None)


def end_session(session: Session, *, session_id: int, now: datetime | None = None) -> None:
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


def _stale(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or last_used_at < now - LAST_USE_RESOLUTION


def _role_names(rows: Sequence[Any]) -> frozenset[str]:
    return frozenset(row.role for row in rows if row.role is not None)


def _with_user(*columns: Any, credential: Any) -> Select[Any]:
    """A credential's columns with its user's name, state and roles, one row per role.

    One statement instead of an ORM object with joined and select-in loads: every
    authenticated request runs it, and the ORM way took two queries and about 1.5 ms.
    """
    return (
        select(*columns, User.username, User.active, Role.name.label("role"))
        .join(User, User.id == credential.user_id)
        .outerjoin(user_roles, user_roles.c.user_id == User.id)
        .outerjoin(Role, Role.id == user_roles.c.role_id)
    )


_SESSION_PRINCIPAL = _with_user(
    AuthSession.id, AuthSession.user_id, AuthSession.kind, AuthSession.revoked_at,
    AuthSession.access_expires_at, AuthSession.last_used_at, credential=AuthSession,
).where(AuthSession.access_digest == bindparam("digest"))


def principal_from_access_token(
    session: Session, *, token: str, kind: SessionKind, now: datetime | None = None
) -> Principal:
    """The principal of a live session's access token of this kind, or Unauthenticated."""
    now = now or utcnow()
    rows = session.execute(_SESSION_PRINCIPAL, {"digest": digest(token)}).all()
    row = rows[0] if rows else None
    if (row is None or row.kind != kind or row.revoked_at is not None
            or row.access_expires_at <= now or not row.active):
        raise Unauthenticated("the access token is not valid or has expired")
    return Principal(row.user_id, row.username, _role_names(rows), kind.value,
                     session_id=row.id, stale_use=_stale(row.last_used_at, now))


def check_csrf(session: Session, *, session_id: int, csrf_token: str | None) -> bool:
    """True if ``csrf_token`` is the one handed out with this cookie session."""
    expected = session.scalar(select(AuthSession.csrf_digest).where(AuthSession.id == session_id))
    return bool(csrf_token and expected and hmac.compare_digest(expected, digest(csrf_token)))


_TOKEN_PRINCIPAL = _with_user(
    ApiToken.id, ApiToken.user_id, ApiToken.revoked_at, ApiToken.expires_at, ApiToken.scopes,
    ApiToken.last_used_at, credential=ApiToken,
).where(ApiToken.digest == bindparam("digest"))


def principal_from_api_token(
    session: Session, *, token: str, now: datetime | None = None
) -> Principal:
    now = now or utcnow()
    rows = session.execute(_TOKEN_PRINCIPAL, {"digest": digest(token)}).all()
    row = rows[0] if rows else None
    if (row is None or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now) or not row.active):
        raise Unauthenticated("the API token is not valid, expired or revoked")
    return Principal(row.user_id, row.username, _role_names(rows), "api_token",
                     token_id=row.id, scopes=frozenset(row.scopes),
                     stale_use=_stale(row.last_used_at, now))


def note_use(session: Session, *, principal: Principal, now: datetime | None = None) -> None:
    """Record that a session or API token was used, at most once per LAST_USE_RESOLUTION."""
    now = now or utcnow()
    table = ApiToken if principal.token_id is not None else AuthSession
    row_id = principal.token_id if principal.token_id is not None else principal.session_id
    if row_id is None:
        return
    stale = now - LAST_USE_RESOLUTION
    session.execute(
        update(table)
        .where(table.id == row_id)
        .where((table.last_used_at.is_(None)) | (table.last_used_at < stale))
        .values(last_used_at=now)
    )


def create_api_token(
    session: Session,
    *,
    user_id: int,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new API token and its secret, which is returned this once and stored only as a digest."""
    wanted = sorted(set(scopes))
    unknown = [scope for scope in wanted if scope not in API_TOKEN_SCOPES]
    if unknown or not wanted:
        raise InvalidRequest(f"scopes: choose from {', '.join(API_TOKEN_SCOPES)}")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidRequest("expires_at: must be in the future")
    secret = new_secret(API_TOKEN_PREFIX)
    row = ApiToken(user_id=user_id, name=name, prefix=secret[:12], digest=digest(secret),
                   scopes=wanted, expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, secret


def list_api_tokens(session: Session, *, user_id: int) -> list[ApiToken]:
    return list(session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke_api_token(
    session: Session, *, user_id: int, token_id: int, now: datetime | None = None
) -> ApiToken:
    """Revoke one of the user's tokens; another user's token is reported as not found."""
    row = session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id))
    if row is None:
        raise NotFound(f"API token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
    return row


@dataclass(frozen=True, slots=True)
class AuthPurge:
    attempts: int
    sessions: int


def purge_auth_records(session: Session, *, now: datetime,
                       keep: timedelta = AUTH_RECORDS_KEPT) -> AuthPurge:
    """Remove sign-in attempts and sessions that ended more than ``keep`` ago."""
    if keep < THROTTLE_WINDOW:
        raise InvalidRequest(f"sign-in records are kept at least {THROTTLE_WINDOW}, which "
                             "throttling reads")
    cutoff = now - keep
    attempts = session.execute(delete(SignInAttempt).where(SignInAttempt.at < cutoff))
    ended = or_(AuthSession.revoked_at < cutoff,
                and_(AuthSession.access_expires_at < cutoff,
                     or_(AuthSession.refresh_expires_at.is_(None),
                         AuthSession.refresh_expires_at < cutoff)))
    sessions = session.execute(delete(AuthSession).where(ended))
    return AuthPurge(attempts=int(getattr(attempts, "rowcount", 0) or 0),
                     sessions=int(getattr(sessions, "rowcount", 0) or 0))
