"""Bot and runtime configuration, validated once at the edge.

The CLI (`tickbridge run FILE`) and the control API (bot config CRUD) both validate with these
models, so a config the API accepts is one the runtime can run. A bad value is refused as
engine.errors.ConfigError naming its dotted field ("bots.1.params.fast", "feed.speed"), the way
strategies/base.py parse_params does, so a person (or an API client) can fix it in one go.
Credentials never live here: `account` only names a broker account whose secrets are in the API's
encrypted account store or the environment. Nor do paths from an API caller: a paper bot's market
data is `data`, the name of one of the server's data sources (live.feed.DataCatalog);
a path there is refused unless the config comes from the operator's own YAML.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_serializer,
                      field_validator, model_validator)

from engine.amounts import Amount
from engine.errors import ConfigError
from engine.settings import StoreSettings, load_group
from engine.risk import RiskConfig, load_risk_config, parse_risk_config
from engine.tick_guard import TickGuardConfig

BOT_ID = re.compile(r"[a-z0-9_-]{1,64}")
# What venues call an instrument: EURUSD, SPY, BRK.B, BTC/USDT, BTC/USDT:USDT (ccxt's linear
# swap), BTC-PERP, MT5's EURUSD.m or #AAPL. Printable ASCII only and 64 characters at most: a
# symbol is echoed in logs, signals and the dashboard, where a NUL, a right-to-left override or a
# megabyte of text has no business (V.md #9).
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#@+-]{0,63}")
SYMBOL_SHAPE = "must be 1-64 characters: letters, digits and . _ : / # @ + - (e.g. EURUSD, BTC/USDT:USDT, BRK.B)"
DEFAULT_DATABASE_URL = "sqlite:///var/tickbridge.db"
RISK_PATH_REFUSED = ("risk limits must be given as data through the API; "
                     "paths are read only from the operator's own files")


class _FieldError(ValueError):
    """A validator's refusal that knows its own (relative) field name, e.g. "params.fast"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class BotConfig(BaseModel):
    """One bot: a strategy with its parameters on one symbol at one venue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="[a-z0-9_-]{1,64}; prefixes the bot's client order ids")
    strategy: str = Field(description="a name in strategies.STRATEGIES")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the strategy's Params")
    symbol: str = Field(min_length=1, max_length=64, description="the venue's instrument name: " + SYMBOL_SHAPE)
    data: str | None = Field(None, min_length=1, max_length=256,
                             description="paper bots: the name of one of the server's data sources (GET "
                                         "/data-sources), e.g. EURUSD_fxcm_20140505, never a path; left out, the "
                                         "runtime's feed, else the one source named for the symbol")
    venue: Literal["paper", "ccxt", "alpaca", "mt5"] = "paper"
    account: str = Field("default", min_length=1, description="broker account name, never credentials")
    bar: str = Field("1min", max_length=32, description="bars built from ticks, a pandas offset alias")
    cash: Amount = Field(Decimal("10000"), gt=0)
    price_increment: Amount | None = Field(None, gt=0)
    size_increment: Amount | None = Field(None, gt=0)
    commission: Amount = Field(Decimal("0"), ge=0, lt=1, description="fraction of notional per fill")
    risk: RiskConfig | None = Field(None, description="risk limits as data (engine.risk.RiskConfig: account, "
                                                      "bots, default_bot); only the operator's runtime YAML "
                                                      "may name a file instead, which its loader reads")
    on_stop: Literal["cancel", "keep"] = "cancel"
    tick_guard: TickGuardConfig = Field(default_factory=TickGuardConfig,
                                        description="bad-tick filter (engine.tick_guard): window, outlier_multiple, "
                                                    "max_deviation_pct, range_floor_pct, confirm_ticks, "
                                                    "confirm_seconds, max_shift_ratio, large_shift_confirm_seconds")

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not BOT_ID.fullmatch(value):
            raise ValueError("must match [a-z0-9_-]{1,64}")
        return value

    @field_validator("symbol")
    @classmethod
    def _symbol_shape(cls, value: str) -> str:
        if not SYMBOL.fullmatch(value):
            raise ValueError(SYMBOL_SHAPE)  # the value is not repeated: it may be a megabyte, or spoof the log
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str, info: ValidationInfo) -> str:
        # a file or module reference loads code: only from the operator's YAML (load_runtime_config
        # says so in the context), never from an API body (strategies/registry.py)
        from strategies.registry import resolve_strategy  # strategies import engine: resolve here

        try:
            resolve_strategy(value, allow_code_refs=bool((info.context or {}).get("allow_code_refs")))
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("data")
    @classmethod
    def _data_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        # a name, looked up only inside the server's data directories; a path is the operator's
        # to give (their own YAML, where load_runtime_config made it absolute). Neither message
        # repeats the value: it may be a path the caller was probing for.
        from live.feed import NOT_A_NAME, data_catalog, is_source_name

        if value is None:
            return None
        operator = bool((info.context or {}).get("allow_code_refs"))
        if not is_source_name(value):
            if operator:
                return value
            raise ValueError(NOT_A_NAME)
        if not operator:  # the operator's session replays (parity) need not find it again
            try:
                data_catalog().describe(value)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("bar")
    @classmethod
    def _bar_alias(cls, value: str) -> str:
        import pandas as pd

        try:
            offset = pd.tseries.frequencies.to_offset(value)
            width = pd.Timedelta(offset)  # fixed-length bars only: months or business days have no close time
        except (ValueError, TypeError):
            raise ValueError(f"not a fixed pandas offset alias: {value!r} (e.g. 1min, 5min, 1h)") from None
        if width <= pd.Timedelta(0):  # "0min" divided by zero at start; "-1min" ran as 1min (V.md #7)
            raise ValueError(f"must be a positive duration, got {value!r} (e.g. 1min, 5min, 1h)")
        return value

    @field_validator("risk", mode="before")
    @classmethod
    def _risk_as_data(cls, value: Any) -> Any:
        # a path here would be read on the say-so of whoever sent the config (an API caller):
        # only load_runtime_config, reading the operator's own YAML, turns a path into data
        if value is None or isinstance(value, RiskConfig):
            return value
        if isinstance(value, str):
            raise ValueError(RISK_PATH_REFUSED)
        try:
            return parse_risk_config(value)
        except ConfigError as exc:
            if exc.field == "risk":
                raise ValueError(exc.message) from None
            raise _FieldError(exc.field, exc.message) from None

    @field_serializer("risk", when_used="json")
    def _risk_json(self, risk: RiskConfig | None) -> dict[str, Any] | None:
        """Only the limits that are set: a stored config reads as it was written."""
        return None if risk is None else risk.model_dump(mode="json", exclude_defaults=True)

    @model_validator(mode="after")
    def _data_for_paper(self) -> "BotConfig":
        if self.data is not None and self.venue != "paper":
            raise _FieldError("data", f"only paper bots replay a data source; a {self.venue} bot trades on "
                                      "its venue's own market data")
        return self

    @model_validator(mode="after")
    def _symbol_in_data(self, info: ValidationInfo) -> "BotConfig":
        # a paper bot replays its data source as `symbol`: a symbol the source does not hold ran
        # on the source's prices (XXXYYY on EURUSD ticks) or on none at all, silently (V.md #8).
        # Checked for the API's configs, whose `data` _data_source already found in the catalog.
        from live.feed import data_catalog, is_source_name

        if self.data is None or not is_source_name(self.data) or (info.context or {}).get("allow_code_refs"):
            return self
        try:
            held = data_catalog().describe(self.data).symbols
        except ConfigError:
            return self  # _data_source said why
        if self.symbol.upper() not in {s.upper() for s in held}:
            raise _FieldError("symbol", f"data source {self.data} holds {', '.join(held)}, not {self.symbol}: "
                                        "name its symbol, or a data source of this symbol (GET /data-sources)")
        return self

    @model_validator(mode="after")
    def _strategy_params(self) -> "BotConfig":
        # its field is "params.<name>", which pydantic's loc cannot say: _validate prefixes it
        try:
            self.strategy_params()
        except ConfigError as exc:
            raise _FieldError(exc.field, exc.message) from None
        return self

    def strategy_params(self) -> Any:
        """The strategy's validated Params (ConfigError "params.<name>" when one is refused)."""
        from strategies import get_strategy  # a name, or a reference this config was validated to load
        from strategies.base import parse_params

        params_cls = get_strategy(self.strategy).Params
        try:
            return parse_params(params_cls, self.params)
        except ConfigError as exc:
            raise ConfigError("params" + exc.field.removeprefix("param"), exc.message) from None


