"""Plans are entitlements and bots are scoped to their owners (issue 11, items 3 and 14).

* a subscriber cannot choose a plan; an admin sets it (PUT /users/{id}/plan, audited);
* a free plan's delay counts from when a signal was published, not from its market time (REST,
  WebSocket, SSE): a replayed bot's signals are years old at birth and were free = pro;
* bot ids are names in their owner's namespace: creating one reveals nothing of another owner's;
* subscribers follow only published bots, and stop receiving a bot's signals once it is withdrawn;
* backtest jobs have a per-user quota (429 with Retry-After), and jobs a restart interrupted are
  marked failed at start;
* the OpenAPI spec documents the 400 and 405 every operation can answer.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from engine.store.models import AuditRow, BacktestJobRow, SignalRow, UserRow
from tests.api.conftest import SMA, LiveServer, publish
from tests.conftest import migrate_store

NS = 1_000_000_000
REPLAYED_TS = 1_399_248_000 * NS      # 2014-05-05: the market time of a replayed EURUSD tick
HOUR = 3600 * NS


def _user_id(api, username: str) -> int:
    with Session(api.ctx.engine) as db:
        return db.scalar(select(UserRow.id).where(UserRow.username == username))


def _set_plan(api, admin, username: str, plan: str) -> None:
    response = api.client.put(f"/api/v1/users/{_user_id(api, username)}/plan", json={"plan": plan}, headers=admin)
    assert response.status_code == 200, response.text


def _publish_bot(api, headers, name: str) -> str:
    response = api.client.post(f"/api/v1/bots/{name}/publish", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["runtime_id"]


def _subscribe(api, headers, runtime_id: str) -> dict:
    response = api.client.post("/api/v1/subscriptions", json={"bot_id": runtime_id}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _rest(api, headers) -> list[tuple[str, int]]:
    response = api.client.get("/api/v1/signals", headers=headers)
    assert response.status_code == 200, response.text
    return [(s["bot_id"], s["ts"]) for s in response.json()["items"]]


def _age(api, bot_id: str, by_ns: int) -> None:
    """Pretend the bot's signals were published `by_ns` earlier (the wall clock cannot be waited out)."""
    with api.ctx.engine.begin() as c:
        c.execute(update(SignalRow.__table__).where(SignalRow.bot_id == bot_id)
                  .values(published_ns=SignalRow.published_ns - by_ns))


@pytest.fixture
def world(make_api):
    """ann trades a published bot; sam and pia subscribe (both on the default free plan); root is admin."""
    api = make_api(free_delay_s=900)
    h = {name: api.user(name, role) for name, role in
         (("ann", "trader"), ("bea", "trader"), ("sam", "subscriber"), ("pia", "subscriber"), ("root", "admin"))}
    api.bot(h["ann"], "ann-bot")
    _publish_bot(api, h["ann"], "ann-bot")
    return api, h


# -- item 3: plans are entitlements --------------------------------------------------------------------

@pytest.mark.parametrize("plan", ["pro", "free"])
def test_a_subscriber_cannot_choose_a_plan(world, plan):
    api, h = world
    response = api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot", "plan": plan}, headers=h["sam"])
    assert response.status_code == 403, response.text
    assert response.json()["error"]["message"] == "plans are set by an admin"
    assert api.client.get("/api/v1/subscriptions", headers=h["sam"]).json() == []


