"""One account's limits bind bots in separate processes (issue 14 item 2), through the store:
SQLite always, PostgreSQL where TICKBRIDGE_TEST_POSTGRES_URL is set (tests/conftest.py).

Each bot runs in a process of its own (multiprocessing, spawn: nothing is inherited), with its
own SharedAccountRisk from account_risk_for, as a runtime's bot would have it. TEST trades at
100.00 with a multiplier of 1: n units are n x 100 of exposure. Heartbeats use a fixed wall
clock (T0) so that no share goes stale while a test runs, however slow the machine.
"""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any

from engine.account_risk import STALE_AFTER_NS, account_risk_for
from engine.risk import AccountLimits, KillSwitch, TradingState
from engine.store.db import upgrade

T0 = 1_800_000_000 * 1_000_000_000
KEY = "7:binance"
SPAWN = multiprocessing.get_context("spawn")


def bot_process(url: str, bot_id: str, limits: dict[str, Any], steps: list[tuple[Any, ...]], now_ns: int,
                results: Any, barrier: Any = None) -> None:
    """One bot in its own process: its engine on the account, then `steps`; each check's answer
    goes to `results` as (bot_id, step index, reason)."""
    from tests.unit.test_risk import Desk

    account = account_risk_for(url, KEY, AccountLimits(**limits), now=lambda: now_ns)
    desk = Desk(account=account, bot_id=bot_id)
    if barrier is not None:
        barrier.wait(timeout=120)
    for index, (kind, *args) in enumerate(steps):
        if kind == "position":
            desk.positions["TEST"] = Decimal(args[0])
        elif kind == "equity":
            desk.engine.on_equity(Decimal(args[0]), desk.clock.ts + args[1])
        elif kind == "rest":
            reason = desk.check(*args)
            if reason is None:
                desk.working.append(desk.order(*args))
            results.put((bot_id, index, reason))
        elif kind == "check":
            results.put((bot_id, index, desk.check(*args)))
        elif kind == "state":
            results.put((bot_id, index, account.refresh().state.state.value))


def run(url: str, bot_id: str, limits: dict[str, Any], steps: list[tuple[Any, ...]],
        now_ns: int = T0) -> list[str | None]:
    """Run one bot process to its end; the answers of its checks, in order."""
    results = SPAWN.Queue()
    process = SPAWN.Process(target=bot_process, args=(url, bot_id, limits, steps, now_ns, results))
    process.start()
    process.join(timeout=300)
    assert process.exitcode == 0, f"bot process {bot_id} failed ({process.exitcode})"
    answers = []
    while not results.empty():
        answers.append(results.get())
    return [reason for _, _, reason in sorted(answers, key=lambda a: a[1])]


def here(url: str, bot_id: str, limits: dict[str, Any], now_ns: int = T0) -> Any:
    """A bot of this (the test's) process on the account."""
    from tests.unit.test_risk import Desk

    return Desk(account=account_risk_for(url, KEY, AccountLimits(**limits), now=lambda: now_ns), bot_id=bot_id)


def test_account_exposure_binds_bots_in_two_processes(database_url):
    upgrade(database_url)
    limits = {"max_gross_exposure": Decimal(1500)}
    assert run(database_url, "one", limits, [("position", "10"), ("rest", "BUY", "2", "100.00")]) == [None]
    two = here(database_url, "two", limits)                    # bot one: 10 held + 2 working = 1,200
    assert two.check("BUY", "4") == "ACCOUNT:MAX_GROSS_EXPOSURE"   # 1,200 + 400 > 1,500
    assert two.check("BUY", "3") is None                            # 1,200 + 300 = 1,500


def test_account_open_orders_and_kill_switch_bind_bots_in_two_processes(database_url):
    upgrade(database_url)
    limits = {"max_open_orders": 2}
    two = here(database_url, "two", limits)
    two.rest("BUY", "1", "99.00")
    assert run(database_url, "one", limits, [("rest", "BUY", "1", "99.00"), ("check", "BUY", "1", "98.00")]) == [
        None, "ACCOUNT:MAX_OPEN_ORDERS"]                     # 1 of two's + 1 of its own = 2
    assert two.check("BUY", "1", "98.00") == "ACCOUNT:MAX_OPEN_ORDERS"
    switch = KillSwitch(two.engine.account, two.clock)
    switch.register("two", two.working.clear, lambda: None)
    switch.trip("account", "test")
    assert two.engine.state is TradingState.HALTED and two.working == []
    # the other process's bot: halted at its next check (its own working order is its runtime's to cancel)
    assert run(database_url, "one", limits, [("check", "SELL", "1", "101.00"), ("state",)]) == [
        "ACCOUNT:TRADING_HALTED", "HALTED"]


def test_account_daily_loss_sums_bots_in_two_processes(database_url):
    upgrade(database_url)
    limits = {"daily_loss_limit": Decimal(500)}
    two = here(database_url, "two", limits)
    two.engine.on_equity(Decimal(5_000), two.clock.ts)
    two.engine.on_equity(Decimal(4_750), two.clock.ts + 1)       # -250
    assert two.engine.account.state is TradingState.ACTIVE
    # bot one: -300 in its process; -300 - 250 = -550 breaks the 500 limit there and then
    assert run(database_url, "one", limits, [("equity", "10000", 0), ("equity", "9700", 1), ("check", "BUY", "1"),
                                             ("state",)]) == ["ACCOUNT:REDUCING_ONLY", "REDUCING"]
    assert two.check("BUY", "1") == "ACCOUNT:REDUCING_ONLY"


def test_a_dead_processs_share_is_ignored_after_the_bound(database_url):
    upgrade(database_url)
    limits = {"max_gross_exposure": Decimal(1500)}
    assert run(database_url, "dead", limits, [("rest", "BUY", "10", "100.00")]) == [None]   # then it exits
    two = here(database_url, "two", limits, now_ns=T0 + STALE_AFTER_NS + 1)
    assert two.check("BUY", "6") is None                           # bot dead's 1,000 no longer counts
    assert two.engine.account.stale == {"dead": T0}


def test_processes_racing_for_the_last_open_order_slots_get_exactly_the_cap(database_url):
    """Four bots in four processes check one order each at the same moment; the cap is 2: the
    account's lock lets exactly two through, whatever the interleaving."""
    upgrade(database_url)
    limits = {"max_open_orders": 2}
    results, barrier = SPAWN.Queue(), SPAWN.Barrier(4)
    processes = [SPAWN.Process(target=bot_process,
                               args=(database_url, f"bot{n}", limits, [("rest", "BUY", "1", "99.00")], T0, results,
                                     barrier)) for n in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    answers = sorted((results.get(timeout=10)[2] or "PASSED") for _ in processes)
    assert answers == ["ACCOUNT:MAX_OPEN_ORDERS", "ACCOUNT:MAX_OPEN_ORDERS", "PASSED", "PASSED"]
