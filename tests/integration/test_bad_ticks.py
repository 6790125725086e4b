"""A bad tick never trades (issue 11, item 4).

Real EURUSD ticks (FXCM, 2014-05-05, ~1.3876) with four ticks at 10x the price injected by hand:
- right after a market order is sent: the order must fill at the market, not at the spike
  (it used to fill 5000 units at 13.8758);
- at the end of a bar while the bot holds a position, with config/risk/default.yaml: the spike
  must neither mark equity nor trip the drawdown monitor (it used to halt the bot for the rest
  of the session, so its exit was denied TRADING_HALTED);
and the drops are counted per reason in the bot's status, the session record, the parity replay
and /metrics. A live-venue bot (the MT5 fake terminal) drops them too.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import pandas as pd
import yaml
from pydantic import Field

from backtest.data import load_ticks
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from live.parity import run_parity
from engine.store.db import upgrade
from engine.store.models import FillRow, OrderRow
from strategies import STRATEGIES
from strategies.base import Strategy, StrategyParams
from tests.conftest import ROOT
from tests.integration.runtime_helpers import EURUSD_TICKS, rows, wait_for

SPIKES = 4
FACTOR = 10.0
ENTER_BAR = 10   # the bot buys at this bar's close: ~100 real ticks in, the guard is warm
CASH_1M = "1000000"


class GoLongAt(Strategy):
    """Long `fixed_size` at bar `enter`'s close, flat again at bar `exit`'s (never if -1)."""

    name = "go_long_at"

    class Params(StrategyParams):
        enter: int = Field(ge=0)
        exit: int = Field(-1, ge=-1)

    def next(self) -> None:
        if self.i == self.p.enter:
            self.go(1)
        elif self.i == self.p.exit:
            self.go(0)


STRATEGIES.setdefault(GoLongAt.name, GoLongAt)


def bot(bot_id: str, exit_bar: int = -1, **overrides: object) -> dict:
    config = {"id": bot_id, "strategy": GoLongAt.name, "symbol": "EURUSD", "bar": "1min",
              "params": {"enter": ENTER_BAR, "exit": exit_bar, "fixed_size": 5000}}
    config.update(overrides)
    return config


def default_risk() -> dict:
    """config/risk/default.yaml, as the data a bot config carries."""
    return yaml.safe_load((ROOT / "config" / "risk" / "default.yaml").read_text())


def spiked_feed(root: Path, bar: int, at: str, n_ticks: int = 2000) -> tuple[Path, int]:
    """A feed directory with the first `n_ticks` real ticks and SPIKES ticks at FACTOR x the price,
    1 ms apart, inserted after a chosen tick: with at="open", the tick that closes bar `bar` (the
    first valid tick of the next minute: the bot decides on it and the venue fills its order at
    the next tick); with at="close", bar `bar`'s last tick (the spike becomes its close). Returns
    the directory and the spike's ask."""
    root.mkdir(parents=True, exist_ok=True)
    frame = load_ticks(EURUSD_TICKS)[["bid", "ask"]].iloc[:n_ticks]
    valid = frame[frame["bid"] <= frame["ask"]]  # crossed quotes are dropped before bars are built
    bins = valid.index.floor("1min").unique()
    if at == "open":
        anchor = valid.index[valid.index.floor("1min") == bins[bar + 1]][0]
    else:
        anchor = valid.index[valid.index.floor("1min") == bins[bar]][-1]
    j = frame.index.get_loc(anchor)
    assert isinstance(j, int)
    base = frame.iloc[j]
    times = [anchor + pd.Timedelta(milliseconds=k) for k in range(1, SPIKES + 1)]
    assert all(t.floor("1min") == anchor.floor("1min") for t in times) and times[-1] < frame.index[j + 1]
    spikes = pd.DataFrame({"bid": base["bid"] * FACTOR, "ask": base["ask"] * FACTOR},
                          index=pd.DatetimeIndex(times, name=frame.index.name))
    pd.concat([frame.iloc[:j + 1], spikes, frame.iloc[j + 1:]]).to_csv(root / "EURUSD_spiked.csv")
    return root, round(base["ask"] * FACTOR, 5)




def test_a_spike_after_a_market_order_does_not_fill_it(tmp_path, database_url):
    feed, spike_ask = spiked_feed(tmp_path / "ticks", ENTER_BAR, "open")
    upgrade(database_url)
    with BotManager(FeedConfig(path=str(feed)), database_url, tmp_path) as manager:
        manager.start(parse_bot_config(bot("spiked", cash=CASH_1M)))
        assert manager.wait(120)
        status = manager.status("spiked")
    fills = rows(database_url, FillRow, FillRow.bot_id == "spiked")
    assert len(fills) == 1 and fills[0].qty == 5000
    # before: the order filled at the spike's ask, 13.8758, on a 1.3876 market (-62,441 at once)
    assert fills[0].price < Decimal("1.39"), f"filled at {fills[0].price}, the spike's ask is {spike_ask}"
    assert status["ticks_dropped"]["OUTLIER"] == SPIKES
    assert Decimal(CASH_1M) - 100 < status["equity"] < Decimal(CASH_1M) + 100

    meta = json.loads((tmp_path / "sessions" / manager.session_id / "meta.json").read_text())
    assert meta["bots"]["spiked"]["ticks_dropped"] == status["ticks_dropped"]
    # the replay drops the same ticks (they are in the recording) and agrees with live
    report = run_parity(manager.session_id, tmp_path, database_url)
    assert report.equal, [vars(d) for d in report.differences[:10]]
    assert report.counts["spiked"]["fills"] == (1, 1, 1)  # live, the runner's replay, the backtest


