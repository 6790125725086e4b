"""The bot P&L the API shows includes the account-level charges booked into the bot (issues 15,
16): GET /bots/{id}/pnl has a `charges` figure, the sum of what was booked (funding, crypto fees
posted apart from fills), exactly; the account's external charges are not the bot's."""

from __future__ import annotations

from decimal import Decimal

from engine.charges import AccountCharge, ChargeKind
from engine.store.journal import SqlJournal
from tests.api.conftest import _apis, make_api, migrated_db  # noqa: F401  (fixtures)

T0 = 1_700_000_000_000_000_000


def test_the_bot_pnl_shows_the_charges_booked_into_it_and_not_the_accounts(make_api):  # noqa: F811
    api = make_api()
    admin = api.user("root", "admin")
    journal = SqlJournal(api.ctx.engine, "perp-bot", "BINANCEUSDM", "acct")
    booked = [AccountCharge("funding:1", ChargeKind.FUNDING, "BTC/USDT:USDT", "USDT", Decimal("-0.05000005"), T0),
              AccountCharge("funding:2", ChargeKind.FUNDING, "BTC/USDT:USDT", "USDT", Decimal("0.00000001"), T0 + 1)]
    for charge in booked:
        assert journal.record_charge("acct", charge, True, charge.amount, None, 1)
    external = AccountCharge("funding:3", ChargeKind.FUNDING, "ETH/USDT:USDT", "USDT", Decimal("-7"), T0 + 2)
    assert not journal.record_charge("acct", external, False)
    response = api.client.get("/api/v1/bots/perp-bot/pnl", headers=admin)
    assert response.status_code == 200, response.text
    assert Decimal(response.json()["charges"]) == Decimal("-0.05000004")
    fresh = api.client.get("/api/v1/bots/perp-bot/pnl", headers=admin).json()
    assert fresh["charges"] == response.json()["charges"]
