"""Monte Carlo of a backtest's trades: how different could the same edge have turned out?

The trades of one backtest are one ordering of one sample. Resampling them asks what else the
same trades could have produced:
- `bootstrap` (default): each path draws as many trades as the backtest had, with replacement;
  final equity and drawdown both vary.
- `shuffle`: each path is a permutation of the trades; final equity is the same on every path
  (compounding commutes), only the drawdowns vary: the luck of the order.

Each trade enters as the return it made on the equity it started from,
r_i = pnl_i / (initial cash + pnl of the trades before it), and a path compounds its draws:
E_k = cash * prod(1 + r). This keeps the strategy's sizing (a fraction of equity) meaningful when
trades are reordered. Drawdowns are measured on the trade-by-trade equity (at each exit), so they
understate drawdowns inside a trade. Everything is seeded: the same seed gives the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.errors import ConfigError, DataError

Method = Literal["bootstrap", "shuffle"]
CHUNK_CELLS = 5_000_000  # paths x trades simulated at once


@dataclass(frozen=True, slots=True)
class TradeSample:
    """What the simulation needs from a backtest JSON."""

    initial_cash: float
    returns: np.ndarray  # per-trade return on the equity before the trade


def trade_returns(pnl: np.ndarray, initial_cash: float) -> np.ndarray:
    """r_i = pnl_i / equity before trade i, with equity = cash + earlier trades' pnl."""
    before = initial_cash + np.concatenate([[0.0], np.cumsum(pnl)[:-1]])
    if np.any(before <= 0):
        raise DataError("the backtest's equity reached zero: trade returns are undefined after that")
    return pnl / before


