"""One bot config, any venue: build the adapter a bot names, with its account's credentials.

A bot config names a venue (paper, ccxt, alpaca, mt5) and an account; it never holds a secret.
Credentials come from credential sources, asked in order:
- the API's encrypted account store (a source the API layer provides), then
- the environment: TICKBRIDGE_ACCOUNT_<ACCOUNT>_<FIELD>, e.g. TICKBRIDGE_ACCOUNT_BINANCE_MAIN_SECRET
  (account name upper-cased, anything not a letter or digit turned into "_"). These names are
  dynamic, so they are read here, not in engine.settings (the module that declares every other
  TICKBRIDGE_* variable and documents these).

Fields per venue (required in capitals in the table of VENUE_FIELDS below):
- ccxt:   EXCHANGE (a ccxt id, e.g. binance) and what that exchange's `requiredCredentials` asks for
          (API_KEY and SECRET for most; okx and kucoin add PASSWORD; hyperliquid wants
          PRIVATE_KEY and WALLET_ADDRESS instead), optional SANDBOX (true/false); ccxt's camelCase
          credential names are written in snake case (apiKey -> api_key); for futures accounts
          (binanceusdm) optional LEVERAGE (1-125) and MARGIN_MODE (isolated / cross), which the
          adapter sets on every symbol it trades (brokers/ccxt/futures.py)
- alpaca: API_KEY, SECRET_KEY; optional PAPER (default true: live trading is an explicit choice)
          and EXTENDED_HOURS (default false; true sends limit DAY orders with extended_hours,
          the only ones Alpaca takes it on: brokers/alpaca/mapping.py extended_hours)
- mt5:    LOGIN (a number), PASSWORD, SERVER; optional BRIDGE_HOST, BRIDGE_PORT (mt5linux) or PATH,
          and SERVER_TZ: the trade server's time zone as an IANA name ("EET", "Europe/Athens",
          "America/New_York"), which the broker states; without it the UTC offset is derived from
          the terminal's ticks, and is provisional until a tick is seen to arrive (a bot started
          while its market is closed cannot know it: brokers/mt5/clock.py), so name it
- paper:  none
A missing field is refused with the account and the field named, before anything connects.
`validate_credentials` applies the same rules to an account as the API receives it, naming the
field (`credentials.secret`) and never repeating a value.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Protocol, Sequence

from engine.errors import ConfigError

VENUES = ("paper", "ccxt", "alpaca", "mt5")
CCXT_CREDENTIALS = {"apiKey": "api_key", "secret": "secret", "password": "password", "uid": "uid",
                    "login": "login", "twofa": "twofa", "privateKey": "private_key",
                    "walletAddress": "wallet_address", "token": "token"}  # ccxt's name -> ours
CCXT_SETTINGS = ("leverage", "margin_mode")  # account settings, not secrets: passed to the adapter as such
VENUE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (required, optional)
    "ccxt": (("exchange",), (*CCXT_CREDENTIALS.values(), "sandbox", *CCXT_SETTINGS)),  # + ccxt_required
    "alpaca": (("api_key", "secret_key"), ("paper", "extended_hours")),
    "mt5": (("login", "password", "server"), ("bridge_host", "bridge_port", "path", "server_tz")),
    "paper": ((), ()),
}
FLAGS = ("paper", "sandbox", "extended_hours")
MAX_VALUE_CHARS = 4096


def ccxt_required(exchange_id: str) -> tuple[str, ...]:
    """Our names of the credentials ccxt says `exchange_id` requires (requiredCredentials)."""
    import ccxt

    required = getattr(ccxt, exchange_id)().requiredCredentials
    return tuple(ours for theirs, ours in CCXT_CREDENTIALS.items() if required.get(theirs))


def required_fields(venue: str, fields: dict[str, str]) -> tuple[str, ...]:
    """The fields an account of `venue` must have (ccxt: the exchange's, once it is known)."""
    required = VENUE_FIELDS[venue][0]
    if venue == "ccxt" and fields.get("exchange"):
        import ccxt

        if fields["exchange"] in ccxt.exchanges:
            required = (*required, *ccxt_required(fields["exchange"]))
    return required


def validate_credentials(venue: str, fields: dict[str, Any], prefix: str = "credentials") -> dict[str, str]:
    """The fields of an account as the API receives it, as text, checked against the venue: no
    unknown field, every required one present and non-empty, the ccxt exchange known, the MT5
    login a number, flags true/false. A refusal is ConfigError naming `<prefix>.<field>`; no
    message repeats a value (it may be a secret typed into the wrong field)."""
    import difflib

    if venue not in VENUES:
        raise ConfigError("venue", f"unknown venue; known: {', '.join(VENUES)}")
    required, optional = VENUE_FIELDS[venue]
    known = (*required, *optional)
    out: dict[str, str] = {}
    for name, value in fields.items():
        field = f"{prefix}.{str(name)[:64]}"
        if name not in known:
            if venue == "paper":
                raise ConfigError(field, "the paper venue takes no credentials")
            close = difflib.get_close_matches(CCXT_CREDENTIALS.get(name, name), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(field, f"not a {venue} credential{hint}; known: {', '.join(known)}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise ConfigError(field, "must be text (or a number or true/false)")
        if len(value) > MAX_VALUE_CHARS:
            raise ConfigError(field, f"longer than {MAX_VALUE_CHARS} characters")
        out[name] = value
    for name in required_fields(venue, out):
        if not out.get(name, "").strip():
            why = (f" by {out['exchange']} (ccxt's requiredCredentials)"
                   if name != "exchange" and venue == "ccxt" else "")
            raise ConfigError(f"{prefix}.{name}", f"required{why}")
    if venue == "ccxt":
        import ccxt

        if out["exchange"] not in ccxt.exchanges:
            close = difflib.get_close_matches(out["exchange"].lower(), ccxt.exchanges, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{prefix}.exchange", f"not an exchange ccxt knows{hint}")
    if venue == "mt5":
        if not out["login"].strip().isdigit() or int(out["login"]) <= 0:
            raise ConfigError(f"{prefix}.login", "must be the MT5 account number (a whole number)")
        port = out.get("bridge_port", "").strip()
        if port and not (port.isdigit() and 0 < int(port) <= 65535):
            raise ConfigError(f"{prefix}.bridge_port", "must be a port number (1-65535)")
        if "server_tz" in out:
            server_tz(out["server_tz"], f"{prefix}.server_tz")
    if venue == "ccxt":
        from brokers.ccxt.futures import parse_settings

        parse_settings(out.get("leverage"), out.get("margin_mode"), prefix=f"{prefix}.")
    for name in FLAGS:
        if name in out and out[name].lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"{prefix}.{name}", "must be true or false")
    return out


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
            missing = [name for name in required_fields(venue, found) if not found.get(name)]
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


def server_tz(value: str | None, field: str = "server_tz") -> str | None:
    """An MT5 server's time zone as named (an IANA name, e.g. "EET" or "Europe/Athens"), checked
    against the zone database; None or blank: not named (the adapter derives the offset)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value is None or not value.strip():
        return None
    name = value.strip()
    try:
        if len(name) > 64:
            raise ValueError
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(field, 'must be an IANA time zone name, e.g. "EET" or "Europe/Athens" '
                                 "(the server's zone, as the broker states it)") from None
    return name


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ConfigError("account", f"expected true or false, got {value!r}")


def make_adapter(venue: str, account: str, symbols: Sequence[str], sources: Sequence[CredentialSource],
                 mt5_api: Any = None, mt5_bridge: Callable[[str, int], Any] | None = None,
                 bot_id: str | None = None) -> Any:
    """The adapter for a live venue (the paper venue is built by the runtime, with its store).

    `mt5_api` injects the MetaTrader5 module (tests pass the fake); without it the real module is
    imported (Windows), or an mt5linux bridge is built from BRIDGE_HOST/BRIDGE_PORT."""
    if venue not in VENUES:
        raise ConfigError("venue", f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
    if venue == "paper":
        raise ConfigError("venue", "the paper venue is built by the runtime, not by make_adapter")
    found = resolve_credentials(account, venue, sources)
    if venue == "ccxt":
        from brokers.ccxt.adapter import CcxtAdapter, bot_id_refusal
        import ccxt

        exchange_id = found["exchange"]
        if exchange_id not in ccxt.exchanges:
            raise ConfigError("account", f"account {account!r}: unknown ccxt exchange {exchange_id!r}")
        too_long = bot_id_refusal(exchange_id, bot_id)
        if too_long is not None:
            raise ConfigError("id", too_long)   # the bot config's id: every order would be refused (-1100)
        config = {theirs: found[ours] for theirs, ours in CCXT_CREDENTIALS.items() if found.get(ours)}
        return CcxtAdapter(exchange_id, config, list(symbols), sandbox=_flag(found.get("sandbox"), False),
                           leverage=found.get("leverage"), margin_mode=found.get("margin_mode"))
    if venue == "alpaca":
        from brokers.alpaca.adapter import AlpacaAdapter

        return AlpacaAdapter(found["api_key"], found["secret_key"], list(symbols),
                             paper=_flag(found.get("paper"), True),
                             extended_hours=_flag(found.get("extended_hours"), False))
    from brokers.mt5.adapter import MT5Adapter

    try:
        login = int(found["login"])
    except ValueError:
        raise ConfigError("account", f"account {account!r}: login must be a number, got {found['login']!r}") from None
    api = mt5_api if mt5_api is not None else _mt5_module(account, found, mt5_bridge)
    zone = server_tz(found.get("server_tz"), "account")
    return MT5Adapter(api, list(symbols), login=login, password=found["password"], server=found["server"],
                      path=found.get("path"), bot_id=bot_id,  # bot_id: the bot's own magic number
                      server_tz=zone)   # None: derived from the ticks (brokers/mt5/clock.py)


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
               mt5_api: Any = None, bot_id: str | None = None) -> tuple[Any, Any, list[Callable[[], Any]]]:
    """The adapter, its market data feed, and what the bot's thread must poll (venues without a
    push stream): MT5's terminal is polled for both; ccxt's adapter polls on its own thread and
    its feed watches (ccxt.pro) or polls by itself; Alpaca streams."""
    adapter = make_adapter(venue, account, symbols, sources, mt5_api=mt5_api, bot_id=bot_id)
    if venue == "mt5":
        from brokers.mt5.feed import MT5Feed

        feed = MT5Feed(adapter.api, lock=adapter.lock, clock=adapter.server_clock)
        return adapter, feed, [adapter.poll, feed.poll]
    found = resolve_credentials(account, venue, sources)
    if venue == "ccxt":
        from brokers.ccxt.feed import CcxtFeed

        return adapter, CcxtFeed(found["exchange"], rest=adapter.exchange), []
    from brokers.alpaca.feed import AlpacaFeed

    return adapter, AlpacaFeed(found["api_key"], found["secret_key"]), []
