"""Issue 17's "done when" on the live side: a strategy with a bracket (take-profit) and a trailing
stop, run as a paper bot on real EURUSD ticks, gives the same orders and fills when its session is
replayed through the bot runner and through the backtester's tick path (live/parity.py). The bar
backtest's event path against the fast path is tests/integration/test_protective_backtest.py (the
fast path refuses protective strategies and the event path runs, saying so)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from sqlalchemy import select

from engine.store.db import make_engine, upgrade
from engine.store.models import OrderRow
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from live.parity import run_parity
from strategies import STRATEGIES
from strategies.base import Strategy, StrategyParams
from tests.integration.runtime_helpers import tick_dir


class MomentumTrail(Strategy):
    """Flat after the third bar: follow the last three bars' move with a take-profit `tp` away and a
    trailing stop `trail` behind (both on the EURUSD grid)."""

    name = "momentum_trail_parity"
    protective = True

    class Params(StrategyParams):
        tp: float = Field(0.00040, gt=0)
        trail: float = Field(0.00025, gt=0)

    def next(self) -> None:
        i, close = self.i, self.data.close
        if i >= 3 and self.direction == 0 and close[i] != close[i - 3]:
            self.go(1 if close[i] > close[i - 3] else -1, tp_distance=self.p.tp, trail=self.p.trail)


def test_a_bracket_with_a_trailing_stop_replays_to_the_same_orders_and_fills(tmp_path, database_url):
    STRATEGIES.setdefault(MomentumTrail.name, MomentumTrail)
    ticks = tick_dir(tmp_path / "ticks", eurusd_ticks=8000)
    upgrade(database_url)
    bot = {"id": "trail1", "strategy": MomentumTrail.name, "symbol": "EURUSD", "bar": "1min",
           "params": {"fixed_size": 5000}, "commission": "0.00002"}
    with BotManager(FeedConfig(path=str(ticks)), database_url, tmp_path) as manager:
        manager.start(parse_bot_config(bot))
        manager.wait(180)
    report = run_parity(manager.session_id, tmp_path, database_url)
    assert report.equal, "\n".join(str(vars(d)) for d in report.differences[:10])
    counts = report.counts["trail1"]
    for kind in ("orders", "fills"):
        live, runner, backtest = counts[kind]
        assert live == runner == backtest > 0, (kind, counts[kind])
    engine = make_engine(database_url)
    with engine.connect() as connection:
        orders = connection.execute(select(OrderRow).where(OrderRow.bot_id == "trail1")).all()
    engine.dispose()
    trailed = [o for o in orders if o.trail_distance is not None]
    exits = [o for o in orders if o.parent_id is not None and o.state == "FILLED"]
    assert trailed and len(exits) >= 3, "a parity test of protective orders must see several close by them"
    assert {o.state for o in orders if o.parent_id is not None} <= {"FILLED", "CANCELED", "ACCEPTED"}
    assert sum(Decimal(str(o.filled_qty)) for o in exits) > 0