def load_trades(path: Path) -> TradeSample:
    """Trades and starting cash from a `tickbridge backtest --json` file."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not a backtest JSON from `tickbridge backtest --json` ({exc})") from None
    return sample_of(document, str(path))


def sample_of(document: dict[str, Any], name: str = "the backtest") -> TradeSample:
    """Trades and starting cash from a backtest JSON document already read (a file's, or the
    API's stored result): either shape, by column (the default) or --json-full's records."""
    try:
        from backtest.report import tables_of

        tables = tables_of(document)
        trades = tables["trades"]
        cash = float(tables.get("meta", {}).get("config", {}).get("cash") or tables["equity"].iloc[0])
        pnl = trades["pnl"].to_numpy(dtype=np.float64) if "pnl" in trades.columns else np.full(len(trades), np.nan)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
        raise DataError(f"{name}: not a backtest JSON from `tickbridge backtest --json` ({exc})") from None
    if len(pnl) == 0:
        raise DataError(f"{name}: the backtest made no trades; there is nothing to resample")
    if not np.all(np.isfinite(pnl)):
        raise DataError(f"{name}: a trade has no pnl")
    return TradeSample(cash, trade_returns(pnl, cash))


@dataclass(slots=True)
class MonteCarloResult:
    final_equity: np.ndarray      # per path
    max_drawdown_pct: np.ndarray  # per path, <= 0
    initial_cash: float
    loss_pct: float
    method: str
    seed: int
    bands: dict[str, Any] | None = None  # equity percentiles per trade index (simulate's band_points)

    @property
    def prob_loss(self) -> float:
        """P(final equity at least loss_pct below the starting cash)."""
        return float(np.mean(self.final_equity <= self.initial_cash * (1 - self.loss_pct / 100)))

    @property
    def prob_drawdown(self) -> float:
        """P(a drawdown of at least loss_pct at some point)."""
        return float(np.mean(self.max_drawdown_pct <= -self.loss_pct))

    def summary(self) -> dict[str, Any]:
        q = (5, 25, 50, 75, 95)
        return {
            "paths": int(len(self.final_equity)), "method": self.method, "seed": self.seed,
            "initial_cash": self.initial_cash, "loss_pct": self.loss_pct,
            "prob_loss": self.prob_loss, "prob_drawdown": self.prob_drawdown,
            "final_equity": {f"p{p}": float(v) for p, v in zip(q, np.percentile(self.final_equity, q))}
            | {"mean": float(self.final_equity.mean())},
            "max_drawdown_pct": {f"p{p}": float(v) for p, v in zip(q, np.percentile(self.max_drawdown_pct, q))}
            | {"mean": float(self.max_drawdown_pct.mean())},
        }


BAND_PERCENTILES = (5, 25, 50, 75, 95)


def band_index(trades: int, points: int) -> np.ndarray:
    """The trade indices (0 = the start, `trades` = after the last trade) a fan is drawn at: all
    of them when they fit in `points`, else `points` evenly spread, both ends kept."""
    if trades + 1 <= points:
        return np.arange(trades + 1)
    return np.unique(np.linspace(0, trades, max(2, points)).round().astype(np.int64))


def simulate(sample: TradeSample, paths: int, seed: int = 0, method: Method = "bootstrap",
             loss_pct: float = 10.0, band_points: int = 0) -> MonteCarloResult:
    """Resample the trades into `paths` equity paths (vectorised, in chunks).

    With `band_points` > 0 the result also carries the fan of those very paths: the equity's
    5/25/50/75/95th percentiles after each trade, at no more than `band_points` trade indices
    (band_index). The draws are the same with or without it, so the fan and the summary agree."""
    if paths < 1:
        raise ConfigError("paths", f"must be at least 1, got {paths}")
    if method not in ("bootstrap", "shuffle"):
        raise ConfigError("method", f"must be bootstrap or shuffle, got {method!r}")
    if not 0 < loss_pct <= 100:
        raise ConfigError("loss-pct", f"must be in (0, 100], got {loss_pct}")
    rng = np.random.default_rng(seed)
    n = len(sample.returns)
    growth = np.log1p(sample.returns)  # sums of logs: no overflow over long paths
    finals, drawdowns = [], []
    index = band_index(n, band_points) if band_points > 0 else None
    kept: list[np.ndarray] = []  # log equity at the fan's indices, per chunk
    step = max(1, CHUNK_CELLS // n)
    for start in range(0, paths, step):
        m = min(step, paths - start)
        if method == "bootstrap":
            picks = rng.integers(0, n, size=(m, n))
        else:
            picks = rng.permuted(np.broadcast_to(np.arange(n), (m, n)), axis=1)
        log_equity = np.concatenate([np.zeros((m, 1)), np.cumsum(growth[picks], axis=1)], axis=1)
        peak = np.maximum.accumulate(log_equity, axis=1)
        finals.append(sample.initial_cash * np.exp(log_equity[:, -1]))
        drawdowns.append((np.exp((log_equity - peak).min(axis=1)) - 1.0) * 100.0)
        if index is not None:
            kept.append(log_equity[:, index])
    bands = None
    if index is not None:
        # on equity itself, as summary() takes the final equity's: the fan's last point is its percentiles
        levels = np.percentile(sample.initial_cash * np.exp(np.concatenate(kept)), BAND_PERCENTILES, axis=0)
        bands = {"trade": index.tolist(), **{f"p{p}": row.tolist() for p, row in zip(BAND_PERCENTILES, levels)}}
    return MonteCarloResult(np.concatenate(finals), np.concatenate(drawdowns), sample.initial_cash, loss_pct,
                            method, seed, bands)


def plot_distribution(path: Path, result: MonteCarloResult, title: str) -> None:
    """Histograms of final equity and max drawdown, with the loss threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backtest.heatmap import check_figure_path, save_figure

    check_figure_path(path, "plot")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_eq, ax_dd) = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        ax_eq.hist(result.final_equity, bins=60, color="tab:blue", alpha=0.8)
        ax_eq.axvline(result.initial_cash, color="black", lw=1, label="starting cash")
        ax_eq.axvline(result.initial_cash * (1 - result.loss_pct / 100), color="tab:red", lw=1,
                      label=f"-{result.loss_pct:g}%: P = {result.prob_loss:.3f}")
        ax_eq.set_xlabel("final equity")
        ax_eq.legend(fontsize=8)
        ax_dd.hist(result.max_drawdown_pct, bins=60, color="tab:red", alpha=0.7)
        ax_dd.axvline(-result.loss_pct, color="black", lw=1,
                      label=f"-{result.loss_pct:g}%: P = {result.prob_drawdown:.3f}")
        ax_dd.set_xlabel("max drawdown %")
        ax_dd.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, path, title)
    finally:
        plt.close(fig)