class FeedConfig(BaseModel):
    """Where the market data comes from. Only a replay of a tick file until the adapters issue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["replay"] = "replay"
    path: str = Field(min_length=1, description="a tick file (data/ticks/...)")
    speed: float = Field(0.0, ge=0, description="x real time; 0 = as fast as possible")


class RuntimeConfig(BaseModel):
    """What `tickbridge run` runs: bots on one feed, and the store they write to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bots: list[BotConfig] = Field(min_length=1)
    feed: FeedConfig
    database_url: str | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> "RuntimeConfig":
        seen: set[str] = set()
        for n, bot in enumerate(self.bots):
            if bot.id in seen:
                raise _FieldError(f"bots.{n}.id", f"duplicate bot id {bot.id!r}")
            seen.add(bot.id)
        return self

    def resolved_database_url(self) -> str:
        return self.database_url or load_group(StoreSettings).database_url or DEFAULT_DATABASE_URL


def _validate(model: type[BaseModel], raw: Any, allow_code_refs: bool = False) -> Any:
    """Validate, turning pydantic's first error into ConfigError naming the dotted field."""
    if not isinstance(raw, dict):
        raise ConfigError("config", f"expected a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw, context={"allow_code_refs": allow_code_refs})
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):  # raised by a validator with its own field name
            prefix = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{prefix}.{cause.field}" if prefix else cause.field, cause.message) from None
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        raise ConfigError(loc, message) from None


