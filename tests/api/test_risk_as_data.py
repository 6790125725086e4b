"""No file is read on a user's say-so (issue 11, item 1).

Bot configs that arrive through the API carry their risk limits as data; only the operator's own
runtime YAML (`tickbridge run FILE`) may name a risk file, which its loader reads into the config.
No error quotes a file's contents, and a path an API caller named is never repeated back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from engine.errors import ConfigError
from engine.risk import load_risk_config
from live.config import load_runtime_config
from engine.store.models import BotConfigRow, BotRow, OrderRow, UserRow
from tests.api.conftest import SMA
from tests.conftest import ROOT

SECRET = "hunter2-do-not-echo"


@pytest.fixture
def secret_file(tmp_path) -> Path:
    """A YAML file a trader should never get to read: a mapping, so the old code parsed it."""
    path = tmp_path / "operator-secrets.yaml"
    path.write_text(f"default_bot:\n  max_order_qty: {SECRET}\n")
    return path


def _leaks(response, *needles: str) -> list[str]:
    return [n for n in needles if n in response.text]


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/shadow", "secret"], ids=["passwd", "shadow", "fixture"])
def test_a_risk_path_through_the_api_is_refused_without_reading_or_echoing_it(api, secret_file, path):
    ann = api.user("ann", "trader")
    path = str(secret_file) if path == "secret" else path
    response = api.client.post("/api/v1/bots", json={"id": "b1", **SMA, "risk": path}, headers=ann)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "risk"
    assert error["message"] == ("risk limits must be given as data through the API; "
                                "paths are read only from the operator's own files")
    assert _leaks(response, path, SECRET, "root:") == []
    # and nothing was stored that a later start could read
    assert api.client.get("/api/v1/bots/b1", headers=ann).status_code == 404


def test_an_update_naming_a_risk_path_is_refused_too(api, secret_file):
    ann = api.user("ann", "trader")
    api.bot(ann, "b1")
    response = api.client.put("/api/v1/bots/b1", json={**SMA, "risk": str(secret_file)}, headers=ann)
    assert response.status_code == 422 and response.json()["error"]["field"] == "risk"
    assert _leaks(response, str(secret_file), SECRET) == []


def test_a_stored_config_that_still_names_a_path_does_not_start(api, secret_file):
    """A version stored before risk became data: start refuses it, names neither path nor contents."""
    ann = api.user("ann", "trader")
    api.bot(ann, "old-bot")
    with Session(api.ctx.engine) as db:
        owner = db.scalar(select(UserRow.id).where(UserRow.username == "ann"))
        db.execute(insert(BotConfigRow.__table__).values(
            bot_id="old-bot", runtime_id="old-bot", version=2, owner_id=owner, created_by="ann",
            config={"id": "old-bot", **SMA, "risk": str(secret_file)}))
        db.commit()
    response = api.client.post("/api/v1/bots/old-bot/start", headers=ann)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "risk"
    assert _leaks(response, str(secret_file), secret_file.name, SECRET) == []
    assert api.bots.bots() == []  # the runtime was never asked


@pytest.mark.parametrize(("risk", "field", "value"), [
    ({"default_bot": {"max_order_qty": "-123456"}}, "risk.default_bot.max_order_qty", "-123456"),
    ({"default_bot": {"market_hours": ["27:99-28:00"]}}, "risk.default_bot.market_hours.0", "27:99"),
    ({"default_bot": {"market_weekdays": ["FUNDAY"]}}, "risk.default_bot.market_weekdays.0", "FUNDAY"),
    ({"account": {"max_open_orders": "many-many"}}, "risk.account.max_open_orders", "many-many"),
    ({"default_bot": {"max_order_quantity": 5}}, "risk.default_bot.max_order_quantity", None),
    (["not", "a", "mapping"], "risk", None),
], ids=["negative", "window", "weekday", "count", "unknown", "list"])
def test_bad_risk_data_is_refused_naming_the_field_not_the_value(api, risk, field, value):
    ann = api.user("ann", "trader")
    response = api.client.post("/api/v1/bots", json={"id": "b1", **SMA, "risk": risk}, headers=ann)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    if value is not None:
        assert value not in response.json()["error"]["message"]


def test_risk_limits_as_data_are_stored_and_returned_as_given(api):
    ann = api.user("ann", "trader")
    risk = {"account": {"max_open_orders": 5}, "default_bot": {"max_order_qty": "1000", "market_weekdays": ["mon"]}}
    created = api.bot(ann, "b1", risk=risk)
    assert created["config"]["risk"] == {"account": {"max_open_orders": 5},
                                         "default_bot": {"max_order_qty": "1000", "market_weekdays": ["MON"]}}
    assert api.client.post("/api/v1/bots/b1/start", headers=ann).status_code == 200
    assert api.bots.status("b1")["state"] == "RUNNING"  # the runtime takes it as it is (the limits acting in
    # the running bot: test_limits_given_as_data_deny_orders_in_the_running_bot)


# -- the real runtime: a limit given as data takes effect ----------------------------------------------

@pytest.fixture(scope="module")
def ticks(tmp_path_factory) -> Path:
    from tests.integration.runtime_helpers import tick_dir

    return tick_dir(tmp_path_factory.mktemp("ticks"))


@pytest.fixture
def live_api(make_api, ticks):
    from live.config import FeedConfig

    return make_api(feed=FeedConfig(path=str(ticks)))  # as fast as it goes: the test waits for the feed's end


FX = {"strategy": "sma_cross", "symbol": "EURUSD", "venue": "paper", "bar": "1min", "cash": "100000",
      "params": {"fast": 2, "slow": 3, "mode": "long_short", "fixed_size": 5000}}


def test_limits_given_as_data_deny_orders_in_the_running_bot(live_api):
    api = live_api
    ann = api.user("ann", "trader")
    bea = api.user("bea", "trader")
    api.bot(ann, "fx", **FX, risk={"default_bot": {"max_order_qty": 1000}})   # every order is 5000: denied
    api.bot(bea, "fx-free", **FX)                                               # the same bot without limits
    for headers, name in ((ann, "fx"), (bea, "fx-free")):
        assert api.client.post(f"/api/v1/bots/{name}/start", headers=headers).status_code == 200
    assert api.bots.wait(120), "the replays did not end"
    assert api.bots.errors() == {}
    limited = api.client.get("/api/v1/bots/fx/orders", headers=ann, params={"limit": 1000}).json()
    free = api.client.get("/api/v1/bots/fx-free/orders", headers=bea, params={"limit": 1000}).json()
    assert limited and free
    assert {(o["state"], o["reason"]) for o in limited} == {("DENIED", "MAX_ORDER_QTY")}
    assert "FILLED" in {o["state"] for o in free}
    assert api.client.get("/api/v1/bots/fx/fills", headers=ann).json() == []


# -- the operator's own YAML may name a file ------------------------------------------------------------

def _runtime_yaml(path: Path, ticks: Path, database_url: str, risk: object, bot_id: str = "fx1") -> Path:
    bot = {"id": bot_id, **FX, "risk": risk}
    path.write_text(yaml.safe_dump({"bots": [bot], "feed": {"path": str(ticks)}, "database_url": database_url}))
    return path


def test_the_runtime_yaml_reads_a_risk_file_relative_to_itself_then_the_cwd(tmp_path, monkeypatch, ticks):
    monkeypatch.chdir(ROOT)
    (tmp_path / "tight.yaml").write_text("default_bot:\n  max_order_qty: 1000\n")
    beside = load_runtime_config(_runtime_yaml(tmp_path / "a.yaml", ticks, "sqlite://", "tight.yaml"))
    assert beside.bots[0].risk.for_bot("fx1").max_order_qty == 1000
    bundled = load_runtime_config(_runtime_yaml(tmp_path / "b.yaml", ticks, "sqlite://", "config/risk/default.yaml"))
    assert bundled.bots[0].risk == load_risk_config(ROOT / "config" / "risk" / "default.yaml")
    assert load_runtime_config(ROOT / "config" / "bots" / "demo.yaml").bots[1].risk is not None


def test_tickbridge_run_with_a_yaml_naming_the_bundled_risk_file_trades_under_it(tmp_path, monkeypatch, ticks,
                                                                                 capsys):
    from app.cli import main
    from engine.store.db import make_engine

    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path / 'run.db'}"
    (tmp_path / "tight.yaml").write_text("default_bot:\n  max_order_qty: 1000\n")
    config = _runtime_yaml(tmp_path / "bots.yaml", ticks, url, "config/risk/default.yaml")
    monkeypatch.setattr(sys, "argv", ["tickbridge", "run", str(config), "--state-dir", str(tmp_path / "var")])
    main()
    (session,) = (tmp_path / "var" / "sessions").iterdir()
    recorded = json.loads((session / "meta.json").read_text())["bots"]["fx1"]["config"]["risk"]
    assert recorded["default_bot"]["max_order_qty"] == "100000"  # the file's limits, as data
    # a tighter file: the same bot's orders are denied, so the limits are in force
    config = _runtime_yaml(tmp_path / "bots.yaml", ticks, url, "tight.yaml", bot_id="fx2")
    monkeypatch.setattr(sys, "argv", ["tickbridge", "run", str(config), "--state-dir", str(tmp_path / "var")])
    main()
    engine = make_engine(url)
    with Session(engine) as db:
        ok = {o.state for o in db.scalars(select(OrderRow).where(OrderRow.bot_id == "fx1"))}
        tight = {(o.state, o.reason) for o in db.scalars(select(OrderRow).where(OrderRow.bot_id == "fx2"))}
        assert db.get(BotRow, "fx2") is not None
    engine.dispose()
    assert "FILLED" in ok and tight == {("DENIED", "MAX_ORDER_QTY")}


def test_a_runtime_yaml_naming_a_missing_risk_file_says_which(tmp_path, monkeypatch, ticks, capsys):
    from app.cli import main

    monkeypatch.chdir(ROOT)
    config = _runtime_yaml(tmp_path / "bots.yaml", ticks, "sqlite://", "config/risk/nope.yaml")
    with pytest.raises(ConfigError) as refused:
        load_runtime_config(config)
    assert refused.value.field == "bots.0.risk"
    assert "config/risk/nope.yaml" in refused.value.message and "not found" in refused.value.message
    monkeypatch.setattr(sys, "argv", ["tickbridge", "run", str(config)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2 and "nope.yaml" in capsys.readouterr().err


# -- the risk file loader quotes no contents ------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"default_bot:\n  max_order_qty: {SECRET}\n",
    f"default_bot: [{SECRET}\n",
    f"default_bot:\n  market_hours: ['{SECRET}']\n",
    f"account:\n  max_open_orders: {SECRET}\n",
], ids=["value", "yaml-syntax", "window", "count"])
def test_risk_file_errors_never_quote_the_files_contents(tmp_path, text):
    path = tmp_path / "risk.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_risk_config(path)
    assert SECRET not in str(refused.value)
    assert str(path) in refused.value.message  # the operator's own file: naming it helps


def test_a_file_that_is_not_text_is_refused_without_its_bytes(tmp_path):
    path = tmp_path / "risk.yaml"
    path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError) as refused:
        load_risk_config(path)
    assert SECRET not in str(refused.value) and "0xff" not in str(refused.value)
