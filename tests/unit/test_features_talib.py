"""Features do not depend on whether TA-Lib happens to be installed.

pandas-ta switches `rsi`, `macd` (and their EMAs) to TA-Lib whenever `talib` is importable; TA-Lib
seeds its averages differently, so RSI moved by up to 2.5 points during warm-up and a model saw
other inputs than it was trained on. Each test computes the features in child interpreters (the
switch is decided when pandas-ta is imported), with TA-Lib importable and hidden by an import
blocker, and requires the same numbers bit for bit, batch and live.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "hidden":
        sys.modules["talib"] = None   # the import blocker: find_spec says absent, import raises
    elif mode == "booby-trapped":
        sys.path.insert(0, sys.argv[3])   # a `talib` whose every function fails if called
    import numpy as np, pandas as pd
    from backtest.data import load_bars
    from models.features import FeatureSpec, IncrementalFeatures, compute
    import pandas_ta
    bars = load_bars(sys.argv[4]).iloc[:800]
    spec = FeatureSpec(rsi=[7, 14], macd=[(12, 26, 9), (5, 35, 5)])
    batch = compute(bars, spec).to_numpy()
    live = IncrementalFeatures(spec)
    rows = [live.update_array(t, *r) for t, r in
            zip(bars.index, bars[["open", "high", "low", "close", "volume"]].itertuples(index=False))]
    np.savez(out, batch=batch, live=np.asarray(rows), talib=np.array(pandas_ta.Imports["talib"]))
""")

TRAP = textwrap.dedent("""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        def refuse(*args, **kwargs):
            raise RuntimeError(f"features called talib.{name}")
        return refuse
""")


def _features(tmp_path: Path, mode: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"{mode}.npz"
    trap = tmp_path / "trap"
    (trap / "talib").mkdir(parents=True, exist_ok=True)
    (trap / "talib" / "__init__.py").write_text(TRAP)
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(out), str(trap), str(DATA / "fx" / "EURUSD_1h.csv")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out) as saved:
        return {k: saved[k] for k in saved.files}


@pytest.mark.skipif(importlib.util.find_spec("talib") is None, reason="TA-Lib is not installed here")
def test_features_are_identical_with_and_without_talib_importable(tmp_path):
    with_talib, without = _features(tmp_path, "importable"), _features(tmp_path, "hidden")
    assert with_talib["talib"] and not without["talib"]  # the two runs really differ in what they see
    np.testing.assert_array_equal(with_talib["batch"], without["batch"])
    np.testing.assert_array_equal(with_talib["live"], without["live"])
    np.testing.assert_array_equal(with_talib["batch"], with_talib["live"])


def test_features_never_call_talib_even_when_it_is_importable(tmp_path):
    """Runs everywhere (no TA-Lib needed): a stand-in `talib` that fails on any call."""
    trapped = _features(tmp_path, "booby-trapped")
    assert trapped["talib"]
    np.testing.assert_array_equal(trapped["batch"], trapped["live"])
