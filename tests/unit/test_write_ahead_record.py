"""The write-ahead record (engine/store/write_ahead.py, issue 18's tick -> submit): an order's rows
are durable in one row of `write_ahead` before the venue call and reach their tables by the commit
after it. What must hold: the tables end exactly as the direct write leaves them; the venue is
called only once the record is durable; a crash between the two commits loses nothing and books
nothing twice, whoever reads the books first; a record that cannot be read back is refused, kept,
and never run. Real SQLite files, real OMS and paper venue; no timing asserted.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import msgpack
import pytest
from sqlalchemy.exc import IntegrityError

from engine.account_risk import SharedAccountRisk
from engine.orders import Fill, Order, OrderSide, OrderState, OrderType
from engine.risk import AccountLimits
from engine.store import write_ahead
from engine.store.db import make_engine
from engine.store.journal import SqlJournal, settle_if_left, settle_write_ahead
from engine.store.signals import SqlSignals
from engine.store.write_ahead import RecordLog, WriteAheadUnreadable
from tests.conftest import make_harness
from tests.unit.test_risk import Desk
from tests.unit.test_speed_submit import EURUSD, a_session, rows, store
from tests.unit.test_submit_path_commit import KEY, lock_is_free, shares


def unsettled(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """Each bot's records past its settled mark, read as another process would (the log beside
    the store, the mark in it)."""
    with sqlite3.connect(path) as connection:
        marks = dict(connection.execute("SELECT bot_id, settled FROM write_ahead").fetchall())
    found = {bot: [(seq, p) for seq, p in RecordLog(path.resolve(), bot).read() if seq > mark]
             for bot, mark in marks.items()}
    return {bot: records for bot, records in found.items() if records}


def records(path: Path) -> dict[str, bytes]:
    """The one record past each bot's mark (the tests here leave at most one)."""
    found = unsettled(path)
    assert all(len(r) == 1 for r in found.values()), found
    return {bot: r[0][1] for bot, r in found.items()}


def rewrite(path: Path, bot: str, records: list[tuple[int, bytes]]) -> None:
    """The bot's log made anew with these records (a tampered payload gets a valid frame)."""
    RecordLog(path.resolve(), bot).path.unlink()
    log = RecordLog(path.resolve(), bot)
    for seq, payload in records:
        log.append(seq, payload)
    log.close()


def order_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [r[0] for r in connection.execute("SELECT client_order_id FROM orders ORDER BY rowid")]


def _one_order(journal: SqlJournal, n: int, ts: int | None = None, side: OrderSide = OrderSide.BUY) -> Order:
    """Bot b's n-th order, a market order of 1,000 EURUSD, recorded PENDING_SUBMIT (at `ts`, else n)."""
    ts = n if ts is None else ts
    order = Order(f"b-{n:08d}", "b", "EURUSD", side, OrderType.MARKET, Decimal(1000), ts)
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, ts))
    return order


class RecordPath:
    """A SqlJournal whose every flush is an order's write-ahead (then `settle`, as the OMS does
    after its venue call), so a_session's traffic all goes through records."""

    def __init__(self, journal: SqlJournal, seen: list[dict[str, bytes]], path: Path) -> None:
        self.journal, self.seen, self.path = journal, seen, path

    def __getattr__(self, name: str):
        return getattr(self.journal, name)

    def flush(self) -> None:
        self.journal.write_ahead()
        self.seen.append(records(self.path))  # what the venue call would find committed
        self.journal.settle()


def test_the_record_path_leaves_the_tables_as_the_direct_write_does(tmp_path):
    record_path, direct_path = tmp_path / "record.db", tmp_path / "direct.db"
    record_engine, direct_engine = make_engine(store(record_path)), make_engine(store(direct_path))
    journal, direct = SqlJournal(record_engine, "b", "PAPER"), SqlJournal(direct_engine, "b", "PAPER")
    direct._writer = None  # the SQLAlchemy path: the tables in the write-ahead commit, as PostgreSQL has it
    signals, direct_signals = SqlSignals(record_engine), SqlSignals(direct_engine)
    seen: list[dict[str, bytes]] = []
    proxy = RecordPath(journal, seen, record_path)
    signals.defer_to(proxy)
    direct_signals.defer_to(direct)
    a_session(proxy, signals)  # type: ignore[arg-type]
    a_session(direct, direct_signals)
    assert rows(record_path) == rows(direct_path)
    assert len(seen) == 3 and all(list(r) == ["b"] for r in seen)   # each write-ahead left one record
    assert records(record_path) == {}                               # each settle took it
    assert journal.commits == 6 and direct.commits == 3
    journal.close()
    record_engine.dispose()
    direct_engine.dispose()


