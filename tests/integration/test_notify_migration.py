"""Migration 0015 creates the notification tables as api/notify/store.py declares them, and goes
back to 0014 without them (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import inspect

from api.notify.store import metadata
from engine.store.db import make_engine
from tests.conftest import migrate_store




def test_migration_0015_matches_the_declared_tables_and_goes_back(database_url):
    migrate_store(database_url, "0015")
    engine = make_engine(database_url)
    try:
        found = inspect(engine)
        for table in metadata.sorted_tables:
            columns = {c["name"] for c in found.get_columns(table.name)}
            assert columns == {c.name for c in table.columns}, table.name
        unique = found.get_unique_constraints("notification_deliveries")
        assert [u["column_names"] for u in unique] == [["rule_id", "event_key"]]  # one delivery per (rule, event)
        migrate_store(database_url, "0014", down=True)
        assert not set(metadata.tables) & set(inspect(engine).get_table_names())
        migrate_store(database_url, "0015")
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