def parse_bot_config(raw: dict[str, Any], allow_code_refs: bool = False) -> BotConfig:
    """BotConfig from a mapping (an API body, one entry of a YAML), or ConfigError naming the field.
    `allow_code_refs` only for the operator's own files: a strategy may then be path.py:Class."""
    return _validate(BotConfig, raw, allow_code_refs)


def parse_feed_config(raw: dict[str, Any]) -> FeedConfig:
    return _validate(FeedConfig, raw)


def parse_runtime_config(raw: dict[str, Any], allow_code_refs: bool = False) -> RuntimeConfig:
    return _validate(RuntimeConfig, raw, allow_code_refs)


def load_runtime_config(path: str | Path) -> RuntimeConfig:
    """Read a runtime YAML (config/bots/...); a missing file or bad YAML is a ConfigError too.

    This is the one place a bot's `risk:` may name a file: the YAML is the operator's own, so the
    files it names are too. Each is read here and its limits go into the config as data, so the
    runtime, the session recording and `tickbridge parity` all see the limits that were in force."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("bots"), list):
        raw = {**raw, "bots": [_with_data_path(_with_risk_read(bot, n, path.parent), n, path.parent)
                               for n, bot in enumerate(raw["bots"])]}
    return parse_runtime_config(raw, allow_code_refs=True)  # the operator's file may name their code


def _with_risk_read(bot: Any, n: int, base: Path) -> Any:
    """The bot entry with a `risk:` path replaced by the limits in that file."""
    if not isinstance(bot, dict) or not isinstance(bot.get("risk"), str):
        return bot
    named = Path(bot["risk"]).expanduser()
    candidates = [named] if named.is_absolute() else [base / named, Path.cwd() / named]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        looked = " or ".join(str(c) for c in candidates)
        raise ConfigError(f"bots.{n}.risk", f"risk file {bot['risk']} not found (looked for {looked})")
    try:
        risk = load_risk_config(found)
    except ConfigError as exc:
        field = f"bots.{n}.risk" + ("" if exc.field == "risk" else f".{exc.field}")
        raise ConfigError(field, exc.message) from None
    return {**bot, "risk": risk}


def _with_data_path(bot: Any, n: int, base: Path) -> Any:
    """The bot entry with a `data:` that is not a data source's name made an absolute path: the
    operator's own file may name a data file, relative to the YAML's folder or the working one."""
    from live.feed import data_catalog, is_source_name

    if not isinstance(bot, dict) or not isinstance(bot.get("data"), str):
        return bot
    named = bot["data"]
    if is_source_name(named) and named in data_catalog().files():
        return bot
    path = Path(named).expanduser()
    candidates = [path] if path.is_absolute() else [base / path, Path.cwd() / path]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(f"bots.{n}.data", f"{named} is neither one of the server's data sources nor a file "
                                            f"(looked for {' or '.join(str(c) for c in candidates)})")
    return {**bot, "data": str(found.resolve())}
