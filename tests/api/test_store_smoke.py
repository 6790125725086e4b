"""The API end to end on each store the project supports (SQLite; PostgreSQL where
TICKBRIDGE_TEST_POSTGRES_URL says where it is): migrations to the head, then the calls that write."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import AuditRow
from tests.api.conftest import SMA, publish


def test_the_api_on_this_store(make_api, database_url):
    api = make_api(url=database_url)
    ann, sam = api.user("ann", "trader"), api.user("sam", "subscriber")
    api.bot(ann, "smoke-bot")
    assert api.client.put("/api/v1/bots/smoke-bot", json={**SMA, "cash": "2500.50"}, headers=ann).json()["version"] == 2
    assert api.client.get("/api/v1/bots/smoke-bot", headers=ann).json()["config"]["cash"] == "2500.50"
    account = api.client.post("/api/v1/accounts", json={"name": "acct", "venue": "ccxt",
                                                        "credentials": {"exchange": "binance", "api_key": "k" * 12,
                                                                        "secret": "s" * 12}}, headers=ann)
    assert account.status_code == 201
    assert api.client.post("/api/v1/bots/smoke-bot/publish", headers=ann).status_code == 200
    assert api.client.post("/api/v1/subscriptions", json={"bot_id": "smoke-bot"}, headers=sam).status_code == 201
    root = api.user("root", "admin")
    sam_id = [u["id"] for u in api.client.get("/api/v1/users", headers=root).json() if u["username"] == "sam"][0]
    assert api.client.put(f"/api/v1/users/{sam_id}/plan", json={"plan": "pro"}, headers=root).status_code == 200
    publish(api.ctx.engine, "smoke-bot", 123)
    items = api.client.get("/api/v1/signals", headers=sam).json()["items"]
    assert [(s["bot_id"], s["ts"], s["confidence"]) for s in items] == [("smoke-bot", 123, "0.7")]
    bad = api.client.post("/api/v1/bots", json={"id": "nul\u0000bot", **SMA}, headers=ann)
    assert bad.status_code == 422
    nul = api.client.post("/api/v1/subscriptions", json={"bot_id": "a\u0000b"}, headers=sam)
    assert nul.status_code in (404, 422)  # refused either way, never a 500
    with Session(api.ctx.engine) as db:
        actions = set(db.scalars(select(AuditRow.action)))
    assert {"bot.create", "bot.update", "bot.publish", "account.create", "subscription.create", "user.plan"} <= actions