def test_between_the_two_commits_the_rows_and_the_signal_are_in_the_record_only(tmp_path):
    from engine.signals import Signal, on_stored

    path = tmp_path / "s.db"
    engine = make_engine(store(path))
    journal, signals = SqlJournal(engine, "b", "PAPER"), SqlSignals(engine)
    signals.defer_to(journal)
    woken: list[int] = []
    stop = on_stored(lambda: woken.append(1))
    signals.publish(Signal("b", "EURUSD", 5, -1, None, Decimal(1), 0.0, 0.0, 1.1, 0, 0))
    order = _one_order(journal, 1, ts=5, side=OrderSide.SELL)
    journal.set_checkpoint(4)
    journal.write_ahead()
    written = rows(path)
    assert written["signals"] == [] and woken == []     # a subscriber is not ahead of the bot's order
    assert written["orders"] == [] and written["order_events"] == [] and written["bots"] == [("b", -1)]
    payload = msgpack.unpackb(records(path)["b"])
    assert payload[0] == 1 and payload[1::3] == ["signals", "orders", "events", "checkpoint"]
    journal.record_event(order, order.transition(OrderState.SUBMITTED, 6))   # what the venue call reported
    journal.settle()
    written = rows(path)
    assert [r[3] for r in written["signals"]] == [-1] and woken == [1]
    assert [r[0] for r in written["orders"]] == ["b-00000001"] and written["orders"][0][12] == "SUBMITTED"
    assert [r[1] for r in written["order_events"]] == ["PENDING_SUBMIT", "SUBMITTED"]
    assert written["bots"] == [("b", 4)] and records(path) == {}
    journal.settle()   # nothing left: no commit
    assert journal.commits == 2 and not journal.pending and woken == [1]
    stop()
    journal.close()
    engine.dispose()


def test_the_oms_calls_the_venue_only_once_the_record_is_durable(tmp_path):
    path = tmp_path / "o.db"
    engine = make_engine(store(path))
    h = make_harness()
    h.oms.journal = SqlJournal(engine, "bot1", "PAPER")
    at_the_venue: list[tuple[dict[str, bytes], list[str]]] = []
    submit = h.venue.submit

    def watched(order: Order) -> None:
        at_the_venue.append((records(path), order_ids(path)))
        submit(order)

    h.venue.submit = watched  # type: ignore[method-assign]
    h.clock.ts = 10
    order = h.order("BUY", "2", OrderType.LIMIT, limit="99.00")
    ((record, in_orders),) = at_the_venue
    assert order.client_order_id.encode() in record["bot1"] and in_orders == []
    assert order_ids(path) == [order.client_order_id] and records(path) == {}   # settled after the call
    with sqlite3.connect(path) as connection:
        states = [r[0] for r in connection.execute("SELECT state FROM order_events ORDER BY id")]
    assert states == ["PENDING_SUBMIT", "SUBMITTED", "ACCEPTED"]
    h.oms.journal.close()
    engine.dispose()


def test_a_crash_between_the_commits_loses_nothing_and_books_nothing_twice(tmp_path):
    path, reference = tmp_path / "c.db", tmp_path / "r.db"
    engine, reference_engine = make_engine(store(path)), make_engine(store(reference))
    journal, direct = SqlJournal(engine, "b", "PAPER"), SqlJournal(reference_engine, "b", "PAPER")
    direct._writer = None
    order = Order("b-00000001", "b", "EURUSD", OrderSide.BUY, OrderType.MARKET, Decimal(1000), 5)
    pending = order.transition(OrderState.PENDING_SUBMIT, 5)
    for j in (journal, direct):
        j.record_event(order, pending)
        j.set_checkpoint(7)
    journal.write_ahead()
    direct.flush()
    journal.close()                       # the process dies in the venue call: no settle
    assert order_ids(path) == [] and list(records(path)) == ["b"]
    restarted = SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER")
    stored = restarted.load({"EURUSD": EURUSD})
    assert [(o.client_order_id, o.state) for o in stored.orders] == [("b-00000001", OrderState.PENDING_SUBMIT)]
    assert stored.checkpoint == 7 and records(path) == {}
    restarted.load({"EURUSD": EURUSD})     # a second reader finds nothing left to run
    assert rows(path) == rows(reference)
    restarted.close()
    engine.dispose()
    reference_engine.dispose()


