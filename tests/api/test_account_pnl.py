"""An account is the sum of its bots plus the rest (issue 14 item 2): GET /accounts/{id}/pnl shows
each bot's positions and P&L and the account's, and per symbol bots + external = the venue's;
POST /accounts/{id}/kill halts every bot of the account, here and in any other process.

The bots' books are rows as the runtime's journal writes them (positions, equity points); the
venue's positions are a snapshot as the runtime records it after reconciliation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.account_risk import account_key, account_risk_for, owner_account_key, record_venue_positions
from engine.risk import AccountLimits
from engine.store.models import AuditRow, EquityPointRow, PositionRow
from tests.unit.test_risk import Desk

TS = 1_700_000_000_000_000_000


def account(api: Any, headers: dict[str, str], name: str = "desk") -> dict[str, Any]:
    response = api.client.post("/api/v1/accounts", json={"name": name, "venue": "paper", "credentials": {}},
                               headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def position(api: Any, bot_id: str, symbol: str, qty: str, realized: str = "0", fees: str = "0") -> None:
    with Session(api.ctx.engine) as db:
        db.add(PositionRow(bot_id=bot_id, symbol=symbol, qty=Decimal(qty), avg_price=Decimal("100"),
                           realized_pnl=Decimal(realized), fees=Decimal(fees), cash=Decimal(0), updated_ts=TS))
        db.commit()


def equity_point(api: Any, bot_id: str, equity: str, unrealized: str) -> None:
    with Session(api.ctx.engine) as db:
        db.add(EquityPointRow(bot_id=bot_id, ts=TS, equity=Decimal(equity), cash=Decimal(equity),
                              realized=Decimal(0), unrealized=Decimal(unrealized), position=Decimal(0)))
        db.commit()


def pnl(api: Any, headers: dict[str, str], account_id: int) -> dict[str, Any]:
    response = api.client.get(f"/api/v1/accounts/{account_id}/pnl", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_bots_positions_plus_external_equal_the_venues(api):
    ann = api.user("ann", "trader")
    desk = account(api, ann)
    api.bot(ann, "trend", account="desk")
    api.bot(ann, "revert", account="desk")
    api.bot(ann, "elsewhere")                                   # on the default account: not this one's
    position(api, "trend", "BTC/USDT", "0.5", realized="12.50", fees="1.25")
    position(api, "revert", "BTC/USDT", "0.2", realized="-2.00", fees="0.75")
    position(api, "revert", "ETH/USDT", "-1", fees="0.10")
    position(api, "elsewhere", "BTC/USDT", "9")
    equity_point(api, "trend", "10040.00", "30.00")
    before = pnl(api, ann, desk["id"])
    assert [(p["symbol"], p["bots"], p["venue"], p["external"]) for p in before["positions"]] == [
        ("BTC/USDT", "0.7", None, None), ("ETH/USDT", "-1", None, None)]   # venue unknown: no external
    assert before["venue_ts"] is None

    record_venue_positions(api.ctx.engine, owner_account_key(desk["owner_id"], "desk"),
                           {"BTC/USDT": Decimal("0.8"), "ETH/USDT": Decimal("2"), "SOL/USDT": Decimal("5")}, TS)
    body = pnl(api, ann, desk["id"])
    rows = {p["symbol"]: p for p in body["positions"]}
    assert {s: (p["bots"], p["venue"], p["external"]) for s, p in rows.items()} == {
        "BTC/USDT": ("0.7", "0.8", "0.1"),      # 0.5 + 0.2 of the bots, 0.1 someone else's
        "ETH/USDT": ("-1", "2", "3"),           # the bots are short 1, the account long 2
        "SOL/USDT": ("0", "5", "5")}            # held by hand only
    for p in rows.values():
        assert Decimal(p["bots"]) + Decimal(p["external"]) == Decimal(p["venue"])
    assert body["venue_ts_ns"] == TS and body["venue_ts"] == "2023-11-14T22:13:20.000000000Z"
    bots = {b["bot_id"]: b for b in body["bots"]}
    assert set(bots) == {"trend", "revert"}
    assert (bots["trend"]["realized"], bots["trend"]["fees"], bots["trend"]["equity"],
            bots["trend"]["unrealized"]) == ("12.5", "1.25", "10040", "30")
    assert (bots["revert"]["realized"], bots["revert"]["fees"], bots["revert"]["equity"]) == ("-2", "0.85", None)
    assert [(p["symbol"], p["qty"]) for p in bots["revert"]["positions"]] == [("BTC/USDT", "0.2"),
                                                                              ("ETH/USDT", "-1")]
    assert tuple(Decimal(body[k]) for k in ("realized", "fees", "unrealized")) == (
        Decimal("10.5"), Decimal("2.10"), Decimal(30))   # 12.5 - 2; 1.25 + 0.85; trend's last bar close


def test_the_pnl_shows_each_bots_share_of_the_accounts_risk(api):
    ann = api.user("ann", "trader")
    desk = account(api, ann)
    api.bot(ann, "trend", account="desk")
    shared = account_risk_for(api.ctx.engine, owner_account_key(desk["owner_id"], "desk"), AccountLimits())
    bot = Desk(account=shared, bot_id="trend")
    bot.rest("BUY", "3", limit="100.00")                      # 300 of exposure, 1 open order, published
    risk = pnl(api, ann, desk["id"])["bots"][0]["risk"]
    assert (risk["exposure"], risk["open_orders"], risk["stale"]) == ("300", 1, False)


def test_another_owners_account_of_the_same_name_is_another_account(api):
    ann, bob = api.user("ann", "trader"), api.user("bob", "trader")
    ann_desk, bob_desk = account(api, ann), account(api, bob)
    api.bot(ann, "trend", account="desk")
    api.bot(bob, "grid", account="desk")
    position(api, "trend", "BTC/USDT", "0.5")
    position(api, "grid", "BTC/USDT", "3")
    assert [p["bots"] for p in pnl(api, ann, ann_desk["id"])["positions"]] == ["0.5"]
    assert [p["bots"] for p in pnl(api, bob, bob_desk["id"])["positions"]] == ["3"]
    assert api.client.get(f"/api/v1/accounts/{ann_desk['id']}/pnl", headers=bob).status_code == 404
    subscriber = api.user("sue", "subscriber")
    assert api.client.get(f"/api/v1/accounts/{ann_desk['id']}/pnl", headers=subscriber).status_code == 403


def status(api: Any, headers: dict[str, str], bot: str) -> str:
    response = api.client.get(f"/api/v1/bots/{bot}/status", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["state"]


def test_account_kill_halts_every_bot_of_the_account_and_is_audited(api):
    ann, bob = api.user("ann", "trader"), api.user("bob", "trader")
    desk = account(api, ann)
    api.bot(ann, "trend", account="desk")
    api.bot(ann, "revert", account="desk")
    api.bot(ann, "elsewhere")
    for bot in ("trend", "elsewhere"):
        assert api.client.post(f"/api/v1/bots/{bot}/start", headers=ann).status_code == 200
    key = owner_account_key(desk["owner_id"], "desk")
    # a bot of the account in another process: its own account object on the same store
    other = Desk(account=account_risk_for(api.ctx.engine, key, AccountLimits()), bot_id="revert")
    assert other.check("BUY", "1") is None

    assert api.client.post(f"/api/v1/accounts/{desk['id']}/kill", headers=bob).status_code == 404
    sue = api.user("sue", "subscriber")
    assert api.client.post(f"/api/v1/accounts/{desk['id']}/kill", headers=sue).status_code == 403
    response = api.client.post(f"/api/v1/accounts/{desk['id']}/kill", json={"reason": "venue outage"}, headers=ann)
    assert response.status_code == 200, response.text
    assert response.json()["killed"] == ["trend"]                       # the running bot of the account
    assert status(api, ann, "trend") == "HALTED"                        # cancelled, flattened, halted
    assert status(api, ann, "elsewhere") == "RUNNING"                   # another account's bot
    assert other.check("BUY", "1") == "ACCOUNT:TRADING_HALTED"          # the rest: at their next check
    assert pnl(api, ann, desk["id"])["state"]["state"] == "HALTED"
    with Session(api.ctx.engine) as db:
        audit = db.scalars(select(AuditRow).where(AuditRow.action == "account.kill")).one()
    assert (audit.actor, audit.subject, audit.detail["reason"]) == ("ann", f"account:{desk['id']}", "venue outage")

    assert api.client.post(f"/api/v1/accounts/{desk['id']}/resume", headers=ann).status_code == 200
    assert other.check("BUY", "1") is None
    assert api.client.post(f"/api/v1/accounts/{desk['id']}/resume", headers=ann).status_code == 409


def test_a_bad_venue_snapshot_is_refused_naming_the_symbol(api):
    with pytest.raises(ValueError, match="BTC/USDT"):
        record_venue_positions(api.ctx.engine, "1:desk", {"BTC/USDT": Decimal("NaN")}, TS)
    with pytest.raises(ValueError, match="ETH"):
        record_venue_positions(api.ctx.engine, "1:desk", {"ETH": 0.5}, TS)   # a float: not exact


def test_the_runtime_keys_an_api_bots_account_as_the_api_does(api):
    ann = api.user("ann", "trader")
    desk = account(api, ann)
    api.bot(ann, "trend", account="desk")
    assert account_key(api.ctx.engine, "trend", "desk") == owner_account_key(desk["owner_id"], "desk")
    assert account_key(api.ctx.engine, "cli-bot", "desk") == "desk"   # a bot with no API owner: the name
