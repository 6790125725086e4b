"""A backtest's result must not depend on whether TA-Lib happens to be installed: pandas-ta hands
sma/ema/rsi to TA-Lib when it can import it, and TA-Lib's arithmetic differs. Strategy.I (and the
live recorder) keep pandas-ta's own code unless a strategy asks for TA-Lib. The same backtest runs
in two child interpreters, one with TA-Lib hidden, and the trades must be identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("talib", reason="TA-Lib is not installed (the test extra brings TA-Lib==0.8.2)")

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import sys
if sys.argv[1] == "hide":
    sys.modules["talib"] = None  # import talib fails and importlib.util.find_spec says None, as uninstalled
sys.argv = ["tickbridge"] + sys.argv[2:]
from app.cli import main
main()
"""


def backtest(tmp_path: Path, hide: bool, *args: str) -> dict:
    out = tmp_path / f"{'without' if hide else 'with'}.json"
    done = subprocess.run([sys.executable, "-c", RUN, "hide" if hide else "keep", "backtest", *args,
                           "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                               "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("strategy", [
    ["--strategy", "rsi_reversion", "--param", "period=14"],
    ["--strategy", "sma_cross", "--param", "fast=10", "--param", "slow=30"],
])
def test_a_backtest_is_the_same_with_and_without_talib(tmp_path, strategy):
    args = [*strategy, "--data", str(ROOT / "data" / "stocks" / "SPY_daily.csv")]
    with_talib, without = backtest(tmp_path, False, *args), backtest(tmp_path, True, *args)
    assert with_talib["trades"] == without["trades"]
    assert with_talib["stats"] == without["stats"]
