"""The base install is the engine and the backtest CLI; every other part is an extra, and a
command whose extra is missing names it (app/extras.py). The missing packages are hidden from
a child interpreter by an import blocker, so the test runs what a user with the base install runs
(.ci/run also builds a real base-only venv and runs a backtest in it)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.extras import EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parents[2]
SPY = str(ROOT / "data" / "stocks" / "SPY_daily.csv")

BLOCKER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # import fails (ModuleNotFoundError) and find_spec says None, as uninstalled
sys.argv = ["tickbridge"] + sys.argv[2:]
from app.cli import main
main()
"""


def run_without(extras: set[str], *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    hidden = ",".join(module for module, extra in EXTRA_OF_MODULE.items() if extra in extras)
    return subprocess.run([sys.executable, "-c", BLOCKER, hidden, *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                                           "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})


EVERY_EXTRA = {"api", "research", "ml", "plots", "postgres", "torch", "alpaca", "ccxt", "mt5"}


def test_a_backtest_runs_on_the_base_install(tmp_path):
    done = run_without(EVERY_EXTRA, "backtest", "--strategy", "sma_cross", "--data", SPY, "--param", "fast=10",
                       "--param", "slow=30", "--json", "out.json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.json").exists() and "Sharpe" in done.stdout


@pytest.mark.parametrize(("args", "extra"), [
    (["backtest", "--strategy", "sma_cross", "--data", SPY, "--plot", "p.png"], "plots"),
    (["serve"], "api"),
    (["demo", "--for", "1"], "api"),
    (["sweep", "--strategy", "sma_cross", "--data", SPY, "--grid", "fast=5:10:5", "--param", "slow=30",
      "--no-store"], "research"),
])
def test_a_command_whose_extra_is_missing_names_it(tmp_path, args, extra):
    done = run_without({extra}, *args, tmp_path=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"pip install 'tickbridge[{extra}]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "p.png").exists()


def test_every_extra_module_maps_to_an_extra_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)
    base = " ".join(project["dependencies"]).lower()
    for name in ("fastapi", "ray", "scikit-learn", "matplotlib", "psycopg", "torch", "ccxt", "alpaca-py"):
        assert name not in base, f"{name} is in the base install"
