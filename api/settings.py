"""API settings, built once at start from the one settings object (engine.settings, where every
TICKBRIDGE_* variable is declared, typed and checked; this list is the API's share of it).

TICKBRIDGE_DATABASE_URL   the store (engine.store.db rules: SQLite under var/ by default)
TICKBRIDGE_JWT_SECRET     HS256 key of the access tokens, at least 32 bytes: `serve` refuses to start
                          without one (Settings() built in code gets a random one: tests only)
TICKBRIDGE_ACCOUNTS_KEY   Fernet key that encrypts broker credentials at rest (random when unset:
                          credentials stored then cannot be read after a restart; dev only)
TICKBRIDGE_ACCESS_TTL_S   access token lifetime, seconds (default 900)
TICKBRIDGE_REFRESH_TTL_S  refresh token lifetime, seconds (default 14 days)
TICKBRIDGE_FREE_DELAY_S   delay of the free subscription plan, seconds after publication (default 900)
TICKBRIDGE_AUTH_RATE      auth requests per client per minute (default 10)
TICKBRIDGE_REDIS_URL      keep the auth limits and lockouts in Redis (default: in the database)
TICKBRIDGE_TRUSTED_PROXIES  comma-separated IPs/CIDRs whose X-Forwarded-For is believed (default
                          none: the socket peer is the client)
TICKBRIDGE_SIGNAL_LATE_GRACE_S  PostgreSQL: how long the signal feed awaits an id a writer has taken
                          but not committed yet (default 5 s, at most 300)
TICKBRIDGE_BACKTEST_QUOTA backtest jobs a user may have queued or running at once (default 2)
TICKBRIDGE_API_THREADS    requests served at once: the worker threads, and the in-flight limit of
                          the concurrency limiter (default 16); more wait in a short queue
TICKBRIDGE_API_QUEUE      requests that may wait for one of those (default 64); beyond, 503 at once
TICKBRIDGE_DB_POOL        database connections of the API (default API_THREADS + 4: the signal
                          poller and stream logins run outside the request threads); >= API_THREADS
TICKBRIDGE_LOGIN_CONCURRENCY  logins (argon2, ~50 ms of CPU each) verified at once (default: half
                          the cores, at least 1), so logins cannot starve reads
TICKBRIDGE_MAX_BODY_BYTES request bodies larger are refused with 413 (default 1 MiB)
TICKBRIDGE_BODY_TIMEOUT_S a request body must arrive within this (default 10 s), else 408
TICKBRIDGE_METRICS_TOKEN  when set, /metrics needs `Authorization: Bearer <token>`
TICKBRIDGE_METRICS_PORT   when set, metrics are served on 127.0.0.1:<port> and /metrics is 404
TICKBRIDGE_DATA_DIRS      the data directories whose files are the named data sources paper bots
                          replay (separated by the OS path separator, `:` on Linux; default the
                          bundled data/ folder): GET /data-sources lists them, a bot's `data` names one
(`tickbridge serve` only: TICKBRIDGE_RUNTIME=process|thread, where the bots run, default their own
process; TICKBRIDGE_API_NICE, the API's nice level below them, default 10 / 0: app/api_cli.py)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

from engine.errors import ConfigError
from engine.settings import MIN_JWT_SECRET_BYTES, ApiSettings, TickbridgeSettings, load_group, load_settings

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    accounts_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    access_ttl_s: int = 900
    refresh_ttl_s: int = 14 * 86_400
    free_delay_s: float = 900.0
    auth_rate_per_minute: int = 10
    redis_url: str | None = None    # auth limits in Redis; None: in the database
    redis_prefix: str = "tickbridge:"  # of every Redis key, so several deployments can share one
    trusted_proxies: tuple[str, ...] = ()  # IPs/CIDRs of reverse proxies; others' X-Forwarded-For is ignored
    poll_interval_s: float = 0.05
    signal_late_grace_s: float = 5.0  # PostgreSQL: how long a skipped signal id is awaited (api.streaming)
    data_dir: Path = ROOT / "data"
    data_dirs: tuple[Path, ...] = field(default_factory=lambda: _data_dirs_from_env())
    backtest_workers: int = 2
    backtest_quota: int = 2
    migrate: bool = True            # run Alembic to head when the app starts
    api_threads: int = 16           # request threads = in-flight limit (api.middleware.ConcurrencyLimit)
    api_queue: int = 64             # requests waiting for a slot; beyond: 503 + Retry-After
    queue_wait_s: float = 5.0       # the longest a request waits in that queue (then 503)
    db_pool: int | None = None      # API database connections; None: api_threads + 4
    login_concurrency: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    login_queue: int = 8
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 10.0
    metrics_token: str | None = None
    metrics_port: int | None = None
    # notifications (api/notify): the dispatcher, its channels and their limits
    notify_enabled: bool = True            # run the dispatcher in this process
    notify_interval_s: float = 1.0         # how often it reads new events and due deliveries
    notify_allowed_networks: tuple[str, ...] = ()  # webhook hosts in these CIDRs pass the private-address refusal
    notify_http_timeout_s: float = 10.0    # per webhook / Telegram request
    notify_max_attempts: int = 6           # per delivery, the first one included
    notify_backoff_s: float = 2.0          # first retry delay; doubles per attempt, plus up to 50 % jitter
    notify_backoff_max_s: float = 900.0
    telegram_api_base: str = "https://api.telegram.org"
    smtp_host: str | None = None           # no host: email rules are refused (422 naming the channel)
    smtp_port: int = 25
    smtp_from: str = "tickbridge@localhost"
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_timeout_s: float = 10.0

    @property
    def pool_size(self) -> int:
        return self.db_pool if self.db_pool is not None else self.api_threads + 4

    @classmethod
    def from_env(cls, jwt_secret: str | None = None, settings: TickbridgeSettings | None = None) -> "Settings":
        """The settings of a server, from the one settings object (engine.settings; default: loaded
        from the environment now). Refuses (ConfigError naming the variable, never its value) a bad
        value and a missing TICKBRIDGE_JWT_SECRET: a random one would log everyone out at each
        restart and differ between workers. `jwt_secret` is the fallback the demo keeps under var/."""
        loaded = settings if settings is not None else load_settings()
        api = loaded.api
        secret = api.jwt_secret.get_secret_value() if api.jwt_secret is not None else jwt_secret
        values: dict[str, object] = {"database_url": loaded.store.database_url,
                                     "jwt_secret": require_jwt_secret(secret), "redis_url": api.redis_url,
                                     "trusted_proxies": api.trusted_proxies,
                                     "data_dirs": _data_dirs_from_env(settings=loaded)}
        if api.accounts_key is not None:
            values["accounts_key"] = api.accounts_key.get_secret_value()
        for name, key in (("access_ttl_s", "access_ttl_s"), ("refresh_ttl_s", "refresh_ttl_s"),
                          ("free_delay_s", "free_delay_s"), ("auth_rate_per_minute", "auth_rate"),
                          ("backtest_quota", "backtest_quota"), ("signal_late_grace_s", "signal_late_grace_s")):
            if getattr(api, key) is not None:
                values[name] = getattr(api, key)
        values.update(_limits(api))
        for key in ("notify_enabled", "telegram_api_base", "smtp_host", "smtp_port", "smtp_from", "smtp_starttls",
                    "smtp_user"):
            if getattr(api, key) is not None:
                values[key] = getattr(api, key)
        if api.notify_allowed_networks:
            values["notify_allowed_networks"] = api.notify_allowed_networks
        if api.smtp_password is not None:
            values["smtp_password"] = api.smtp_password.get_secret_value()
        return cls(**values)  # type: ignore[arg-type]


def _data_dirs_from_env(env: Mapping[str, str] | None = None,
                        settings: TickbridgeSettings | None = None) -> tuple[Path, ...]:
    from live.feed import data_dirs_from_env  # the runtime's rule: one for both

    return data_dirs_from_env(env, settings=None if settings is None else settings.runtime)


JWT_SECRET_VAR = "TICKBRIDGE_JWT_SECRET"


def require_jwt_secret(secret: str | None) -> str:
    """The secret when it is long enough to sign HS256 tokens (RFC 7518: at least the hash's 32
    bytes), else a ConfigError that names the variable and never quotes the value."""
    if not secret:  # one short line: the CLI prints it as is (80 columns)
        raise ConfigError(JWT_SECRET_VAR, f"not set; use a random value of {MIN_JWT_SECRET_BYTES}+ bytes")
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(JWT_SECRET_VAR, f"too short; use a random value of {MIN_JWT_SECRET_BYTES}+ bytes")
    return secret


def parse_trusted_proxies(text: str) -> tuple[str, ...]:
    """TICKBRIDGE_TRUSTED_PROXIES as normalised networks ("10.0.0.0/8", "192.0.2.7/32")."""
    return load_group(ApiSettings, {"TICKBRIDGE_TRUSTED_PROXIES": text}).trusted_proxies


LIMITS = ("api_threads", "api_queue", "db_pool", "login_concurrency", "max_body_bytes", "body_timeout_s",
          "metrics_port")


def load_limits(env: Mapping[str, str]) -> dict[str, object]:
    """The load and size limits that `env` sets (engine.settings.ApiSettings checks them: whole
    numbers of at least their minimum, a pool no smaller than the threads, a port). A bad value is
    a ConfigError naming the variable."""
    return _limits(load_group(ApiSettings, env))


def _limits(api: ApiSettings) -> dict[str, object]:
    values: dict[str, object] = {name: getattr(api, name) for name in LIMITS if getattr(api, name) is not None}
    if api.metrics_token is not None:
        values["metrics_token"] = api.metrics_token.get_secret_value()
    return values
