"""Signals to live clients: ONE poller per process reads new rows of the `signals` table
(id > last seen) and fans them out to every connected WebSocket and SSE client whose scope
includes the bot. No client ever queries the database after connecting.

When the poller reads (issue 18: the poll interval was most of a signal's latency): at once when a
writer wakes it, a signal stored by this process (engine.signals.announce_stored) or, on
PostgreSQL, a NOTIFY on engine.signals.STORED_CHANNEL from any process (a LISTEN connection of
the hub's own); otherwise every FAST_POLL_S while signals are coming (ACTIVE_S after the last
one) and every `interval_s` (poll_interval_s) when idle. Polling runs on a thread of its own: an
empty poll is one `SELECT max(id)` on a connection of the poller's own (~5 us of CPU on SQLite,
against ~150 us for the full read through the pool) and costs the event loop nothing; rows found
are dispatched on the loop, in one pass, before the next read.

Each client has a bounded queue; a client that falls `MAX_QUEUE` signals behind is dropped (it
reconnects with ?after_id= and gets the backlog from the store). A free-plan subscriber's signal
waits in its queue until the plan's delay has passed since it was published (`published_ns`, the
wall clock when the row was written; never the signal's market `ts`, which on a replayed bot is
years old). A signal of a bot a client follows by subscription goes out only while that bot is
published: the poller reads which of a batch's bots are, once per batch.

Fan-out cost (issue 18): each signal is serialised once and its WebSocket frame built once
(`ws_frame`); a client that can take it now (a WebSocket whose route gave it a direct `writer`,
nothing of its own queued or being sent, no plan delay) gets those bytes written to its socket
from the dispatch itself: no queue, no task switch, no ASGI call per delivery. Every other case
(a busy client, a plan delay, a paused or closing transport, SSE, a server that is not uvicorn)
goes through the client's queue and its sender task, as before; `busy` keeps a client on the
queue until it has drained, so its frames never overtake one another. The fan-out histogram is
observed once per batch for the direct deliveries, per delivery on the queued path.

Late commits (PostgreSQL): an id is taken from the sequence at INSERT but the row becomes
visible at COMMIT, so with two writers id 10 may appear after id 11 has been read and the
cursor moved past it. The poller keeps each id it skipped below its high-water mark as a
"hole" for `late_grace_s` (LATE_GRACE_S, 5 s; at most MAX_HOLES of them) and looks for
`id IN (holes)` at every poll (in the cheap probe, then the read) until it comes (delivered
then, when it arrives: after higher ids) or the grace ends (a rolled-back insert leaves a gap
for ever). Each client remembers which of the holes it has not had (`want`) and takes a late
row once. A client reconnecting with
?after_id=R (R: the id of the last signal it received) gets, besides the rows above R, the holes
below R still awaited and the late rows that arrived after R had gone out (the hub remembers the
last MAX_HOLES late rows, `filled`: which came when); when R is itself a late row, what went out
before it is not sent again. The bounds: a transaction that commits more than `late_grace_s`
after a higher id was read is missed; a client away while more than MAX_HOLES late rows arrive
may miss the oldest of them. SQLite serialises writers (ids commit in order): no holes, no cost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, false, func, or_, select

from api.deps import NS, SignalScope
from api.metrics import Metrics
from engine.signals import STORED_CHANNEL, on_stored
from engine.store.models import BotRow, SignalRow

log = logging.getLogger("tickbridge.api.stream")
SIGNALS = SignalRow.__table__
MAX_QUEUE = 10_000
BATCH = 1000
FAST_POLL_S = 0.01    # the poll interval while signals are coming (ACTIVE_S after the last one)
ACTIVE_S = 60.0      # long enough to span the bars of a bot on 1-minute bars: its next signal is read fast
LISTEN_WAIT_S = 0.5   # PostgreSQL listener: how often it looks whether the hub is stopping
LISTEN_START_S = 5.0  # start() waits this long at most for the first LISTEN
PROBE_RETRY_S = 5.0
LATE_GRACE_S = 5.0    # PostgreSQL: how long a skipped id is awaited (a writer's commit after its insert)
MAX_HOLES = 1000      # skipped ids awaited at once (a bigger jump in ids: only the highest ones)
_PROBE_SQL = f"SELECT max(id) FROM {SIGNALS.name}"
# with holes awaited: is one of them there yet? (ids are the hub's own ints, written in the SQL)
_PROBE_HOLES_SQL = f"SELECT ({_PROBE_SQL}), (SELECT count(*) FROM {SIGNALS.name} WHERE id IN ({{}}))"
_MESSAGE_HEAD = '{"type":"signal","signal":'


def ws_message(text: str) -> str:
    """The WebSocket message of a signal serialised as `text` (signal_json)."""
    return _MESSAGE_HEAD + text + "}"


def ws_frame(text: str) -> bytes:
    """ws_message(text) as one complete, final, unmasked RFC 6455 text frame (what a server
    sends; no extension bits): the bytes every direct-write client gets for this signal."""
    payload = ws_message(text).encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


def signal_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "bot_id": row.bot_id, "symbol": row.symbol, "ts": row.ts,
            "published_ns": row.published_ns, "direction": row.direction,
            "target_weight": None if row.target_weight is None else str(row.target_weight),
            "confidence": None if row.confidence is None else str(row.confidence),
            "model_id": row.model_id, "model_version": row.model_version, "payload": row.payload}


def visible_clause(scope: SignalScope, now_ns: int) -> Any:
    """SQL condition: the signals `scope` may see at `now_ns` (delayed plans see older ones only)."""
    if scope.everything:
        return True
    by_delay: dict[int, list[str]] = {}
    for bot_id, delay in scope.delays.items():
        by_delay.setdefault(delay, []).append(bot_id)
    terms = [and_(SIGNALS.c.bot_id.in_(bots), SIGNALS.c.published_ns <= now_ns - delay) if delay
             else SIGNALS.c.bot_id.in_(bots) for delay, bots in by_delay.items()]
    return or_(*terms) if terms else false()


@dataclass(eq=False)
class Client:
    scope: SignalScope
    queue: asyncio.Queue[tuple[float, float, int, str] | None] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    sent_upto: int = 0
    dropped: bool = False
    _pending: tuple[float, float, int, str] | None = None
    # writes a ws_frame to the client's socket now, or answers False (paused, closing): set by the
    # WebSocket route when it reached uvicorn's transport (api.routers.signals.direct_writer)
    writer: Callable[[bytes], bool] | None = None
    busy: bool = False  # a frame is queued or being sent: new ones queue behind it (order)
    # late commits: the hub's last_id when the client joined (a hole above it was never sent to
    # it), and the holes at or below it the client has not had (bounded by MAX_HOLES)
    joined_upto: int = 0
    want: set[int] = field(default_factory=set)

    def drop(self) -> None:
        self.dropped = True
        self.queue = asyncio.Queue(1)
        self.queue.put_nowait(None)  # tells the sender to close: the client reconnects with after_id

    def offer(self, signal_id: int, bot_id: str, published_ns: int, text: str, seen: float,
              frame: bytes | None = None, late: bool = False) -> bool:
        """Deliver or queue one signal; True when `frame` went straight to the socket. `late`: a
        row that committed after higher ids were read (a hole filled): it goes to a client that
        has not had it, below sent_upto."""
        if self.dropped:
            return False
        if late:
            if signal_id in self.want:
                self.want.discard(signal_id)
            elif signal_id <= self.joined_upto:  # it had it (its backlog) or it was gone when it joined
                return False
        elif signal_id <= self.sent_upto:
            return False
        delay = 0 if self.scope.everything else self.scope.delays.get(bot_id)
        if delay is None:
            return False
        if not delay and frame is not None and not self.busy and self.writer is not None and self.writer(frame):
            self.sent_upto = max(self.sent_upto, signal_id)
            return True
        release = published_ns + delay if delay else 0  # ns: a float of seconds since 1970 is coarse
        try:
            self.queue.put_nowait((release, seen, signal_id, text))
            self.sent_upto = max(self.sent_upto, signal_id)
            self.busy = True
        except asyncio.QueueFull:
            self.drop()
        return False

    def sent(self) -> None:
        """The sender finished sending a queued frame: with nothing else queued, new frames may
        be written directly again."""
        if self._pending is None and self.queue.empty():
            self.busy = False

    async def next(self) -> tuple[int, str, float] | None:
        """The next frame to send (waiting out a plan's delay), or None when the client must close."""
        if self._pending is None:  # kept across a cancelled wait (an SSE keepalive), never lost
            item = await self.queue.get()
            if item is None:
                return None
            self._pending = item
        release, seen, signal_id, text = self._pending
        # asyncio may wake a sleeper up to its clock resolution early: wait until the wall clock
        # says the plan's delay has passed, never a fraction of a millisecond less
        while (wait := release - time.time_ns()) > 0:
            await asyncio.sleep(wait / NS)
        self._pending = None
        return signal_id, text, seen


class _Probe:
    """`SELECT max(id) FROM signals` on a DBAPI connection of the poller's own: is anything new?
    (With holes awaited, whether one of them is there too, in the same statement.)

    Why: an empty poll through the pool and SQLAlchemy cost ~150 us of CPU (measured on SQLite),
    this ~5 us, so the poller can look every few milliseconds while signals come. Outside the
    pool (it takes no request's connection); none for an in-memory SQLite store (another
    connection would see another database): then every poll is the full read. A lost connection
    is reopened at most every PROBE_RETRY_S; meanwhile polls read in full."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.connection, self.retry_at = engine, None, 0.0
        url = engine.url
        self.usable = not (engine.dialect.name == "sqlite" and (url.database or ":memory:") == ":memory:")

    def newer(self, last_id: int, holes: Iterable[int] = ()) -> bool:
        """Whether a row above last_id, or one of `holes`, is there to read."""
        if not self.usable:
            return True
        try:
            if self.connection is None:
                if time.monotonic() < self.retry_at:
                    return True
                self.retry_at = time.monotonic() + PROBE_RETRY_S
                dialect = self.engine.dialect
                cargs, cparams = dialect.create_connect_args(self.engine.url)
                self.connection = dialect.connect(*cargs, **cparams)
                if dialect.name != "sqlite":
                    self.connection.autocommit = True  # no transaction left open between probes
            cursor = self.connection.cursor()
            try:
                ids = ",".join(str(int(i)) for i in holes)
                cursor.execute(_PROBE_HOLES_SQL.format(ids) if ids else _PROBE_SQL)
                top, *found = cursor.fetchone()
            finally:
                cursor.close()
            return (top or 0) > last_id or bool(found and found[0])
        except Exception:
            self.close()
            return True

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
            self.connection = None


class SignalHub:
    def __init__(self, engine: Engine, interval_s: float, metrics: Metrics | None = None,
                 fast_interval_s: float = FAST_POLL_S, late_grace_s: float = LATE_GRACE_S) -> None:
        self.engine, self.interval_s, self.metrics = engine, interval_s, metrics
        self.fast_interval_s = min(fast_interval_s, interval_s)
        self.last_id = 0  # moved by dispatch, on the event loop only
        # late commits: SQLite commits ids in order (one writer), so it keeps no holes
        self.late_grace_s = 0.0 if engine.dialect.name == "sqlite" else late_grace_s
        # ids below last_id not read yet -> time.monotonic() deadline; replaced, never changed in
        # place (the poller's thread reads it): by dispatch_now, and by the poller between dispatches
        self.holes: dict[int, float] = {}
        # the last MAX_HOLES late rows: id -> (arrival number, last_id when it arrived); reconnects
        self.filled: dict[int, tuple[int, int]] = {}
        self._arrivals = 0
        self._everything: set[Client] = set()
        self._by_bot: dict[str, set[Client]] = {}
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()      # a writer stored a signal: poll now
        self._stopping = threading.Event()
        self._listen_tried = threading.Event()  # the listener's first LISTEN is in place, or failed
        self._unhook: Callable[[], None] | None = None
        self.polls = 0           # polls done so far (probes included): tests, a debugger
        self.listening = False   # PostgreSQL: the LISTEN is in place
        self.closing = asyncio.Event()  # set by stop(): every stream ends, new ones end at once

    @property
    def polling(self) -> bool:
        """The poller's thread is running."""
        return bool(self._threads) and self._threads[0].is_alive()

    @property
    def clients(self) -> int:
        return len(self._everything) + len({c for s in self._by_bot.values() for c in s})

    async def start(self) -> None:
        self.last_id = await asyncio.to_thread(self._max_id)
        if self.late_grace_s > 0:  # a writer may be between its insert and its commit right now
            self.holes = await asyncio.to_thread(self._gaps_below, self.last_id)
        loop = asyncio.get_running_loop()
        self._unhook = on_stored(self._wake.set)  # a signal stored by this process wakes the poller
        self._threads = [threading.Thread(target=self._poll, args=(loop,), name="signal-hub-poll", daemon=True)]
        if self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg":
            self._threads.append(threading.Thread(target=self._listen, name="signal-hub-listen", daemon=True))
        for thread in reversed(self._threads):
            thread.start()
            if thread.name == "signal-hub-listen":  # LISTEN before the first poll: nothing falls between
                await asyncio.to_thread(self._listen_tried.wait, LISTEN_START_S)

    async def stop(self) -> None:
        """Shutdown: stop polling and end every stream (idempotent). Each client's queue is
        replaced by a closing marker, even a full one, and `closing` wakes the streams that wait
        on something else (a delayed plan's frame), so a server stops in seconds, not when its
        last subscriber hangs up."""
        self.closing.set()
        self._stopping.set()
        self._wake.set()
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        threads, self._threads = self._threads, []
        for thread in threads:  # a query in flight ends first (a hung store: not waited for past 5 s)
            await asyncio.to_thread(thread.join, 5.0)
        for client in list(self._everything) + [c for s in self._by_bot.values() for c in s]:
            if not client.dropped:
                if not client.queue.full():  # wakes a sender waiting on this queue
                    client.queue.put_nowait(None)
                client.drop()  # and the next read of any queue says close

    async def register(self, scope: SignalScope, after_id: int | None = None,
                       writer: Callable[[bytes], bool] | None = None) -> Client:
        """A new client; with after_id, the rows it missed (id > after_id) come first, from the store.

        The backlog is read before the client joins the fan-out, again for whatever the poller
        dispatched meanwhile, until nothing is newer; then the client joins with no await in
        between, so each later row reaches it through dispatch, after its backlog and exactly
        once (joining first lost the backlog whenever a row was dispatched during the read)."""
        client = Client(scope, writer=writer)
        if self.closing.is_set():  # shutting down: the stream ends as soon as it starts
            client.drop()
            return client
        client.sent_upto, client.want = self._resume(after_id)
        # late commits: `want` holds the ids of its range the hub still awaits (holes); one the
        # hub stopped awaiting meanwhile (read and dispatched to others, or given up) is read
        # again by id, and the loop goes on until neither new rows nor such ids are left
        while not client.dropped:
            upto, holes = self.last_id, self.holes
            recheck = {i for i in client.want if i not in holes}
            low = client.sent_upto
            if low >= upto and not recheck:
                break
            rows = await asyncio.to_thread(self._backlog, scope, low, upto, recheck)
            seen = time.perf_counter()
            for row in rows:  # through the queue (no frame): later frames wait behind these
                client.offer(row.id, row.bot_id, row.published_ns, json.dumps(signal_json(row), default=str), seen,
                             late=row.id <= low)
            client.want -= recheck  # not found by id: rolled back or out of scope
            got = {row.id for row in rows}
            client.want |= {i for i in holes if low < i <= upto and i not in got}
            client.sent_upto = max(client.sent_upto, upto)
        if self.closing.is_set():
            client.drop()
            return client
        client.joined_upto = self.last_id  # a hole above it is sent to this client when it fills
        if scope.everything:
            self._everything.add(client)
        for bot_id in scope.delays:
            self._by_bot.setdefault(bot_id, set()).add(client)
        return client

    def _resume(self, after_id: int | None) -> tuple[int, set[int]]:
        """Where a new client starts: (the id it has everything up to, the lower ids it still
        wants). Without after_id: from now on, and every hole (a row committing later is news).
        With after_id R, the last signal it received: if R came late, it had what went out before
        R (up to the high-water mark then); it wants the holes below that still awaited, and the
        late rows that arrived after R had gone out."""
        if after_id is None:
            return self.last_id, set(self.holes)
        start, arrived = after_id, None
        if after_id in self.filled:
            arrived, top = self.filled[after_id]
            start = max(after_id, top)
        want = {i for i in self.holes if i <= start}
        for late, (number, top) in self.filled.items():
            if late < start and (number > arrived if arrived is not None else top >= after_id):
                want.add(late)
        return start, want

    def unregister(self, client: Client) -> None:
        self._everything.discard(client)
        for bot_id in client.scope.delays:
            clients = self._by_bot.get(bot_id)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._by_bot[bot_id]

    def observe(self, seen: float) -> None:
        if self.metrics is not None:
            self.metrics.fanout.observe(time.perf_counter() - seen)

    def _max_id(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.max(SIGNALS.c.id))).scalar() or 0)

    def _gaps_below(self, top: int) -> dict[int, float]:
        """Holes at start: the ids missing among the MAX_HOLES below `top` (a writer may hold one
        uncommitted), awaited for late_grace_s like any other."""
        if top <= 1:
            return {}
        low = max(0, top - MAX_HOLES)
        with self.engine.connect() as connection:
            present = set(connection.execute(select(SIGNALS.c.id).where(SIGNALS.c.id > low,
                                                                        SIGNALS.c.id <= top)).scalars())
        deadline = time.monotonic() + self.late_grace_s
        return {i: deadline for i in range(low + 1, top) if i not in present}

    def _fetch(self, after: int, holes: Iterable[int] = ()) -> list[Any]:
        """The rows after `after`, and those of `holes` committed since: late ones first (lower ids)."""
        holes = list(holes)
        where = or_(SIGNALS.c.id > after, SIGNALS.c.id.in_(holes)) if holes else SIGNALS.c.id > after
        with self.engine.connect() as connection:
            return list(connection.execute(select(SIGNALS).where(where).order_by(SIGNALS.c.id).limit(BATCH)))

    def _backlog(self, scope: SignalScope, after: int, upto: int, also: Iterable[int] = ()) -> list[Any]:
        bots = SIGNALS.c.bot_id.in_(list(scope.delays)) if not scope.everything else True
        also = list(also)
        span = and_(SIGNALS.c.id > after, SIGNALS.c.id <= upto)
        with self.engine.connect() as connection:
            return list(connection.execute(select(SIGNALS).where(or_(span, SIGNALS.c.id.in_(also)) if also else span,
                                                                 bots).order_by(SIGNALS.c.id).limit(MAX_QUEUE)))

    def _expire_holes(self) -> None:
        """Stop awaiting the holes whose grace has ended (the poller's thread, between dispatches)."""
        holes = self.holes
        if holes:
            now = time.monotonic()
            if any(deadline <= now for deadline in holes.values()):
                self.holes = {i: deadline for i, deadline in holes.items() if deadline > now}

    def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        """The poller's thread: read new rows (id > last_id) and hand them to the event loop,
        waiting until they are dispatched; then wait for a wake-up or the next poll. Fast
        (`fast_interval_s`) for ACTIVE_S after the last rows came, `interval_s` when
        idle: a poll that finds nothing is one `max(id)` probe (_Probe) in this thread, the event
        loop is not involved."""
        active_until, more, probe = 0.0, False, _Probe(self.engine)
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before the read: a row committed before a later wake-up is seen by it
                rows, more, active_until = self._read(probe, more, active_until, loop)
                if rows is None:
                    return
                self.polls += 1
                if not more:
                    self._wake.wait(self.fast_interval_s if time.monotonic() < active_until else self.interval_s)
        finally:
            probe.close()

    def _read(self, probe: _Probe, more: bool, active_until: float,
              loop: asyncio.AbstractEventLoop) -> tuple[list[Any] | None, bool, float]:
        """One poll: (rows dispatched, or None when stopping; whether more may be waiting; the
        new end of the fast-poll period)."""
        try:
            self._expire_holes()
            holes = self.holes
            if not more and not probe.newer(self.last_id, holes):
                return [], False, active_until
            rows = self._fetch(self.last_id, holes)
            published = self._published({row.bot_id for row in rows}) if rows else set()
        except Exception:  # the store went away for a moment: keep polling, /ready reports it
            log.exception("signal poll failed")
            return [], False, 0.0
        if rows:
            if not self._hand_over(loop, rows, published):
                return None, False, active_until
            active_until = time.monotonic() + ACTIVE_S
        return rows, len(rows) == BATCH, active_until

    def _hand_over(self, loop: asyncio.AbstractEventLoop, rows: list[Any], published: set[str]) -> bool:
        """Dispatch `rows` on the event loop and wait until it is done (last_id has moved on);
        False when the hub is stopping or the loop has gone."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                self.dispatch_now(rows, published)
                done.set_result(None)
            except BaseException as error:  # noqa: BLE001 - reported on the poller's thread
                done.set_exception(error)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                done.result(0.5)
                return True
            except TimeoutError:
                if self._stopping.is_set():
                    return False
            except Exception:
                log.exception("signal dispatch failed")
                return True

    def _listen(self) -> None:
        """PostgreSQL: a connection of its own (not the pool's) LISTENs on STORED_CHANNEL and
        wakes the poller at each NOTIFY, so a signal a runtime stores in another process is read
        at once, not at the next poll. Reconnects when the connection is lost; polling goes on
        meanwhile."""
        dialect = self.engine.dialect
        while not self._stopping.is_set():
            try:
                cargs, cparams = dialect.create_connect_args(self.engine.url)
                connection = dialect.connect(*cargs, **cparams)
            except Exception:
                log.warning("signal listener cannot connect; polling only, retrying in 5 s")
                self._listen_tried.set()
                self._stopping.wait(5.0)
                continue
            try:
                connection.autocommit = True
                connection.execute(f"LISTEN {STORED_CHANNEL}")
                self.listening = True
                if self._listen_tried.is_set():  # a reconnect: rows stored while nobody listened, read them now
                    self._wake.set()
                self._listen_tried.set()
                while not self._stopping.is_set():
                    for _ in connection.notifies(timeout=LISTEN_WAIT_S):
                        self._wake.set()
            except Exception:
                log.warning("signal listener lost its connection; reconnecting")
                self._stopping.wait(1.0)
            finally:
                self.listening = False
                connection.close()

    def _published(self, bot_ids: set[str]) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(select(BotRow.id).where(BotRow.id.in_(bot_ids),
                                                                  BotRow.published_at.is_not(None))).scalars())

    async def dispatch(self, rows: Iterable[Any], published: set[str] | None = None) -> None:
        """dispatch_now, from a coroutine (tests, callers on the loop)."""
        self.dispatch_now(rows, published)

    def dispatch_now(self, rows: Iterable[Any], published: set[str] | None = None) -> None:
        """Hand each new row to every client whose scope has its bot: one serialisation per row.
        `published`: the rows' bots that are published now (None: all of them); a bot that is
        not reaches its owner and admins only, not its subscribers. Runs on the event loop, in
        one pass and without awaiting: clients cannot join or leave halfway through."""
        seen = time.perf_counter()
        direct = 0
        holes = self.holes
        changed = False
        for row in rows:
            signal_id, bot_id, published_ns = row.id, row.bot_id, row.published_ns
            late = signal_id in holes
            if late or (self.late_grace_s > 0 and signal_id > self.last_id + 1):
                if not changed:
                    holes, changed = dict(holes), True
                if late:
                    del holes[signal_id]
                    self._arrivals += 1
                    self.filled[signal_id] = (self._arrivals, self.last_id)
                    if len(self.filled) > MAX_HOLES:
                        del self.filled[next(iter(self.filled))]
                else:  # ids skipped: maybe taken by a transaction not committed yet
                    deadline = time.monotonic() + self.late_grace_s
                    for skipped in range(max(self.last_id + 1, signal_id - MAX_HOLES), signal_id):
                        holes[skipped] = deadline
            text = json.dumps(signal_json(row), default=lambda v: str(v) if isinstance(v, Decimal) else repr(v))
            frame = ws_frame(text)
            for client in self._everything:
                direct += client.offer(signal_id, bot_id, published_ns, text, seen, frame, late)
            withdrawn = published is not None and bot_id not in published
            for client in self._by_bot.get(bot_id, ()):
                if withdrawn and bot_id in client.scope.subscribed:
                    continue
                direct += client.offer(signal_id, bot_id, published_ns, text, seen, frame, late)
            self.last_id = max(self.last_id, signal_id)
        if changed:
            if len(holes) > MAX_HOLES:  # the lowest (oldest) go first
                holes = dict(sorted(holes.items())[-MAX_HOLES:])
            self.holes = holes
        if direct:  # once per batch: the time until its last direct write
            self.observe(seen)
