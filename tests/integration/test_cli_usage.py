"""Usage errors answer like a command line should: a mistyped option or command gets the usage
line and the closest match, exit status 2, never a traceback; and --help starts without the heavy
libraries (Ray, scikit-learn, torch, numba, pandas-ta, FastAPI, matplotlib, SQLAlchemy)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ROOT

HEAVY = ("ray", "sklearn", "torch", "numba", "pandas_ta", "fastapi", "matplotlib", "sqlalchemy")


def tickbridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})


def command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command of the app, groups included: ("backtest",), ("db", "upgrade"), ..."""
    import typer.main

    from app.cli import app

    paths: list[tuple[str, ...]] = []

    def walk(command, prefix: tuple[str, ...]) -> None:
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            paths.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_the_walk_finds_every_command():
    paths = command_paths()
    for expected in [("backtest",), ("strategies",), ("sweep",), ("wfo",), ("montecarlo",), ("train",),
                     ("retrain",), ("db",), ("db", "upgrade"), ("models",), ("models", "list"),
                     ("models", "show"), ("models", "promote"), ("users",), ("users", "create"), ("serve",),
                     ("demo",), ("run",), ("parity",)]:
        assert expected in paths


def test_every_command_refuses_a_bogus_option_with_usage_and_exit_2():
    paths = [(), *command_paths()]
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda path: (path, tickbridge(*path, "--bogus")), paths))
    for path, done in runs:
        output = done.stdout + done.stderr
        what = " ".join(("tickbridge", *path, "--bogus"))
        assert "Traceback" not in output, f"{what}:\n{output}"
        assert done.returncode == 2, f"{what} exited {done.returncode}:\n{output}"
        assert "No such option: --bogus" in done.stderr, f"{what}:\n{output}"
        assert "Usage: " in done.stderr, f"{what}:\n{output}"


def test_a_mistyped_option_suggests_the_closest_one():
    done = tickbridge("backtest", "--strategy", "sma_cross", "--dta", "data/stocks/SPY_daily.csv")
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "No such option: --dta" in done.stderr and "--data" in done.stderr


@pytest.mark.parametrize("args, suggestion", [
    (("backtst",), "backtest"),
    (("sweeep",), "sweep"),
    (("models", "lst"), "list"),
])
def test_a_mistyped_command_suggests_the_closest_one(args, suggestion):
    done = tickbridge(*args)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert f"No such command '{args[-1]}'" in done.stderr and f"Did you mean '{suggestion}'" in done.stderr


def test_a_missing_required_option_is_a_usage_error_too():
    done = tickbridge("backtest", "--data", "data/stocks/SPY_daily.csv")
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "Missing option '--strategy'" in done.stderr


@pytest.mark.parametrize("args", [("--help",), ("backtest", "--help"), ("sweep", "--help"), ("run", "--help")])
def test_help_imports_nothing_heavy(args):
    code = ("import sys, app.cli\n"
            f"sys.argv = ['tickbridge', *{args!r}]\n"
            "try:\n    app.cli.main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []"
