"""Issue 11, items 5, 6 and 13: a logout logs out (at once, in every worker), no credential in a
log, WebSocket authentication by its first message, a server never runs on a weak JWT secret,
common passwords are refused, and a malformed `sub` is a 401, never a 500 or another user."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.websockets import WebSocketDisconnect

from api import logs
from api.app import create_app
from api.routers import signals as signals_router
from engine.store.models import UserRow
from tests.api.conftest import PASSWORD, publish

ROOT = Path(__file__).resolve().parents[2]
TICKBRIDGE = Path(sys.executable).parent / "tickbridge"


def _login(api, username: str) -> dict:
    response = api.client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


def _bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _me(api, headers) -> int:
    return api.client.get("/api/v1/auth/me", headers=headers).status_code


# --- item 5: a logout logs out ---

def test_logout_ends_the_sessions_access_token_at_once(make_api, database_url):
    api = make_api(url=database_url)
    api.user("ann", "trader")
    session, other = _login(api, "ann"), _login(api, "ann")
    assert _me(api, _bearer(session)) == 200
    assert api.client.post("/api/v1/auth/logout", json={"refresh_token": session["refresh_token"]}).status_code == 204
    assert _me(api, _bearer(session)) == 401      # before: 200 for the token's remaining 15 minutes
    assert _me(api, _bearer(other)) == 200        # another session of the same user goes on


def test_a_logout_in_one_worker_holds_in_another(make_api, tmp_path):
    """Two API processes on one store (two apps, same database and JWT secret)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = make_api(url=url, jwt_secret="s" * 40)
    second = make_api(url=url, jwt_secret="s" * 40)
    first.user("ann", "trader")
    tokens = _login(first, "ann")
    assert _me(second, _bearer(tokens)) == 200
    assert second.client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    assert _me(first, _bearer(tokens)) == 401


def test_reusing_a_rotated_refresh_token_ends_the_sessions_access_tokens(api):
    api.user("ann", "trader")
    first = _login(api, "ann")
    second = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert _me(api, _bearer(second)) == 200
    assert api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert _me(api, _bearer(second)) == 401 and _me(api, _bearer(first)) == 401


def test_logout_all_ends_every_session_of_the_caller_only(api):
    api.user("ann", "trader")
    api.user("bob", "trader")
    laptop, phone, bob = _login(api, "ann"), _login(api, "ann"), _login(api, "bob")
    response = api.client.post("/api/v1/auth/logout-all", headers=_bearer(laptop))
    assert response.status_code == 204            # before: 404, there was no way to do it
    assert _me(api, _bearer(laptop)) == 401 and _me(api, _bearer(phone)) == 401
    for tokens in (laptop, phone):
        assert api.client.post("/api/v1/auth/refresh",
                               json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert _me(api, _bearer(bob)) == 200
    assert _me(api, _bearer(_login(api, "ann"))) == 200  # a new login is a new session


def test_disabling_a_user_or_revoking_a_key_takes_effect_at_once(api):
    headers = api.user("ann", "trader")
    key = api.client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=headers).json()
    other_key = api.client.post("/api/v1/auth/api-keys", json={"name": "ops"}, headers=headers).json()
    assert api.client.delete(f"/api/v1/auth/api-keys/{key['id']}", headers=headers).status_code == 204
    assert _me(api, {"X-API-Key": key["key"]}) == 401
    assert _me(api, {"X-API-Key": other_key["key"]}) == 200
    with Session(api.ctx.engine) as db:
        db.execute(update(UserRow).where(UserRow.username == "ann").values(disabled=True))
        db.commit()
    assert _me(api, headers) == 401 and _me(api, {"X-API-Key": other_key["key"]}) == 401


def test_a_token_without_a_session_family_is_refused(api):
    api.user("ann", "trader")
    now = int(time.time())
    legacy = jwt.encode({"sub": "1", "role": "trader", "type": "access", "iat": now, "exp": now + 60},
                        api.settings.jwt_secret, algorithm="HS256")
    assert _me(api, {"Authorization": f"Bearer {legacy}"}) == 401  # it could never be revoked


# --- item 13: the subject of a token ---

@pytest.mark.parametrize("sub", [str(2**64), str(2**63), "99999999999999999999999999999", "\u0661",
                                 "0", "-1", "01", " 1", "1 "])
