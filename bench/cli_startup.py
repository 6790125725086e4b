"""CLI start-up: how long `tickbridge` takes to answer, measured as a user meets it.

    .venv/bin/python bench/cli_startup.py [--repeats 3]

Each figure is a fresh process of the installed `tickbridge` script (python -m app.cli when the
script is missing), timed from spawn to exit:

- `import app.cli` alone (what every command pays before it parses its arguments);
- `tickbridge --help` and `tickbridge backtest --help`;
- `tickbridge backtest --strategy sma_cross --data data/stocks/SPY_daily.csv` (5,240 daily bars)
  with a cold numba cache (NUMBA_CACHE_DIR a fresh empty directory for every run: what the first
  run on a new machine or after an upgrade pays) and a warm one (a directory primed by one run).

Wall time is the best and the median of `--repeats` runs; CPU is the child's user + system time
of the best run, which a loaded machine disturbs less than wall time. The heavy modules that
`--help` loads are listed (there should be none). The `uptime` load is printed first: on the
project's 2-core machine other jobs share the cores, so compare figures taken at similar load.
Not a test: figures go to docs/benchmarks.md, section "CLI start-up (issue 12)".
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPY = ROOT / "data" / "stocks" / "SPY_daily.csv"
HEAVY = ("ray", "sklearn", "torch", "numba", "pandas_ta", "fastapi", "matplotlib", "sqlalchemy", "pandas",
         "numpy", "scipy", "optuna", "pydantic")


def tickbridge_command() -> list[str]:
    script = Path(sys.executable).parent / "tickbridge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, child CPU s) of one run; a failed run stops the benchmark with its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(label: str, argv: list[str], repeats: int, env_for_run: "callable") -> None:  # type: ignore[valid-type]
    runs = [timed(argv, env_for_run()) for _ in range(repeats)]
    walls = [w for w, _ in runs]
    best = min(runs)
    print(f"{label:<44} best {best[0]:6.2f} s  median {statistics.median(walls):6.2f} s  "
          f"cpu {best[1]:6.2f} s", flush=True)


def heavy_after_help(env: dict[str, str]) -> list[str]:
    """Heavy top-level modules in sys.modules after building the app and printing --help."""
    code = ("import sys, app.cli\n"
            "sys.argv = ['tickbridge', '--help']\n"
            "try:\n    app.cli.main()\nexcept SystemExit:\n    pass\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return [m for m in done.stderr.strip().splitlines()[-1].split(",") if m] if done.stderr.strip() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    base = {**os.environ, "COLUMNS": "100"}
    cli = tickbridge_command()
    print(f"command: {' '.join(cli)}; {args.repeats} runs each")
    measure("import app.cli", [sys.executable, "-c", "import app.cli"], args.repeats, lambda: base)
    measure("tickbridge --help", [*cli, "--help"], args.repeats, lambda: base)
    measure("tickbridge backtest --help", [*cli, "backtest", "--help"], args.repeats, lambda: base)
    backtest = [*cli, "backtest", "--strategy", "sma_cross", "--data", str(SPY)]
    with tempfile.TemporaryDirectory(prefix="cli_startup_") as tmp:
        cold_dirs = iter(range(10_000))

        def cold() -> dict[str, str]:
            path = Path(tmp) / f"cold{next(cold_dirs)}"
            path.mkdir()
            return {**base, "NUMBA_CACHE_DIR": str(path)}

        measure("backtest SPY daily, cold numba cache", backtest, args.repeats, cold)
        warm = {**base, "NUMBA_CACHE_DIR": str(Path(tmp) / "warm")}
        timed(backtest, warm)  # primes the cache
        measure("backtest SPY daily, warm numba cache", backtest, args.repeats, lambda: warm)
    print(f"heavy modules loaded by --help: {', '.join(heavy_after_help(base)) or 'none'}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
