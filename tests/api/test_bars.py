"""GET /api/v1/bots/{id}/bars: a bot's candles are the bars its strategy traded on (the runtime's
own, equal to what the backtester builds from the same ticks), aggregated to whole multiples of
its bar, bounded, read only by those who may read the bot, and a bad parameter is a 422 naming
it, never a 500."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtest.data import load_frame
from live.config import FeedConfig
from live.feed import BUNDLED_DATA

TICKS = BUNDLED_DATA / "ticks" / "USDJPY_truefx_ticks.csv"  # 1,000 ticks over 35 minutes
FAST_FEED = FeedConfig(path=str(BUNDLED_DATA / "ticks"), speed=0.0)  # replayed as fast as it goes
JPY = {"strategy": "sma_cross", "params": {"fast": 2, "slow": 5}, "symbol": "USDJPY", "venue": "paper", "bar": "1min"}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, migrated_db):
    """A paper bot that has replayed its whole feed (so its bars are known: every tick's), its
    owner, another trader, a subscriber and an admin."""
    from tests.api.conftest import _apis, _close

    make, apis = _apis(tmp_path_factory.mktemp("bars"), migrated_db)
    api = make(feed=FAST_FEED)
    ann, bea = api.user("ann", "trader"), api.user("bea", "trader")
    sam, root = api.user("sam", "subscriber"), api.user("root", "admin")
    bot = api.bot(ann, "jpy", **JPY)
    api.bot(ann, "idle", **JPY)  # never started
    api.bot(bea, "jpy", **JPY)  # her own bot of the same name (another runtime id), never started
    assert api.client.post("/api/v1/bots/jpy/start", headers=ann).status_code == 200
    assert api.bots.wait(120), "the replay did not end"
    status = api.client.get("/api/v1/bots/jpy/status", headers=ann).json()
    assert status["stop_reason"] == "END_OF_FEED", status
    yield api, {"ann": ann, "bea": bea, "sam": sam, "root": root}, bot
    _close(apis)


def _bars(api, headers, bot="jpy", **params):
    return api.client.get(f"/api/v1/bots/{bot}/bars", params=params, headers=headers)


def _expected(rule: str):
    frame = load_frame(TICKS, rule)
    return [(int(ts.value), row.open, row.high, row.low, row.close) for ts, row in frame.iterrows()]


def _as_tuples(rows):
    return [(r["time_ns"], float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"])) for r in rows]


def test_the_candles_are_the_bars_the_bot_traded_on(replayed):
    api, users, _bot = replayed
    answer = _bars(api, users["ann"], limit=5000)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"] == "runtime" and body["note"] is None
    assert body["symbol"] == "USDJPY" and body["timeframe"] == "1min" and body["width_ns"] == 60_000_000_000
    expected = _expected("1min")
    assert len(expected) > 30
    assert _as_tuples(body["bars"]) == expected  # the backtester's bars over the same ticks, to the bit
    status = api.client.get("/api/v1/bots/jpy/status", headers=users["ann"]).json()
    assert len(body["bars"]) == status["bars"] + 1  # its closed bars, and the one its feed ended in
    assert [r["closed"] for r in body["bars"]] == [True] * (len(expected) - 1) + [False]
    first = body["bars"][0]
    assert first["time"].endswith("Z") and len(first["time"].split(".")[1]) == 10  # nine digits and Z
    for row in body["bars"]:  # decimal text that reads back as the engine's float: nothing rounded
        for key in ("open", "high", "low", "close", "volume"):
            assert "e" not in row[key].lower() and Decimal(row[key]) == Decimal(repr(float(row[key])))
        assert Decimal(row["low"]) <= min(Decimal(row["open"]), Decimal(row["close"]))
        assert Decimal(row["high"]) >= max(Decimal(row["open"]), Decimal(row["close"]))


def test_a_multiple_of_the_bar_is_aggregated_on_the_same_grid(replayed):
    api, users, _bot = replayed
    body = _bars(api, users["ann"], timeframe="5min").json()
    assert body["timeframe"] == "5min" and body["width_ns"] == 300_000_000_000
    assert _as_tuples(body["bars"]) == _expected("5min")
    assert body["bars"][-1]["closed"] is False and all(r["closed"] for r in body["bars"][:-1])


def test_limit_keeps_the_newest_and_since_what_came_from_a_candle_on(replayed):
    api, users, _bot = replayed
    every = _bars(api, users["ann"]).json()["bars"]
    newest = _bars(api, users["ann"], limit=3).json()["bars"]
    assert newest == every[-3:]
    start = every[-4]["time_ns"]
    assert _bars(api, users["ann"], since=start).json()["bars"] == every[-4:]
    assert _bars(api, users["ann"], since=every[-1]["time_ns"] + 1).json()["bars"] == []
    # whole 5-minute candles, the newest two, even when the bars before them are cut off
    five = _bars(api, users["ann"], timeframe="5min").json()["bars"]
    assert _bars(api, users["ann"], timeframe="5min", limit=2).json()["bars"] == five[-2:]
    assert _bars(api, users["ann"], timeframe="5min", since=five[-2]["time_ns"]).json()["bars"] == five[-2:]


@pytest.mark.parametrize(("params", "field"), [
    ({"timeframe": "banana"}, "timeframe"),
    ({"timeframe": "1M"}, "timeframe"),          # a month has no fixed length
    ({"timeframe": "30s"}, "timeframe"),         # shorter than the bot's bar
    ({"timeframe": "90s"}, "timeframe"),         # not a whole number of its bars
    ({"timeframe": "x" * 17}, "timeframe"),
    ({"limit": 0}, "limit"),
    ({"limit": 5001}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"since": -1}, "since"),
    ({"since": 2**63}, "since"),
])
def test_a_bad_parameter_is_a_422_naming_it(replayed, params, field):
    api, users, _bot = replayed
    answer = _bars(api, users["ann"], **params)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert field in error["field"] and error["message"], error


def test_only_those_who_may_read_the_bot_get_its_candles(replayed):
    api, users, bot = replayed
    assert _bars(api, users["bea"], bot="idle").status_code == 404  # another owner's bot is not there
    theirs = _bars(api, users["bea"]).json()  # "jpy" is her own bot's name: hers, not ann's candles
    assert theirs["runtime_id"] != bot["runtime_id"] and theirs["bars"] == [] and theirs["source"] == "none"
    assert _bars(api, users["sam"]).status_code == 403      # subscribers read signals, not books
    assert _bars(api, {}).status_code == 401
    as_admin = _bars(api, users["root"], bot=bot["runtime_id"])
    assert as_admin.status_code == 200 and as_admin.json()["bars"] == _bars(api, users["ann"]).json()["bars"]


def test_a_bot_the_runtime_has_not_run_says_so_with_no_candles(replayed):
    api, users, _bot = replayed
    answer = _bars(api, users["ann"], bot="idle")
    assert answer.status_code == 200
    body = answer.json()
    assert body["bars"] == [] and body["source"] == "none" and "has not run" in body["note"]
    assert _bars(api, users["ann"], bot="idle", timeframe="banana").status_code == 422


def test_bars_read_while_the_bot_appends_are_never_half_a_bar():
    """The bot's thread appends time first and volume last: a read between the two sees the bars
    whose every column is there, and the forming bar with its extremes covering open and close."""
    from types import SimpleNamespace

    from live.bars import tail
    from engine.market import Bar
    from live.bars import BarBuilder, BarHistory

    history, builder = BarHistory(), BarBuilder("X", "1min")
    for i in range(3):
        history.append(Bar("X", i * 60_000_000_000, (i + 1) * 60_000_000_000, 1.0, 2.0, 0.5, 1.5, 10.0))
    history.time.append(3 * 60_000_000_000)  # the fourth bar, caught half-appended
    history.open.append(1.0)
    builder.start, builder.origin = 4 * 60_000_000_000, 0
    builder.open, builder.high, builder.low, builder.close, builder.volume = 1.2, 1.1, 1.3, 1.25, 4.0  # torn
    got = SimpleNamespace(**tail(SimpleNamespace(history=history, builder=builder, symbol="X"), keep=100))
    assert got.time == [0, 60_000_000_000, 120_000_000_000, 240_000_000_000] and got.forming
    assert len(got.open) == len(got.high) == len(got.low) == len(got.close) == len(got.volume) == 4
    assert (got.high[-1], got.low[-1]) == (1.25, 1.2)
    assert tail(SimpleNamespace(history=history, builder=builder, symbol="X"), keep=2)["time"] == \
        [60_000_000_000, 120_000_000_000, 240_000_000_000]
