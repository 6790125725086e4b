"""The one settings object (engine.settings): every TICKBRIDGE_* variable the code names is declared
there (the dynamic per-account credential names and the test suite's own excepted, as the module
documents), each field is read somewhere, nothing reads those variables behind its back, a bad
value of each kind is refused naming the variable and never quoting a secret, and the defaults are
the documented ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import (DYNAMIC_VARIABLES, GROUPS, TEST_VARIABLES, ApiSettings, RuntimeSettings, StoreSettings,
                             load_group, load_settings, variables)

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", "build", "tests", "node_modules", "__pycache__"}
NAME = re.compile(r"TICKBRIDGE_[A-Z0-9_]+")
NOT_VARIABLES = {"TICKBRIDGE_MAGIC"}  # brokers.mt5.mapping: a Python constant (MT5 magic number), not the environment
SETTINGS_FILE = ROOT / "engine" / "settings.py"


def source_files() -> list[Path]:
    return [path for path in ROOT.rglob("*.py")
            if not any(part in SKIP_DIRS or part.startswith(".") for part in path.relative_to(ROOT).parts[:-1])]


def names_in_code() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in source_files():
        for name in NAME.findall(path.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_variable_the_code_names_is_declared_in_the_settings_module():
    declared = set(variables())
    dynamic_prefixes = tuple(name.split("<", 1)[0] for name in DYNAMIC_VARIABLES)
    undeclared = {name: sorted(files) for name, files in names_in_code().items()
                  if name not in declared and name not in TEST_VARIABLES and name not in NOT_VARIABLES
                  and not name.startswith(dynamic_prefixes)}  # TICKBRIDGE_ACCOUNT_{account}_ and examples
    assert undeclared == {}, "declare these in engine/settings.py (or document them there as dynamic)"
    module_text = SETTINGS_FILE.read_text()
    for name in (*DYNAMIC_VARIABLES, *TEST_VARIABLES):
        assert name in module_text.split('"""', 2)[1]  # documented in the module docstring


def test_every_declared_variable_is_described_and_read_somewhere():
    others = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in source_files()
                       if path != SETTINGS_FILE)
    for group in GROUPS:
        for field_name, field in group.model_fields.items():
            variable = "TICKBRIDGE_" + field_name.upper()
            assert field.description and field.description.startswith(variable + ":"), variable
            assert re.search(rf"\b{field_name}\b", others), f"{variable} is declared but nothing reads .{field_name}"


def test_nothing_reads_a_tickbridge_variable_from_the_environment_directly():
    direct = re.compile(r"""environ(?:\.get\(|\[)\s*f?["']TICKBRIDGE_|getenv\(\s*f?["']TICKBRIDGE_""")
    readers = sorted(str(path.relative_to(ROOT)) for path in source_files()
                     if path != SETTINGS_FILE and path.parts[-2:] != ("bench", path.name)  # bench: test URLs
                     and direct.search(path.read_text(encoding="utf-8", errors="replace")))
    assert readers == []


def test_defaults_are_the_documented_ones():
    settings = load_settings({})
    assert settings.store.database_url is None
    runtime = settings.runtime
    assert (runtime.runtime, runtime.api_nice, runtime.feed_path, runtime.feed_speed, runtime.state_dir,
            runtime.lease_ttl_s, runtime.data_dirs, runtime.strategies_dir) == (
        "process", None, "data/ticks/", 60.0, Path("var"), 15.0, (), ())
    assert all(value in (None, ()) for value in settings.api.model_dump().values())
    from api.settings import Settings
    from live.feed import BUNDLED_DATA, data_dirs_from_env

    assert data_dirs_from_env({}) == (BUNDLED_DATA,)
    built = Settings.from_env(settings=load_settings({"TICKBRIDGE_JWT_SECRET": "s" * 40}))
    plain = Settings()
    for name in ("access_ttl_s", "refresh_ttl_s", "free_delay_s", "auth_rate_per_minute", "backtest_quota",
                 "api_threads", "api_queue", "db_pool", "max_body_bytes", "body_timeout_s", "metrics_token",
                 "metrics_port", "redis_url", "trusted_proxies", "database_url", "signal_late_grace_s"):
        assert getattr(built, name) == getattr(plain, name), name


def test_the_signal_feeds_late_grace_reaches_the_hub():
    """TICKBRIDGE_SIGNAL_LATE_GRACE_S is the hub's late_grace_s (it was a constructor default only)."""
    from api.settings import Settings

    built = Settings.from_env(settings=load_settings({"TICKBRIDGE_JWT_SECRET": "s" * 40,
                                                      "TICKBRIDGE_SIGNAL_LATE_GRACE_S": "12.5"}))
    assert built.signal_late_grace_s == 12.5 and Settings().signal_late_grace_s == 5.0


