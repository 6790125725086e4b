"""A bot on a live venue through the runtime: MetaTrader 5 (the faithful fake terminal injected
where the MetaTrader5 module goes). Ticks come from the terminal, orders go to it, its deals come
back as fills; the store holds it all; a restart reconciles with the terminal and sends nothing twice."""

from __future__ import annotations

import math
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from brokers.factory import EnvCredentials, open_venue
from engine.errors import ConfigError
from live.config import FeedConfig, parse_bot_config
from live.manager import BotManager
from engine.store.db import make_engine, upgrade
from engine.store.models import FillRow, OrderRow, SignalRow
from tests.fakes.mt5_fake import FakeMT5

T0 = 1_700_000_000_000  # terminal time, ms
CREDENTIALS = EnvCredentials({"TICKBRIDGE_ACCOUNT_FX_LOGIN": "5001", "TICKBRIDGE_ACCOUNT_FX_PASSWORD": "secret",
                              "TICKBRIDGE_ACCOUNT_FX_SERVER": "FakeBroker-Demo"})
BOT = {"id": "mt5-sma", "strategy": "sma_cross", "symbol": "EURUSD", "venue": "mt5", "account": "fx", "bar": "1min",
       "params": {"fast": 2, "slow": 4, "mode": "long_short", "fixed_size": "0.10", "units": "fractional"}}


def terminal() -> FakeMT5:
    fake = FakeMT5(start_msc=T0)
    fake.add_symbol("EURUSD", 1.10000, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    return fake


def manager(url: str, tmp_path, fake: FakeMT5) -> BotManager:
    return BotManager(FeedConfig(path="data/ticks/"), url, tmp_path, record=False,
                      venues=lambda config: open_venue(config.venue, config.account, [config.symbol], [CREDENTIALS],
                                                       mt5_api=fake))


def quote(fake: FakeMT5, minute: int) -> None:
    """A wave with a period of 12 bars: the 2/4 SMAs cross every few bars."""
    mid = round(1.1 + 0.002 * math.sin(minute * 2 * math.pi / 12), 5)
    fake.set_tick("EURUSD", mid, round(mid + 0.00002, 5), time_msc=T0 + minute * 60_000 + 1)


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the bot did not get there"
        time.sleep(0.05)


def our_deals(fake: FakeMT5) -> list:
    """The terminal's deals made by an engine (its magic number), read as the terminal's owner would."""
    fake.initialize(login=5001, password="secret", server="FakeBroker-Demo")  # the bot shut its session down
    return [d for d in fake.deals if d.magic]


def quote_until_positioned(bots: BotManager, fake: FakeMT5) -> int:
    """Quote the wave a minute at a time until the running bot holds a position; the last minute quoted."""
    minute = 0
    while bots.status(BOT["id"])["position"] == 0:
        minute += 1
        assert minute < 60, "the bot never took a position"
        quote(fake, minute)
        wait_until(lambda: bots.status(BOT["id"])["ticks"] >= minute)
    return minute


def count(url: str, table) -> int:
    with make_engine(url).connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(table.c.bot_id == BOT["id"])).scalar()


def test_a_bot_trades_the_terminal_stores_everything_and_resumes_without_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = terminal()
    with manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        for minute in range(1, 40):
            quote(fake, minute)
            wait_until(lambda: bots.status(BOT["id"])["ticks"] >= minute)
        wait_until(lambda: count(url, FillRow.__table__) >= 3)
        status = bots.status(BOT["id"])
        assert status["state"] == "RUNNING" and status["bars"] >= 30
        bots.stop(BOT["id"])
    fills, orders = count(url, FillRow.__table__), count(url, OrderRow.__table__)
    assert count(url, SignalRow.__table__) >= 2
    deals = our_deals(fake)
    assert len(deals) == fills, "every deal of ours at the terminal is a fill in the store, once"
    terminal_position = sum(Decimal(str(p.volume)) * (1 if p.type == fake.POSITION_TYPE_BUY else -1)
                            for p in fake.positions_get())

    # a restart: the books come back from the store and agree with the terminal; nothing is resent
    with manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        status = bots.status(BOT["id"])
        assert status["state"] == "RUNNING" and status["position"] == terminal_position
        bots.stop(BOT["id"])
    assert count(url, OrderRow.__table__) == orders and count(url, FillRow.__table__) == fills
    assert fills >= 3 and orders >= fills
    assert len(our_deals(fake)) == len(deals)