def test_a_spike_neither_marks_equity_nor_halts_a_bot_under_the_default_risk_file(tmp_path):
    """Long 5000 on 10,000 of cash, a spike as a bar's close: marked at 10x, equity would rise to
    ~72,000 and fall back at the next bar, an 86 % drawdown from that high-water mark: HALTED
    (max_drawdown_pct 15), and the exit at bar 20 denied TRADING_HALTED."""
    feed, _ = spiked_feed(tmp_path / "ticks", 15, "close")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with BotManager(FeedConfig(path=str(feed)), url, tmp_path) as manager:
        manager.start(parse_bot_config(bot("halting", exit_bar=20, risk=default_risk())))
        assert manager.wait(120)
        status = manager.status("halting")
    orders = sorted(rows(url, OrderRow, OrderRow.bot_id == "halting"), key=lambda o: o.client_order_id)
    assert [(o.side, o.state, o.reason) for o in orders] == [("BUY", "FILLED", None), ("SELL", "FILLED", None)]
    assert status["ticks_dropped"]["OUTLIER"] == SPIKES and status["position"] == 0
    assert Decimal(9_900) < status["equity"] < Decimal(10_100)


def test_dropped_ticks_are_in_metrics_per_bot_and_reason(tmp_path):
    """A paced bot, still running when /metrics is scraped after its guard dropped the spike."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    feed, _ = spiked_feed(tmp_path / "ticks", 3, "open", n_ticks=3000)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    manager = BotManager(FeedConfig(path=str(feed), speed=30), url, tmp_path, record=False)
    try:
        manager.start(parse_bot_config(bot("metered", params={"enter": 1000}, tick_guard={"window": 20})))
        with TestClient(create_app(Settings(database_url=url), manager)) as client:
            wait_for(lambda: manager.status("metered")["ticks_dropped"].get("OUTLIER") == SPIKES, "the spike")
            assert manager.running() == ["metered"]
            text = client.get("/api/v1/metrics").text
        assert f'tickbridge_ticks_dropped{{bot="metered",reason="OUTLIER"}} {float(SPIKES)}' in text
        assert 'tickbridge_tick_level_shifts{bot="metered"} 0.0' in text
    finally:
        manager.close()


def test_a_live_venue_bot_drops_the_spike_and_marks_at_guarded_prices(tmp_path):
    """The same guard on the live runner (MT5 fake terminal): the spike reaches neither the
    strategy nor the equity mark, and status says why."""
    from brokers.factory import EnvCredentials, open_venue
    from tests.fakes.mt5_fake import FakeMT5

    t0 = 1_700_000_000_000
    fake = FakeMT5(start_msc=t0)
    fake.add_symbol("EURUSD", 1.10000, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    credentials = EnvCredentials({"TICKBRIDGE_ACCOUNT_FX_LOGIN": "5001", "TICKBRIDGE_ACCOUNT_FX_PASSWORD": "secret",
                                  "TICKBRIDGE_ACCOUNT_FX_SERVER": "FakeBroker-Demo"})
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    config = bot("mt5-spiked", venue="mt5", account="fx", tick_guard={"window": 10},
                 params={"enter": 3, "fixed_size": "0.10", "units": "fractional"})
    manager = BotManager(FeedConfig(path="data/ticks/"), url, tmp_path, record=False,
                         venues=lambda c: open_venue(c.venue, c.account, [c.symbol], [credentials], mt5_api=fake))

    def quote(mid: float, msc: int) -> None:
        fake.set_tick("EURUSD", round(mid, 5), round(mid + 0.00002, 5), time_msc=t0 + msc)

    with manager:
        manager.start(parse_bot_config(config))
        for minute in range(1, 16):  # one quote a minute, a small wave: bars, a position at bar 3
            quote(1.1 + 0.0002 * math.sin(minute), minute * 60_000 + 1)
            seen = (t0 + minute * 60_000 + 1) * 1_000_000
            wait_for(lambda: manager.status(config["id"])["last_tick_ts"] == seen, f"tick {minute}")
        wait_for(lambda: manager.status(config["id"])["position"] != 0, "the position")
        before = manager.status(config["id"])
        for k in range(SPIKES):
            quote(11.0, 15 * 60_000 + 2 + k)
        wait_for(lambda: manager.status(config["id"])["ticks_dropped"].get("OUTLIER") == SPIKES, "the spike")
        status = manager.status(config["id"])
        manager.stop(config["id"])
    # before: the spike was admitted, the position marked at 11.0: equity up by ~0.10 x 9.9
    # "ticks" counts every input (one runner for paper and live); the dropped ones are counted apart
    admitted = status["ticks"] - sum(status["ticks_dropped"].values())
    assert (admitted, status["equity"]) == (before["ticks"] - sum(before["ticks_dropped"].values()), before["equity"])