def test_a_record_another_reader_took_is_not_run_again_by_the_bots_settle(tmp_path):
    path = tmp_path / "t.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    order = _one_order(journal, 1, ts=5)
    journal.write_ahead()
    other = make_engine(f"sqlite:///{path}")
    assert settle_write_ahead(other, "b") == 1   # the API read the bot's books during its venue call: mark 1
    assert order_ids(path) == ["b-00000001"] and unsettled(path) == {}
    assert settle_write_ahead(other, "b") == 1   # nothing past the mark: nothing run again
    journal.record_event(order, order.transition(OrderState.SUBMITTED, 6))
    journal.settle()                             # no IntegrityError on the order, no second event
    with sqlite3.connect(path) as connection:
        states = [r[0] for r in connection.execute("SELECT state FROM order_events ORDER BY id")]
        (state,) = connection.execute("SELECT state FROM orders").fetchone()
    assert states == ["PENDING_SUBMIT", "SUBMITTED"] and state == "SUBMITTED"
    journal.close()
    engine.dispose()
    other.dispose()


def _tampered(payload: bytes, how: str) -> bytes:
    data = msgpack.unpackb(payload)
    if how == "not msgpack":
        return b"\xc1evil" + payload
    if how == "unknown statement":
        data[1] = "evil_statement"
    elif how == "keys on a fixed shape":
        data[2] = ["client_order_id", "evil"]
    elif how == "a row too short":
        data[3][0] = data[3][0][:-1]
    elif how == "a map value":
        data[3][0][0] = {"evil": 1}
    elif how == "an ext value":
        data[3][0][0] = msgpack.ExtType(5, b"evil")
    elif how == "another bot's checkpoint":
        at = data.index("checkpoint")
        data[at + 2][0][-1] = "victim"
    elif how == "another version":
        data[0] = 2
    elif how == "trailing bytes":
        return payload + b"evil"
    return msgpack.packb(data)


@pytest.mark.parametrize("how", ["not msgpack", "unknown statement", "keys on a fixed shape", "a row too short",
                                 "a map value", "an ext value", "another bot's checkpoint", "another version",
                                 "trailing bytes"])
def test_a_record_that_cannot_be_read_back_is_refused_kept_and_never_run(tmp_path, how):
    path = tmp_path / "u.db"
    engine = make_engine(store(path))
    SqlJournal(engine, "victim", "PAPER")   # its checkpoint must stay where it is
    journal = SqlJournal(engine, "b", "PAPER")
    _one_order(journal, 1, ts=5)
    journal.set_checkpoint(9)
    journal.write_ahead()
    journal.close()
    ((seq, good),) = unsettled(path)["b"]
    bad = _tampered(good, how)
    rewrite(path, "b", [(seq, bad)])
    with pytest.raises(WriteAheadUnreadable) as refused:
        SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER").load({"EURUSD": EURUSD})
    assert "bot b's write-ahead record" in str(refused.value) and "evil" not in str(refused.value)
    assert records(path) == {"b": bad} and order_ids(path) == []
    assert sorted(rows(path)["bots"]) == [("b", -1), ("victim", -1)]
    engine.dispose()


def test_rows_the_tables_refuse_are_found_at_the_settle_and_the_record_is_kept(tmp_path):
    """The record's rows meet their constraints after the venue call, not before it (the module's
    stated cost): the settle fails, the order stays durable in the record, the restart refuses."""
    path = tmp_path / "k.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    order = _one_order(journal, 1, ts=5)
    stranger = Fill("x-1", "b-99999999", "EURUSD", OrderSide.BUY, 1000, 110000, 0, 0, 5, 2, 5)
    journal.record_fill(order, stranger)   # an order the store never saw: its foreign key fails
    journal.write_ahead()
    with pytest.raises(IntegrityError):
        journal.settle()
    assert order_ids(path) == [] and b"b-00000001" in records(path)["b"]
    assert lock_is_free(path)
    journal.close()
    with pytest.raises(WriteAheadUnreadable, match="cannot be applied"):
        SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER").load({"EURUSD": EURUSD})
    assert b"b-00000001" in records(path)["b"]
    engine.dispose()


