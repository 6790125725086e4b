"""Auth throttling that holds: shared by every API worker, kept across restarts, keyed by the real
client. Refusals are 429 with Retry-After.

Two limits guard the auth endpoints:
  * per client and bucket: `per_minute` requests in a window that opens at the client's first
    request. A fixed window (one row or key per client) rather than a log of every request: at a
    window's edge a client may get up to twice the limit in a short burst, which is fine for
    slowing guesses; the per-account lockout is the bound that matters;
  * per account (logins): 5 failed logins lock the name for 30 s, each further failure doubles
    it up to 15 min, a success resets it, and failures an hour old are forgotten. An attempt is
    counted BEFORE its password is checked (a success then clears it), so a burst of parallel
    guesses cannot all slip in before the first failure is written. Unknown usernames are
    counted and locked alike with the same answer, which therefore says nothing about which
    names exist. The key is the username's SHA-256: users do type passwords into that field.

Both live in the database (the tables of migration 0005, one atomic upsert per check) or, with
TICKBRIDGE_REDIS_URL, in Redis (one Lua script per check; keys expire by themselves). A store
that cannot be reached answers 503 with Retry-After, never a 500 and never "allowed".

The client is the socket peer. X-Forwarded-For is believed only when the peer is one of
TICKBRIDGE_TRUSTED_PROXIES, and then the client is the right-most address that is not itself a
trusted proxy: the entries further left are whatever the client chose to send.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request
from sqlalchemy import Engine, case, delete, select
from sqlalchemy.exc import OperationalError, TimeoutError as PoolTimeout

from api.errors import ApiError
from engine.store.models import AuthLoginFailureRow, AuthRateCounterRow

if TYPE_CHECKING:
    from api.settings import Settings

LOCK_AFTER = 5            # failed logins before an account name is locked
LOCK_BASE_MS = 30_000     # the first lock; each further failure doubles it
LOCK_MAX_MS = 900_000     # ... up to 15 minutes
FORGET_MS = 3_600_000     # failures older than this (with no lock running) start over
PURGE_EVERY = 256         # calls between two deletions of expired rows (database store)
WINDOW_MS = 60_000


class ThrottleUnavailable(Exception):
    """The store of the limits cannot be reached: the request is refused (503), not let through."""


def lock_ms(failures: int) -> int:
    """How long `failures` consecutive failed logins lock the account name, in ms."""
    if failures < LOCK_AFTER:
        return 0
    return min(LOCK_BASE_MS << min(failures - LOCK_AFTER, 32), LOCK_MAX_MS)


def account_key(username: str) -> str:
    return hashlib.sha256(username.encode()).hexdigest()


class ThrottleStore(Protocol):
    def count(self, key: str, window_ms: int, now_ms: int) -> tuple[int, int]:
        """Count one request of `key`: (requests in the current window, ms until it ends)."""

    def attempt(self, key: str, now_ms: int) -> int:
        """Count one login attempt of an account key: 0 when it may go on, else the ms its lock
        still runs (a refused attempt is not counted)."""

    def reset(self, key: str) -> None:
        """A successful login: forget the account's failures."""


