"""One bot config, any venue: build the adapter a bot names, with its account's credentials.

A bot config names a venue (paper, ccxt, alpaca, mt5) and an account; it never holds a secret.
Credentials come from credential sources, asked in order:
- the API's encrypted account store (a source the API layer provides), then
- the environment: TICKBRIDGE_ACCOUNT_<ACCOUNT>_<FIELD>, e.g. TICKBRIDGE_ACCOUNT_BINANCE_MAIN_SECRET
  (account name upper-cased, anything not a letter or digit turned into "_").

Fields per venue (required in capitals in the table of VENUE_FIELDS below):
- ccxt:   EXCHANGE (a ccxt id, e.g. binance), API_KEY, SECRET; optional PASSWORD, SANDBOX (true/false)
- alpaca: API_KEY, SECRET_KEY; optional PAPER (default true: live trading is an explicit choice)
- mt5:    LOGIN, PASSWORD, SERVER; optional BRIDGE_HOST, BRIDGE_PORT (mt5linux) or PATH (terminal)
A missing field is refused with the account and the field named, before anything connects.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Protocol, Sequence

from engine.errors import ConfigError

VENUES = ("paper", "ccxt", "alpaca", "mt5")
VENUE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (required, optional)
    "ccxt": (("exchange", "api_key", "secret"), ("password", "sandbox")),
    "alpaca": (("api_key", "secret_key"), ("paper",)),
    "mt5": (("login", "password", "server"), ("bridge_host", "bridge_port", "path")),
}


class CredentialSource(Protocol):
    def credentials(self, account: str, venue: str) -> dict[str, str] | None:
        """The account's fields (lower-case names), or None if this source does not know it."""


class EnvCredentials:
    """Credentials from TICKBRIDGE_ACCOUNT_<ACCOUNT>_<FIELD> variables."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def credentials(self, account: str, venue: str) -> dict[str, str] | None:
        prefix = f"TICKBRIDGE_ACCOUNT_{re.sub(r'[^A-Za-z0-9]', '_', account).upper()}_"
        required, optional = VENUE_FIELDS.get(venue, ((), ()))
        found = {name: self.environ[prefix + name.upper()] for name in (*required, *optional)
                 if prefix + name.upper() in self.environ}
        return found or None


def resolve_credentials(account: str, venue: str, sources: Sequence[CredentialSource]) -> dict[str, str]:
    """The first source's fields for the account, checked for completeness."""
    required, optional = VENUE_FIELDS[venue]
    for source in sources:
        found = source.credentials(account, venue)
        if found:
            missing = [name for name in required if not found.get(name)]
            if missing:
                raise ConfigError("account", f"account {account!r} ({venue}) lacks {missing[0]!r} in "
                                             f"{type(source).__name__}")
            unknown = sorted(set(found) - set(required) - set(optional))
            if unknown:
                raise ConfigError("account", f"account {account!r} ({venue}) has unknown field {unknown[0]!r}")
            return found
    env = f"TICKBRIDGE_ACCOUNT_{re.sub(r'[^A-Za-z0-9]', '_', account).upper()}_{required[0].upper()}"
    raise ConfigError("account", f"no credentials for account {account!r} ({venue}): add it through the API's "
                                 f"accounts endpoint or set {env} and the other {venue} fields")


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ConfigError("account", f"expected true or false, got {value!r}")


def make_adapter(venue: str, account: str, symbols: Sequence[str], sources: Sequence[CredentialSource],
                 mt5_api: Any = None, mt5_bridge: Callable[[str, int], Any] | None = None) -> Any:
    """The adapter for a live venue (the paper venue is built by the runtime, with its store).

    `mt5_api` injects the MetaTrader5 module (tests pass the fake); without it the real module is
    imported (Windows), or an mt5linux bridge is built from BRIDGE_HOST/BRIDGE_PORT."""
    if venue not in VENUES:
        raise ConfigError("venue", f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
    if venue == "paper":
        raise ConfigError("venue", "the paper venue is built by the runtime, not by make_adapter")
    found = resolve_credentials(account, venue, sources)
    if venue == "ccxt":
        from brokers.ccxt.adapter import CcxtAdapter
        import ccxt

        exchange_id = found["exchange"]
        if exchange_id not in ccxt.exchanges:
            raise ConfigError("account", f"account {account!r}: unknown ccxt exchange {exchange_id!r}")
        config = {"apiKey": found["api_key"], "secret": found["secret"]}
        if found.get("password"):
            config["password"] = found["password"]
        return CcxtAdapter(exchange_id, config, list(symbols), sandbox=_flag(found.get("sandbox"), False))
    if venue == "alpaca":
        from brokers.alpaca.adapter import AlpacaAdapter

        return AlpacaAdapter(found["api_key"], found["secret_key"], list(symbols),
                             paper=_flag(found.get("paper"), True))
    from brokers.mt5.adapter import MT5Adapter

    try:
        login = int(found["login"])
    except ValueError:
        raise ConfigError("account", f"account {account!r}: login must be a number, got {found['login']!r}") from None
    api = mt5_api if mt5_api is not None else _mt5_module(account, found, mt5_bridge)
    return MT5Adapter(api, list(symbols), login=login, password=found["password"], server=found["server"],
                      path=found.get("path"))


def _mt5_module(account: str, found: dict[str, str], bridge: Callable[[str, int], Any] | None) -> Any:
    if found.get("bridge_host"):
        if bridge is None:
            try:
                from mt5linux import MetaTrader5 as bridge  # type: ignore[import-not-found, no-redef]
            except ImportError:
                raise ConfigError("account", f"account {account!r} names an mt5linux bridge; "
                                             "pip install mt5linux") from None
        return bridge(found["bridge_host"], int(found.get("bridge_port") or 18812))
    try:
        import MetaTrader5  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("account", f"account {account!r}: the MetaTrader5 module runs on Windows only; "
                                     "on Linux set BRIDGE_HOST/BRIDGE_PORT of an mt5linux bridge") from None
    return MetaTrader5


def open_venue(venue: str, account: str, symbols: Sequence[str], sources: Sequence[CredentialSource],
               mt5_api: Any = None) -> tuple[Any, Any, list[Callable[[], Any]]]:
    """The adapter, its market data feed, and what the bot's thread must poll (venues without a
    push stream): MT5's terminal is polled for both; ccxt's adapter polls on its own thread and
    its feed watches (ccxt.pro) or polls by itself; Alpaca streams."""
    adapter = make_adapter(venue, account, symbols, sources, mt5_api=mt5_api)
    if venue == "mt5":
        from brokers.mt5.feed import MT5Feed

        feed = MT5Feed(adapter.api, lock=adapter.lock)
        return adapter, feed, [adapter.poll, feed.poll]
    found = resolve_credentials(account, venue, sources)
    if venue == "ccxt":
        from brokers.ccxt.feed import CcxtFeed

        return adapter, CcxtFeed(found["exchange"], rest=adapter.exchange), []
    from brokers.alpaca.feed import AlpacaFeed

    return adapter, AlpacaFeed(found["api_key"], found["secret_key"]), []
