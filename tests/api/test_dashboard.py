"""The web dashboard at /: served by the API with its own assets only, a login whose refresh token
lives in an HttpOnly SameSite=Strict cookie the page's scripts cannot read, and no path through it
to a bot a subscriber does not follow."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import PASSWORD, publish

PAGES = ["/", "/login", "/bots/ann-bot", "/feed", "/backtests", "/backtests/job-1", "/accounts"]
ASSET = re.compile(r"""<(?:script|link)\b[^>]*\s(?:src|href)\s*=\s*["']([^"']+)["']""")
ATTRIBUTE_URL = re.compile(r"""\s(?:src|href|action)\s*=\s*["']?(https?:)?//""", re.I)
ANY_URL = re.compile(r"""https?://[^\s"'`)<>]+""")
# URLs the vendored chart library's text names without loading anything: an XML namespace, its
# licence, and its attribution link (turned off in our charts: api/dashboard/static/dashboard.js)
NOT_LOADED = {"http://www.w3.org/2000/svg", "https://www.apache.org/licenses/LICENSE-2.0"}
ATTRIBUTION = "https://www.tradingview.com/?utm_medium=lwc-link&utm_campaign=lwc-chart${this.rf("
DASHBOARD = {"X-Tickbridge-Dashboard": "1"}


def _cookie_header(response) -> str:
    (header,) = response.headers.get_list("set-cookie")
    return header


def _log_in(client, username, password=PASSWORD, **kwargs):
    return client.post("/dashboard/session", json={"username": username, "password": password}, headers=DASHBOARD,
                       **kwargs)


@pytest.mark.parametrize("page", PAGES)
def test_each_page_is_served_with_a_strict_csp_and_loads_only_its_own_assets(module_api, page):
    client = module_api.client
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    csp = html.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert html.headers["x-frame-options"] == "DENY"  # the API's security headers still apply
    assert not ATTRIBUTE_URL.search(html.text) and not ANY_URL.findall(html.text)
    assets = ASSET.findall(html.text)
    assert any(a.endswith("dashboard.js") for a in assets), assets
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.scheme and not parts.netloc, f"{page} loads {asset} from another origin"
        loaded = client.get(asset)
        assert loaded.status_code == 200, asset
        assert set(ANY_URL.findall(loaded.text)) <= NOT_LOADED | {ATTRIBUTION}, asset
        if asset.endswith(".js"):
            assert "javascript" in loaded.headers["content-type"]
            assert not re.search(r"""(import|fetch|src\s*=|url\()\s*\(?\s*["'`]https?:""", loaded.text), asset


def test_the_charts_are_drawn_without_the_attribution_link_and_say_it_as_text(module_api):
    """The library's logo would inject an inline style the CSP refuses; the pages credit it in text."""
    client = module_api.client
    assert "attributionLogo: false" in client.get("/dashboard/report-assets/report.js").text
    assert "TradingView Lightweight Charts" in client.get("/").text
    assert client.get("/dashboard/report-assets/vendor/README.md").status_code == 200


def test_the_asset_folders_reach_nothing_outside(module_api):
    client = module_api.client
    for path in ("/dashboard/static/", "/dashboard/static/../../settings.py",
                 "/dashboard/report-assets/%2e%2e/plot.py"):
        assert client.get(path).status_code == 404, path


def test_login_puts_the_refresh_token_in_a_strict_httponly_cookie_only(make_api):
    api = make_api()
    api.user("ann", "trader")
    client = api.client
    answer = _log_in(client, "ann")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "expires_in", "username", "role"} and body["role"] == "trader"
    cookie = _cookie_header(answer)
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert cookie.startswith("tb_refresh=") and "httponly" in flags and "samesite=strict" in flags
    assert "path=/dashboard/session" in flags and "secure" not in flags  # plain http: a browser would drop it
    assert answer.headers["cache-control"] == "no-store"
    refresh_token = cookie.split(";")[0].split("=", 1)[1]
    assert refresh_token not in answer.text
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == "ann"


def test_over_https_the_cookie_is_secure(make_api):
    api = make_api()
    api.user("ann", "trader")
    answer = api.client.post("https://testserver/dashboard/session", json={"username": "ann", "password": PASSWORD},
                             headers=DASHBOARD)
    assert answer.status_code == 200
    assert "secure" in {part.strip().lower() for part in _cookie_header(answer).split(";")}


def test_a_wrong_password_or_a_foreign_form_gets_no_session(make_api):
    api = make_api()
    api.user("ann", "trader")
    wrong = _log_in(api.client, "ann", "wrong password")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    forged = api.client.post("/dashboard/session", json={"username": "ann", "password": PASSWORD})
    assert forged.status_code == 403 and "x-tickbridge-dashboard" in forged.text
    assert "set-cookie" not in forged.headers


