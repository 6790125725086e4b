"""Statements compiled once and run at the driver on one held SQLite connection: the hot writes.

Why: the write-ahead commit sits between a strategy's decision and the venue (engine/oms.py), and
on SQLite the commit itself (WAL, synchronous=NORMAL: no fsync) costs tens of microseconds while
SQLAlchemy's per-statement machinery (pool checkout and reset, cache lookup, execution context,
result setup) cost several times that, per flush. Here a statement is compiled by SQLAlchemy once,
for the engine's own dialect, so the SQL text, the column list and every column type's bind
processing (ExactDecimal's canonical text, booleans, JSON) stay exactly SQLAlchemy's; only the
per-call machinery is skipped: rows become parameter tuples and go to sqlite3's executemany, which
keeps its own prepared-statement cache per connection.

Durability is unchanged: the connection comes from the engine's pool, so the engine's connect
hook set WAL and synchronous=NORMAL on it (a commit survives a killed process; a power loss may
take the last commits, the stated limit). A failed transaction is rolled back and the connection
given up (the next one is a fresh checkout), and a driver error is raised as SQLAlchemy's own
exception class, so callers that stop a bot on SQLAlchemyError (live/runner.py) still do.

Only for a SQLite database in a file (`usable`): PostgreSQL and in-memory SQLite keep the
SQLAlchemy path (an in-memory database lives in its thread's one pooled connection).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

from sqlalchemy import JSON, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from engine.store.db import sqlite_file
from engine.store.models import ExactDecimal, exact_text


class Prepared:
    """One statement compiled for `engine`'s dialect with exactly the parameters `keys` (plus the
    literal values the statement holds itself, such as a WHERE on the bot's id)."""

    __slots__ = ("sql", "_names", "_processors", "_literals", "row")

    def __init__(self, engine: Engine, statement: ClauseElement, keys: Sequence[str]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        names = list(compiled.positiontup or [])
        literals = {n: v for n, v in compiled.params.items() if n not in keys}
        unknown = [n for n in names if n not in keys and (n not in literals or literals[n] is None)]
        if unknown:  # a column with a Python-side default the caller does not give: SQLAlchemy would fill it
            raise ValueError(f"prepared statement needs values for {unknown}")
        self.sql = str(compiled)
        self._names = names
        self._literals = literals
        self._processors: list[Callable[[Any], Any] | None] = [
            _processor(compiled.binds[n].type, dialect) for n in names]
        self.row = _row_function(tuple((n, p, n in literals) for n, p in zip(names, self._processors)), literals)

    @property
    def width(self) -> int:
        """How many parameters one row binds (the length of `row`'s tuple)."""
        return len(self._names)

    def own_values(self) -> list[tuple[int, Any]]:
        """Where `row`'s tuple holds the statement's own values (a WHERE on a bot's id), and what:
        a tuple stored elsewhere (a write-ahead record) is checked against them before it is run."""
        template = self.row(_Nothing())
        return [(i, template[i]) for i, name in enumerate(self._names) if name in self._literals]


class _Nothing(dict):  # type: ignore[type-arg]
    """A row of values that are all None (Prepared.own_values)."""

    def __missing__(self, key: str) -> None:
        return None


def _row_function(plan: tuple[tuple[str, Callable[[Any], Any] | None, bool], ...],
                  literals: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """`Prepared.row` for one statement: the driver's parameter tuple for one row of values (by
    column key), each value through its bind processor (None included, as SQLAlchemy does), the
    statement's own literals in their places.

    Generated as one tuple expression, because this runs for every row of every write-ahead flush,
    between a decision and the venue: a loop over the plan costs ~2x more per row (27 columns of
    an order). The generated source only ever holds positional names (p0, l0) and repr()s of the
    column keys, never a value."""
    scope: dict[str, Any] = {}
    terms = []
    for i, (name, process, literal) in enumerate(plan):
        if literal:
            scope[f"l{i}"] = literals[name]
            value = f"l{i}"
        else:
            value = f"v[{name!r}]"
        if process is not None:
            scope[f"p{i}"] = process
            value = f"p{i}({value})"
        terms.append(value)
    source = f"def row(v):\n    return ({', '.join(terms)}{',' if len(terms) == 1 else ''})\n"
    exec(compile(source, "<prepared row>", "exec"), scope)  # noqa: S102 - source built above from keys only
    return scope["row"]  # type: ignore[no-any-return]


def _processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The bind processor SQLAlchemy would run for a value of `type_`; ExactDecimal's on SQLite is
    its `exact_text` itself, without TypeDecorator's two calls per value (a flush binds dozens)."""
    if isinstance(type_, ExactDecimal) and dialect.name == "sqlite":
        return exact_text
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if isinstance(type_, JSON) and process is not None and getattr(dialect, "_json_serializer", None) is None:
        return _json_text(process)
    return process


# json.dumps's own C encoder with json.dumps's defaults, built once: json.dumps builds one per call,
# which is half its cost for a signal's three-number payload (2.5 -> 1.3 us). markers=None: no
# circular-reference bookkeeping, which a dict of numbers cannot need (a circular value would
# end in RecursionError instead of ValueError; either way nothing is written).
_ENCODE = c_make_encoder(None, json.JSONEncoder().default, encode_basestring_ascii, None, ": ", ", ",
                         False, False, True) if c_make_encoder is not None else None


def _json_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLAlchemy's JSON bind processor, with a dict (never SQL NULL) encoded by _ENCODE: the same
    text json.dumps writes (tests/unit/test_prepared_rows.py holds the two together)."""
    encode = _ENCODE
    if encode is None:
        return process

    def json_text(value: Any) -> Any:
        if type(value) is dict:
            return "".join(encode(value, 0))
        return process(value)
    return json_text


def usable(engine: Engine) -> bool:
    """Whether the held-connection path applies: SQLite on a file (module docstring)."""
    return sqlite_file(engine.url) is not None


class _Held:
    """One pooled connection, shared by the writers of one thread on one database file.

    `carry`: the open transaction on it was left for the next `SqliteWriter.write` to commit (the
    account check's lock and share, committed with the journal's write-ahead: SqliteWriter.carry)."""

    __slots__ = ("key", "fairy", "connection", "refs", "broken", "carry", "commits")

    def __init__(self, key: tuple[str, int], fairy: Any) -> None:
        self.key = key
        self.fairy = fairy
        self.connection: sqlite3.Connection = fairy.driver_connection
        self.refs = 0
        self.broken = False
        self.carry = False
        self.commits = 0  # writes committed since its last checkpoint_if_due checkpoint


_HELD: dict[tuple[str, int], _Held] = {}
_HELD_LOCK = threading.Lock()

# WAL checkpoints of a held connection (SqliteWriter.checkpoint_if_due): SQLite's own only as the bound
HELD_AUTOCHECKPOINT = 4_000      # frames (16 MB of 4 KiB pages): wal_autocheckpoint of a held connection
DEFAULT_AUTOCHECKPOINT = 1_000   # SQLite's default, put back before the connection returns to its pool
IDLE_CHECKPOINT_COMMITS = 100    # commits between two checkpoints between inputs (~1,000 frames, the default)


def _acquire(engine: Engine) -> _Held:
    key = (str(Path(engine.url.database or "").resolve()), threading.get_ident())
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is None:
            held = _HELD[key] = _Held(key, engine.raw_connection())
            _autocheckpoint(held, HELD_AUTOCHECKPOINT)
        held.refs += 1
        return held


def _autocheckpoint(held: _Held, frames: int) -> None:
    """Set the connection's wal_autocheckpoint (a failure here is not the caller's: its first write
    says what is wrong with the database)."""
    try:
        held.connection.execute(f"PRAGMA wal_autocheckpoint={frames}")
    except Exception:  # noqa: BLE001 - see above; also a connection another thread finalizes
        pass


def _release(held: _Held, broken: bool = False) -> None:
    """A writer lets go of `held`; `broken`: after a failure, nobody may use it again."""
    with _HELD_LOCK:
        if broken and not held.broken:
            held.broken = True
            try:
                held.fairy.invalidate()  # closes the DBAPI connection: the open transaction goes with it
            except Exception:  # noqa: BLE001 - the connection is being thrown away either way
                pass
        if (broken or held.refs <= 1) and _HELD.get(held.key) is held:
            del _HELD[held.key]
        held.refs -= 1
        if held.refs > 0:
            return
    if not held.broken:
        _autocheckpoint(held, DEFAULT_AUTOCHECKPOINT)  # back to the pool as it came
    try:
        held.fairy.close()  # back to its pool (a disposed pool closes it)
    except Exception:  # noqa: BLE001 - at interpreter exit or after dispose: nothing left to return to
        pass


class SqliteWriter:
    """Runs batches of prepared statements as one transaction on a held connection.

    The connection is checked out of `engine`'s pool on first use and shared by every writer of
    the calling thread on the same database file (the bot's journal, its signals, its account
    checks: live/runner.py runs them all on the bot's thread, one after the other). Why shared:
    SQLite drops a connection's page cache whenever another connection committed since its last
    transaction, so two connections taking turns (the account check's commit, then the journal's)
    re-read every page each time; measured here, 100 -> 270 us of CPU for the same write-ahead.
    A transaction never spans two writers' calls: each call commits or rolls back before it
    returns (the account check's spans begin ... publish/abort, inside one risk check)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._held: _Held | None = None
        self._finalizer: weakref.finalize | None = None

    def prepare(self, statement: ClauseElement, keys: Iterable[str]) -> Prepared:
        return Prepared(self.engine, statement, list(keys))

    def connection(self) -> sqlite3.Connection:
        """The held connection, checked out now if need be (for callers that run their own
        statements, such as the account's lock and reads in engine/account_risk.py)."""
        held = self._held
        if held is None or held.broken:
            if held is not None:
                self._let_go()
            held = self._held = _acquire(self.engine)
            # a writer dropped without close() (a short-lived sink) still lets its connection go
            self._finalizer = weakref.finalize(self, _release, held)
        return held.connection

    def write(self, batches: Iterable[tuple[Prepared, Sequence[Mapping[str, Any]]]],
              first: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Every (statement, rows) in order, then one commit; nothing of it on any error. A
        transaction another writer left to be carried (`carry`) is completed by this commit: its
        writes and these are durable together, or, on an error, neither. `first` runs its own
        statements on the connection before the batches, in the same transaction (the journal's
        write-ahead record: engine/store/write_ahead.py)."""
        statement: Prepared | None = None
        connection = self.connection()
        held = self._held
        assert held is not None
        if connection.in_transaction and not held.carry:  # another writer of this thread is inside its transaction
            raise RuntimeError("a store transaction is already open on this thread's connection")
        try:
            if first is not None:
                first(connection)
            for statement, rows in batches:
                if len(rows) == 1:
                    connection.execute(statement.sql, statement.row(rows[0]))
                else:
                    connection.executemany(statement.sql, [statement.row(r) for r in rows])
            connection.commit()
            held.carry = False
            held.commits += 1
        except sqlite3.Error as error:
            self.discard()
            raise DBAPIError.instance(statement.sql if statement is not None else "", None, error,
                                      sqlite3.Error) from error
        except BaseException:
            self.discard()
            raise

    def carry(self) -> None:
        """Leave the transaction open on the held connection for the next `write` of this thread's
        writers to commit (or `settle`). Why: the account check's lock and share write and the
        journal's write-ahead of the order it passed then cost one commit, not two, and are
        durable together (engine/account_risk.py). The caller must make sure that write follows
        before anything else touches the database from this thread (another connection would wait
        for this transaction's lock)."""
        held = self._held
        if held is None or not held.connection.in_transaction:
            raise RuntimeError("no open transaction to carry")
        held.carry = True

    @property
    def carrying(self) -> bool:
        """Whether the held connection has a carried transaction open (`carry`)."""
        held = self._held
        return held is not None and held.carry and not held.broken and held.connection.in_transaction

    def settle(self, commit: bool) -> None:
        """Commit, or roll back, a carried transaction, if one is open; nothing otherwise."""
        held = self._held
        if held is None or not held.carry:
            return
        held.carry = False
        if held.broken or not held.connection.in_transaction:
            return
        try:
            if commit:
                held.connection.commit()
            else:
                held.connection.rollback()
        except sqlite3.Error as error:
            self.discard()
            raise DBAPIError.instance("COMMIT" if commit else "ROLLBACK", None, error, sqlite3.Error) from error

    def checkpoint_if_due(self) -> bool:
        """A PASSIVE WAL checkpoint on the held connection, once IDLE_CHECKPOINT_COMMITS writes were
        committed since the last; True if one ran. For the owner to call between two inputs.

        Why: SQLite checkpoints inside the commit that takes the WAL past wal_autocheckpoint, and on
        a bot's connection that commit is the write-ahead between a decision and the venue: about
        one order in a hundred copied a thousand pages first (the tick -> submit p99). A held
        connection's own threshold is HELD_AUTOCHECKPOINT instead, and its owner checkpoints here
        when its input is done, as often as SQLite would have. Same thread, no transaction open:
        the copy completes and the next write restarts the WAL, so it stays as small as before;
        should the owner never call this (or a checkpoint fail busy), SQLite's own at
        HELD_AUTOCHECKPOINT frames still bounds it. (A background thread checkpointing instead
        races the writer: the WAL then restarts only by chance; measured, it grew 70x past its bound.)"""
        held = self._held
        if held is None or held.broken or held.commits < IDLE_CHECKPOINT_COMMITS:
            return False
        connection = held.connection
        if connection.in_transaction:
            return False
        held.commits = 0
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # busy (another checkpoint): the autocheckpoint bound stays
            return False
        return True

    def joins(self, other: "SqliteWriter") -> bool:
        """Whether `other` writes on this writer's connection (same file, same thread), so that a
        transaction one of them carries is committed by the other's next write."""
        return self.connection() is other.connection()

    def discard(self) -> None:
        """After a failure: the connection is rolled back and given up, for every writer sharing it
        (its state is unknown); the next call checks out a fresh one."""
        self._let_go(broken=True)

    def close(self) -> None:
        """Let go of the connection (back to the pool once no writer of its thread holds it). Idempotent."""
        self._let_go()

    def _let_go(self, broken: bool = False) -> None:
        held, self._held = self._held, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if held is not None:
            _release(held, broken)
