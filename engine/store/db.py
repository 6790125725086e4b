"""Where the store lives and how to reach it.

SQLite by default (a file under var/, WAL mode so readers never block the writer, synchronous
NORMAL, which survives a killed process: the WAL is in the OS before a commit returns), or
PostgreSQL by URL. TICKBRIDGE_DATABASE_URL overrides the default; an explicit URL overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from engine.errors import StoreUnavailable
from engine.settings import StoreSettings, load_group

DEFAULT_URL = "sqlite:///var/tickbridge.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(explicit: str | None = None) -> str:
    url = explicit or load_group(StoreSettings).database_url or DEFAULT_URL
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def masked(url: str) -> str:
    """The URL as it may appear in a message: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL: show only its scheme
        return url.split("://", 1)[0] + "://..."


def make_engine(url: str | None = None, pool_size: int | None = None, pool_timeout: float | None = None) -> Engine:
    """An engine for `url`. `pool_size` fixes the connection pool (no overflow: a server sizes it
    to its worker threads, so a request never waits for a connection it cannot get);
    `pool_timeout` bounds the wait for one when something else holds them all (then
    sqlalchemy.exc.TimeoutError, which the API answers with 503)."""
    url = database_url(url)
    pool: dict[str, Any] = {}
    if pool_size is not None:
        pool.update(pool_size=pool_size, max_overflow=0)
    if pool_timeout is not None:
        pool["pool_timeout"] = pool_timeout
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            pool = {}  # an in-memory database lives in one connection: no pool to size
        engine = create_engine(url, connect_args={"timeout": 5}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3}, **pool)


def sqlite_file(url: "str | URL") -> Path | None:
    """The resolved file of a SQLite URL; None for PostgreSQL, an in-memory database or a `file:`
    URI. The one rule for "a SQLite store in a file" (the file watch, the held-connection writer,
    the write-ahead log's place beside the store)."""
    parsed = make_url(database_url(url)) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


class StoreLost(StoreUnavailable):
    """The store's file is not the one the bot opened: deleted, or replaced by another file.
    `stop_reason` is what a bot's status reports when this stopped it."""

    stop_reason = "store_lost"


class StoreFileWatch:
    """The identity (st_dev, st_ino) of a SQLite store's file, taken when it is opened and checked
    before trusting a commit.

    Why: SQLite keeps writing to a file that was unlinked under it (the open descriptor still
    points at the old inode), so a deleted store never fails a write; commits "succeed" into a
    file no one will ever read again. Comparing the path's identity with the one we opened is
    the only way to notice, and costs one stat per commit (1-2 us on a quiet machine, ~20 us on a
    loaded overlay filesystem, against ~500 us for the commit itself).
    """

    __slots__ = ("path", "_name", "identity")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._name = str(path)  # os.stat on a str skips the os.fspath call
        self.identity = self._identity()
        if self.identity is None:
            raise StoreLost(f"the store file {path.name} does not exist")

    @classmethod
    def of(cls, url: "str | URL") -> "StoreFileWatch | None":
        """A watch on the file of a SQLite URL; None for PostgreSQL or an in-memory database."""
        path = sqlite_file(url)
        return None if path is None else cls(path)

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._name)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def check(self) -> None:
        """Raise StoreLost unless the path still names the file that was opened."""
        if self._identity() != self.identity:
            raise StoreLost(f"the store file {self.path.name} was deleted or replaced while the bot ran "
                            f"(in {self.path.parent}); trading stopped: what was journaled since went to the "
                            "lost file. Restore the store from a backup, or archive the bot's paper venue "
                            "log to start afresh")


def check_connection(engine: Engine) -> None:
    """Raise StoreUnavailable, saying why, unless the database answers a query."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            if engine.dialect.name == "sqlite":
                connection.execute(text("PRAGMA schema_version")).scalar()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StoreUnavailable(f"database at {masked(str(engine.url))} is not usable: {reason}") from None


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None) -> None:
    """Migrate the database to the newest schema (idempotent)."""
    url = database_url(url)
    engine = make_engine(url)
    check_connection(engine)
    with engine.begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()
