"""Broker accounts: credentials encrypted at rest with the environment's key, never returned."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import BrokerAccountRow

SECRET = {"api_key": "AKIAEXAMPLEKEY9876", "secret_key": "s3cr3t-never-shown-4321"}


def test_credentials_are_encrypted_at_rest_with_the_configured_key(make_api):
    key = Fernet.generate_key().decode()
    api = make_api(accounts_key=key)
    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "live", "venue": "alpaca", "credentials": SECRET},
                              headers=ann)
    assert created.status_code == 201
    with Session(api.ctx.engine) as db:
        stored = db.scalar(select(BrokerAccountRow.secret))
    assert SECRET["secret_key"] not in stored and SECRET["api_key"] not in stored
    assert json.loads(Fernet(key.encode()).decrypt(stored.encode())) == SECRET


def test_credentials_are_never_returned_only_a_masked_hint(api):
    ann = api.user("ann", "trader")
    created = api.client.post("/api/v1/accounts", json={"name": "live", "venue": "alpaca", "credentials": SECRET},
                              headers=ann)
    for body in (created.text, api.client.get("/api/v1/accounts", headers=ann).text,
                 api.client.get(f"/api/v1/accounts/{created.json()['id']}", headers=ann).text):
        assert SECRET["secret_key"] not in body and SECRET["api_key"] not in body
    shown = api.client.get(f"/api/v1/accounts/{created.json()['id']}", headers=ann).json()
    assert set(shown) == {"id", "name", "venue", "owner_id", "hint", "created_at"}
    assert shown["hint"] == "****9876"


def test_an_account_a_bot_uses_cannot_be_deleted(api):
    ann = api.user("ann", "trader")
    account = api.client.post("/api/v1/accounts", json={"name": "live", "venue": "alpaca", "credentials": SECRET},
                              headers=ann).json()
    api.bot(ann, "b1", venue="alpaca", account="live")
    assert api.client.delete(f"/api/v1/accounts/{account['id']}", headers=ann).status_code == 409
    api.client.delete("/api/v1/bots/b1", headers=ann)
    assert api.client.delete(f"/api/v1/accounts/{account['id']}", headers=ann).status_code == 204


def test_a_bot_on_an_account_of_another_venue_is_refused(api):
    ann = api.user("ann", "trader")
    api.client.post("/api/v1/accounts", json={"name": "live", "venue": "alpaca", "credentials": SECRET}, headers=ann)
    response = api.client.post("/api/v1/bots", json={"id": "b1", "strategy": "sma_cross", "symbol": "BTC/USDT",
                                                     "venue": "ccxt", "account": "live"}, headers=ann)
    assert response.status_code == 422 and response.json()["error"]["field"] == "venue"