class SqlThrottleStore:
    """The limits in the API's own database: one atomic INSERT .. ON CONFLICT DO UPDATE ..
    RETURNING per check (SQLite >= 3.35 and PostgreSQL), in its own short transaction, so a
    refused login is counted even though its request fails."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._calls = itertools.count(1)
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise ValueError("auth limits need SQLite or PostgreSQL (or TICKBRIDGE_REDIS_URL), "
                             f"not {engine.dialect.name}")
        self._insert = insert

    def count(self, key: str, window_ms: int, now_ms: int) -> tuple[int, int]:
        t = AuthRateCounterRow.__table__.c
        current = t.window_start_ms > now_ms - window_ms  # in SET, t.* is the row already stored
        statement = (self._insert(AuthRateCounterRow).values(key=key, window_start_ms=now_ms, hits=1)
                     .on_conflict_do_update(index_elements=[t.key], set_={
                         "hits": case((current, t.hits + 1), else_=1),
                         "window_start_ms": case((current, t.window_start_ms), else_=now_ms)})
                     .returning(t.hits, t.window_start_ms))
        with self._write() as connection:
            hits, start = connection.execute(statement).one()
            if next(self._calls) % PURGE_EVERY == 0:
                connection.execute(delete(AuthRateCounterRow).where(t.window_start_ms <= now_ms - window_ms))
        return int(hits), int(start) + window_ms - now_ms

    def attempt(self, key: str, now_ms: int) -> int:
        t = AuthLoginFailureRow.__table__.c
        failures = case((t.last_ms < now_ms - FORGET_MS, 1), else_=t.failures + 1)
        steps, n = [], LOCK_AFTER
        while lock_ms(n) < LOCK_MAX_MS:
            steps.append((failures == n, now_ms + lock_ms(n)))
            n += 1
        locked_until = case((failures < LOCK_AFTER, 0), *steps, else_=now_ms + LOCK_MAX_MS)
        first_lock = lock_ms(1)
        statement = (self._insert(AuthLoginFailureRow)
                     .values(key=key, failures=1, locked_until_ms=now_ms + first_lock if first_lock else 0,
                             last_ms=now_ms)
                     .on_conflict_do_update(index_elements=[t.key], where=t.locked_until_ms <= now_ms, set_={
                         "failures": failures, "locked_until_ms": locked_until, "last_ms": now_ms})
                     .returning(t.failures))
        with self._write() as connection:
            counted = connection.execute(statement).first()
            if counted is None:  # locked: the conditional update did nothing
                until = connection.scalar(select(t.locked_until_ms).where(t.key == key)) or now_ms
                return max(int(until) - now_ms, 1)
            if next(self._calls) % PURGE_EVERY == 0:
                connection.execute(delete(AuthLoginFailureRow).where(t.last_ms < now_ms - FORGET_MS,
                                                                     t.locked_until_ms <= now_ms))
        return 0

    def reset(self, key: str) -> None:
        with self._write() as connection:
            connection.execute(delete(AuthLoginFailureRow).where(AuthLoginFailureRow.key == key))

    def _write(self) -> Any:
        return _unavailable_on(self.engine.begin(), (OperationalError, PoolTimeout))


_COUNT_LUA = """
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if hits == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
"""

# KEYS[1] the account's hash; ARGV: now, forget, lock after, base lock, max lock (ms)
_ATTEMPT_LUA = """
local now = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'failures', 'locked_until', 'last')
local failures = tonumber(state[1]) or 0
local locked_until = tonumber(state[2]) or 0
local last = tonumber(state[3]) or 0
if locked_until > now then
  return locked_until - now
end
if last < now - tonumber(ARGV[2]) then
  failures = 0
end
failures = failures + 1
locked_until = 0
if failures >= tonumber(ARGV[3]) then
  local lock = tonumber(ARGV[4]) * math.pow(2, math.min(failures - tonumber(ARGV[3]), 32))
  locked_until = now + math.min(lock, tonumber(ARGV[5]))
end
redis.call('HSET', KEYS[1], 'failures', failures, 'locked_until', string.format('%d', locked_until),
           'last', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[2]), locked_until - now))
return 0
"""


class RedisThrottleStore:
    """The limits in Redis (TICKBRIDGE_REDIS_URL): each check one Lua script, atomic on the
    server, so every worker sees every count; keys expire with their window or lock."""

    def __init__(self, client: Any, prefix: str = "tickbridge:") -> None:
        from redis.exceptions import RedisError

        self.client, self.prefix = client, prefix + "auth:"
        self._errors = (RedisError,)
        self._count = client.register_script(_COUNT_LUA)
        self._attempt = client.register_script(_ATTEMPT_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str = "tickbridge:") -> "RedisThrottleStore":
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0), prefix)

    def count(self, key: str, window_ms: int, now_ms: int) -> tuple[int, int]:
        with _unavailable_on(None, self._errors):
            hits, ttl = self._count(keys=[self.prefix + "rate:" + key], args=[window_ms])
        return int(hits), int(ttl)

    def attempt(self, key: str, now_ms: int) -> int:
        with _unavailable_on(None, self._errors):
            return int(self._attempt(keys=[self.prefix + "login:" + key],
                                     args=[now_ms, FORGET_MS, LOCK_AFTER, LOCK_BASE_MS, LOCK_MAX_MS]))

    def reset(self, key: str) -> None:
        with _unavailable_on(None, self._errors):
            self.client.delete(self.prefix + "login:" + key)


@contextmanager
def _unavailable_on(inner: Any, errors: tuple[type[BaseException], ...]) -> Iterator[Any]:
    """Enter `inner` (or nothing) and turn the store's own errors into ThrottleUnavailable."""
    try:
        if inner is None:
            yield None
        else:
            with inner as value:
                yield value
    except errors as exc:
        raise ThrottleUnavailable(type(exc).__name__) from exc