def test_missing_credentials_or_an_unlisted_symbol_refuse_to_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = terminal()
    no_credentials = BotManager(FeedConfig(path="data/ticks/"), url, tmp_path, record=False,
                                venues=lambda c: open_venue(c.venue, c.account, [c.symbol], [EnvCredentials({})],
                                                            mt5_api=fake))
    with no_credentials, pytest.raises(ConfigError, match="no credentials for account 'fx'"):
        no_credentials.start(parse_bot_config(BOT))
    with manager(url, tmp_path, fake) as bots, pytest.raises(Exception, match="GBPJPY"):
        bots.start(parse_bot_config({**BOT, "symbol": "GBPJPY"}))


def test_a_killed_live_bot_resumed_and_started_again_is_not_put_back_into_its_position(tmp_path):
    """The kill flattened the bot on purpose: after a person resumes and starts it, the strategy
    decides anew; the runtime does not re-enter the position the strategy held before the kill.
    Paper bots had this (was_killed); a live venue's runner read only `status != HALTED`, which the
    resume had just cleared, and sent the old target again at its first tick."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = terminal()
    with manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        minute = quote_until_positioned(bots, fake)
        bots.kill(BOT["id"], "test")
        wait_until(lambda: bots.status(BOT["id"])["position"] == 0)
        assert bots.status(BOT["id"])["state"] == "HALTED"
    orders = count(url, OrderRow.__table__)
    with manager(url, tmp_path, fake) as bots:
        bots.resume(BOT["id"])
        bots.start(parse_bot_config(BOT))
        fake.set_tick("EURUSD", 1.1, 1.10002, time_msc=T0 + minute * 60_000 + 30_000)  # the same bar: no decision
        wait_until(lambda: bots.status(BOT["id"])["ticks"] >= 1)
        status = bots.status(BOT["id"])
        bots.stop(BOT["id"])
        assert bots.summary(BOT["id"])["gap_orders"] == 0
    assert status["position"] == 0 and count(url, OrderRow.__table__) == orders
    assert not [p for p in fake.positions.values() if p["magic"]]  # flat at the terminal too


def test_a_kill_the_venue_refused_is_finished_when_a_runtime_starts_again(tmp_path):
    """A kill while the market is closed: the flatten is refused, the bot halts holding its position
    (as it must: nothing else protects it). The runtime then stops. The next runtime, at start-up
    (api.app's lifespan calls finish_kills), kills it again through its venue: flat at the terminal,
    still halted. Before, nothing did: the halted bot kept its position until a person noticed."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = terminal()
    with manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        quote_until_positioned(bots, fake)
        fake.market_open("EURUSD", False)
        bots.kill(BOT["id"], "test")
        wait_until(lambda: bots.status(BOT["id"])["state"] == "HALTED")
        assert bots.status(BOT["id"])["position"] != 0      # the flatten was refused: still held
    assert [p for p in fake.positions.values() if p["magic"]]
    fake.market_open("EURUSD", True)
    with manager(url, tmp_path, fake) as bots:
        assert bots.finish_kills() == [BOT["id"]]
        status = bots.status(BOT["id"])
        assert status["state"] == "HALTED" and status["position"] == 0
        assert bots.finish_kills() == []                     # done: nothing held any more
    assert not [p for p in fake.positions.values() if p["magic"]]  # flat at the terminal


def test_finish_kills_leaves_running_paper_and_empty_halted_bots_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    fake = terminal()
    with manager(url, tmp_path, fake) as bots:
        bots.start(parse_bot_config(BOT))
        bots.kill(BOT["id"], "test")                        # holding nothing yet: halted, nothing to finish
        wait_until(lambda: bots.status(BOT["id"])["state"] == "HALTED")
        assert bots.finish_kills() == []
