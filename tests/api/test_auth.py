"""Logins, access tokens, refresh-token rotation and reuse detection, API keys, rate limits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import ApiKeyRow, AuditRow, RefreshTokenRow, UserRow
from tests.api.conftest import PASSWORD


def _tokens(api, username):
    return api.client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD}).json()


def test_password_is_stored_as_an_argon2_hash(api):
    api.user("ann", "trader")
    with Session(api.ctx.engine) as db:
        stored = db.scalar(select(UserRow.password_hash).where(UserRow.username == "ann"))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_login_with_a_wrong_password_is_401_in_the_error_shape(api):
    api.user("ann", "trader")
    response = api.client.post("/api/v1/auth/token", json={"username": "ann", "password": "nope-nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    unknown = api.client.post("/api/v1/auth/token", json={"username": "nobody", "password": "nope-nope"})
    assert unknown.status_code == 401 and unknown.json() == response.json()


def test_access_token_identifies_the_caller(api):
    headers = api.user("ann", "trader")
    assert api.client.get("/api/v1/auth/me", headers=headers).json() == {"id": 1, "username": "ann", "role": "trader"}


def test_a_forged_or_expired_token_is_refused(make_api):
    api = make_api(access_ttl_s=-1)
    headers = api.user("ann", "trader")
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}
    assert api.client.get("/api/v1/auth/me", headers=forged).status_code == 401


def test_refresh_rotates_and_the_new_token_works(api):
    api.user("ann", "trader")
    first = _tokens(api, "ann")
    second = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    third = api.client.post("/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert third.status_code == 200
    with Session(api.ctx.engine) as db:
        hashes = list(db.scalars(select(RefreshTokenRow.token_hash)))
    assert first["refresh_token"] not in hashes and len(hashes) == 4  # stored hashed (1 + 3)


def test_reusing_a_rotated_refresh_token_revokes_the_family(api):
    api.user("ann", "trader")
    first = _tokens(api, "ann")
    second = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    replay = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "revoked" in replay.json()["error"]["message"]
    # the thief's replay also kills the legitimate client's newer token
    assert api.client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    with Session(api.ctx.engine) as db:
        assert db.scalar(select(AuditRow).where(AuditRow.action == "auth.refresh_reuse")) is not None


def test_logout_revokes_the_refresh_token(api):
    api.user("ann", "trader")
    tokens = _tokens(api, "ann")
    assert api.client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    assert api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_api_key_is_shown_once_stored_hashed_and_revocable(api):
    headers = api.user("ann", "trader")
    created = api.client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=headers)
    assert created.status_code == 201
    key = created.json()["key"]
    with Session(api.ctx.engine) as db:
        assert key not in list(db.scalars(select(ApiKeyRow.key_hash)))
    assert api.client.get("/api/v1/auth/me", headers={"X-API-Key": key}).json()["username"] == "ann"
    listed = api.client.get("/api/v1/auth/api-keys", headers=headers).json()
    assert "key" not in listed[0]
    assert api.client.delete(f"/api/v1/auth/api-keys/{listed[0]['id']}", headers=headers).status_code == 204
    assert api.client.get("/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 401


def test_login_is_rate_limited_with_retry_after(make_api):
    api = make_api(auth_rate_per_minute=3)
    api.user("ann", "trader")  # one login
    for _ in range(2):
        api.client.post("/api/v1/auth/token", json={"username": "ann", "password": "wrong-wrong"})
    limited = api.client.post("/api/v1/auth/token", json={"username": "ann", "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"


def test_admin_creates_users_and_the_call_is_audited(api):
    admin = api.user("root", "admin")
    created = api.client.post("/api/v1/users", json={"username": "bob", "role": "subscriber", "password": PASSWORD},
                              headers=admin)
    assert created.status_code == 201 and created.json()["role"] == "subscriber"
    api.login("bob")
    with Session(api.ctx.engine) as db:
        row = db.scalar(select(AuditRow).where(AuditRow.action == "user.create"))
    assert (row.actor, row.subject) == ("root", f"user:{created.json()['id']}")


def test_a_short_password_is_refused_naming_the_field(api):
    admin = api.user("root", "admin")
    response = api.client.post("/api/v1/users", json={"username": "bob", "role": "trader", "password": "short"},
                               headers=admin)
    assert response.status_code == 422 and response.json()["error"]["field"] == "password"


def test_users_create_command(tmp_path):
    from typer.testing import CliRunner

    from app.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(app, ["users", "create", "--username", "ops", "--role", "admin",
                                      "--password", PASSWORD, "--url", url])
    assert result.exit_code == 0, result.output
    assert "created admin 'ops'" in result.output