def test_values_are_parsed_and_reach_their_readers(tmp_path, monkeypatch):
    env = {"TICKBRIDGE_API_THREADS": "8", "TICKBRIDGE_DB_POOL": " 12 ", "TICKBRIDGE_RUNTIME": "Thread",
           "TICKBRIDGE_DATA_DIRS": f"{tmp_path / 'a'}:{tmp_path / 'b'}", "TICKBRIDGE_FEED_SPEED": "0",
           "TICKBRIDGE_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16", "TICKBRIDGE_LEASE_TTL_S": "2.5",
           "TICKBRIDGE_STATE_DIR": str(tmp_path / "state"), "TICKBRIDGE_JWT_SECRET": "j" * 40,
           "TICKBRIDGE_AUTH_RATE": "", "TICKBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    settings = load_settings(env)
    assert settings.runtime.runtime == "thread" and settings.runtime.feed_speed == 0.0
    assert settings.runtime.data_dirs == (tmp_path / "a", tmp_path / "b")
    from api.settings import Settings

    api = Settings.from_env(settings=settings)
    assert (api.api_threads, api.db_pool, api.auth_rate_per_minute) == (8, 12, 10)  # empty = unset: the default
    assert api.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16")
    assert api.data_dirs == (tmp_path / "a", tmp_path / "b")
    assert api.database_url == env["TICKBRIDGE_DATABASE_URL"]

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from engine.store.db import database_url
    from live.config import parse_feed_config
    from live.manager import BotManager

    assert database_url() == env["TICKBRIDGE_DATABASE_URL"]
    manager = BotManager.from_env(settings)
    try:
        assert manager.lease_ttl_s == 2.5 and manager.state_dir == tmp_path / "state"
        assert manager.feed == parse_feed_config({"path": "data/ticks/", "speed": 0})
    finally:
        manager.close()
    monkeypatch.setenv("TICKBRIDGE_STRATEGIES_DIR", str(tmp_path / "missing"))
    from strategies.registry import available

    with pytest.raises(ConfigError, match="TICKBRIDGE_STRATEGIES_DIR"):
        available()


BAD_VALUES = [  # (variable, value, words of the rule): one per kind of value
    ("TICKBRIDGE_API_THREADS", "0", "whole number >= 1"),
    ("TICKBRIDGE_API_THREADS", "eight", "whole number >= 1"),
    ("TICKBRIDGE_MAX_BODY_BYTES", "1e6", "whole number >= 1"),
    ("TICKBRIDGE_API_QUEUE", "-1", "whole number >= 0"),
    ("TICKBRIDGE_METRICS_PORT", "70000", "<= 65535"),
    ("TICKBRIDGE_API_NICE", "20", "<= 19"),
    ("TICKBRIDGE_LEASE_TTL_S", "0", "number > 0"),
    ("TICKBRIDGE_LEASE_TTL_S", "nan", "number > 0"),
    ("TICKBRIDGE_FEED_SPEED", "fast", "number >= 0"),
    ("TICKBRIDGE_FREE_DELAY_S", "-5", "number >= 0"),
    ("TICKBRIDGE_SIGNAL_LATE_GRACE_S", "-1", "number >= 0"),
    ("TICKBRIDGE_SIGNAL_LATE_GRACE_S", "301", "<= 300"),
    ("TICKBRIDGE_RUNTIME", "fork", "process"),
    ("TICKBRIDGE_TRUSTED_PROXIES", "10.0.0.1,not-an-ip", "not an IP address"),
    ("TICKBRIDGE_JWT_SECRET", "s3cr3t-but-short", "too short"),
]


@pytest.mark.parametrize(("variable", "value", "rule"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_variable(variable, value, rule):
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: value})
    assert refused.value.field == variable and rule in refused.value.message
    assert str(refused.value).startswith(f"{variable}: ")


def test_a_pool_smaller_than_the_threads_is_refused_naming_the_pool():
    with pytest.raises(ConfigError) as refused:
        load_settings({"TICKBRIDGE_API_THREADS": "8", "TICKBRIDGE_DB_POOL": "4"})
    assert refused.value.field == "TICKBRIDGE_DB_POOL"


def test_secrets_are_never_echoed():
    secret = "hunter2-is-not-32-bytes"
    with pytest.raises(ConfigError) as refused:
        load_settings({"TICKBRIDGE_JWT_SECRET": secret})
    assert secret not in str(refused.value) and refused.value.__cause__ is None and refused.value.__context__ is None
    values = {"TICKBRIDGE_JWT_SECRET": "J" * 40, "TICKBRIDGE_ACCOUNTS_KEY": "accounts-key-value",
              "TICKBRIDGE_METRICS_TOKEN": "metrics-token-value",
              "TICKBRIDGE_DATABASE_URL": "postgresql://u:db-password@h/d",
              "TICKBRIDGE_REDIS_URL": "redis://:redis-password@h:6379/0"}
    shown = repr(load_settings(values)) + str(load_settings(values))
    for needle in ("J" * 40, "accounts-key-value", "metrics-token-value", "db-password", "redis-password"):
        assert needle not in shown


def test_each_group_reads_only_its_own_variables():
    """A low layer (the store, the registry) is not refused for another group's mistake; start-up is."""
    env = {"TICKBRIDGE_API_THREADS": "zero", "TICKBRIDGE_DATABASE_URL": "sqlite:///x.db"}
    assert load_group(StoreSettings, env).database_url == "sqlite:///x.db"
    assert load_group(RuntimeSettings, env).runtime == "process"
    with pytest.raises(ConfigError):
        load_group(ApiSettings, env)


def test_the_cli_refuses_a_bad_value_at_start_with_one_line_naming_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TICKBRIDGE_API_THREADS": "many",
           "TICKBRIDGE_JWT_SECRET": "short-secret"}
    done = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "strategies"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TICKBRIDGE_" in done.stderr and "Traceback" not in done.stderr
    assert "short-secret" not in done.stdout + done.stderr
