"""API settings, read from the environment once at start.

TICKBRIDGE_DATABASE_URL   the store (engine.store.db rules: SQLite under var/ by default)
TICKBRIDGE_JWT_SECRET     HS256 key of the access tokens (random per process when unset: dev only)
TICKBRIDGE_ACCOUNTS_KEY   Fernet key that encrypts broker credentials at rest (random when unset:
                          credentials stored then cannot be read after a restart; dev only)
TICKBRIDGE_ACCESS_TTL_S   access token lifetime, seconds (default 900)
TICKBRIDGE_REFRESH_TTL_S  refresh token lifetime, seconds (default 14 days)
TICKBRIDGE_FREE_DELAY_S   delay of the free subscription plan, seconds of signal time (default 900)
TICKBRIDGE_AUTH_RATE      auth requests per client per minute (default 10)
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

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
    poll_interval_s: float = 0.05
    data_dir: Path = ROOT / "data"
    backtest_workers: int = 2
    migrate: bool = True            # run Alembic to head when the app starts

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        values: dict[str, object] = {"database_url": env.get("TICKBRIDGE_DATABASE_URL")}
        for name, key, kind in (("jwt_secret", "TICKBRIDGE_JWT_SECRET", str),
                                ("accounts_key", "TICKBRIDGE_ACCOUNTS_KEY", str),
                                ("access_ttl_s", "TICKBRIDGE_ACCESS_TTL_S", int),
                                ("refresh_ttl_s", "TICKBRIDGE_REFRESH_TTL_S", int),
                                ("free_delay_s", "TICKBRIDGE_FREE_DELAY_S", float),
                                ("auth_rate_per_minute", "TICKBRIDGE_AUTH_RATE", int)):
            if env.get(key):
                values[name] = kind(env[key])
        return cls(**values)  # type: ignore[arg-type]