def test_an_admin_sets_a_users_plan_and_it_is_audited(world):
    api, h = world
    sub = _subscribe(api, h["sam"], "ann-bot")
    assert (sub["plan"], sub["delay_s"]) == ("free", 900.0)
    sam = _user_id(api, "sam")
    for who in ("ann", "sam"):
        denied = api.client.put(f"/api/v1/users/{sam}/plan", json={"plan": "pro"}, headers=h[who])
        assert denied.status_code == 403
    assert api.client.put("/api/v1/users/999999/plan", json={"plan": "pro"}, headers=h["root"]).status_code == 404
    assert api.client.put(f"/api/v1/users/{sam}/plan", json={"plan": "gold"}, headers=h["root"]).status_code == 422
    _set_plan(api, h["root"], "sam", "pro")
    (mine,) = api.client.get("/api/v1/subscriptions", headers=h["sam"]).json()
    assert (mine["plan"], mine["delay_s"]) == ("pro", 0.0)
    assert {u["username"]: u["plan"] for u in api.client.get("/api/v1/users", headers=h["root"]).json()}["sam"] == "pro"
    with Session(api.ctx.engine) as db:
        (audit,) = db.scalars(select(AuditRow).where(AuditRow.action == "user.plan"))
    assert (audit.actor, audit.subject, audit.detail) == ("root", f"user:{sam}", {"from": "free", "to": "pro"})


def test_rest_free_delay_counts_from_publication_not_market_time(world):
    api, h = world
    _subscribe(api, h["sam"], "ann-bot")
    _subscribe(api, h["pia"], "ann-bot")
    _set_plan(api, h["root"], "sam", "pro")
    publish(api.ctx.engine, "ann-bot", REPLAYED_TS)        # market time 2014, published now
    assert _rest(api, h["sam"]) == [("ann-bot", REPLAYED_TS)]  # pro: real time
    assert _rest(api, h["pia"]) == []                        # free: 15 minutes after publication
    _age(api, "ann-bot", 16 * 60 * NS)
    assert _rest(api, h["pia"]) == [("ann-bot", REPLAYED_TS)]


def _ws(api, headers, **params):
    token = headers["Authorization"].split()[1]
    query = "&".join(f"{k}={v}" for k, v in {"token": token, **params}.items())
    return api.client.websocket_connect(f"/api/v1/signals/ws?{query}")


def _published_ns(api, signal_id: int) -> int:
    with Session(api.ctx.engine) as db:
        return db.scalar(select(SignalRow.published_ns).where(SignalRow.id == signal_id))


DELAY_S = 2.0


def test_websocket_free_delay_counts_from_publication(make_api):
    api = make_api(free_delay_s=DELAY_S)
    ann, pia = api.user("ann", "trader"), api.user("pia", "subscriber")
    api.bot(ann, "ann-bot")
    _subscribe(api, pia, _publish_bot(api, ann, "ann-bot"))
    with _ws(api, pia) as ws:
        publish(api.ctx.engine, "ann-bot", REPLAYED_TS)
        frame = ws.receive_json()["signal"]
        received = time.time_ns()
    assert frame["ts"] == REPLAYED_TS
    assert received >= _published_ns(api, frame["id"]) + DELAY_S * NS  # held for the plan's delay


def test_sse_free_delay_counts_from_publication(make_api):
    api = make_api(free_delay_s=DELAY_S)
    ann, pia = api.user("ann", "trader"), api.user("pia", "subscriber")
    api.bot(ann, "ann-bot")
    _subscribe(api, pia, _publish_bot(api, ann, "ann-bot"))
    app = create_app(api.settings, api.bots)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        with http.stream("GET", "/api/v1/signals/sse", headers=pia) as response:
            lines = (line for line in response.iter_lines() if line)
            assert next(lines) == ": connected"
            publish(api.ctx.engine, "ann-bot", REPLAYED_TS)
            event = [next(lines) for _ in range(3)]
            received = time.time_ns()
    signal = json.loads(event[2].removeprefix("data: "))
    assert signal["ts"] == REPLAYED_TS
    assert received >= _published_ns(api, signal["id"]) + DELAY_S * NS