class RateLimiter:
    """The auth limits of one app: who the client is, and the two limits on a shared store."""

    def __init__(self, store: ThrottleStore, per_minute: int, trusted_proxies: Sequence[str] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.limit, self.clock = store, per_minute, clock
        self.trusted = tuple(ip_network(p, strict=False) for p in trusted_proxies)

    @classmethod
    def for_settings(cls, settings: "Settings", engine: Engine,
                     clock: Callable[[], float] = time.time) -> "RateLimiter":
        store: ThrottleStore = (RedisThrottleStore.from_url(settings.redis_url, settings.redis_prefix)
                                if settings.redis_url else SqlThrottleStore(engine))
        return cls(store, settings.auth_rate_per_minute, settings.trusted_proxies, clock)

    def hit(self, bucket: str, client: str) -> None:
        """Count one request of `bucket` from `client`; 429 once past the limit."""
        hits, left_ms = self._guarded(lambda: self.store.count(f"{bucket}:{client}", WINDOW_MS, self._now_ms()))
        if hits > self.limit:
            retry = max(1, math.ceil(left_ms / 1000))
            raise ApiError(429, f"too many {bucket} requests; retry in {retry} s", headers={"Retry-After": str(retry)})

    def check_login(self, username: str) -> None:
        """Count a login attempt for `username` before its password is checked; 429 while the
        name is locked. The same answer whether or not such a user exists."""
        locked_ms = self._guarded(lambda: self.store.attempt(account_key(username), self._now_ms()))
        if locked_ms > 0:
            retry = max(1, math.ceil(locked_ms / 1000))
            raise ApiError(429, f"too many failed logins for this account; retry in {retry} s",
                           headers={"Retry-After": str(retry)})

    def login_succeeded(self, username: str) -> None:
        self._guarded(lambda: self.store.reset(account_key(username)))

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        return self.client_of(peer, forwarded)

    def client_of(self, peer: str, forwarded: str) -> str:
        """The client behind `peer`: the peer itself unless it is a trusted proxy; then the
        right-most X-Forwarded-For hop that is not a trusted proxy."""
        if not self._trusted(peer) or not forwarded.strip():
            return peer
        client = peer
        for hop in reversed(forwarded.split(",")):
            address = _address(hop)
            if address is None:
                return client  # garbage before any untrusted hop: the last proxy is all we know
            client = address
            if not self._trusted(address):
                return address
        return client

    def _trusted(self, host: str) -> bool:
        address = _address(host)
        if address is None or not self.trusted:
            return False
        parsed = ip_address(address)
        return any(parsed in network for network in self.trusted)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @staticmethod
    def _guarded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ThrottleUnavailable:
            raise ApiError(503, "the login limits cannot be checked right now; retry shortly",
                           headers={"Retry-After": "1"}) from None


def _address(text: str) -> str | None:
    """An IP address in canonical form, from a hop that may carry brackets or a port."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ip_address(text).compressed
    except ValueError:
        return None


def limited(bucket: str):  # type: ignore[no-untyped-def]
    """A dependency that counts one request of `bucket` for the calling client."""

    def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.ctx.auth_limiter
        limiter.hit(bucket, limiter.client_ip(request))

    return dependency
