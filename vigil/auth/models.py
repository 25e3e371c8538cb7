"""Tables of authentication: sign-in sessions, API tokens and sign-in attempts.

Secrets (access, refresh and API tokens, CSRF tokens) are random and long, so
they are stored as SHA-256 digests: a stolen table reveals none of them, and a
lookup by digest needs no slow hash. Passwords, which people choose, are Argon2
hashes on the user row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, BigId, enum_column, utcnow
from vigil.users.models import User

DIGEST_CHARS = 64
ADDRESS_CHARS = 64


class SessionKind(StrEnum):
    """How a session's access token travels: an Authorization header, or the console's cookie."""

    BEARER = "bearer"
    COOKIE = "cookie"


class AuthSession(Base):
    """One sign-in: a short-lived access token, renewed by a refresh token (bearer) or use (cookie).

    Signing out ends it (``revoked_at``); each refresh replaces both tokens.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = enum_column(SessionKind)
    access_digest: Mapped[str] = mapped_column(String(DIGEST_CHARS), unique=True)
    access_expires_at: Mapped[datetime]
    refresh_digest: Mapped[str | None] = mapped_column(String(DIGEST_CHARS), unique=True)
    refresh_expires_at: Mapped[datetime | None]
    csrf_digest: Mapped[str | None] = mapped_column(String(DIGEST_CHARS))
    address: Mapped[str | None] = mapped_column(String(ADDRESS_CHARS))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A long-lived token for an integration, acting as its user within its scopes."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The token's first characters, so people can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class SignInAttempt(Base):
    """A password sign-in, successful or not: what throttling counts."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_username_at", "username", "at"),
        Index("ix_sign_in_attempts_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(ADDRESS_CHARS))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    succeeded: Mapped[bool] = mapped_column(default=False)
