"""The control seam between the runtime and whoever drives it (the CLI, the control API).

The API depends on this protocol only, never on the runtime's classes, so a worker process (or a
fake in the API's tests) can stand behind it. Calls may come from any thread; an implementation
must hand them to the thread that owns the bot's OMS (the OMS is not thread-safe).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from engine.errors import TickbridgeError
from live.config import BotConfig

BotState = Literal["RUNNING", "STOPPED", "HALTED"]
StopReason = Literal["END_OF_FEED", "STOPPED", "KILLED", "STORE_ERROR", "LEASE_LOST", "ERROR"]


@runtime_checkable
class BotControl(Protocol):
    def start(self, config: BotConfig) -> None:
        """Start one bot, or resume it from the store after a stop or a restart."""
        ...

    def stop(self, bot_id: str) -> None:
        """Clean stop: open orders cancelled or kept per the bot's on_stop."""
        ...

    def kill(self, bot_id: str, reason: str) -> None:
        """Kill switch: cancel all, flatten, halt (engine.risk.KillSwitch semantics), a stopped
        bot too (its position is flattened through its venue). The halt is durable: start is
        refused (BotHalted) until resume()."""
        ...

    def resume(self, bot_id: str) -> None:
        """Lift a kill's halt (a person's decision): a halted bot that still runs trades again,
        a stopped one may be started. NotHalted when it is not halted."""
        ...

    def reset(self, bot_id: str, actor: str) -> dict[str, Any]:
        """Archive a stopped paper bot's books and let it start clean (live.books);
        returns what was archived, with a message in currency units."""
        ...

    def bars(self, bot_id: str, keep: int, since: int | None = None) -> dict[str, Any]:
        """The running bot's newest `keep` bars (from `since`, ns) and its forming one, as columns
        (live.bars.tail); UnknownBot when this runtime does not run it."""
        ...

    def status(self, bot_id: str) -> dict[str, Any]:
        """{"bot_id", "state": "RUNNING"|"STOPPED"|"HALTED", "bars", "ticks", "orders", "equity",
        "position", "last_tick_ts" (ns), "stop_reason", "stop_message", "holdings": {"positions",
        "open_orders"}, "risk"} (live.books for the reasons). "risk" is the runner's risk state
        (live.runner.risk_state: the gate's state and why, each limit's use against it, the denials
        of this run and the last one's reason), copied on the bot's thread; absent for a bot this
        runtime has not run."""
        ...

    def running(self) -> list[str]:
        """Ids of the bots currently RUNNING."""
        ...


class UnknownBot(TickbridgeError):
    """A bot id this runtime has never started."""

    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"unknown bot {bot_id!r}")


class BotNotRunning(TickbridgeError):
    """A command that needs the bot running (kill) sent to one that is not."""

    def __init__(self, bot_id: str, state: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} is not running (state {state})")


class BotAlreadyRunning(TickbridgeError):
    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} is already running")


class BotLeased(TickbridgeError):
    """Another runtime holds this bot's lease (live.lease): it runs the bot now, or did
    until it died and its lease has not expired yet. The API answers 409."""

    def __init__(self, bot_id: str, owner: str, expires_at: str) -> None:
        self.bot_id = bot_id
        self.owner = owner
        super().__init__(f"bot {bot_id!r} is run by another runtime ({owner}); its lease runs until "
                         f"{expires_at} UTC: stop the bot there, or start it here once that runtime is gone "
                         "and the lease has expired")


class LeaseLost(TickbridgeError):
    """This runtime no longer holds the lease of a bot it runs (another runtime took it over while
    this one stalled, or it could not be renewed in time): the bot stops trading at once."""

    stop_reason = "lease_lost"

    def __init__(self, bot_id: str, why: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} stopped trading: {why}")



class FeedExhausted(TickbridgeError):
    """`start` of a replayed bot that has already processed every tick of its feed: it would stop
    at once. The API answers 409; the way out is a reset (or a longer feed)."""

    def __init__(self, bot_id: str, ticks: int) -> None:
        self.bot_id = bot_id
        self.ticks = ticks
        super().__init__(f"bot {bot_id!r} has replayed its whole feed ({ticks} ticks): there is nothing left to "
                         f"trade; reset it to replay the feed from the start (tickbridge bots reset {bot_id})")


class BotHalted(TickbridgeError):
    """`start` of a bot the kill switch halted: only an explicit resume lifts a kill."""

    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} is halted by kill: resume it first (POST /bots/{{id}}/resume or "
                         f"tickbridge bots resume {bot_id})")


class NotHalted(TickbridgeError):
    def __init__(self, bot_id: str, state: str) -> None:
        self.bot_id = bot_id
        super().__init__(f"bot {bot_id!r} is not halted (state {state}): nothing to resume")
