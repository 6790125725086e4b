"""The API's encrypted broker accounts as a credential source for brokers.factory.

A bot config names its account; the account belongs to the bot's owner. This source finds the
owner's account of that name, checks it is for the venue the bot trades, and decrypts its
credentials with the accounts key, so `make_adapter` can build the adapter without a secret
ever appearing in a config, a log or an API answer.
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.security import Vault
from engine.errors import ConfigError
from engine.store.models import BrokerAccountRow


class AccountStoreCredentials:
    def __init__(self, engine: Engine, vault: Vault, owner_id: int) -> None:
        self.engine, self.vault, self.owner_id = engine, vault, owner_id

    def credentials(self, account: str, venue: str) -> dict[str, str] | None:
        with Session(self.engine) as db:
            row = db.scalar(select(BrokerAccountRow).where(BrokerAccountRow.owner_id == self.owner_id,
                                                           BrokerAccountRow.name == account))
        if row is None:
            return None
        if row.venue != venue:
            raise ConfigError("account", f"account {account!r} is a {row.venue} account; the bot trades on {venue}")
        try:
            found = json.loads(self.vault.open(row.secret))
        except ValueError as exc:
            raise ConfigError("account", f"account {account!r}: {exc}") from None
        return {str(k): str(v) for k, v in found.items()}
