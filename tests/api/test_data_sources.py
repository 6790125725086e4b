"""A paper bot's market data is chosen by name from the server's data directories: listed by
GET /data-sources, named in the bot's `data`, never a path. The OpenAPI example bot starts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from live.config import FeedConfig
from live.feed import BUNDLED_DATA, set_data_dirs
from tests.api.conftest import Api

TICKS = BUNDLED_DATA / "ticks" / "EURUSD_fxcm_20140505.csv.gz"
BOT = {"id": "fx", "strategy": "sma_cross", "params": {"fast": 3, "slow": 8}, "symbol": "EURUSD", "venue": "paper"}


@pytest.fixture(autouse=True)
def _process_data_dirs():
    yield
    set_data_dirs(None)  # create_app installed a test's directories for the process: not for the next test


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A data directory of its own: a tick source in a subfolder, a bar source, and a file that is
    not market data."""
    root = tmp_path / "market"
    (root / "fx").mkdir(parents=True)
    shutil.copyfile(TICKS, root / "fx" / "EURUSD_mine.csv.gz")
    shutil.copyfile(BUNDLED_DATA / "stocks" / "SPY_daily.csv", root / "SPY_daily.csv")
    (root / "notes.txt").write_text("not market data\n")
    return root


FAST = FeedConfig(path=str(BUNDLED_DATA / "ticks"))  # as fast as it replays: the tests wait for a fill


@pytest.fixture
def runtime_api(make_api, data_dir) -> Api:
    return make_api(feed=FAST, data_dirs=(data_dir,))


def _wait(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_bundled_sources_are_listed_by_name_with_what_they_hold_and_no_path(module_api):
    ann = module_api.user("ann-lister", "trader")
    assert module_api.client.get("/api/v1/data-sources").status_code == 401
    listed = module_api.client.get("/api/v1/data-sources", headers=ann)
    assert listed.status_code == 200, listed.text
    by_name = {s["name"]: s for s in listed.json()}
    ticks = by_name["EURUSD_fxcm_20140505"]
    assert (ticks["symbols"], ticks["kind"], ticks["rows"]) == (["EURUSD"], "ticks", 58143)
    assert ticks["first"].startswith("2014-05-05T00:00:03.074") and ticks["last"].startswith("2014-05-05T23:59:58.807")
    assert ticks["first_ns"] == 1399248003074000000
    spy = by_name["SPY_daily"]
    assert (spy["kind"], spy["rows"], spy["period"], spy["first"][:10]) == ("bars", 5241, "1D", "1999-11-01")
    assert "README" not in listed.text and "convert_lean_ticks" not in listed.text
    assert str(BUNDLED_DATA) not in listed.text and ".csv" not in listed.text


def test_a_bot_names_a_source_of_the_configured_directories_and_trades_on_it(runtime_api, data_dir):
    api = runtime_api
    ann = api.user("ann", "trader")
    names = [s["name"] for s in api.client.get("/api/v1/data-sources", headers=ann).json()]
    assert names == ["EURUSD_mine", "SPY_daily"]  # notes.txt is no market data: not a source
    created = api.client.post("/api/v1/bots", json={**BOT, "data": "EURUSD_mine"}, headers=ann)
    assert created.status_code == 201, created.text
    assert created.json()["config"]["data"] == "EURUSD_mine"
    assert api.client.post("/api/v1/bots/fx/start", headers=ann).status_code == 200
    _wait(lambda: api.client.get("/api/v1/bots/fx/fills", headers=ann).json(), "a fill")
    assert api.client.get("/api/v1/bots/fx/status", headers=ann).json()["ticks"] > 0


@pytest.mark.parametrize("value", ["../ticks/EURUSD_fxcm_20140505.csv.gz", "/etc/passwd", "fx/EURUSD_mine",
                                   "..", "EURUSD_mine.csv.gz", "no_such_source_7f3a", "outside", "outside_dir",
                                   "C:\\data\\x.csv", "EURUSD..mine"])
def test_a_path_or_an_unknown_name_is_refused_naming_the_field_and_never_echoed(runtime_api, data_dir, tmp_path,
                                                                                 value):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "EURUSD_x.csv").write_text("time,bid,ask\n2020-01-01T00:00:00Z,1.1,1.2\n")
    (data_dir / "outside.csv").symlink_to(secret / "EURUSD_x.csv")   # a file leading out of the data directory
    (data_dir / "outside_dir").symlink_to(secret, target_is_directory=True)
    api = runtime_api
    ann = api.user("ann", "trader")
    names = [s["name"] for s in api.client.get("/api/v1/data-sources", headers=ann).json()]
    assert "outside" not in names and "EURUSD_x" not in names
    refused = api.client.post("/api/v1/bots", json={**BOT, "data": value}, headers=ann)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "data"
    assert value not in refused.text and str(secret) not in refused.text
    assert api.client.get("/api/v1/bots/fx", headers=ann).status_code == 404  # nothing was created
    put = api.client.put("/api/v1/bots/fx", json={**BOT, "data": value}, headers=ann)
    assert put.status_code in (404, 422)


