"""Which optional extra brings which import, so a command whose extra is missing says what to
install instead of ending in a traceback.

`pip install tickbridge` is the engine and the backtest CLI; the API, research at scale, models,
plots, PostgreSQL, torch and the broker SDKs are extras (pyproject.toml). Commands import what
they need when they run, so the base install never pays for them; the one place that turns a
missing module into advice is `missing_extra`, called by the CLI's error handler.
"""

from __future__ import annotations

# top-level module -> the extra that installs it (keep in step with pyproject.toml)
EXTRA_OF_MODULE: dict[str, str] = {
    "fastapi": "api", "starlette": "api", "uvicorn": "api", "h11": "api", "jwt": "api", "argon2": "api",
    "cryptography": "api", "prometheus_client": "api", "redis": "api", "zxcvbn": "api", "httpx": "api",
    "fastapi_offline": "api",
    "ray": "research", "optuna": "research",
    "sklearn": "ml", "joblib": "ml", "threadpoolctl": "ml", "apscheduler": "ml",
    "matplotlib": "plots",
    "psycopg": "postgres",
    "torch": "torch",
    "alpaca": "alpaca",
    "ccxt": "ccxt",
    "MetaTrader5": "mt5",
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """One line of advice for a module one of our extras provides, else None (a real bug)."""
    root = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(root)
    if extra is None:
        return None
    if extra == "mt5":
        return ("MetaTrader5 is not installed: its wheels are Windows-only (pip install 'tickbridge[mt5]' "
                "there); on Linux pass the mt5linux bridge to the MT5 adapter")
    return f"this needs the '{extra}' extra ({root} is not installed): pip install 'tickbridge[{extra}]'"


def require(extra: str, why: str) -> None:
    """Fail before any work when an extra a command will need is missing (a backtest that would
    end in a missing plotting library should not run for a minute first)."""
    import importlib.util

    from engine.errors import ConfigError

    modules = [module for module, name in EXTRA_OF_MODULE.items() if name == extra]
    missing = next((m for m in modules if importlib.util.find_spec(m) is None), None)
    if missing is not None:
        raise ConfigError(why, f"needs the '{extra}' extra ({missing} is not installed): "
                               f"pip install 'tickbridge[{extra}]'")