def test_a_value_the_record_cannot_hold_is_written_to_the_tables_directly(tmp_path, monkeypatch):
    def refuses(_value: object) -> bytes:
        raise OverflowError("Integer value out of range")

    monkeypatch.setattr(write_ahead, "_ENCODE", refuses)
    path = tmp_path / "v.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    _one_order(journal, 1, ts=5)
    journal.write_ahead()
    assert order_ids(path) == ["b-00000001"] and records(path) == {}
    journal.settle()
    assert journal.commits == 1
    journal.close()
    engine.dispose()


def test_a_carried_account_check_commits_with_the_record_and_the_share_is_seen_before_the_venue(tmp_path):
    path = tmp_path / "a.db"
    url = store(path)
    account = SharedAccountRisk(make_engine(url), KEY, AccountLimits(max_gross_exposure=Decimal(10_000)))
    desk = Desk(account=account, bot_id="one")
    journal = SqlJournal(make_engine(url), "one", "PAPER")
    account.commit_with(desk.engine, journal)
    order = desk.order("BUY", "2")
    assert desk.engine.check(order, desk.portfolio) is None
    journal.record_event(order, order.transition(OrderState.PENDING_SUBMIT, desk.clock.ts))
    journal.write_ahead()
    assert shares(path)["one"] == ("200", 1) and lock_is_free(path)   # the account's other bots see it now
    assert order_ids(path) == [] and order.client_order_id.encode() in records(path)["one"]
    journal.settle()
    assert order_ids(path) == [order.client_order_id] and records(path) == {}
    assert journal.commits == 2
    account.release(desk.engine)
    journal.close()


def test_a_torn_last_record_was_never_followed_by_a_venue_call_and_is_ignored(tmp_path):
    """A write cut short by a crash: the record before it is run, the torn one is not, and the
    next records follow on."""
    path = tmp_path / "torn.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    _one_order(journal, 1)
    journal.write_ahead()                      # crash 1: in the venue call
    journal.close()
    log = RecordLog(path.resolve(), "b").path
    whole = log.read_bytes()
    log.write_bytes(whole + whole[:len(whole) - 7])   # crash 2: a second record, cut short
    restarted = SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER")
    assert order_ids(path) == ["b-00000001"]
    _one_order(restarted, 2)
    restarted.write_ahead()
    restarted.settle()
    assert order_ids(path) == ["b-00000001", "b-00000002"] and unsettled(path) == {}
    restarted.close()
    engine.dispose()


@pytest.mark.parametrize("damage", ["a flipped byte in the first record", "numbers that do not rise"])
def test_a_damaged_log_is_refused_and_left_as_it_is(tmp_path, damage):
    path = tmp_path / "d.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    _one_order(journal, 1)
    journal.write_ahead()
    journal.close()
    log = RecordLog(path.resolve(), "b")
    ((seq, payload),) = log.read()
    if damage == "numbers that do not rise":   # two runtimes appended
        rewrite(path, "b", [(seq + 1, payload), (seq, payload)])
    else:                                      # a record with a good one after it
        rewrite(path, "b", [(seq, payload), (seq + 1, payload)])
        raw = bytearray(log.path.read_bytes())
        raw[30] ^= 0xFF
        log.path.write_bytes(bytes(raw))
    kept = log.path.read_bytes()
    with pytest.raises(WriteAheadUnreadable, match="write-ahead log holds"):
        SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER")
    assert log.path.read_bytes() == kept and order_ids(path) == []
    engine.dispose()


def test_a_log_deleted_under_the_bot_stops_it_before_the_venue_call(tmp_path):
    from engine.errors import StoreUnavailable

    path = tmp_path / "gone.db"
    engine = make_engine(store(path))
    h = make_harness()
    h.oms.journal = SqlJournal(engine, "bot1", "PAPER")
    sent: list[str] = []
    submit = h.venue.submit
    h.venue.submit = lambda order: (sent.append(order.client_order_id), submit(order))  # type: ignore[method-assign]
    h.order("BUY", "1", OrderType.LIMIT, limit="99.00")   # the log exists now
    RecordLog(path.resolve(), "bot1").path.unlink()
    with pytest.raises(StoreUnavailable, match="did not reach its log"):
        h.order("BUY", "1", OrderType.LIMIT, limit="98.00")
    assert len(sent) == 1                       # the second order never reached the venue
    h.oms.journal.close()
    engine.dispose()


def test_the_log_is_named_by_a_hash_of_the_bot_id_inside_its_own_directory(tmp_path):
    path = (tmp_path / "n.db").resolve()
    log = RecordLog(path, "../../etc/evil bot")
    assert log.path.parent == path.parent / "n.db-write-ahead"
    assert len(log.path.name) == len("0" * 32 + ".log") and "evil" not in str(log.path)


