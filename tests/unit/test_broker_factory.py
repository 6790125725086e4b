"""One bot config, any venue: adapters built from an account name, credentials never in config."""

from __future__ import annotations

import pytest

from brokers.factory import EnvCredentials, make_adapter, resolve_credentials
from engine.errors import ConfigError
from tests.fakes.mt5_fake import FakeMT5


class Recorder:
    """A sink that keeps what it is told (the MT5 adapter reports nothing until an order)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def env(account: str, **fields: str) -> EnvCredentials:
    prefix = f"TICKBRIDGE_ACCOUNT_{account}_"
    return EnvCredentials({prefix + k.upper(): v for k, v in fields.items()})


def test_ccxt_account_from_the_environment_builds_a_real_ccxt_exchange():
    pytest.importorskip("ccxt")
    source = env("BINANCE_MAIN", exchange="binance", api_key="k-123", secret="s-456", sandbox="true")
    adapter = make_adapter("ccxt", "binance-main", ["BTC/USDT"], [source])
    assert adapter.exchange.id == "binance" and adapter.exchange.apiKey == "k-123"
    assert adapter.exchange.secret == "s-456" and adapter.symbols == ["BTC/USDT"]


def test_alpaca_account_is_paper_unless_it_says_otherwise():
    pytest.importorskip("alpaca")
    paper = make_adapter("alpaca", "alp", ["SPY"], [env("ALP", api_key="AK", secret_key="SK")])
    live = make_adapter("alpaca", "alp", ["SPY"], [env("ALP", api_key="AK", secret_key="SK", paper="false")])
    assert paper.paper is True and live.paper is False and paper.api_key == "AK"


def test_mt5_account_logs_in_to_the_injected_terminal():
    terminal = FakeMT5(login=7007, password="pw", server="Demo-1")
    terminal.add_symbol("EURUSD", 1.10000, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    adapter = make_adapter("mt5", "fx", ["EURUSD"], [env("FX", login="7007", password="pw", server="Demo-1")],
                           mt5_api=terminal)
    adapter.connect(Recorder())
    assert terminal.account_info().login == 7007
    adapter.close()


def test_the_first_source_that_knows_the_account_wins():
    store = env("A", exchange="kraken", api_key="from-store", secret="x")
    environment = env("A", exchange="binance", api_key="from-env", secret="y")
    assert resolve_credentials("a", "ccxt", [store, environment])["api_key"] == "from-store"


@pytest.mark.parametrize("venue, fields, message", [
    ("ccxt", {"exchange": "binance", "api_key": "k"}, "lacks 'secret'"),
    ("ccxt", {"exchange": "nosuchexchange", "api_key": "k", "secret": "s"}, "unknown ccxt exchange 'nosuchexchange'"),
    ("mt5", {"login": "abc", "password": "p", "server": "s"}, "login must be a number"),
    ("alpaca", {"api_key": "k", "secret_key": "s", "paper": "maybe"}, "expected true or false"),
    ("oanda", {}, "unknown venue 'oanda'"),
])
def test_bad_or_missing_credentials_are_refused_naming_the_account_and_field(venue, fields, message):
    pytest.importorskip("ccxt")
    with pytest.raises(ConfigError, match=message):
        make_adapter(venue, "acct", ["X"], [env("ACCT", **fields)], mt5_api=FakeMT5())


def test_an_unknown_account_says_where_credentials_go():
    with pytest.raises(ConfigError, match="TICKBRIDGE_ACCOUNT_NOBODY_API_KEY"):
        make_adapter("alpaca", "nobody", ["SPY"], [EnvCredentials({})])
