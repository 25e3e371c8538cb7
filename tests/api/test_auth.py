"""Authentication: passwords, bearer and refresh tokens, the console cookie and CSRF, API tokens,
throttling, and the first administrator."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import PASSWORD, World, sign_in
from vigil.auth import service
from vigil.auth.models import ApiToken, AuthSession
from vigil.auth.passwords import verify_password
from vigil.db.models import User
from vigil.db.session import make_engine, make_session_factory

ME = "/api/v1/auth/me"


def test_sign_in_gives_a_bearer_token_for_the_user(client: TestClient) -> None:
    answer = client.post("/api/v1/auth/token", json={"username": "engineer", "password": PASSWORD})
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 15 * 60
    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "engineer" and me.json()["roles"] == ["engineer"]


def test_tokens_are_stored_only_as_digests(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = client.post("/api/v1/auth/token",
                       json={"username": "admin", "password": PASSWORD}).json()
    with sessions() as session:
        row = session.scalars(select(AuthSession)).one()
        stored = {row.access_digest, row.refresh_digest}
    assert body["access_token"] not in stored and body["refresh_token"] not in stored
    assert service.digest(body["access_token"]) in stored


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient) -> None:
    wrong = client.post("/api/v1/auth/token", json={"username": "admin", "password": "nope"})
    unknown = client.post("/api/v1/auth/token", json={"username": "ghost", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_no_or_bad_credentials_are_401(client: TestClient) -> None:
    assert client.get(ME).status_code == 401
    assert client.get(ME, headers={"Authorization": "Bearer vat_forged"}).status_code == 401
    assert client.get(ME, headers={"Authorization": "Basic abc"}).status_code == 401
    answer = client.get(ME, headers={"Authorization": "Bearer x"})
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_an_expired_access_token_is_refused_and_refresh_renews_it(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = client.post("/api/v1/auth/token",
                       json={"username": "manager", "password": PASSWORD}).json()
    with sessions.begin() as session:
        session.execute(update(AuthSession).values(
            access_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    old = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get(ME, headers=old).status_code == 401
    renewed = client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert renewed.status_code == 200
    fresh = renewed.json()
    assert client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"}).json()[
        "username"] == "manager"
    # The refresh token was used up: a second exchange fails.
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 401


def test_sign_out_ends_the_session(client: TestClient) -> None:
    headers = sign_in(client, "engineer")
    assert client.delete("/api/v1/auth/session", headers=headers).status_code == 204
    assert client.get(ME, headers=headers).status_code == 401


def test_a_disabled_user_is_locked_out_at_once(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    headers = sign_in(client, "engineer")
    with sessions.begin() as session:
        session.execute(update(User).where(User.username == "engineer").values(active=False))
    assert client.get(ME, headers=headers).status_code == 401
    answer = client.post("/api/v1/auth/token", json={"username": "engineer", "password": PASSWORD})
    assert answer.status_code == 401


def test_console_cookie_is_secure_httponly_strict_and_needs_csrf_for_writes(
    client: TestClient,
) -> None:
    answer = client.post("/api/v1/auth/session",
                         json={"username": "admin", "password": PASSWORD})
    assert answer.status_code == 200
    cookie = next(h for h in answer.headers.get_list("set-cookie")
                  if h.startswith("vigil_session="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=strict" in lowered
    csrf = answer.json()["csrf_token"]
    assert client.get(ME).json()["username"] == "admin"
    token = {"name": "by cookie", "scopes": ["read"]}
    refused = client.post("/api/v1/auth/api-tokens", json=token)
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]
    wrong = client.post("/api/v1/auth/api-tokens", json=token, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    ok = client.post("/api/v1/auth/api-tokens", json=token, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert client.delete("/api/v1/auth/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get(ME).status_code == 401


def test_api_token_shown_once_scoped_revocable_with_last_use(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    headers = sign_in(client, "admin")
    created = client.post("/api/v1/auth/api-tokens", headers=headers,
                          json={"name": "CMMS", "scopes": ["read"]})
    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("vpat_") and body["last_used_at"] is None
    listed = client.get("/api/v1/auth/api-tokens", headers=headers).json()
    assert [t["id"] for t in listed] == [body["id"]] and "token" not in listed[0]
    with sessions() as session:
        assert session.scalars(select(ApiToken.digest)).one() == service.digest(secret)
    as_token = {"Authorization": f"Bearer {secret}"}
    assert client.get(ME, headers=as_token).json()["username"] == "admin"
    # Read scope only: a write is refused even though the user is an admin.
    write = client.post("/api/v1/auth/api-tokens", headers=as_token,
                        json={"name": "x", "scopes": ["read"]})
    assert write.status_code == 403
    used = client.get("/api/v1/auth/api-tokens", headers=headers).json()[0]
    assert used["last_used_at"] is not None
    revoked = client.delete(f"/api/v1/auth/api-tokens/{body['id']}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get(ME, headers=as_token).status_code == 401


def test_another_users_api_token_cannot_be_revoked(client: TestClient) -> None:
    admin = sign_in(client, "admin")
    token_id = client.post("/api/v1/auth/api-tokens", headers=admin,
                           json={"name": "mine", "scopes": ["read", "write"]}).json()["id"]
    other = sign_in(client, "engineer")
    assert client.delete(f"/api/v1/auth/api-tokens/{token_id}", headers=other).status_code == 404


def test_sign_in_is_throttled_per_account(client: TestClient) -> None:
    for _ in range(service.MAX_FAILURES_PER_ACCOUNT):
        bad = client.post("/api/v1/auth/token", json={"username": "manager", "password": "bad"})
        assert bad.status_code == 401
    held = client.post("/api/v1/auth/token", json={"username": "manager", "password": PASSWORD})
    assert held.status_code == 429
    assert int(held.headers["retry-after"]) > 0
    # Other accounts from the same address are not held by this one's failures.
    assert client.post("/api/v1/auth/token",
                       json={"username": "admin", "password": PASSWORD}).status_code == 200


def test_sign_in_is_throttled_per_address(client: TestClient) -> None:
    for n in range(service.MAX_FAILURES_PER_ADDRESS):
        bad = client.post("/api/v1/auth/token", json={"username": f"guess{n}", "password": "x"})
        assert bad.status_code == 401
    held = client.post("/api/v1/auth/token", json={"username": "admin", "password": PASSWORD})
    assert held.status_code == 429


def test_throttle_window_passes(sessions: sessionmaker[Session], world: World) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        for _ in range(service.MAX_FAILURES_PER_ACCOUNT):
            assert service.authenticate(session, username="admin", password="bad",
                                        address="10.0.0.1", now=now) is None
    later = now + service.THROTTLE_WINDOW + timedelta(seconds=1)
    with sessions.begin() as session:
        user = service.authenticate(session, username="admin", password=PASSWORD,
                                    address="10.0.0.1", now=later)
    assert user is not None and user.username == "admin"


def test_old_sign_in_records_are_removed_and_recent_ones_kept(
        sessions: sessionmaker[Session], world: World) -> None:
    from vigil.auth.models import SessionKind, SignInAttempt
    from vigil.errors import InvalidRequest

    now = datetime.now(UTC)
    # Its refresh token ran out just over the kept period ago.
    old = now - service.AUTH_RECORDS_KEPT - service.REFRESH_TTL - timedelta(days=1)
    with sessions.begin() as session:
        user = session.scalars(select(User).where(User.username == "admin")).one()
        before = {"attempts": session.query(SignInAttempt).count(),
                  "sessions": session.query(AuthSession).count()}
        service.authenticate(session, username="admin", password="bad", address="10.9.9.9",
                             now=old)
        ended = service.start_session(session, user=user, kind=SessionKind.BEARER,
                                      address="10.9.9.9", now=old).session.id
        kept = service.start_session(session, user=user, kind=SessionKind.COOKIE,
                                     address="10.9.9.9", now=now).session.id
    with sessions.begin() as session:
        with pytest.raises(InvalidRequest):
            service.purge_auth_records(session, now=now, keep=timedelta(minutes=1))
        purged = service.purge_auth_records(session, now=now)
        assert (purged.attempts, purged.sessions) == (1, 1)
        ids = set(session.scalars(select(AuthSession.id)))
        assert kept in ids and ended not in ids
        assert session.query(SignInAttempt).count() == before["attempts"]
        assert session.query(AuthSession).count() == before["sessions"] + 1


def test_create_admin_prints_the_password_once_and_stores_a_hash(tmp_path) -> None:
    env = {"VIGIL_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-m", "vigil.cli", "users", "create-admin",
                          "--username", "root-admin"], env=env, capture_output=True, text=True,
                         check=False,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    password = run.stdout.strip().splitlines()[-1]
    assert len(password) >= 16
    engine = make_engine(f"sqlite:///{tmp_path / 'vigil.db'}")
    try:
        with make_session_factory(engine)() as session:
            user = session.scalars(select(User).where(User.username == "root-admin")).one()
            assert user.password_hash != password and password not in user.password_hash
            assert verify_password(user.password_hash, password)
            assert [role.name for role in user.roles] == ["admin"]
    finally:
        engine.dispose()
    again = subprocess.run([sys.executable, "-m", "vigil.cli", "users", "create-admin",
                            "--username", "root-admin"], env=env, capture_output=True, text=True,
                         check=False,
                           timeout=120)
    assert again.returncode == 1 and "taken" in again.stderr
