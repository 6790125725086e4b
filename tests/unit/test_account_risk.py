"""One AccountRisk per account (issue 14 item 2): the bots of one account, each with its own risk
engine, are bound by one set of account limits kept in the store (a real SQLite file here;
tests/integration/test_account_risk_processes.py runs the bots in separate processes, on SQLite
and PostgreSQL).

Figures are hand-computed: TEST trades at 100.00 with a multiplier of 1, so a position or a
working order of n units is n x 100 of gross exposure.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from engine.account_risk import (STALE_AFTER_NS, SharedAccountRisk, account_risk_for, kill_account, read_account,
                                 resume_account)
from engine.risk import AccountLimits, KillSwitch, StateChange, TradingState
from engine.store.db import make_engine, upgrade
from tests.unit.test_risk import DAY, Desk

T0 = 1_800_000_000 * 1_000_000_000  # wall-clock ns of the heartbeats (injected: no test waits)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    return url


class Wall:
    """The heartbeat clock, moved by hand."""

    def __init__(self) -> None:
        self.ns = T0

    def __call__(self) -> int:
        return self.ns


def shared(url: str, limits: AccountLimits, wall: Wall | None = None, key: str = "7:binance") -> SharedAccountRisk:
    """An account's risk as another process would have it: its own object on the same store."""
    return SharedAccountRisk(make_engine(url), key, limits, now=wall or Wall())


def test_one_process_gets_one_account_risk_per_account(url):
    limits = AccountLimits(max_gross_exposure=Decimal(1500))
    first = account_risk_for(url, "7:binance", limits)
    assert account_risk_for(url, "7:binance", limits) is first
    assert account_risk_for(url, "8:binance", limits) is not first   # another owner's account


def test_account_exposure_binds_two_bots_of_one_process(url):
    account = account_risk_for(url, "7:binance", AccountLimits(max_gross_exposure=Decimal(1500)))
    one, two = Desk(account=account, bot_id="one"), Desk(account=account, bot_id="two")
    one.rest("BUY", "10", limit="100.00")        # bot one: 1,000 working
    assert two.check("BUY", "6") == "ACCOUNT:MAX_GROSS_EXPOSURE"   # 1,000 + 600 > 1,500
    assert two.check("BUY", "5") is None                            # 1,000 + 500 = 1,500


def test_account_exposure_binds_bots_whose_account_objects_differ(url):
    """Two account objects on one store (two processes, or two limit sets): the store binds them."""
    limits = AccountLimits(max_gross_exposure=Decimal(1500))
    one = Desk(account=shared(url, limits), bot_id="one")
    two = Desk(account=shared(url, limits), bot_id="two")
    one.positions["TEST"] = Decimal(10)
    assert one.check("BUY", "2") is None          # passes and publishes 1,200 (10 held + 2 working)
    assert two.check("BUY", "4") == "ACCOUNT:MAX_GROSS_EXPOSURE"   # 1,200 + 400 > 1,500
    assert two.check("BUY", "3") is None                            # 1,200 + 300 = 1,500


def test_account_open_orders_cap_binds_two_bots(url):
    limits = AccountLimits(max_open_orders=2)
    one = Desk(account=shared(url, limits), bot_id="one")
    two = Desk(account=shared(url, limits), bot_id="two")
    one.rest("BUY", "1", limit="99.00")
    two.rest("BUY", "1", limit="99.00")
    assert one.check("BUY", "1", limit="98.00") == "ACCOUNT:MAX_OPEN_ORDERS"   # 1 own + 1 of two's = 2
    assert two.check("BUY", "1", limit="98.00") == "ACCOUNT:MAX_OPEN_ORDERS"


def test_account_daily_loss_is_the_sum_of_its_bots_and_sets_every_bot_reducing(url):
    limits = AccountLimits(daily_loss_limit=Decimal(500))
    account_one, account_two = shared(url, limits), shared(url, limits)
    one, two = Desk(account=account_one, bot_id="one"), Desk(account=account_two, bot_id="two")
    one.positions["TEST"] = Decimal(5)
    start = one.clock.ts
    one.engine.on_equity(Decimal(10_000), start)
    two.engine.on_equity(Decimal(5_000), start)
    one.engine.on_equity(Decimal(9_700), start + 1)   # -300: alone within the limit
    assert account_one.state is TradingState.ACTIVE
    two.engine.on_equity(Decimal(4_750), start + 1)   # -300 - 250 = -550: over 500
    assert account_two.state is TradingState.REDUCING
    assert one.engine.state is two.engine.state is TradingState.ACTIVE   # neither bot's own limit
    assert two.check("BUY", "1") == "ACCOUNT:REDUCING_ONLY"
    assert one.check("BUY", "1") == "ACCOUNT:REDUCING_ONLY"     # bot one's account object learns it here
    assert account_one.state is TradingState.REDUCING
    assert one.check("SELL", "5") is None                        # closing is always possible
    one.engine.on_equity(Decimal(9_700), start + DAY)           # a new UTC day for bot one: 0 today
    assert account_one.state is TradingState.ACTIVE              # -250 of bot two's old day < 500
    assert two.check("BUY", "1") is None


