"""Issue 11, item 7: login limits that hold. They are shared by every API worker and survive a
restart (the database by default, Redis with TICKBRIDGE_REDIS_URL), an account name is locked
after repeated failures whether or not it exists, and X-Forwarded-For counts only from the
configured proxies."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.ratelimit import (LOCK_MAX_MS, FORGET_MS, RateLimiter, RedisThrottleStore, SqlThrottleStore, account_key,
                           lock_ms)
from engine.store.db import upgrade
from tests.api.conftest import PASSWORD

REDIS_URL = os.environ.get("TICKBRIDGE_TEST_REDIS_URL")
TICKBRIDGE = Path(sys.executable).parent / "tickbridge"
WRONG = "wrong-password"


def _login(api, username: str, password: str = PASSWORD, client: TestClient | None = None) -> httpx.Response:
    return (client or api.client).post("/api/v1/auth/token", json={"username": username, "password": password})


def _shape(response: httpx.Response) -> tuple[int, str, str]:
    """The answer with its seconds masked: what must be the same for every account name."""
    error = response.json()["error"]
    return response.status_code, error["code"], re.sub(r"\d+", "N", error["message"])


@pytest.fixture
def redis_settings():
    """Settings for an app whose limits live in the real Redis (keys under a prefix of its own)."""
    if not REDIS_URL:
        pytest.skip("Redis tests skipped: TICKBRIDGE_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    import redis

    prefix = f"tickbridge-test:{uuid.uuid4().hex}:"
    yield {"redis_url": REDIS_URL, "redis_prefix": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["database", "redis"])
def backend(request):
    """The settings that pick each store of the limits."""
    if request.param == "database":
        return {}
    return request.getfixturevalue("redis_settings")


# --- per-account lockout ---

def test_five_failures_lock_the_account_and_a_right_password_waits(make_api, backend):
    api = make_api(**backend)
    api.user("ann", "trader")
    for _ in range(5):
        assert _login(api, "ann", WRONG).status_code == 401
    locked = _login(api, "ann")  # the right password, too soon: before, 200 (no lockout at all)
    assert locked.status_code == 429, locked.text
    assert 1 <= int(locked.headers["Retry-After"]) <= 30
    assert locked.json()["error"]["code"] == "rate_limited"
    assert "ann" not in locked.text


def test_an_unknown_name_gets_the_same_answer(make_api, backend):
    api = make_api(**backend)
    api.user("ann", "trader")
    for name in ("ann", "ghost"):
        for _ in range(5):
            assert _login(api, name, WRONG).status_code == 401
    assert _shape(_login(api, "ann", WRONG)) == _shape(_login(api, "ghost", WRONG))
    assert _shape(_login(api, "ann", WRONG))[0] == 429


def test_a_success_resets_the_count(make_api, backend):
    api = make_api(**backend)
    api.user("ann", "trader")
    for _ in range(3):
        for _ in range(4):
            assert _login(api, "ann", WRONG).status_code == 401
        assert _login(api, "ann").status_code == 200


def test_two_workers_share_the_lockout_and_a_restart_keeps_it(make_api, database_url):
    """Two apps on one store are two API workers; a third one made later is a restart."""
    first, second = make_api(url=database_url), make_api(url=database_url)
    first.user("ann", "trader")
    for api in (first, second, first, second, first):
        assert _login(api, "ann", WRONG).status_code == 401
    assert _login(second, "ann").status_code == 429  # before: 200, each process counted alone
    restarted = make_api(url=database_url)  # a new app: nothing of the others' memory
    assert _login(restarted, "ann").status_code == 429  # before: 200, the count lived in memory


def test_two_workers_share_the_lockout_in_redis(make_api, tmp_path, redis_settings):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = make_api(url=url, **redis_settings), make_api(url=url, **redis_settings)
    first.user("ann", "trader")
    for api in (first, second, first, second, first):
        assert _login(api, "ann", WRONG).status_code == 401
    assert _login(second, "ann").status_code == 429
    assert _login(make_api(url=url, **redis_settings), "ann").status_code == 429


# --- per-client rate ---

def test_the_client_rate_is_shared_by_workers_and_kept_across_a_restart(make_api, tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = (make_api(url=url, auth_rate_per_minute=4, **backend) for _ in range(2))
    a.user("ann", "trader")  # the client's first auth request (a login)
    for api in (b, a, b):
        assert _login(api, "ann").status_code == 200
    limited = _login(a, "ann")
    assert limited.status_code == 429, limited.text  # before: 200, each process had its own count
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert _login(make_api(url=url, auth_rate_per_minute=4, **backend), "ann").status_code == 429


# --- who the client is ---

def _peer_client(api, host: str) -> TestClient:
    """Requests to the same app from another socket peer (TestClient's default is "testclient")."""
    return TestClient(api.client.app, client=(host, 40000))


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(make_api):
    api = make_api(auth_rate_per_minute=2, trusted_proxies=("10.0.0.0/8",))
    proxy, direct = _peer_client(api, "10.1.2.3"), _peer_client(api, "192.0.2.50")

    def via(client, forwarded):  # a new name each time: only the client's rate is at stake
        return client.post("/api/v1/auth/token", json={"username": uuid.uuid4().hex, "password": WRONG},
                           headers={"X-Forwarded-For": forwarded}).status_code

    # behind the proxy, each forwarded client has its own count (before: all shared the proxy's)
    assert [via(proxy, "198.51.100.1") for _ in range(3)] == [401, 401, 429]
    assert via(proxy, "198.51.100.2") == 401
    # a client cannot pick its identity by prepending hops: the right-most untrusted one counts
    assert via(proxy, "203.0.113.9, 198.51.100.1") == 429
    assert via(proxy, "198.51.100.1, 10.9.9.9") == 429  # a chain of trusted proxies is walked
    # a direct client's X-Forwarded-For is ignored: rotating it does not reset its count
    assert [via(direct, f"203.0.113.{n}") for n in range(3)] == [401, 401, 429]


def test_client_of_walks_the_forwarded_chain():
    limiter = RateLimiter(store=None, per_minute=1, trusted_proxies=("10.0.0.0/8", "2001:db8::/32"))  # type: ignore[arg-type]
    assert limiter.client_of("192.0.2.1", "198.51.100.7") == "192.0.2.1"
    assert limiter.client_of("10.0.0.1", "198.51.100.7") == "198.51.100.7"
    assert limiter.client_of("10.0.0.1", " 1.1.1.1 , 198.51.100.7:4431") == "198.51.100.7"
    assert limiter.client_of("10.0.0.1", "10.0.0.2, 10.0.0.3") == "10.0.0.2"
    assert limiter.client_of("10.0.0.1", "garbage") == "10.0.0.1"
    assert limiter.client_of("10.0.0.1", "") == "10.0.0.1"
    assert limiter.client_of("2001:db8::1", "[2001:db8:ffff::9]:80, 2001:db9::5") == "2001:db9::5"
    assert limiter.client_of("testclient", "198.51.100.7") == "testclient"
    assert RateLimiter(None, 1).client_of("10.0.0.1", "198.51.100.7") == "10.0.0.1"  # type: ignore[arg-type]


def test_serve_does_not_believe_a_forwarded_for_from_loopback(tmp_path):
    """`tickbridge serve` as shipped: uvicorn's own proxy-header handling trusted 127.0.0.1, so any
    local client (or a local proxy passing the header through) chose its own identity."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TICKBRIDGE_JWT_SECRET": "j" * 40, "TICKBRIDGE_AUTH_RATE": "2",
           "TICKBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}", "TICKBRIDGE_STATE_DIR": str(tmp_path)}
    env.pop("TICKBRIDGE_REDIS_URL", None)
    env.pop("TICKBRIDGE_TRUSTED_PROXIES", None)
    process = subprocess.Popen([str(TICKBRIDGE), "serve", "--port", str(port)], cwd=Path(__file__).parents[2],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 120  # a bound on start-up, not a measured figure
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        codes = [httpx.post(f"{base}/auth/token", json={"username": "x", "password": WRONG},
                            headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(3)]
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert codes == [401, 401, 429]  # before: [401, 401, 401], each forged address a new client


# --- the stores themselves: doubling, cap, forgetting ---

class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def _store(kind: str, tmp_path: Path, redis_settings_factory):
    if kind == "database":
        url = f"sqlite:///{tmp_path / 'limits.db'}"
        upgrade(url)
        return SqlThrottleStore(create_engine(url))
    settings = redis_settings_factory()
    return RedisThrottleStore.from_url(settings["redis_url"], settings["redis_prefix"])


@pytest.fixture(params=["database", "redis"])
def store(request, tmp_path):
    return _store(request.param, tmp_path, lambda: request.getfixturevalue("redis_settings"))


def test_the_lock_doubles_per_further_failure_up_to_15_minutes(store):
    now, key = Clock(), account_key("ann")
    for _ in range(4):
        assert store.attempt(key, now()) == 0
    locks = []
    for _ in range(9):
        assert store.attempt(key, now()) == 0  # this attempt goes on to its password check (and fails)
        locked = store.attempt(key, now())
        locks.append(locked)
        now.ms += locked  # wait the lock out
    assert locks == [30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000, 900_000]
    assert [lock_ms(n) for n in (4, 5, 6, 10, 50)] == [0, 30_000, 60_000, 900_000, LOCK_MAX_MS]
    store.reset(key)
    assert all(store.attempt(key, now()) == 0 for _ in range(4))  # a success started it over


def test_failures_are_forgotten_after_an_hour_of_quiet(store):
    now, key = Clock(), account_key("bob")
    for _ in range(4):
        assert store.attempt(key, now()) == 0
    now.ms += FORGET_MS + 1
    for _ in range(4):
        assert store.attempt(key, now()) == 0  # counting from 1 again: no lock after 8 in all
    assert store.attempt(key, now()) == 0 and store.attempt(key, now()) == 30_000


def test_the_client_window_opens_at_the_first_request(store):
    now = Clock()
    counts = [store.count("auth:192.0.2.1", 60_000, now()) for _ in range(3)]
    assert [hits for hits, _ in counts] == [1, 2, 3] and all(0 < left <= 60_000 for _, left in counts)
    assert store.count("auth:192.0.2.2", 60_000, now())[0] == 1
    if isinstance(store, RedisThrottleStore):
        return  # Redis ends a window by expiring its key on its own clock
    now.ms += 59_000
    hits, left = store.count("auth:192.0.2.1", 60_000, now())
    assert hits == 4 and left == 1_000
    now.ms += 1_000
    assert store.count("auth:192.0.2.1", 60_000, now()) == (1, 60_000)  # a new window


# --- a store that cannot be reached ---

def test_an_unreachable_redis_is_a_503_not_a_500_nor_a_free_pass(make_api):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = make_api(redis_url=f"redis://127.0.0.1:{port}/0")
    response = _login(api, "ann")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1" and f"{port}" not in response.text