def test_a_data_source_is_for_paper_bots_only(runtime_api):
    ann = runtime_api.user("ann", "trader")
    refused = runtime_api.client.post("/api/v1/bots", json={**BOT, "venue": "ccxt", "data": "EURUSD_mine"},
                                      headers=ann)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "data"


def test_the_openapi_example_bot_is_created_and_then_starts_and_trades(make_api):
    api = make_api(feed=FAST)  # the bundled data directory, as a fresh server has
    ann = api.user("ann", "trader")
    spec = api.client.get("/api/v1/openapi.json").json()
    body = spec["paths"]["/api/v1/bots"]["post"]["requestBody"]["content"]["application/json"]
    example = (body["schema"]["examples"][0] if "examples" in body["schema"]
               else next(iter(body["examples"].values()))["value"])
    created = api.client.post("/api/v1/bots", json=example, headers=ann)
    assert created.status_code == 201, created.text
    bot_id = created.json()["id"]
    started = api.client.post(f"/api/v1/bots/{bot_id}/start", headers=ann)
    assert started.status_code == 200, started.text
    _wait(lambda: api.client.get(f"/api/v1/bots/{bot_id}/fills", headers=ann).json(), "the example bot's first fill")
    assert api.client.get(f"/api/v1/bots/{bot_id}/status", headers=ann).json()["ticks"] > 0


def test_the_operators_own_yaml_may_still_name_a_data_file_by_its_path(tmp_path):
    from engine.errors import ConfigError
    from live.config import load_runtime_config, parse_bot_config
    from live.feed import resolve_tick_file

    shutil.copyfile(TICKS, tmp_path / "my_ticks.csv.gz")
    (tmp_path / "bots.yaml").write_text(
        "feed: {path: data/ticks/}\n"
        "bots:\n"
        "  - {id: mine, strategy: sma_cross, symbol: EURUSD, data: my_ticks.csv.gz}\n"
        "  - {id: named, strategy: sma_cross, symbol: SPY, data: SPY_daily}\n")
    runtime = load_runtime_config(tmp_path / "bots.yaml")
    assert runtime.bots[0].data == str((tmp_path / "my_ticks.csv.gz").resolve())
    assert runtime.bots[1].data == "SPY_daily"
    assert resolve_tick_file(runtime.feed, "EURUSD", runtime.bots[0].data) == (tmp_path / "my_ticks.csv.gz").resolve()
    assert resolve_tick_file(runtime.feed, "SPY", "SPY_daily") == BUNDLED_DATA / "stocks" / "SPY_daily.csv"
    with pytest.raises(ConfigError) as refused:  # the same config from an API caller: a path is refused
        parse_bot_config({"id": "mine", "strategy": "sma_cross", "symbol": "EURUSD",
                          "data": str(tmp_path / "my_ticks.csv.gz")})
    assert refused.value.field == "data" and str(tmp_path) not in refused.value.message


def test_a_bar_source_replays_as_quotes_that_rebuild_its_bars():
    """Five quotes per bar: the bars a bot builds from them are the file's bars, at the file's times."""
    from backtest.data import load_bars, ticks_to_bars
    from live.feed import TickTable

    import pandas as pd

    bars = load_bars(BUNDLED_DATA / "stocks" / "SPY_daily.csv").iloc[:300]
    table = TickTable.from_bars(bars, "SPY_daily")
    ticks = pd.DataFrame({"bid": table.bid, "ask": table.ask, "last": table.last, "size": table.size},
                         index=pd.DatetimeIndex(table.ts, tz="UTC"))
    rebuilt = ticks_to_bars(ticks, "1min")
    pd.testing.assert_frame_equal(rebuilt, bars, check_freq=False, check_names=False)
    first = table.last[:5].tolist()
    row = bars.iloc[0]
    assert first[:2] == [row.open, row.open] and first[-1] == row.close  # a market order fills at the open
    assert sorted(first[2:4]) == [row.low, row.high]
