"""A bot's account, stored encrypted through the API, builds that venue's adapter: the secret
goes from the request to the adapter without appearing anywhere in between."""

from __future__ import annotations

import pytest

from api.credentials import AccountStoreCredentials
from brokers.factory import EnvCredentials, make_adapter
from engine.errors import ConfigError
from tests.fakes.mt5_fake import FakeMT5

MT5 = {"login": "7007", "password": "pw-from-the-store", "server": "Demo-1"}


def test_an_account_created_through_the_api_logs_the_adapter_in(api):
    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "fx", "venue": "mt5", "credentials": MT5}, headers=ann)
    assert created.status_code == 201, created.text
    owner = created.json()["owner_id"]
    terminal = FakeMT5(login=7007, password="pw-from-the-store", server="Demo-1")
    terminal.add_symbol("EURUSD", 1.1, 1.10002, volume_min=0.01, volume_step=0.01, volume_max=100.0)
    store = AccountStoreCredentials(api.ctx.engine, api.ctx.vault, owner)
    adapter = make_adapter("mt5", "fx", ["EURUSD"], [store, EnvCredentials({})], mt5_api=terminal)
    adapter.connect(type("Sink", (), {"__getattr__": lambda self, name: (lambda *a, **k: None)})())
    assert terminal.account_info().login == 7007
    adapter.close()


def test_another_traders_account_or_the_wrong_venue_is_not_used(api):
    ann, bob = api.user("ann", "trader"), api.user("bob", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "fx", "venue": "mt5", "credentials": MT5}, headers=ann)
    bob_id = api.client.get("/api/v1/auth/me", headers=bob).json()["id"]
    assert AccountStoreCredentials(api.ctx.engine, api.ctx.vault, bob_id).credentials("fx", "mt5") is None
    mine = AccountStoreCredentials(api.ctx.engine, api.ctx.vault, created.json()["owner_id"])
    with pytest.raises(ConfigError, match="is a mt5 account; the bot trades on alpaca"):
        mine.credentials("fx", "alpaca")
