"""Tables of users and roles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.db.base import Base, enum_column, utcnow
from vigil.db.enums import RoleName
from vigil.devices.models import Site

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("role_id", ForeignKey("roles.id"), primary_key=True),
)

# The sites a customer's users may see: their own hospital's devices and tickets.
user_sites = Table(
    "user_sites",
    Base.metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
)


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = enum_column(RoleName, unique=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[Role]] = relationship(secondary=user_roles)
    sites: Mapped[list[Site]] = relationship(secondary=user_sites)

    def has_role(self, role: RoleName) -> bool:
        return any(r.name == role for r in self.roles)
