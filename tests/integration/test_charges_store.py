"""The `charges` table (migration 0013) and SqlJournal.record_charge on SQLite and PostgreSQL:
one row per account and venue id, so a charge seen by several bots of an account, by a poll and
by a restart, is booked once; an external row may be claimed, by one claimant only."""

from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import inspect, select

from engine.charges import AccountCharge, ChargeKind
from engine.store.db import make_engine, upgrade
from engine.store.journal import CHARGES, SqlJournal

T0 = 1_700_000_000_000_000_000
FUNDING = AccountCharge("funding:42", ChargeKind.FUNDING, "BTC/USDT:USDT", "USDT", Decimal("-0.05000005"), T0)


def test_the_migration_makes_the_table_with_its_unique_key(database_url):
    upgrade(database_url)
    inspector = inspect(make_engine(database_url))
    columns = {c["name"] for c in inspector.get_columns("charges")}
    assert {"account_id", "charge_id", "bot_id", "kind", "symbol", "asset", "amount", "ts", "booked", "value",
            "price", "fill_seq"} <= columns
    unique = [set(u["column_names"]) for u in inspector.get_unique_constraints("charges")]
    assert {"account_id", "charge_id"} in unique


def test_a_charge_is_booked_once_by_whoever_sees_it_first_and_amounts_stay_exact(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    a, b = SqlJournal(engine, "bot-a", "V", "acct"), SqlJournal(engine, "bot-b", "V", "acct")
    assert a.record_charge("acct", FUNDING, True, FUNDING.amount, None, 3)
    assert not a.record_charge("acct", FUNDING, True, FUNDING.amount, None, 3)   # seen again: no
    assert not b.record_charge("acct", FUNDING, True, FUNDING.amount, None, 0)   # another bot: no
    assert not b.record_charge("acct", FUNDING, False)
    # the same venue id on another account is another charge
    assert b.record_charge("other-acct", FUNDING, True, FUNDING.amount, None, 0)
    with engine.connect() as connection:
        rows = connection.execute(select(CHARGES.c.account_id, CHARGES.c.bot_id, CHARGES.c.booked, CHARGES.c.amount,
                                         CHARGES.c.value, CHARGES.c.fill_seq).order_by(CHARGES.c.id)).all()
    amount = Decimal("-0.05000005")
    assert [tuple(r) for r in rows] == [("acct", "bot-a", True, amount, amount, 3),
                                        ("other-acct", "bot-b", True, amount, amount, 0)]
    loaded = a.load({})
    assert [(c.charge.charge_id, c.value, c.fill_seq) for c in loaded.charges] == [
        ("funding:42", Decimal("-0.05000005"), 3)]
    assert b.load({}).charges[0].charge.amount == Decimal("-0.05000005")


def test_an_external_charge_is_claimed_by_one_of_many_racing_claimants(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    SqlJournal(engine, "seer", "V", "acct").record_charge("acct", FUNDING, False)
    journals = [SqlJournal(engine, f"bot-{i}", "V", "acct") for i in range(8)]
    start = threading.Barrier(len(journals))
    won: list[str] = []

    def claim(journal: SqlJournal) -> None:
        start.wait()
        if journal.record_charge("acct", FUNDING, True, FUNDING.amount, None, 1):
            won.append(journal.bot_id)

    threads = [threading.Thread(target=claim, args=(j,)) for j in journals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    with engine.connect() as connection:
        rows = connection.execute(select(CHARGES.c.bot_id, CHARGES.c.booked)).all()
    assert [tuple(r) for r in rows] == [(won[0], True)]
