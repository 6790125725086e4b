"""Every TICKBRIDGE_* environment variable, in one place: its type, default and meaning.

The CLI, the API and the bot runtime read their configuration from here (`load_settings()` at
start, passed down), so a bad value is refused once, before anything starts, with the variable
named (`TICKBRIDGE_API_THREADS: must be a whole number >= 1`), and never with a secret's value.
An empty variable counts as unset.

The variables come in three groups, one model each, so a low layer can read its own group without
being refused for another's mistake (the store reads `StoreSettings`, the strategy registry
`RuntimeSettings`):

- `StoreSettings`: the database.
- `RuntimeSettings`: where bots run and what they replay, the strategies directory, the CLI.
- `ApiSettings`: the HTTP API (`tickbridge serve`, the demo); api.settings.Settings is built from it.

Not here, on purpose:

- TICKBRIDGE_ACCOUNT_<ACCOUNT>_<FIELD> (e.g. TICKBRIDGE_ACCOUNT_BINANCE_MAIN_SECRET): broker
  credentials of a bot's account, one variable per account and field, so their names are dynamic;
  brokers.factory.EnvCredentials reads them when a bot starts (and names a missing one).
- TICKBRIDGE_TEST_POSTGRES_URL, TICKBRIDGE_TEST_REDIS_URL: where the test suite and the benchmarks
  find PostgreSQL and Redis; tickbridge itself never reads them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import ConfigError

PREFIX = "TICKBRIDGE_"
DYNAMIC_VARIABLES = ("TICKBRIDGE_ACCOUNT_<ACCOUNT>_<FIELD>",)   # brokers.factory.EnvCredentials
TEST_VARIABLES = ("TICKBRIDGE_TEST_POSTGRES_URL", "TICKBRIDGE_TEST_REDIS_URL")  # tests and bench/ only
MIN_JWT_SECRET_BYTES = 32
MAX_PORT = 65535


class _FieldError(ValueError):
    """A refusal that names its own variable (a check across fields, or a rule's own words)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _whole(least: int, most: int | None = None) -> BeforeValidator:
    """Digits only ("8", not "8.0", "1e6" or "-1"), within [least, most]: the rule is the message."""
    rule = f"must be a whole number >= {least}" + (f" and <= {most}" if most is not None else "")

    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = value.strip()
            if not value.isdigit():
                raise ValueError(rule)
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(rule)
        if value < least or (most is not None and value > most):
            raise ValueError(rule)
        return value

    return BeforeValidator(check)


def _number(least: float, strict: bool) -> BeforeValidator:
    """A finite number > least (strict) or >= least."""
    rule = f"must be a number {'>' if strict else '>='} {least:g}"

    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(rule) from None
        if not math.isfinite(number) or number < least or (strict and number == least):
            raise ValueError(rule)
        return number

    return BeforeValidator(check)


def _paths(value: Any) -> Any:
    """Directories separated by the OS path separator (`:` on Linux), blanks dropped."""
    if isinstance(value, str):
        return tuple(Path(part.strip()).expanduser() for part in value.split(os.pathsep) if part.strip())
    return value


def _networks(value: Any) -> Any:
    """Comma-separated IPs/CIDRs, normalised ("10.0.0.0/8", "192.0.2.7/32")."""
    if not isinstance(value, str):
        return value
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item[:64]!r} is not an IP address or network") from None
    return tuple(networks)


def _jwt_secret(value: Any) -> Any:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(raw, str) and len(raw.encode()) < MIN_JWT_SECRET_BYTES:
        raise ValueError(f"too short; use a random value of {MIN_JWT_SECRET_BYTES}+ bytes")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Whole1 = Annotated[int | None, _whole(1)]  # unset: the API's default
Paths = Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_paths)]