def test_a_malformed_or_out_of_range_sub_is_401(api, sub):
    api.user("ann", "trader")  # user 1: "\u0661" (Arabic-Indic one) used to authenticate as her
    family = _family_of(api, _login(api, "ann"))
    now = int(time.time())
    forged = jwt.encode({"sub": sub, "role": "admin", "type": "access", "fam": family, "iat": now, "exp": now + 60},
                        api.settings.jwt_secret, algorithm="HS256")
    response = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401, response.text  # before: 500 for 2**64, 200 (as ann) for "\u0661"


def _family_of(api, tokens: dict) -> str:
    claims = jwt.decode(tokens["access_token"], api.settings.jwt_secret, algorithms=["HS256"])
    return claims.get("fam", "a-live-session")  # (tokens had no family before issue 11)


# --- item 13: passwords ---

@pytest.mark.parametrize("password", ["password1", "Trustno1", "iloveyou", "1qaz2wsx", "QWERTYUIOP"])
def test_a_common_password_is_refused_without_quoting_it(api, password):
    admin = api.user("root", "admin")
    response = api.client.post("/api/v1/users", json={"username": "bob", "role": "trader", "password": password},
                               headers=admin)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "password" and "common" in error["message"]
    assert password.lower() not in response.text.lower()


def test_the_username_as_password_is_refused_and_the_demo_logins_are_accepted(api):
    from app.demo import SUBSCRIBER, TRADER

    admin = api.user("root", "admin")
    same = api.client.post("/api/v1/users", json={"username": "bobbyjones", "role": "trader",
                                                  "password": "BobbyJones"}, headers=admin)
    assert same.status_code == 422 and same.json()["error"]["field"] == "password"
    for (username, password), role in ((TRADER, "trader"), (SUBSCRIBER, "subscriber")):
        created = api.client.post("/api/v1/users", json={"username": username, "role": role, "password": password},
                                  headers=admin)
        assert created.status_code == 201, created.text


def test_users_create_refuses_a_common_password(tmp_path):
    from typer.testing import CliRunner

    from app.cli import app

    result = CliRunner().invoke(app, ["users", "create", "--username", "ops", "--role", "admin",
                                      "--password", "baseball1", "--url", f"sqlite:///{tmp_path / 'cli.db'}"])
    assert result.exit_code != 0 and "baseball1" not in result.output


# --- item 13: the JWT secret ---