def test_a_pro_stream_gets_a_replayed_signal_at_once_and_in_order(make_api):
    """The pro side of the same stream: nothing held, so a delay bug cannot hide behind it."""
    api = make_api(free_delay_s=3600)
    ann, sam, root = api.user("ann", "trader"), api.user("sam", "subscriber"), api.user("root", "admin")
    api.bot(ann, "ann-bot")
    _subscribe(api, sam, _publish_bot(api, ann, "ann-bot"))
    _set_plan(api, root, "sam", "pro")
    with _ws(api, sam) as ws:
        publish(api.ctx.engine, "ann-bot", REPLAYED_TS)
        publish(api.ctx.engine, "ann-bot", REPLAYED_TS + 1)
        assert [ws.receive_json()["signal"]["ts"] for _ in range(2)] == [REPLAYED_TS, REPLAYED_TS + 1]


# -- item 14: owner-scoped bot ids ------------------------------------------------------------------------

def test_two_owners_may_use_one_name_and_neither_learns_of_the_other(world):
    api, h = world
    theirs = api.client.post("/api/v1/bots", json={"id": "ann-bot", **SMA}, headers=h["bea"])
    assert theirs.status_code == 201, theirs.text                    # was 409: "bot 'ann-bot' exists"
    bea_bot = theirs.json()
    assert bea_bot["id"] == "ann-bot" and bea_bot["runtime_id"].startswith("ann-bot-")
    assert len(bea_bot["runtime_id"]) == len("ann-bot-") + 8
    # each owner addresses their own by name; the other's is not there
    assert api.client.get("/api/v1/bots/ann-bot", headers=h["ann"]).json()["runtime_id"] == "ann-bot"
    assert api.client.get("/api/v1/bots/ann-bot", headers=h["bea"]).json()["runtime_id"] == bea_bot["runtime_id"]
    assert api.client.put("/api/v1/bots/ann-bot", json={**SMA, "cash": "500"}, headers=h["bea"]).json()["version"] == 2
    assert api.client.get("/api/v1/bots/ann-bot", headers=h["ann"]).json()["version"] == 1
    # a second bot of the same name for the same owner is a conflict in the owner's own namespace
    again = api.client.post("/api/v1/bots", json={"id": "ann-bot", **SMA}, headers=h["bea"])
    assert again.status_code == 409 and "you already have" in again.json()["error"]["message"]
    # the runtime gets the global id; store data goes by it
    assert api.client.post("/api/v1/bots/ann-bot/start", headers=h["bea"]).status_code == 200
    assert api.bots.running() == [bea_bot["runtime_id"]]  # not ann's "ann-bot"
    publish(api.ctx.engine, bea_bot["runtime_id"], 5)
    assert _rest(api, h["bea"]) == [(bea_bot["runtime_id"], 5)]
    assert _rest(api, h["ann"]) == []
    # admins address bots by runtime id
    assert api.client.get(f"/api/v1/bots/{bea_bot['runtime_id']}", headers=h["root"]).json()["owner"] == "bea"
    assert api.client.get("/api/v1/bots/ann-bot", headers=h["root"]).json()["owner"] == "ann"


def test_the_suffixed_runtime_id_is_derived_from_owner_and_name(world):
    import hashlib

    api, h = world
    created = api.client.post("/api/v1/bots", json={"id": "ann-bot", **SMA}, headers=h["bea"]).json()
    bea = _user_id(api, "bea")
    assert created["runtime_id"] == "ann-bot-" + hashlib.sha256(f"{bea}:ann-bot".encode()).hexdigest()[:8]


def test_a_bot_named_published_is_refused(world):
    api, h = world
    response = api.client.post("/api/v1/bots", json={"id": "published", **SMA}, headers=h["ann"])
    assert response.status_code == 422 and response.json()["error"]["field"] == "id"


# -- item 14: subscribers follow published bots only -------------------------------------------------------