def test_refresh_rotates_the_cookie_and_logout_ends_the_session(make_api):
    api = make_api()
    api.user("ann", "trader")
    client = api.client
    first = _log_in(client, "ann").json()["access_token"]
    old_cookie = client.cookies.get("tb_refresh")
    renewed = client.post("/dashboard/session/refresh", headers=DASHBOARD)
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()["access_token"]
    assert client.cookies.get("tb_refresh") not in (None, old_cookie)
    assert client.post("/dashboard/session/refresh").status_code == 403  # the header is required here too
    out = client.post("/dashboard/session/logout", headers=DASHBOARD)
    assert out.status_code == 204
    assert "max-age=0" in _cookie_header(out).lower() and client.cookies.get("tb_refresh") is None
    for token in (first, second):  # the session's access tokens end with it
        assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/dashboard/session/refresh", headers=DASHBOARD).status_code == 401
    client.cookies.set("tb_refresh", old_cookie, path="/dashboard/session")
    assert client.post("/dashboard/session/refresh", headers=DASHBOARD).status_code == 401


def test_a_subscriber_cannot_see_a_bot_they_do_not_follow(make_api):
    api = make_api()
    ann, bea = api.user("ann", "trader"), api.user("bea", "trader")
    api.user("sam", "subscriber")
    ann_bot = api.bot(ann, "ann-bot")
    bea_bot = api.bot(bea, "bea-bot", symbol="QQQ", strategy="sma_cross")
    for headers, name in ((ann, "ann-bot"), (bea, "bea-bot")):
        assert api.client.post(f"/api/v1/bots/{name}/publish", headers=headers).status_code == 200
    admin = api.user("root", "admin")
    users = api.client.get("/api/v1/users", headers=admin).json()
    sam_id = next(u["id"] for u in users if u["username"] == "sam")
    assert api.client.put(f"/api/v1/users/{sam_id}/plan", json={"plan": "pro"}, headers=admin).status_code == 200
    token = _log_in(api.client, "sam").json()["access_token"]
    sam = {"Authorization": f"Bearer {token}"}
    assert api.client.post("/api/v1/subscriptions", json={"bot_id": ann_bot["runtime_id"]},
                           headers=sam).status_code == 201
    publish(api.ctx.engine, ann_bot["runtime_id"], 1)
    publish(api.ctx.engine, bea_bot["runtime_id"], 2)
    # what the feed page reads with the dashboard's token: the followed bot's signals only
    feed = api.client.get("/api/v1/signals", headers=sam).json()["items"]
    assert {s["bot_id"] for s in feed} == {ann_bot["runtime_id"]}
    assert [s["bot_id"] for s in api.client.get("/api/v1/subscriptions", headers=sam).json()] == [ann_bot["runtime_id"]]
    # what the bot page would read: refused, by name and by runtime id
    for key in ("bea-bot", bea_bot["runtime_id"]):
        for part in ("", "/status", "/fills", "/orders", "/equity", "/pnl"):
            assert api.client.get(f"/api/v1/bots/{key}{part}", headers=sam).status_code in (403, 404), part
    # and the page itself is an empty shell: nothing of the bot is rendered into it
    page = api.client.get(f"/bots/{bea_bot['runtime_id']}").text
    assert "QQQ" not in page and "sma_cross" not in page and "bea" not in page.replace(bea_bot["runtime_id"], "")


def test_the_path_argument_is_escaped_into_the_shell(module_api):
    page = module_api.client.get('/bots/"><img src=x onerror=alert(1)>').text
    assert "<img" not in page and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_page_change_racing_its_refresh_keeps_the_session_but_a_late_replay_ends_it(make_api):
    """A browser that leaves a page while its refresh is in flight loses the answer's Set-Cookie and
    sends the old cookie again: within seconds that is the same client (a sibling token, the session
    lives); long after, it is a replay (the session is revoked). The API's own /auth/refresh has no
    such window (tests/api/test_auth.py)."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from engine.store.models import RefreshTokenRow

    api = make_api()
    api.user("ann", "trader")
    client = api.client
    _log_in(client, "ann")
    old_cookie = client.cookies.get("tb_refresh")
    assert client.post("/dashboard/session/refresh", headers=DASHBOARD).status_code == 200  # answer "lost"
    newer = client.cookies.get("tb_refresh")
    client.cookies.set("tb_refresh", old_cookie, path="/dashboard/session")
    again = client.post("/dashboard/session/refresh", headers=DASHBOARD)
    assert again.status_code == 200, again.text
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {again.json()['access_token']}"}) \
        .status_code == 200
    # the same old cookie a minute after its use: a replay, the whole session ends (the newer token too)
    with Session(api.ctx.engine) as db:
        db.execute(update(RefreshTokenRow).where(RefreshTokenRow.used_at.is_not(None))
                   .values(used_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
        db.commit()
    client.cookies.set("tb_refresh", old_cookie, path="/dashboard/session")
    assert client.post("/dashboard/session/refresh", headers=DASHBOARD).status_code == 401
    client.cookies.set("tb_refresh", newer, path="/dashboard/session")
    assert client.post("/dashboard/session/refresh", headers=DASHBOARD).status_code == 401
