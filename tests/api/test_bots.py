"""Bot configs: validated by the runtime's parser (422 naming the field), versioned, controlled
through the BotControl, and their store data readable per bot."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from engine.store.models import AuditRow, BotRow, DailyPnlRow, FillRow, OrderRow, PositionRow
from tests.api.conftest import SMA


def test_create_makes_the_bots_row_and_version_one(api):
    ann = api.user("ann", "trader")
    created = api.bot(ann, "spy-sma")
    assert (created["id"], created["version"], created["owner"]) == ("spy-sma", 1, "ann")
    assert created["config"]["params"] == {"fast": 5, "slow": 20}
    with Session(api.ctx.engine) as db:
        bot = db.get(BotRow, "spy-sma")
    assert (bot.strategy, bot.account_id, bot.status) == ("sma_cross", "default", "STOPPED")


@pytest.mark.parametrize(("change", "field"), [
    ({"params": {"fast": 30, "slow": 10}}, "params"),
    ({"params": {"fast": "x"}}, "params.fast"),
    ({"cash": "-5"}, "cash"),
    ({"strategy": "no_such"}, "strategy"),
    ({"venue": "nyse"}, "venue"),
    ({"id": "Has Spaces"}, "id"),
    ({"surprise": 1}, "surprise"),
    ({"bar": "1month"}, "bar"),
    ({"account": "nobody-has-it"}, "account"),
])
def test_a_malformed_config_is_refused_naming_the_field(api, change, field):
    ann = api.user("ann", "trader")
    response = api.client.post("/api/v1/bots", json={"id": "b1", **SMA, **change}, headers=ann)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)


def test_a_missing_field_is_named(api):
    ann = api.user("ann", "trader")
    response = api.client.post("/api/v1/bots", json={"id": "b1", "strategy": "sma_cross"}, headers=ann)
    assert response.status_code == 422 and response.json()["error"]["field"] == "symbol"


def test_an_existing_bot_id_is_a_conflict(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    response = api.client.post("/api/v1/bots", json={"id": "b1", **SMA}, headers=ann)
    assert response.status_code == 409 and response.json()["error"]["field"] == "id"


def test_every_update_is_a_new_version_and_old_ones_stay_readable(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    updated = api.client.put("/api/v1/bots/b1", json={**SMA, "params": {"fast": 7, "slow": 40}}, headers=ann)
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert api.client.get("/api/v1/bots/b1", headers=ann).json()["config"]["params"] == {"fast": 7, "slow": 40}
    old = api.client.get("/api/v1/bots/b1", params={"version": 1}, headers=ann).json()
    assert (old["version"], old["config"]["params"]) == (1, {"fast": 5, "slow": 20})
    assert api.client.get("/api/v1/bots/b1/versions", headers=ann).json()["versions"] == [1, 2]
    assert api.client.get("/api/v1/bots/b1", params={"version": 9}, headers=ann).status_code == 404


def test_an_update_cannot_change_the_id_and_a_bad_one_keeps_the_old_version(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    assert api.client.put("/api/v1/bots/b1", json={**SMA, "id": "b2"}, headers=ann).json()["error"]["field"] == "id"
    bad = api.client.put("/api/v1/bots/b1", json={**SMA, "commission": "2"}, headers=ann)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "commission"
    assert api.client.get("/api/v1/bots/b1", headers=ann).json()["version"] == 1


def test_start_stop_kill_reach_the_runtime_and_are_audited(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    status = lambda: api.client.get("/api/v1/bots/b1/status", headers=ann).json()  # noqa: E731
    assert api.client.post("/api/v1/bots/b1/start", headers=ann).status_code == 200
    assert status()["state"] == "RUNNING" and api.bots.running() == ["b1"]  # the runtime runs it, under its id
    again = api.client.post("/api/v1/bots/b1/start", headers=ann)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert "already running" in again.json()["error"]["message"]
    assert api.client.post("/api/v1/bots/b1/kill", json={"reason": "drawdown"}, headers=ann).status_code == 200
    halted = status()
    assert (halted["state"], halted["halted"], halted["stop_reason"]) == ("HALTED", True, "KILLED")
    assert "drawdown" in halted["stop_message"] and api.bots.running() == []
    refused = api.client.post("/api/v1/bots/b1/start", headers=ann)  # a kill holds until a person resumes
    assert refused.status_code == 409 and "resume it first" in refused.json()["error"]["message"]
    with Session(api.ctx.engine) as db:
        actions = list(db.scalars(select(AuditRow.action).where(AuditRow.subject == "bot:b1").order_by(AuditRow.id)))
    assert actions == ["bot.create", "bot.start", "bot.kill"]  # a refused start is not audited


def test_a_running_bot_cannot_be_deleted_a_stopped_one_can(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    assert api.client.post("/api/v1/bots/b1/start", headers=ann).status_code == 200
    assert api.client.delete("/api/v1/bots/b1", headers=ann).status_code == 409
    assert api.client.post("/api/v1/bots/b1/stop", headers=ann).status_code == 200
    stopped = api.client.get("/api/v1/bots/b1/status", headers=ann).json()
    assert (stopped["state"], stopped["stop_reason"]) == ("STOPPED", "STOPPED") and api.bots.running() == []
    assert api.client.delete("/api/v1/bots/b1", headers=ann).status_code == 204
    assert api.client.get("/api/v1/bots/b1", headers=ann).status_code == 404
    assert api.client.get("/api/v1/bots", headers=ann).json() == []


def test_the_status_of_a_stopped_bot_says_a_later_kill_halted_it(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    assert api.client.post("/api/v1/bots/b1/start", headers=ann).status_code == 200
    assert api.client.post("/api/v1/bots/b1/stop", headers=ann).status_code == 200
    assert api.client.post("/api/v1/bots/b1/kill", json={"reason": "nightly"}, headers=ann).status_code == 200
    refused = api.client.post("/api/v1/bots/b1/start", headers=ann)
    assert refused.status_code == 409 and "halted by kill" in refused.json()["error"]["message"]
    status = api.client.get("/api/v1/bots/b1/status", headers=ann).json()
    assert (status["state"], status["halted"], status["stop_reason"]) == ("HALTED", True, "KILLED")
    assert "nightly" in status["stop_message"]


def test_a_killed_bot_the_runtime_still_holds_cannot_be_deleted_until_stopped(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    assert api.client.post("/api/v1/bots/b1/start", headers=ann).status_code == 200
    assert api.client.post("/api/v1/bots/b1/kill", json={"reason": "x"}, headers=ann).status_code == 200
    assert "b1" in api.bots.bots() and api.bots.status("b1")["state"] == "HALTED"  # halted, its thread alive
    deleted = api.client.delete("/api/v1/bots/b1", headers=ann)
    assert deleted.status_code == 409, "deleted while the runtime still runs it"
    assert api.client.post("/api/v1/bots/b1/stop", headers=ann).status_code == 200
    assert api.client.delete("/api/v1/bots/b1", headers=ann).status_code == 204


def _trading_history(engine, bot_id: str) -> None:
    with engine.begin() as c:
        c.execute(insert(OrderRow.__table__).values(
            client_order_id=f"{bot_id}-1", bot_id=bot_id, symbol="SPY", side="BUY", type="MARKET", qty=Decimal("3"),
            tif="GTC", reduce_only=False, tag="", state="FILLED", filled_qty=Decimal("3"),
            avg_fill_price=Decimal("401.25"), external=False, ts_init=1, ts_last=2))
        c.execute(insert(FillRow.__table__).values(
            venue="paper", execution_id="e1", client_order_id=f"{bot_id}-1", bot_id=bot_id, symbol="SPY", side="BUY",
            qty=Decimal("3"), price=Decimal("401.25"), fee=Decimal("0.12"), liquidity="TAKER", ts=2))
        c.execute(insert(PositionRow.__table__).values(
            bot_id=bot_id, symbol="SPY", qty=Decimal("3"), avg_price=Decimal("401.25"), realized_pnl=Decimal("10.5"),
            fees=Decimal("0.12"), cash=Decimal("8796.13"), updated_ts=2))
        for day, equity in ((date(2026, 1, 5), "10010.5"), (date(2026, 1, 6), "10021")):
            c.execute(insert(DailyPnlRow.__table__).values(
                account_id="default", bot_id=bot_id, day=day, realized=Decimal("10.5"), unrealized=Decimal("0"),
                fees=Decimal("0.12"), equity_close=Decimal(equity)))


def test_orders_fills_positions_pnl_and_equity_come_from_the_store(api):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    _trading_history(api.ctx.engine, "b1")
    get = lambda path: api.client.get(f"/api/v1/bots/b1/{path}", headers=ann).json()  # noqa: E731
    assert ([(o["client_order_id"], o["state"], o["avg_fill_price"]) for o in get("orders")]
            == [("b1-1", "FILLED", "401.25")])
    assert [(f["qty"], f["price"], f["fee"]) for f in get("fills")] == [("3", "401.25", "0.12")]
    assert get("positions")[0]["qty"] == "3"
    pnl = get("pnl")
    assert (pnl["realized"], pnl["fees"], len(pnl["days"])) == ("10.5", "0.12", 2)
    assert get("equity") == [{"day": "2026-01-05", "equity": "10010.5"}, {"day": "2026-01-06", "equity": "10021"}]


def test_an_order_a_crash_left_in_its_write_ahead_record_is_in_the_books_the_api_serves(api):
    """A bot process that died in its venue call left its last order in the write-ahead record
    (engine/store/write_ahead.py), not in `orders`: the API's read of the bot's books runs it first."""
    from engine.orders import Order, OrderSide, OrderState, OrderType
    from pathlib import Path

    from engine.store.journal import SqlJournal
    from tests.unit.test_write_ahead_record import unsettled

    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    journal = SqlJournal(api.ctx.engine, "b1", "PAPER")
    assert journal._writer is not None, "the API's store is a SQLite file here: the record path"
    order = Order("b1-00000001", "b1", "SPY", OrderSide.BUY, OrderType.MARKET, Decimal(3), 5)
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, 5))
    journal.write_ahead()
    journal.close()                     # no settle: the process is gone
    database = Path(api.ctx.engine.url.database)
    with Session(api.ctx.engine) as db:
        assert db.scalars(select(OrderRow)).all() == [] and list(unsettled(database)) == ["b1"]
    orders = api.client.get("/api/v1/bots/b1/orders", headers=ann).json()
    assert [(o["client_order_id"], o["state"]) for o in orders] == [("b1-00000001", "PENDING_SUBMIT")]
    assert unsettled(database) == {}
    assert len(api.client.get("/api/v1/bots/b1/orders", headers=ann).json()) == 1   # run once
