"""User administration: administrators only."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminOnly
from api.params import PathId
from api.problems import responses
from vigil.audit.service import record
from vigil.db.base import utcnow
from vigil.users import service
from vigil.users.models import User
from vigil.users.schemas import NewUser, UserAdminOut, UserIn, UserPatch

router = APIRouter(prefix="/users", tags=["users"])


def user_admin_out(user: User) -> UserAdminOut:
    return UserAdminOut(id=user.id, username=user.username, display_name=user.display_name,
                        email=user.email, active=user.active,
                        roles=sorted(role.name for role in user.roles),
                        site_ids=sorted(site.id for site in user.sites),
                        created_at=user.created_at)


@router.get("", response_model=list[UserAdminOut], responses=responses(401, 403),
            summary="Every user (admins)")
def list_users(ctx: AdminOnly) -> list[UserAdminOut]:
    return [user_admin_out(u) for u in service.list_users(ctx.db)]


@router.get("/{user_id}", response_model=UserAdminOut, responses=responses(401, 403, 404),
            summary="One user (admins)")
def get_user(user_id: PathId, ctx: AdminOnly) -> UserAdminOut:
    return user_admin_out(service.get_user(ctx.db, user_id=user_id))


@router.post("", response_model=NewUser, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 409, 422),
             summary="Add a user; a generated password is in this answer only")
def create_user(body: UserIn, ctx: AdminOnly) -> NewUser:
    user, generated = service.create_user(
        ctx.db, username=body.username, display_name=body.display_name, email=body.email,
        roles=body.roles, site_ids=body.site_ids, password=body.password)
    record(ctx.db, actor=ctx.principal.username, action="user.create", object_type="user",
           object_id=user.id, at=utcnow(), details={"roles": body.roles})
    return NewUser(**user_admin_out(user).model_dump(), password=generated)


@router.patch("/{user_id}", response_model=UserAdminOut,
              responses=responses(401, 403, 404, 422),
              summary="Change a user: roles, sites, active, password (admins)")
def update_user(user_id: PathId, body: UserPatch, ctx: AdminOnly) -> UserAdminOut:
    fields = body.model_dump(exclude_unset=True)
    user = service.update_user(ctx.db, user_id=user_id, **fields)
    changed = sorted(key for key in fields if key != "password")
    record(ctx.db, actor=ctx.principal.username, action="user.update", object_type="user",
           object_id=user.id, at=utcnow(),
           details={"fields": changed, "password_changed": "password" in fields})
    return user_admin_out(user)
