"""Users and their roles: keyword-only functions on the caller's session; they never commit."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.auth.passwords import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    generate_password,
    hash_password,
)
from vigil.db.enums import RoleName
from vigil.devices.models import Site
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.users.models import Role, User


def _roles(session: Session, names: Iterable[str]) -> list[Role]:
    wanted = sorted(set(names))
    unknown = [name for name in wanted if name not in {r.value for r in RoleName}]
    if unknown:
        raise InvalidRequest(f"roles: unknown role {unknown[0]!r}")
    return list(session.scalars(select(Role).where(Role.name.in_(wanted))))


def _sites(session: Session, site_ids: Iterable[int]) -> list[Site]:
    ids = sorted(set(site_ids))
    sites = list(session.scalars(select(Site).where(Site.id.in_(ids))))
    if len(sites) != len(ids):
        missing = sorted(set(ids) - {site.id for site in sites})
        raise InvalidRequest(f"site_ids: site {missing[0]} does not exist")
    return sites


def check_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidRequest(
            f"password: {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    roles: Iterable[str],
    email: str | None = None,
    password: str | None = None,
    site_ids: Iterable[int] = (),
) -> tuple[User, str | None]:
    """A new user; with no password given, one is generated and returned (shown once)."""
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"username: {username!r} is taken")
    generated = None
    if password is None:
        password = generated = generate_password()
    check_password(password)
    role_rows = _roles(session, roles)
    if not role_rows:
        raise InvalidRequest("roles: give at least one role")
    sites = _sites(session, site_ids)
    if any(role.name == RoleName.CUSTOMER for role in role_rows) and not sites:
        raise InvalidRequest("site_ids: a customer's user must be attached to its sites")
    user = User(username=username, display_name=display_name, email=email,
                password_hash=hash_password(password), roles=role_rows, sites=sites)
    session.add(user)
    session.flush()
    return user, generated


def create_admin(
    session: Session, *, username: str, display_name: str, email: str | None = None
) -> tuple[User, str]:
    """An administrator with a generated password, returned to be shown once, never stored."""
    user, password = create_user(session, username=username, display_name=display_name,
                                 email=email, roles=[RoleName.ADMIN])
    assert password is not None
    return user, password


def create_first_admin(session: Session) -> tuple[User, str] | None:
    """On a database with no users at all, an administrator ``admin`` and its password."""
    if session.scalar(select(User.id).limit(1)) is not None:
        return None
    return create_admin(session, username="admin", display_name="Administrator")


def get_user(session: Session, *, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def update_user(
    session: Session,
    *,
    user_id: int,
    display_name: str | None = None,
    email: str | None = None,
    active: bool | None = None,
    roles: Iterable[str] | None = None,
    site_ids: Iterable[int] | None = None,
    password: str | None = None,
) -> User:
    user = get_user(session, user_id=user_id)
    if display_name is not None:
        user.display_name = display_name
    if email is not None:
        user.email = email
    if active is not None:
        user.active = active
    if roles is not None:
        role_rows = _roles(session, roles)
        if not role_rows:
            raise InvalidRequest("roles: give at least one role")
        user.roles = role_rows
    if site_ids is not None:
        user.sites = _sites(session, site_ids)
    if password is not None:
        check_password(password)
        user.password_hash = hash_password(password)
    return user
