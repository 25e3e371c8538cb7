"""Signing in and out, refreshing, and API tokens."""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from api.deps import CSRF_COOKIE, SESSION_COOKIE, Db, SignedIn
from api.params import PathId
from api.problems import problem, responses
from vigil.auth import service
from vigil.auth.models import SessionKind
from vigil.auth.schemas import (
    ApiTokenIn,
    ApiTokenOut,
    ConsoleSession,
    Credentials,
    NewApiToken,
    RefreshRequest,
    TokenPair,
    UserOut,
)
from vigil.errors import Forbidden
from vigil.users.models import User

router = APIRouter(prefix="/auth", tags=["auth"])

SIGN_IN_FAILED = "the user name or password is wrong, or the account is disabled"


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, username=user.username, display_name=user.display_name,
                   email=user.email, roles=sorted(role.name for role in user.roles))


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _pair(issued: service.IssuedSession) -> TokenPair:
    row = issued.session
    assert issued.refresh_token is not None and row.refresh_expires_at is not None
    now = row.last_used_at or row.created_at
    return TokenPair(
        access_token=issued.access_token,
        expires_in=int((row.access_expires_at - now).total_seconds()),
        refresh_token=issued.refresh_token,
        refresh_expires_in=int((row.refresh_expires_at - now).total_seconds()),
    )


@router.post("/token", response_model=TokenPair, responses=responses(401, 422, 429),
             summary="Sign in for an API client: a short-lived access token and a refresh token")
def sign_in_token(body: Credentials, request: Request, db: Db) -> TokenPair | JSONResponse:
    user = service.authenticate(db, username=body.username, password=body.password,
                                address=_address(request))
    if user is None:
        # Returned, not raised: the failed attempt must be committed for throttling to count it.
        return problem(401, SIGN_IN_FAILED, kind="unauthenticated")
    return _pair(service.start_session(db, user=user, kind=SessionKind.BEARER,
                                       address=_address(request)))


@router.post("/refresh", response_model=TokenPair, responses=responses(401, 422),
             summary="Exchange a refresh token for new tokens (the old refresh token dies)")
def refresh(body: RefreshRequest, db: Db) -> TokenPair:
    return _pair(service.refresh_session(db, refresh_token=body.refresh_token))


@router.post("/session", response_model=ConsoleSession, responses=responses(401, 422, 429),
             summary="Sign in to the web console: sets the session cookie, returns a CSRF token")
def sign_in_console(
    body: Credentials, request: Request, response: Response, db: Db
) -> ConsoleSession | JSONResponse:
    user = service.authenticate(db, username=body.username, password=body.password,
                                address=_address(request))
    if user is None:
        return problem(401, SIGN_IN_FAILED, kind="unauthenticated")
    issued = service.start_session(db, user=user, kind=SessionKind.COOKIE,
                                   address=_address(request))
    expires = issued.session.access_expires_at.astimezone(UTC)
    assert issued.csrf_token is not None
    response.set_cookie(SESSION_COOKIE, issued.access_token, expires=expires, path="/",
                        secure=True, httponly=True, samesite="strict")
    # Readable by the console's script, which echoes it in the X-CSRF-Token header.
    response.set_cookie(CSRF_COOKIE, issued.csrf_token, expires=expires, path="/",
                        secure=True, httponly=False, samesite="strict")
    return ConsoleSession(csrf_token=issued.csrf_token, expires_at=expires, user=user_out(user))


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 403),
               summary="Sign out: ends this session (cookie or bearer)")
def sign_out(ctx: SignedIn) -> Response:
    if ctx.principal.session_id is not None:
        service.end_session(ctx.db, session_id=ctx.principal.session_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite="strict")
    return response


@router.get("/me", response_model=UserOut, responses=responses(401),
            summary="The signed-in user")
def me(ctx: SignedIn) -> UserOut:
    user = ctx.db.get(User, ctx.principal.user_id)
    assert user is not None
    return user_out(user)


@router.get("/api-tokens", response_model=list[ApiTokenOut], responses=responses(401),
            summary="The signed-in user's API tokens (never their secrets)")
def list_api_tokens(ctx: SignedIn) -> list[ApiTokenOut]:
    return [ApiTokenOut.model_validate(row)
            for row in service.list_api_tokens(ctx.db, user_id=ctx.principal.user_id)]


@router.post("/api-tokens", response_model=NewApiToken, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 422),
             summary="Create an API token; its secret is in this answer only")
def create_api_token(body: ApiTokenIn, ctx: SignedIn) -> NewApiToken:
    if ctx.principal.via == "api_token":
        # A leaked token must not be able to mint fresh ones that outlive its revocation.
        raise Forbidden("API tokens cannot create API tokens; sign in with a password")
    row, secret = service.create_api_token(ctx.db, user_id=ctx.principal.user_id, name=body.name,
                                           scopes=body.scopes, expires_at=body.expires_at)
    return NewApiToken(**ApiTokenOut.model_validate(row).model_dump(), token=secret)


@router.delete("/api-tokens/{token_id}", response_model=ApiTokenOut, responses=responses(401, 404),
               summary="Revoke an API token: it stops working at once")
def revoke_api_token(token_id: PathId, ctx: SignedIn) -> ApiTokenOut:
    return ApiTokenOut.model_validate(
        service.revoke_api_token(ctx.db, user_id=ctx.principal.user_id, token_id=token_id))
