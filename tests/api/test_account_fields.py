"""Broker accounts are checked against their venue's credential fields when they are stored
(POST and PUT): a missing, unknown or malformed field is a 422 naming it, the ccxt exchange must
be one ccxt knows and gets what its requiredCredentials asks for, and no error or answer repeats a
credential's value."""

from __future__ import annotations

import pytest

SECRET = "s3cr3t-value-never-shown-0421"
GOOD = {
    "alpaca": {"api_key": "AKEXAMPLE00001234", "secret_key": SECRET, "paper": True},
    "ccxt": {"exchange": "binance", "api_key": "binance-key-5678", "secret": SECRET, "sandbox": "true"},
    "mt5": {"login": 81234567, "password": SECRET, "server": "Broker-Demo"},
    "paper": {},
}


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_an_account_with_its_venues_fields_is_stored(api, venue):
    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "a1", "venue": venue, "credentials": GOOD[venue]},
                              headers=ann)
    assert created.status_code == 201, created.text
    assert SECRET not in created.text


@pytest.mark.parametrize("venue, credentials, field", [
    # ccxt's name, not alpaca's
    ("alpaca", {"api_key": "AKEXAMPLE00001234", "secret": SECRET}, "credentials.secret"),
    ("alpaca", {"api_key": "AKEXAMPLE00001234"}, "credentials.secret_key"),
    ("alpaca", {"api_key": "AKEXAMPLE00001234", "secret_key": SECRET, "paper": "maybe"}, "credentials.paper"),
    ("ccxt", {"api_key": "k" * 12, "secret": SECRET}, "credentials.exchange"),
    ("ccxt", {"exchange": "binance", "api_key": "k" * 12}, "credentials.secret"),
    ("ccxt", {"exchange": "okx", "api_key": "k" * 12, "secret": SECRET}, "credentials.password"),  # okx's passphrase
    ("ccxt", {"exchange": "hyperliquid", "api_key": "k" * 12, "secret": SECRET}, "credentials.private_key"),
    ("ccxt", {"exchange": SECRET, "api_key": "k" * 12, "secret": "x" * 12}, "credentials.exchange"),
    ("ccxt", {"exchange": "binance", "apiKey": "k" * 12, "secret": SECRET}, "credentials.apiKey"),
    ("mt5", {"login": "not-a-number", "password": SECRET, "server": "Broker-Demo"}, "credentials.login"),
    ("mt5", {"login": 81234567, "server": "Broker-Demo"}, "credentials.password"),
    ("mt5", {"login": 81234567, "password": SECRET, "server": ""}, "credentials.server"),
    ("mt5", {"login": 81234567, "password": SECRET, "server": "B", "bridge_port": "99999"}, "credentials.bridge_port"),
    ("paper", {"api_key": SECRET}, "credentials.api_key"),
])
def test_a_missing_unknown_or_malformed_field_is_refused_naming_it_without_its_value(api, venue, credentials, field):
    ann = api.user("ann", "trader")
    refused = api.client.post("/api/v1/accounts", json={"name": "a1", "venue": venue, "credentials": credentials},
                              headers=ann)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == field
    assert SECRET not in refused.text and "not-a-number" not in refused.text
    assert api.client.get("/api/v1/accounts", headers=ann).json() == []  # nothing stored


def test_an_unknown_field_suggests_the_venues_spelling(api):
    ann = api.user("ann", "trader")
    refused = api.client.post("/api/v1/accounts", json={"name": "a1", "venue": "ccxt", "credentials": {
        "exchange": "binance", "apiKey": "k" * 12, "secret": SECRET}}, headers=ann)
    assert "api_key" in refused.json()["error"]["message"]
    typo = api.client.post("/api/v1/accounts", json={"name": "a1", "venue": "ccxt", "credentials": {
        "exchange": "binanse", "api_key": "k" * 12, "secret": SECRET}}, headers=ann)
    assert typo.status_code == 422 and "'binance'" in typo.json()["error"]["message"]


def test_put_replaces_the_credentials_under_the_same_checks(api):
    from api.credentials import AccountStoreCredentials

    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "fx", "venue": "mt5", "credentials": GOOD["mt5"]},
                              headers=ann).json()
    bad = api.client.put(f"/api/v1/accounts/{created['id']}", json={"venue": "mt5", "credentials": {
        "login": 81234567, "password": "new-password-0001"}}, headers=ann)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "credentials.server"
    store = AccountStoreCredentials(api.ctx.engine, api.ctx.vault, created["owner_id"])
    assert store.credentials("fx", "mt5")["password"] == SECRET  # the refused PUT changed nothing
    good = api.client.put(f"/api/v1/accounts/{created['id']}", json={"venue": "mt5", "credentials": {
        "login": 81234567, "password": "new-password-0001", "server": "Broker-Live"}}, headers=ann)
    assert good.status_code == 200, good.text
    assert "new-password-0001" not in good.text and good.json()["hint"] == "****4567"
    assert store.credentials("fx", "mt5") == {"login": "81234567", "password": "new-password-0001",
                                              "server": "Broker-Live"}
    bea = api.user("bea", "trader")
    assert api.client.put(f"/api/v1/accounts/{created['id']}", json={"venue": "paper"}, headers=bea).status_code == 404


def test_the_venue_of_an_account_a_bot_trades_on_cannot_change_under_it(api):
    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "fx", "venue": "mt5", "credentials": GOOD["mt5"]},
                              headers=ann).json()
    bot = {"id": "mt5-bot", "strategy": "sma_cross", "symbol": "EURUSD", "venue": "mt5", "account": "fx"}
    assert api.client.post("/api/v1/bots", json=bot, headers=ann).status_code == 201
    moved = api.client.put(f"/api/v1/accounts/{created['id']}", json={"venue": "alpaca",
                                                                      "credentials": GOOD["alpaca"]}, headers=ann)
    assert moved.status_code == 409 and moved.json()["error"]["field"] == "venue"


def test_the_hint_never_comes_from_a_secret(api):
    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "k", "venue": "ccxt", "credentials": GOOD["ccxt"]},
                              headers=ann).json()
    assert created["hint"] == "****5678"
