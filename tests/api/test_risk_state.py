"""GET /bots/{id}/status carries the bot's risk state (issue 19: the trader sees it): the gate's
state and why, each limit's current use against the limit, how many orders it denied in this run
and the last denial's reason; the runner copies it on the bot's thread (live.runner.risk_state).

The real runtime on the bundled EURUSD day replayed at 600x (as tests/api/test_runtime.py): the
bot's first orders come within a second; every wait polls for what it needs, its timeout only
turns a hang into a failure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.api.test_runtime import BOT, REPLAY, until

LIMITS = {"max_position_qty": "100000", "daily_loss_limit": "250", "max_open_orders": 3}


def _limits(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in status["risk"]["limits"]}


def test_the_status_shows_the_limits_use_and_the_orders_the_gate_denied(make_api):
    api = make_api(feed=REPLAY)
    ann = api.user("ann", "trader")
    tight = {**BOT, "id": "tight", "risk": {"default_bot": {**LIMITS, "max_order_qty": "0.5"}}}
    assert api.client.post("/api/v1/bots", json=tight, headers=ann).status_code == 201
    get = lambda path: api.client.get(f"/api/v1/bots/tight/{path}", headers=ann).json()  # noqa: E731
    assert get("status")["risk"] is None  # never run here: nothing measured yet
    assert api.client.post("/api/v1/bots/tight/start", headers=ann).status_code == 200
    status = until(lambda: (s := get("status"))["risk"]["denials"] >= 2 and s, "two denied orders")
    risk = status["risk"]
    assert (risk["state"], risk["account_state"]) == ("ACTIVE", "ACTIVE")
    assert risk["last_denial"]["reason"] == "MAX_ORDER_QTY"  # 5,000 units each, over the 0.5 limit
    limits = _limits(status)
    assert limits["position_qty"] == {"name": "position_qty", "used": "0", "limit": "100000"}  # nothing got through
    assert limits["open_orders"] == {"name": "open_orders", "used": 0, "limit": 3}
    assert limits["daily_loss"]["limit"] == "250" and limits["gross_exposure"]["limit"] is None

    killed = api.client.post("/api/v1/bots/tight/kill", json={"reason": "enough"}, headers=ann)
    assert killed.status_code == 200, killed.text
    halted = until(lambda: (s := get("status"))["risk"]["state"] == "HALTED" and s["risk"], "the halt")
    assert halted["reason"] == "KILL_SWITCH:enough" and halted["since_ns"] > 0 and halted["since"].endswith("Z")
    assert api.client.post("/api/v1/bots/tight/stop", headers=ann).status_code == 200
    # what the runner counted is what the store holds: every denial, the newest one last
    final = get("status")["risk"]
    denied = get("orders?state=DENIED&limit=1000")
    assert final["denials"] == len(denied) >= 2
    assert final["last_denial"]["client_order_id"] == denied[0]["client_order_id"]  # newest first
    assert final["last_denial"]["ts"].endswith("Z") and isinstance(final["last_denial"]["ts_ns"], int)


def test_the_status_measures_the_position_and_exposure_the_bot_holds(make_api):
    api = make_api(feed=REPLAY)
    ann = api.user("ann", "trader")
    roomy = {**BOT, "id": "roomy", "risk": {"default_bot": {**LIMITS, "max_gross_exposure": "1000000"}}}
    assert api.client.post("/api/v1/bots", json=roomy, headers=ann).status_code == 201
    get = lambda path: api.client.get(f"/api/v1/bots/roomy/{path}", headers=ann).json()  # noqa: E731
    assert api.client.post("/api/v1/bots/roomy/start", headers=ann).status_code == 200
    status = until(lambda: (s := get("status"))["position"] and Decimal(s["position"]) != 0 and s, "a position")
    limits = _limits(status)
    held = abs(Decimal(status["position"]))
    assert Decimal(limits["position_qty"]["used"]) == held  # the same snapshot: the position it reports
    exposure = Decimal(limits["gross_exposure"]["used"])
    assert exposure >= held  # EURUSD above 1: 5,000 units are worth more than 5,000
    assert limits["gross_exposure"]["limit"] == "1000000"
    assert status["risk"]["denials"] == 0 and status["risk"]["last_denial"] is None
    assert api.client.post("/api/v1/bots/roomy/stop", headers=ann).status_code == 200