def test_only_published_bots_can_be_followed(world):
    api, h = world
    api.bot(h["bea"], "bea-bot")
    hidden = api.client.post("/api/v1/subscriptions", json={"bot_id": "bea-bot"}, headers=h["sam"])
    assert hidden.status_code == 404 and hidden.json()["error"] == {                     # was 201
        "code": "not_found", "message": "bot 'bea-bot' not found", "field": "bot_id"}
    missing = api.client.post("/api/v1/subscriptions", json={"bot_id": "nope"}, headers=h["sam"])
    assert missing.json()["error"]["message"] == "bot 'nope' not found"                  # the same answer
    listed = api.client.get("/api/v1/bots/published", headers=h["sam"])
    assert listed.status_code == 200
    assert [(b["runtime_id"], b["owner"], b["strategy"], b["symbol"]) for b in listed.json()] == [
        ("ann-bot", "ann", "sma_cross", "SPY")]
    assert api.client.get("/api/v1/bots/published").status_code == 401
    _publish_bot(api, h["bea"], "bea-bot")
    assert _subscribe(api, h["sam"], "bea-bot")["bot_id"] == "bea-bot"
    # publishing is the owner's: another trader's publish is a 404, a subscriber's a 403
    assert api.client.post("/api/v1/bots/bea-bot/unpublish", headers=h["ann"]).status_code == 404
    assert api.client.post("/api/v1/bots/bea-bot/unpublish", headers=h["sam"]).status_code == 403
    with Session(api.ctx.engine) as db:
        actions = list(db.scalars(select(AuditRow.action).where(AuditRow.subject == "bot:bea-bot")))
    assert actions == ["bot.create", "bot.publish"]


def test_an_unpublished_bot_stops_reaching_its_subscribers_on_rest(world):
    api, h = world
    _subscribe(api, h["sam"], "ann-bot")
    _set_plan(api, h["root"], "sam", "pro")
    publish(api.ctx.engine, "ann-bot", 1)
    assert _rest(api, h["sam"]) == [("ann-bot", 1)]
    assert api.client.post("/api/v1/bots/ann-bot/unpublish", headers=h["ann"]).json()["published"] is False
    publish(api.ctx.engine, "ann-bot", 2)
    assert _rest(api, h["sam"]) == []
    assert _rest(api, h["ann"]) == [("ann-bot", 1), ("ann-bot", 2)]   # the owner still sees them all
    assert api.client.get("/api/v1/bots/published", headers=h["sam"]).json() == []


def test_an_unpublished_bot_stops_reaching_a_connected_stream(world):
    api, h = world
    api.bot(h["bea"], "bea-bot")
    _publish_bot(api, h["bea"], "bea-bot")
    _subscribe(api, h["sam"], "ann-bot")
    _subscribe(api, h["sam"], "bea-bot")
    _set_plan(api, h["root"], "sam", "pro")
    with _ws(api, h["sam"]) as sam_ws, _ws(api, h["ann"]) as ann_ws:
        publish(api.ctx.engine, "ann-bot", 1)
        assert sam_ws.receive_json()["signal"]["ts"] == 1
        assert ann_ws.receive_json()["signal"]["ts"] == 1
        api.client.post("/api/v1/bots/ann-bot/unpublish", headers=h["ann"])
        publish(api.ctx.engine, "ann-bot", 2)
        publish(api.ctx.engine, "bea-bot", 3)
        assert sam_ws.receive_json()["signal"]["ts"] == 3      # ann-bot's 2 went past the subscriber
        assert ann_ws.receive_json()["signal"]["ts"] == 2      # but not past its owner


def test_a_deleted_bot_is_unpublished(world):
    api, h = world
    assert api.client.delete("/api/v1/bots/ann-bot", headers=h["ann"]).status_code == 204
    assert api.client.get("/api/v1/bots/published", headers=h["sam"]).json() == []
    gone = api.client.post("/api/v1/subscriptions", json={"bot_id": "ann-bot"}, headers=h["sam"])
    assert gone.status_code == 404


# -- item 14: backtest quota and interrupted jobs ----------------------------------------------------------

BACKTEST = {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "data": "stocks/SPY_daily.csv"}


def _job(api, username: str, status: str) -> str:
    job_id = uuid.uuid4().hex
    with api.ctx.engine.begin() as c:
        c.execute(insert(BacktestJobRow.__table__).values(id=job_id, owner_id=_user_id(api, username),
                                                          status=status, request=BACKTEST))
    return job_id


