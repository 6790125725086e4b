"""A newcomer's own strategy, everywhere a built-in goes: the CLI backtest (a file, a module, the
strategies directory, an installed package's entry point), sweeps, the README's example as a
paper bot from YAML, and the API, which runs installed strategies but never loads code a caller
names. Mistakes in a strategy are reported at the user's own line, as one line, exit status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import ConfigError
from live.config import load_runtime_config, parse_bot_config
from strategies.registry import DIR_ENV
from tests.api.conftest import Api, _apis, _close, migrated_db  # noqa: F401 (a fixture, used by make_api)
from tests.conftest import DATA, ROOT
from tests.unit.test_strategy_registry import CROSS, make_distribution

SPY = DATA / "stocks" / "SPY_daily.csv"
EXAMPLE = ROOT / "examples" / "my_cross.py"


def tickbridge(*args: str | Path, env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != DIR_ENV}
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**base, "COLUMNS": "200", **(env or {})})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error a user sees: exit status 2, no traceback, the message on stderr."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == 2, output
    return " ".join(done.stderr.split())


# -- the README's example, through the CLI ---------------------------------------------------------------
def test_the_readme_example_backtests_from_its_file(tmp_path):
    out = tmp_path / "mine.json"
    done = tickbridge("backtest", "--strategy", "examples/my_cross.py:MyCross", "--data", SPY,
                      "--param", "fast=20", "--param", "slow=50", "--json", out)
    assert done.returncode == 0, done.stderr
    assert "my_cross on SPY_daily.csv" in done.stdout
    stats = json.loads(out.read_text())["stats"]
    assert stats["trades"] > 0


def test_the_strategies_directory_by_option_and_by_environment(tmp_path):
    by_option = tickbridge("backtest", "--strategy", "my_cross", "--strategies-dir", "examples", "--data", SPY)
    assert by_option.returncode == 0, by_option.stderr
    by_env = tickbridge("backtest", "--strategy", "my_cross", "--data", SPY, env={DIR_ENV: str(ROOT / "examples")})
    assert by_env.returncode == 0, by_env.stderr
    assert by_option.stdout.split("┏")[1] == by_env.stdout.split("┏")[1]  # the same statistics
    listed = tickbridge("strategies", env={DIR_ENV: str(ROOT / "examples")})
    assert listed.returncode == 0, listed.stderr
    assert "my_cross" in listed.stdout and "examples/my_cross.py" in listed.stdout and "fast=10" in listed.stdout


def test_a_module_reference_and_an_entry_point_from_the_cli(tmp_path):
    write(tmp_path / "mod_strats" / "__init__.py", "")
    write(tmp_path / "mod_strats" / "cross.py", CROSS.format(cls="ModCross", name="mod_cross"))
    make_distribution(tmp_path, "ep_cross")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    by_module = tickbridge("backtest", "--strategy", "mod_strats.cross:ModCross", "--data", SPY, env=env)
    assert by_module.returncode == 0, by_module.stderr
    assert "mod_cross on SPY_daily.csv" in by_module.stdout
    by_entry_point = tickbridge("backtest", "--strategy", "ep_cross", "--data", SPY, env=env)
    assert by_entry_point.returncode == 0, by_entry_point.stderr
    assert "ep_cross on SPY_daily.csv" in by_entry_point.stdout


def test_an_unknown_strategy_says_how_to_name_your_own():
    message = one_line_error(tickbridge("backtest", "--strategy", "my_cros", "--data", SPY,
                                        env={DIR_ENV: str(ROOT / "examples")}))
    assert "unknown strategy 'my_cros'" in message and "did you mean 'my_cross'" in message
    assert "path/to/file.py:Class" in message


# -- mistakes in a strategy, reported at the user's line ---------------------------------------------------
TYPOS = {
    "numpy_to_pandas_ta": ('''
        import pandas_ta as ta
        from strategies.base import Strategy


        class Typo(Strategy):
            name = "typo"

            def init(self):
                self.fast = self.I(ta.ema, self.data.close, length=10)
        ''', 10, ["ema", "numpy array", "self.data.close", "pandas Series", "self.data.Close"]),
    "go_two": ('''
        from strategies.base import Strategy


        class Typo(Strategy):
            name = "typo"

            def next(self):
                if self.i == 30:
                    self.go(+2)
        ''', 10, ["go(2)", "+1", "-1", "0"]),
    "look_ahead": ('''
        from strategies.base import Strategy


        class Typo(Strategy):
            name = "typo"

            def next(self):
                if self.data.close[self.i + 1] > self.data.close[self.i]:
                    self.go(+1)
        ''', 9, ["look-ahead", "self.i"]),
    "look_ahead_in_an_indicator": ('''
        import pandas_ta as ta
        from strategies.base import Strategy


        class Typo(Strategy):
            name = "typo"

            def init(self):
                self.sma = self.I(ta.sma, self.data.Close, length=5)

            def next(self):
                tomorrow = self.sma[self.i + 1]
        ''', 13, ["look-ahead"]),
    "plain_bug": ('''
        from strategies.base import Strategy


        class Typo(Strategy):
            name = "typo"

            def next(self):
                self.go(self.p.direction)
        ''', 9, ["AttributeError", "direction"]),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_mistake_in_a_strategy_points_at_the_users_line(tmp_path, case):
    source, line, phrases = TYPOS[case]
    path = write(tmp_path / "typo.py", source)
    message = one_line_error(tickbridge("backtest", "--strategy", f"{path}:Typo", "--data", SPY, "--path", "event"))
    assert f"typo.py line {line}" in message, message
    for phrase in phrases:
        assert phrase in message, message


def test_a_look_ahead_is_caught_even_on_a_rare_branch(tmp_path):
    """Bars after self.i are not there to read, whichever bar the mistake runs at."""
    path = write(tmp_path / "late.py", '''
        from strategies.base import Strategy


        class Late(Strategy):
            name = "late"

            def next(self):
                if self.i == 5000:
                    self.go(1 if self.data.close[self.i + 3] > self.data.close[self.i] else 0)
        ''')
    message = one_line_error(tickbridge("backtest", "--strategy", f"{path}:Late", "--data", SPY))
    assert "late.py line 10" in message and "look-ahead" in message


def test_next_sees_the_bars_so_far_as_it_would_live(tmp_path):
    """len() and [-1] mean what they mean live: the bars up to the current one."""
    path = write(tmp_path / "sofar.py", '''
        import pandas_ta as ta
        from strategies.base import Strategy

        SEEN = []


        class SoFar(Strategy):
            name = "so_far"

            def init(self):
                self.sma = self.I(ta.sma, self.data.Close, length=3)

            def next(self):
                assert len(self.data.close) == self.i + 1 == len(self.sma)
                assert self.data.close[-1] == self.data.close[self.i]
                assert len(self.data.frame) == self.i + 1
                if self.i == 100:
                    self.go(+1)
        ''')
    done = tickbridge("backtest", "--strategy", f"{path}:SoFar", "--data", SPY)
    assert done.returncode == 0, done.stderr


# -- sweeps --------------------------------------------------------------------------------------------------
def test_a_sweep_runs_a_strategy_from_a_file(tmp_path):
    path = write(tmp_path / "vec.py", '''
        import numpy as np
        import pandas_ta as ta
        from strategies.base import Strategy, StrategyParams, cross_above_mask, cross_below_mask


        class VecCross(Strategy):
            name = "vec_cross"

            class Params(StrategyParams):
                fast: int = 10
                slow: int = 30

            def init(self):
                self.fast = self.I(ta.ema, self.data.Close, length=self.p.fast)
                self.slow = self.I(ta.ema, self.data.Close, length=self.p.slow)

            def signals(self):
                out = np.full(len(self.fast), np.nan)
                out[cross_above_mask(self.fast, self.slow)] = 1
                out[cross_below_mask(self.fast, self.slow)] = 0
                return out
        ''')
    out = tmp_path / "sweep.json"
    done = tickbridge("sweep", "--strategy", f"{path}:VecCross", "--data", SPY, "--grid", "fast=5,10",
                      "--grid", "slow=30", "--workers", "1", "--no-store", "--json", out,
                      "--heatmap", tmp_path / "h.html")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(json.loads(out.read_text())["results"]) == 2


@pytest.mark.parametrize("mistake, line, phrase", [
    ("self.I(ta.ema, self.data.close, length=self.p.fast)", 14, "pandas Series"),  # raised in the worker as ours
    ("self.I(ta.ema, self.data.Close, length=self.p.fats)", 14, "AttributeError"),  # a plain bug in the worker
])
def test_a_mistake_in_a_swept_strategy_points_at_the_users_line(tmp_path, mistake, line, phrase):
    path = write(tmp_path / "swept.py", f'''
        import numpy as np
        import pandas_ta as ta
        from strategies.base import Strategy, StrategyParams


        class Swept(Strategy):
            name = "swept"

            class Params(StrategyParams):
                fast: int = 10

            def init(self):
                self.fast = {mistake}

            def signals(self):
                return np.full(len(self.fast), np.nan)
        ''')
    message = one_line_error(tickbridge("sweep", "--strategy", f"{path}:Swept", "--data", SPY, "--grid", "fast=5,10",
                                        "--workers", "1", "--no-store", "--out", tmp_path / "out"))
    assert f"swept.py line {line}, in init" in message and phrase in message, message


# -- bots: the operator's YAML may name code, the API may not ----------------------------------------------
def test_the_readme_example_runs_as_a_paper_bot_from_yaml(tmp_path):
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = tickbridge("run", "examples/my_cross_bot.yaml", "--state-dir", tmp_path / "var",
                      env={"TICKBRIDGE_DATABASE_URL": url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started my-cross-eurusd (examples/my_cross.py:MyCross on EURUSD" in " ".join(done.stdout.split())
    from sqlalchemy import func, select

    from engine.store.db import make_engine
    from engine.store.models import FillRow

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            fills = connection.execute(select(func.count()).select_from(FillRow)).scalar_one()
    finally:
        engine.dispose()
    assert fills > 0
    session = re.search(r"tickbridge parity (\S+)\)", " ".join(done.stdout.split())).group(1)  # rich wraps lines
    parity = tickbridge("parity", session, "--state-dir", tmp_path / "var", "--database-url", url)
    assert parity.returncode == 0, parity.stdout + parity.stderr  # the live run is what the backtester books


def test_yaml_may_name_a_file_but_an_api_body_may_not(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    config = load_runtime_config(ROOT / "examples" / "my_cross_bot.yaml")
    assert config.bots[0].strategy == "examples/my_cross.py:MyCross"
    assert config.bots[0].strategy_params().slow == 30
    never = write(tmp_path / "never.py", "raise SystemExit('an API body made the server run this')\n")
    for ref in (f"{never}:Anything", "os:system", f"{EXAMPLE}:MyCross"):
        with pytest.raises(ConfigError) as refused:
            parse_bot_config({"id": "b1", "strategy": ref, "symbol": "SPY"})
        assert refused.value.field == "strategy" and "installed" in refused.value.message


@pytest.fixture
def make_api(tmp_path, migrated_db):  # noqa: F811
    make, clients = _apis(tmp_path, migrated_db)
    yield make
    _close(clients)


def test_the_api_refuses_code_references_and_runs_installed_strategies(make_api, tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(ROOT / "examples"))
    api: Api = make_api()
    trader = api.user("newcomer", "trader")
    never = write(tmp_path / "never.py", "raise SystemExit('an API body made the server run this')\n")
    for ref in (f"{never}:Anything", "examples/my_cross.py:MyCross", "os:system"):
        response = api.client.post("/api/v1/bots", headers=trader,
                                   json={"id": "coderef", "strategy": ref, "symbol": "SPY"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "strategy"
        assert "installed" in response.json()["error"]["message"]
    created = api.client.post("/api/v1/bots", headers=trader,
                              json={"id": "mine", "strategy": "my_cross", "params": {"fast": 5}, "symbol": "SPY"})
    assert created.status_code == 201, created.text
    bad_param = api.client.post("/api/v1/bots", headers=trader,
                                json={"id": "mine2", "strategy": "my_cross", "params": {"fats": 5}, "symbol": "SPY"})
    assert bad_param.status_code == 422 and bad_param.json()["error"]["field"] == "params.fats"
    job = {"data": "stocks/SPY_daily.csv", "strategy": "examples/my_cross.py:MyCross"}
    refused = api.client.post("/api/v1/backtests", headers=trader, json=job)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "strategy", refused.text
    assert "installed" in refused.json()["error"]["message"]
    accepted = api.client.post("/api/v1/backtests", headers=trader, json={**job, "strategy": "my_cross"})
    assert accepted.status_code == 202, accepted.text