def test_a_runtime_truncates_its_settled_log_past_the_limit_and_numbers_go_on(tmp_path, monkeypatch):
    monkeypatch.setattr(write_ahead, "LOG_LIMIT", 600)
    path = tmp_path / "l.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    log = RecordLog(path.resolve(), "b").path
    sizes = []
    for n in range(1, 9):
        _one_order(journal, n)
        journal.write_ahead()
        journal.settle()
        sizes.append(log.stat().st_size)
    assert 0 in sizes and max(sizes) <= 600 + 400      # truncated whenever it passed the limit
    journal.close()
    restarted = SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER")
    _one_order(restarted, 9)
    restarted.write_ahead()
    restarted.close()                                  # a crash in the venue call
    assert [seq for seq, _ in unsettled(path)["b"]] == [9]
    settle_write_ahead(make_engine(f"sqlite:///{path}"), "b")
    assert order_ids(path) == [f"b-{n:08d}" for n in range(1, 10)]
    engine.dispose()


def test_a_log_left_beside_a_replaced_store_is_refused_not_run_into_it(tmp_path):
    """The store file recreated while its bot's log stayed: the old records belong to the old
    store; running them into the new one would put old orders in fresh books."""
    path = tmp_path / "r.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    _one_order(journal, 1)
    journal.write_ahead()
    journal.close()
    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    fresh = make_engine(store(path))
    with pytest.raises(WriteAheadUnreadable, match="never marked"):
        SqlJournal(fresh, "b", "PAPER")
    assert order_ids(path) == [] and len(RecordLog(path.resolve(), "b").read()) == 1
    fresh.dispose()


def test_a_write_cut_short_stops_before_the_venue_and_the_next_runtime_cuts_it_off(tmp_path, monkeypatch):
    """A full disk: write(2) takes part of the record. The bot stops with a store error before the
    venue call; the restart ignores the torn record and its first append cuts it off."""
    import os

    from engine.errors import StoreUnavailable

    path = tmp_path / "full.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, data[:len(data) // 2]))
    _one_order(journal, 1)
    with pytest.raises(StoreUnavailable, match="did not reach its log"):
        journal.write_ahead()
    monkeypatch.setattr(os, "write", write)
    journal.close()
    torn = RecordLog(path.resolve(), "b").path.stat().st_size
    assert torn > 0 and order_ids(path) == []
    restarted = SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER")
    assert order_ids(path) == [] and unsettled(path) == {}
    _one_order(restarted, 2)
    restarted.write_ahead()
    restarted.settle()
    assert order_ids(path) == ["b-00000002"]
    assert [seq for seq, _ in RecordLog(path.resolve(), "b").read()] == [1]   # the torn bytes are gone
    restarted.close()
    engine.dispose()


def test_a_torn_tail_is_read_once_by_the_readers_not_at_every_read(tmp_path, monkeypatch):
    """A crash inside the append leaves torn bytes that only the bot's restart cuts off. The API's
    reads (settle_if_left) must read the log once, not at every request until that restart: the
    mark records the bytes its reader saw. A record appended after it is still run by the next read."""
    path = tmp_path / "t.db"
    engine = make_engine(store(path))
    journal = SqlJournal(engine, "b", "PAPER")
    _one_order(journal, 1)
    journal.write_ahead()                      # crash inside the venue call ...
    journal.close()
    log = RecordLog(path.resolve(), "b").path
    whole = log.read_bytes()
    log.write_bytes(whole + whole[:len(whole) - 7])   # ... after a second append, cut short
    scans = []
    real_scan = RecordLog._scan
    monkeypatch.setattr(RecordLog, "_scan", lambda self: scans.append(1) or real_scan(self))
    with engine.connect() as connection:
        for _ in range(4):
            settle_if_left(connection, "b")
    assert len(scans) == 1 and order_ids(path) == ["b-00000001"]
    restarted = SqlJournal(make_engine(f"sqlite:///{path}"), "b", "PAPER")   # cuts the torn bytes
    _one_order(restarted, 2)
    restarted.write_ahead()                    # and crashes in its venue call too
    with engine.connect() as connection:
        settle_if_left(connection, "b")
    assert order_ids(path) == ["b-00000001", "b-00000002"]
    restarted.close()
    engine.dispose()