def test_a_user_at_the_backtest_quota_gets_429_with_retry_after(make_api):
    api = make_api(backtest_quota=2)
    ann, bea = api.user("ann", "trader"), api.user("bea", "trader")
    _job(api, "ann", "running")
    _job(api, "ann", "queued")
    _job(api, "ann", "done")      # finished jobs do not count
    _job(api, "ann", "failed")
    over = api.client.post("/api/v1/backtests", json=BACKTEST, headers=ann)
    assert over.status_code == 429, over.text                               # was 202
    assert int(over.headers["Retry-After"]) > 0
    assert over.json()["error"]["code"] == "rate_limited"
    assert api.client.post("/api/v1/backtests", json=BACKTEST, headers=bea).status_code == 202  # per user


def test_jobs_a_restart_interrupted_are_marked_failed_at_start(make_api, tmp_path, migrated_db):
    import shutil

    shutil.copyfile(migrated_db, tmp_path / "restart.db")
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    before = make_api(url=url)
    ann = before.user("ann", "trader")
    running, queued, done = _job(before, "ann", "running"), _job(before, "ann", "queued"), _job(before, "ann", "done")
    after = make_api(url=url)      # a new process on the same store
    ann = after.login("ann")
    for job_id in (running, queued):
        job = after.client.get(f"/api/v1/backtests/{job_id}", headers=ann).json()
        assert (job["status"], job["error"]) == ("failed", "interrupted by a server restart; resubmit")
        assert job["finished_at"] is not None
    assert after.client.get(f"/api/v1/backtests/{done}", headers=ann).json()["status"] == "done"


# -- item 14: the spec documents 400 and 405 ---------------------------------------------------------------

def test_every_operation_documents_400_and_405(api):
    spec = api.client.get("/api/v1/openapi.json").json()
    missing = [f"{method.upper()} {path}: {code}"
               for path, item in spec["paths"].items() for method, operation in item.items()
               if method in ("get", "put", "post", "delete", "patch")
               for code in ("400", "405") if code not in operation["responses"]]
    assert missing == []


def test_a_wrong_method_is_a_405_in_the_documented_shape(api):
    response = api.client.patch("/api/v1/bots")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# -- migration 0007 on a store with rows ------------------------------------------------------------------



def test_migration_0007_keeps_existing_bots_signals_and_users(database_url):
    from sqlalchemy import text

    from engine.store.db import make_engine

    migrate_store(database_url, "0006")
    engine = make_engine(database_url)
    with engine.begin() as c:
        c.execute(text("INSERT INTO users (username, password_hash, role, disabled, created_at) "
                       "VALUES ('ann', 'x', 'trader', false, CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO bots (id, name, strategy, account_id, config, status, next_order_seq, checkpoint,"
                       " created_at) VALUES ('old', 'old', 'sma_cross', 'default', '{}', 'STOPPED', 0, -1, "
                       "CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO bot_configs (bot_id, version, owner_id, config, created_by, created_at) "
                       "SELECT 'old', 1, id, '{}', 'ann', CURRENT_TIMESTAMP FROM users"))
        c.execute(text("INSERT INTO signals (bot_id, symbol, ts, direction, payload) "
                       f"VALUES ('old', 'SPY', {REPLAYED_TS}, 1, '{{}}')"))
    engine.dispose()
    migrate_store(database_url, "head")
    engine = make_engine(database_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT plan FROM users")).scalar_one() == "free"
        assert c.execute(text("SELECT bot_id, runtime_id FROM bot_configs")).one() == ("old", "old")
        assert c.execute(text("SELECT published_ns FROM signals")).scalar_one() == REPLAYED_TS
        assert c.execute(text("SELECT published_at FROM bots")).scalar_one() is None
    engine.dispose()
    migrate_store(database_url, "0006", down=True)
    engine = make_engine(database_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT bot_id FROM bot_configs")).scalar_one() == "old"
    engine.dispose()
