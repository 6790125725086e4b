"""The store's layout for the order's write-ahead commit (issue 18, tick -> submit): migration 0017
drops the signals' unused market-time index (and goes back), and the bot's signal reads still go
by an index; migration 0018 adds the write-ahead records' settled marks (and goes back)."""

from __future__ import annotations


from sqlalchemy import inspect, text

from engine.store.db import make_engine, upgrade
from engine.store.models import SignalRow, WriteAheadRow
from tests.conftest import migrate_store




def _signal_indexes(engine) -> dict[str, list[str]]:
    return {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("signals")}


def test_migration_0017_drops_the_signals_ts_index_as_the_model_declares_and_goes_back(database_url):
    migrate_store(database_url, "0016")
    engine = make_engine(database_url)
    try:
        assert _signal_indexes(engine)["ix_signals_ts"] == ["ts"]
        migrate_store(database_url, "0017")
        declared = {ix.name: [c.name for c in ix.columns] for ix in SignalRow.__table__.indexes}
        assert _signal_indexes(engine) == declared == {"ix_signals_bot_id": ["bot_id"]}
        migrate_store(database_url, "0016", down=True)
        assert _signal_indexes(engine)["ix_signals_ts"] == ["ts"]
    finally:
        engine.dispose()


def test_the_bots_signal_reads_still_go_by_an_index_on_sqlite(tmp_path):
    """The feed's "this bot's signals after id N, by id" and SqlSignals.load's "this bot's by ts"
    are index searches on ix_signals_bot_id, not table scans, without the ts index."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            for sql in ("SELECT * FROM signals WHERE bot_id = 'b' AND id > 5 ORDER BY id LIMIT 10",
                        "SELECT * FROM signals WHERE bot_id = 'b' ORDER BY ts, id"):
                plan = " ".join(str(row[-1]) for row in connection.execute(text("EXPLAIN QUERY PLAN " + sql)))
                assert "USING INDEX ix_signals_bot_id" in plan, plan
    finally:
        engine.dispose()


def test_migration_0018_adds_the_settled_marks_as_the_model_declares_and_goes_back(database_url):
    migrate_store(database_url, "0017")
    engine = make_engine(database_url)
    try:
        assert "write_ahead" not in inspect(engine).get_table_names()
        migrate_store(database_url, "0018")
        columns = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("write_ahead")}
        declared = {c.name: c.nullable for c in WriteAheadRow.__table__.columns}
        assert columns == declared == {"bot_id": False, "settled": False, "settled_size": False}
        assert inspect(engine).get_pk_constraint("write_ahead")["constrained_columns"] == ["bot_id"]
        with engine.begin() as connection:   # the defaults a bot's first journal relies on
            connection.execute(text("INSERT INTO write_ahead (bot_id) VALUES ('b')"))
            assert connection.execute(text("SELECT settled, settled_size FROM write_ahead")).one() == (0, 0)
        migrate_store(database_url, "0017", down=True)
        assert "write_ahead" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_the_marks_are_one_page_of_a_table_without_rowid_on_sqlite(tmp_path):
    """Keyed by bot with no rowid: a settle's move of the mark touches the one b-tree."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sql = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'write_ahead'")).scalar()
            indexes = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' "
                                              "AND tbl_name = 'write_ahead'")).all()
        assert "WITHOUT ROWID" in sql.upper() and indexes == []
    finally:
        engine.dispose()