# the environment the next settings model reads (load_settings(environ)): None = os.environ
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("tickbridge_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """os.environ, or the mapping load_settings was given (tests, a child process's env)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _environ.get()
        env = os.environ if env is None else env
        return {key.lower(): value for key, value in env.items() if value.strip() != ""}


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore", case_sensitive=False,
                                      hide_input_in_errors=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _MappingEnvSource(settings_cls)  # no .env file, no secrets dir: the environment only


class StoreSettings(_Group):
    """The database."""

    database_url: str | None = Field(None, repr=False, description=(
        "TICKBRIDGE_DATABASE_URL: the store, a SQLAlchemy URL (sqlite:///path or postgresql://...); "
        "default sqlite:///var/tickbridge.db. An explicit --url overrides it."))


class RuntimeSettings(_Group):
    """Where bots run, what paper bots replay, where user strategies live."""

    runtime: Annotated[Literal["process", "thread"], BeforeValidator(_lower)] = Field("process", description=(
        "TICKBRIDGE_RUNTIME: (`tickbridge serve`) process (default) runs the bots in a child process "
        "behind the BotControl protocol, so they never share a GIL with the API; thread keeps them in the "
        "API's process."))
    api_nice: Annotated[int | None, _whole(0, 19)] = Field(None, description=(
        "TICKBRIDGE_API_NICE: (`tickbridge serve`) nice levels the API process runs below its bot runtime "
        "(0-19; default 10 with TICKBRIDGE_RUNTIME=process, 0 with thread, which allows no other)."))
    feed_path: str = Field("data/ticks/", description=(
        "TICKBRIDGE_FEED_PATH: the tick file, or the directory of <SYMBOL>_... files, paper bots replay "
        "when their config names no data source (default data/ticks/)."))
    feed_speed: Annotated[float, _number(0, strict=False)] = Field(60.0, description=(
        "TICKBRIDGE_FEED_SPEED: replay speed, x real time (default 60: a bundled day of EURUSD in 24 "
        "minutes; 0 = as fast as possible)."))
    state_dir: Path = Field(Path("var"), description=(
        "TICKBRIDGE_STATE_DIR: the runtime's venue logs and session recordings (default var)."))
    lease_ttl_s: Annotated[float, _number(0, strict=True)] = Field(15.0, description=(
        "TICKBRIDGE_LEASE_TTL_S: seconds before another runtime may take over a bot whose runtime "
        "stopped renewing its lease (default 15)."))
    charges_every_s: Annotated[float, _number(0, strict=True)] = Field(60.0, description=(
        "TICKBRIDGE_CHARGES_EVERY_S: how often a live bot asks its venue for account charges (funding, "
        "crypto fees) to book (default 60 s)."))
    data_dirs: Paths = Field((), description=(
        "TICKBRIDGE_DATA_DIRS: the data directories whose files are the named data sources paper bots "
        "replay (separated by the OS path separator, `:` on Linux; default the bundled data/ folder): "
        "GET /data-sources lists them, a bot's `data` names one."))
    strategies_dir: Paths = Field((), description=(
        "TICKBRIDGE_STRATEGIES_DIR: directories of user strategy files (.py), separated by the OS path "
        "separator; the CLI's --strategies-dir sets it for the processes it starts."))


class ApiSettings(_Group):
    """The HTTP API (`tickbridge serve`, the demo). Unset limits take api.settings.Settings' defaults."""

    jwt_secret: Annotated[SecretStr | None, BeforeValidator(_jwt_secret)] = Field(None, description=(
        "TICKBRIDGE_JWT_SECRET: HS256 key of the access tokens, at least 32 bytes; `serve` refuses to "
        "start without one (the demo keeps a generated one under var/)."))
    accounts_key: SecretStr | None = Field(None, description=(
        "TICKBRIDGE_ACCOUNTS_KEY: Fernet key that encrypts broker credentials at rest (random when "
        "unset: credentials stored then cannot be read after a restart; dev only)."))
    access_ttl_s: Whole1 = Field(None, description="TICKBRIDGE_ACCESS_TTL_S: access token lifetime, "
                                                          "seconds (default 900).")
    refresh_ttl_s: Whole1 = Field(None, description="TICKBRIDGE_REFRESH_TTL_S: refresh token lifetime, "
                                                           "seconds (default 14 days).")
    free_delay_s: Annotated[float | None, _number(0, strict=False)] = Field(None, description=(
        "TICKBRIDGE_FREE_DELAY_S: delay of the free subscription plan, seconds after publication (default 900)."))
    auth_rate: Whole1 = Field(None, description="TICKBRIDGE_AUTH_RATE: auth requests per client per "
                                                       "minute (default 10).")
    redis_url: str | None = Field(None, repr=False, description=(
        "TICKBRIDGE_REDIS_URL: keep the auth limits and lockouts in Redis (default: in the database)."))
    trusted_proxies: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_networks)] = Field((), description=(
        "TICKBRIDGE_TRUSTED_PROXIES: comma-separated IPs/CIDRs whose X-Forwarded-For is believed "
        "(default none: the socket peer is the client)."))
    signal_late_grace_s: Annotated[float | None, _number(0, strict=False)] = Field(None, description=(
        "TICKBRIDGE_SIGNAL_LATE_GRACE_S: PostgreSQL: how long the signal feed awaits an id skipped by "
        "a writer that has not committed yet (default 5 s; a commit later than this is missed by the "
        "live feed, not by the table). At most 300."))
    backtest_quota: Whole1 = Field(None, description=(
        "TICKBRIDGE_BACKTEST_QUOTA: backtest jobs a user may have queued or running at once (default 2)."))
    api_threads: Whole1 = Field(None, description=(
        "TICKBRIDGE_API_THREADS: requests served at once, the worker threads and the in-flight limit "
        "(default 16); more wait in a short queue."))
    api_queue: Annotated[int | None, _whole(0)] = Field(None, description=(
        "TICKBRIDGE_API_QUEUE: requests that may wait for a thread (default 64); beyond, 503 at once."))
    db_pool: Whole1 = Field(None, description=(
        "TICKBRIDGE_DB_POOL: database connections of the API (default API_THREADS + 4); >= API_THREADS."))
    login_concurrency: Whole1 = Field(None, description=(
        "TICKBRIDGE_LOGIN_CONCURRENCY: logins (argon2, ~50 ms of CPU each) verified at once (default half "
        "the cores, at least 1), so logins cannot starve reads."))
    max_body_bytes: Whole1 = Field(None, description=(
        "TICKBRIDGE_MAX_BODY_BYTES: larger request bodies are refused with 413 (default 1 MiB)."))
    body_timeout_s: Whole1 = Field(None, description=(
        "TICKBRIDGE_BODY_TIMEOUT_S: a request body must arrive within this many seconds (default 10), else 408."))
    metrics_token: SecretStr | None = Field(None, description=(
        "TICKBRIDGE_METRICS_TOKEN: when set, /metrics needs `Authorization: Bearer <token>`."))
    metrics_port: Annotated[int | None, _whole(1, MAX_PORT)] = Field(None, description=(
        "TICKBRIDGE_METRICS_PORT: when set, metrics are served on 127.0.0.1:<port> and /metrics is 404."))
    notify_enabled: bool | None = Field(None, description=(
        "TICKBRIDGE_NOTIFY_ENABLED: run the notification dispatcher in this API process (default true)."))
    notify_allowed_networks: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_networks)] = Field((), description=(
        "TICKBRIDGE_NOTIFY_ALLOWED_NETWORKS: comma-separated CIDRs a webhook may point into although they "
        "are loopback/private (default none: such webhooks are refused)."))
    telegram_api_base: str | None = Field(None, description=(
        "TICKBRIDGE_TELEGRAM_API_BASE: the Telegram Bot API's base URL (default https://api.telegram.org)."))
    smtp_host: str | None = Field(None, description=(
        "TICKBRIDGE_SMTP_HOST: the SMTP server for email notifications (unset: email rules are refused)."))
    smtp_port: Annotated[int | None, _whole(1, MAX_PORT)] = Field(None, description=(
        "TICKBRIDGE_SMTP_PORT: its port (default 25)."))
    smtp_from: str | None = Field(None, description=(
        "TICKBRIDGE_SMTP_FROM: the sender address of notification emails (default tickbridge@localhost)."))
    smtp_starttls: bool | None = Field(None, description=(
        "TICKBRIDGE_SMTP_STARTTLS: STARTTLS before login (default false)."))
    smtp_user: str | None = Field(None, description="TICKBRIDGE_SMTP_USER: SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="TICKBRIDGE_SMTP_PASSWORD: its password.")

    @model_validator(mode="after")
    def _grace_is_bounded(self) -> "ApiSettings":
        # a grace of hours would keep every skipped id (up to api.streaming.MAX_HOLES) in each poll's SQL
        if self.signal_late_grace_s is not None and self.signal_late_grace_s > 300:
            raise _FieldError("signal_late_grace_s", "must be a number <= 300")
        return self

    @model_validator(mode="after")
    def _pool_holds_the_threads(self) -> "ApiSettings":
        threads = self.api_threads if self.api_threads is not None else 16
        if self.db_pool is not None and self.db_pool < threads:
            raise _FieldError("db_pool", f"must be at least TICKBRIDGE_API_THREADS ({threads})")
        return self


class TickbridgeSettings(BaseModel):
    """All of them: what the CLI, `tickbridge serve` and the runtime read at start."""

    model_config = ConfigDict(frozen=True)

    store: StoreSettings
    runtime: RuntimeSettings
    api: ApiSettings


GROUPS: tuple[type[_Group], ...] = (StoreSettings, RuntimeSettings, ApiSettings)
G = TypeVar("G", bound=_Group)


def variables() -> dict[str, str]:
    """Every variable read here -> its description (the docs' table, the tests' census)."""
    return {PREFIX + name.upper(): field.description or ""
            for group in GROUPS for name, field in group.model_fields.items()}


@contextmanager
def _reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _environ.set(environ)
    try:
        yield
    finally:
        _environ.reset(token)


def load_group(group: type[G], environ: Mapping[str, str] | None = None) -> G:
    """One group from `environ` (default os.environ); a bad value is a ConfigError naming it."""
    try:
        with _reading(environ):
            return group()
    except ValidationError as exc:
        error = config_error(exc)
    raise error  # outside the handler: no chained pydantic error to print (its report is ours to word)


def load_settings(environ: Mapping[str, str] | None = None) -> TickbridgeSettings:
    """Every group from `environ` (default os.environ). The first bad value is a ConfigError naming
    its variable, never quoting a value."""
    return TickbridgeSettings(store=load_group(StoreSettings, environ), runtime=load_group(RuntimeSettings, environ),
                              api=load_group(ApiSettings, environ))


def config_error(exc: ValidationError, prefix: str = PREFIX) -> ConfigError:
    """pydantic's first error as a ConfigError: the field's variable (prefix + NAME) and the
    rule it breaks. The input is never quoted (a secret may be the bad value)."""
    err = exc.errors(include_input=False, include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        return ConfigError(prefix + cause.field.upper(), cause.message)
    loc = [str(part) for part in err.get("loc", ()) if isinstance(part, str)]
    name = prefix + (loc[0].upper() if loc else "SETTINGS")
    if err["type"] == "value_error" and cause is not None:
        return ConfigError(name, str(cause))
    if err["type"] == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return ConfigError(name, f"must be one of {expected}")
    return ConfigError(name, err["msg"][:1].lower() + err["msg"][1:])