def test_account_kill_switch_halts_the_bots_of_every_account_object(url):
    limits = AccountLimits()
    here, elsewhere = shared(url, limits), shared(url, limits)
    one, two = Desk(account=here, bot_id="one"), Desk(account=elsewhere, bot_id="two")
    told: list[StateChange] = []
    elsewhere.listeners.append(told.append)
    # a listener may write to the store (a runtime flattening its bots does): it is told once the
    # account's lock is released, not under it (on SQLite it would wait for itself)
    elsewhere.listeners.append(lambda _change: elsewhere.publish(two.engine, force=True))
    cancelled: list[str] = []
    switch = KillSwitch(here, one.clock)
    switch.register("one", lambda: cancelled.append("one"), lambda: None)
    switch.trip("account", "margin call")
    assert cancelled == ["one"] and one.engine.state is TradingState.HALTED
    assert one.check("BUY", "1") == "TRADING_HALTED"
    assert two.engine.state is TradingState.ACTIVE                # another process's bot: not flattened here,
    assert two.check("BUY", "1") == "ACCOUNT:TRADING_HALTED"     # but halted at its next check
    assert [(c.new, c.reason) for c in told] == [(TradingState.HALTED, "KILL_SWITCH:margin call")]
    elsewhere.resume(two.clock.ts, "ann")                         # only a person lifts it, for everyone
    assert two.check("BUY", "1") is None
    assert one.engine.account.state is TradingState.HALTED       # learnt at its next account check:
    one.engine.resume(one.clock.ts, "ann")
    assert one.check("BUY", "1") is None
    assert here.state is TradingState.ACTIVE


def test_kill_from_outside_any_runtime_halts_the_account(url):
    account = shared(url, AccountLimits())
    desk = Desk(account=account, bot_id="one")
    kill_account(make_engine(url), "7:binance", "api:ann")
    assert desk.check("BUY", "1") == "ACCOUNT:TRADING_HALTED"
    assert read_account(make_engine(url), "7:binance").state.reason == "KILL_SWITCH:api:ann"
    resume_account(make_engine(url), "7:binance", "ann")
    assert desk.check("BUY", "1") is None


def test_a_dead_bots_share_is_ignored_after_the_bound_and_reported(url, caplog):
    limits = AccountLimits(max_gross_exposure=Decimal(1500))
    wall = Wall()
    dead, alive = shared(url, limits, wall), shared(url, limits, wall)
    Desk(account=dead, bot_id="dead").rest("BUY", "10", limit="100.00")   # 1,000, then its process dies
    desk = Desk(account=alive, bot_id="two")
    wall.ns = T0 + STALE_AFTER_NS                                           # exactly the bound: still counted
    assert desk.check("BUY", "6") == "ACCOUNT:MAX_GROSS_EXPOSURE"
    wall.ns = T0 + STALE_AFTER_NS + 1                                       # older than the bound
    with caplog.at_level(logging.WARNING, logger="engine.account_risk"):
        assert desk.check("BUY", "6") is None
    assert alive.stale == {"dead": T0}
    assert "bot dead's share" in caplog.text
    view = read_account(make_engine(url), "7:binance", now_ns=wall.ns)
    assert [s.bot_id for s in view.stale] == ["dead"] and [s.bot_id for s in view.shares] == ["two"]


def test_a_live_bot_keeps_its_share_fresh_by_publishing(url):
    limits = AccountLimits(max_gross_exposure=Decimal(1500))
    wall = Wall()
    quiet, other = shared(url, limits, wall), shared(url, limits, wall)
    one = Desk(account=quiet, bot_id="one")
    one.rest("BUY", "10", limit="100.00")
    two = Desk(account=other, bot_id="two")
    wall.ns = T0 + STALE_AFTER_NS // 2
    assert quiet.publish(one.engine)                      # the heartbeat is due: written
    assert not quiet.publish(one.engine)                  # unchanged and fresh: nothing written
    wall.ns = T0 + STALE_AFTER_NS + 1                     # past the bound of the first write only
    assert two.check("BUY", "6") == "ACCOUNT:MAX_GROSS_EXPOSURE"


def test_a_restarted_bot_replaces_its_engine_and_a_flat_bot_leaves_no_share(url):
    account = shared(url, AccountLimits(max_open_orders=1))
    first = Desk(account=account, bot_id="one")
    Desk(account=account, bot_id="one")                   # the same bot started again in this process
    assert account.engines["one"] is not first.engine
    account.publish(account.engines["one"])
    account.release(account.engines["one"])
    assert read_account(make_engine(url), "7:binance").shares == []


def test_a_bad_account_key_is_refused_naming_it(url):
    with pytest.raises(ValueError, match="account key"):
        SharedAccountRisk(make_engine(url), "", AccountLimits())