def _serve(tmp_path: Path, secret: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TICKBRIDGE_JWT_SECRET"}
    env["TICKBRIDGE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'serve.db'}"
    if secret is not None:
        env["TICKBRIDGE_JWT_SECRET"] = secret
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a server that (wrongly) starts would run until killed: the bound turns that into a failure
    try:
        return subprocess.run([str(TICKBRIDGE), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("tickbridge serve started instead of refusing")


@pytest.mark.parametrize("secret", [None, "", "short-but-secret-value-29bytes"])
def test_serve_refuses_to_start_without_a_strong_jwt_secret(tmp_path, secret):
    result = _serve(tmp_path, secret)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "TICKBRIDGE_JWT_SECRET" in lines[0] and "Traceback" not in result.stderr
    if secret:
        assert secret not in result.stdout + result.stderr
    assert not (tmp_path / "serve.db").exists()  # refused before touching anything


def test_settings_from_env_refuses_and_settings_in_code_may_default(monkeypatch):
    from api.settings import Settings
    from engine.errors import ConfigError

    monkeypatch.delenv("TICKBRIDGE_JWT_SECRET", raising=False)
    with pytest.raises(ConfigError) as missing:
        Settings.from_env()
    assert missing.value.field == "TICKBRIDGE_JWT_SECRET"
    monkeypatch.setenv("TICKBRIDGE_JWT_SECRET", "\u00e9" * 15)  # 15 characters, 30 bytes
    with pytest.raises(ConfigError) as short:
        Settings.from_env()
    assert "\u00e9" not in str(short.value)
    monkeypatch.setenv("TICKBRIDGE_JWT_SECRET", "\u00e9" * 16)  # 32 bytes
    assert Settings.from_env().jwt_secret == "\u00e9" * 16
    assert len(Settings().jwt_secret.encode()) >= 32


def test_the_demo_keeps_its_generated_secret_private_and_reuses_it(tmp_path, monkeypatch):
    from app.demo import demo_jwt_secret

    monkeypatch.delenv("TICKBRIDGE_JWT_SECRET", raising=False)
    path = tmp_path / "var" / "jwt_secret"
    first = demo_jwt_secret(path)
    assert first is not None and len(first.encode()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_jwt_secret(path) == first  # the next run: same secret, so tokens stay valid
    monkeypatch.setenv("TICKBRIDGE_JWT_SECRET", "e" * 40)
    assert demo_jwt_secret(path) is None  # the environment's wins (and is checked by from_env)


# --- item 6: WebSocket authentication without a credential in the URL ---

def test_a_websocket_authenticates_with_its_first_message(api):
    api.bot(api.user("ann", "trader"), "alpha")
    admin = api.user("root", "admin")
    token = admin["Authorization"].split()[1]
    with api.client.websocket_connect("/api/v1/signals/ws") as ws:  # before: closed 1008 at once
        ws.send_text(json.dumps({"type": "auth", "token": token}))
        assert ws.receive_json() == {"type": "auth", "ok": True}
        publish(api.ctx.engine, "alpha", 1)
        frame = ws.receive_json()
    assert frame["type"] == "signal" and frame["signal"]["bot_id"] == "alpha"


def test_a_websocket_authenticates_with_an_api_key_message(api):
    headers = api.user("root", "admin")
    key = api.client.post("/api/v1/auth/api-keys", json={"name": "ws"}, headers=headers).json()["key"]
    with api.client.websocket_connect("/api/v1/signals/ws") as ws:
        ws.send_bytes(json.dumps({"type": "auth", "api_key": key}).encode())
        assert ws.receive_json() == {"type": "auth", "ok": True}


@pytest.mark.parametrize("first", ["hello", json.dumps({"type": "auth"}), json.dumps({"type": "auth", "token": 5}),
                                   json.dumps({"type": "auth", "token": "not-a-jwt"}), json.dumps(["auth"]),
                                   json.dumps({"type": "auth", "token": "x", "api_key": "y"}), "{" * 20_000])
def test_a_websocket_with_a_bad_first_message_is_closed_1008(api, first):
    with api.client.websocket_connect("/api/v1/signals/ws") as ws:
        ws.send_text(first)
        closed = ws.receive()
    assert closed["type"] == "websocket.close" and closed["code"] == 1008


def test_a_silent_websocket_is_closed_1008(api, monkeypatch):
    monkeypatch.setattr(signals_router, "AUTH_TIMEOUT_S", 0.2)  # 10 s in production
    with api.client.websocket_connect("/api/v1/signals/ws") as ws:
        closed = ws.receive()
    assert closed["type"] == "websocket.close" and closed["code"] == 1008


def test_a_bad_credential_in_the_url_is_still_refused_before_accepting(api):
    with pytest.raises(WebSocketDisconnect) as refused:
        with api.client.websocket_connect("/api/v1/signals/ws?token=garbage"):
            pass
    assert refused.value.code == 1008


# --- item 6: no secret in uvicorn's logs ---

class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_uvicorn_logs_show_stream_credentials_as_stars(api):
    """A real uvicorn (its own access and WebSocket log lines), as `tickbridge serve` runs it."""
    import httpx
    import uvicorn
    from websockets.sync.client import connect

    headers = api.user("root", "admin")
    token = headers["Authorization"].split()[1]
    key = api.client.post("/api/v1/auth/api-keys", json={"name": "logs"}, headers=headers).json()["key"]
    logs.install_redaction()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a second app on the same store and secret, served by uvicorn; uvicorn.Config runs its
    # logging dictConfig after install_redaction(): the filter must survive it
    app = create_app(api.settings, api.bots)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info",
                                           ws_ping_interval=None, proxy_headers=False))
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:  # a server that could not start ends its thread: fail, not hang
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        for logger in loggers:
            logger.addHandler(capture)
        base = f"http://127.0.0.1:{port}/api/v1"
        assert httpx.get(f"{base}/auth/me?token={token}&after_id=1").status_code == 401  # query tokens: streams only
        httpx.get(f"{base}/auth/me?%61pi_key={key}")
        with connect(f"ws://127.0.0.1:{port}/api/v1/signals/ws?token={token}") as ws:
            ws.close()
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.ctx.engine.dispose()
        for logger in loggers:
            logger.removeHandler(capture)
    text = "\n".join(capture.lines)
    assert "WebSocket /api/v1/signals/ws?token=***" in text, text
    assert "/api/v1/auth/me?token=***&after_id=1" in text and "%61pi_key=***" in text, text
    assert token not in text and key not in text and token[-20:] not in text


def test_a_shutdown_does_not_wait_for_a_websocket_that_has_not_authenticated(api):
    with api.client.websocket_connect("/api/v1/signals/ws") as ws:
        api.client.portal.call(api.ctx.hub.stop)  # what the server does first when it stops
        closed = ws.receive()
    assert closed["type"] == "websocket.close" and closed["code"] == 1001
