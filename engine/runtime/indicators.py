"""Indicators live: a strategy's `init()` computes them over the whole history once, in a backtest.
Live there is no whole history, so each `self.I(...)` call made in `init()` is recorded and
re-run over the bars so far at every bar close; the attributes holding its output are set to
the new values as lists, the way `Strategy.connect` hands them to `next()` in a backtest.

Why re-run rather than update incrementally: the indicator functions (pandas-ta) are causal and
deterministic, so the value at bar t computed over bars 0..t is the value a backtest computes over
the whole series (same operations in the same order), and the strategy code needs no live twin.
The cost is O(bars) per close, small for bar-sized data; a strategy that wants better sets the
class attribute `incremental = True` and keeps its own state in `next()` (ml_signal does).

What is recorded: the function and its arguments; arguments that are columns of the bar data
(numpy arrays or pandas Series, or the frame itself) are replaced by the same column of the new
history. An indicator built outside `I()` (e.g. `self.x = self.fast - self.slow` in `init()`)
is not recomputed; strategies must use `I()` for everything `next()` reads, as in a backtest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from strategies.base import BarData, Strategy

COLUMNS = ("time", "open", "high", "low", "close", "volume")
SERIES = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}


def is_incremental(strategy: Strategy) -> bool:
    """True for a strategy that builds its own state bar by bar in next() (init() runs once, on no
    history); False for one that declares indicators over the history with I()."""
    return type(strategy).incremental


@dataclass(slots=True)
class _Call:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    targets: list[tuple[str, int | None]] = field(default_factory=list)  # (attribute, element of a tuple output)
    output: Any = None


class _Column:
    """Placeholder for a bar column inside a recorded call."""

    __slots__ = ("name", "pandas")

    def __init__(self, name: str, pandas: bool) -> None:
        self.name, self.pandas = name, pandas


class _Frame:
    """Placeholder for the bar frame itself."""


MAX_PAD = 8192  # bars of padding tried for an indicator that refuses a short series


def bind_to(value: Any, frame: pd.DataFrame) -> Any:
    """A recorded argument with bar-data placeholders replaced by `frame`'s columns."""
    if isinstance(value, _Column):
        if value.name == "time":
            return frame.index.as_unit("ns").asi8
        column = frame[value.name]
        return column if value.pandas else column.to_numpy(dtype=np.float64)
    if isinstance(value, _Frame):
        return frame
    return value


def _padded(frame: pd.DataFrame, length: int) -> pd.DataFrame:
    """`frame` then its bars mirrored (n-2, ..., 0, 1, ...), one bar width apart, to `length` rows."""
    n, extra = len(frame), length - len(frame)
    values = frame.to_numpy()
    if n > 1:
        cycle = np.concatenate([np.arange(n - 2, -1, -1), np.arange(1, n)])
        rows = cycle[np.arange(extra) % len(cycle)]
    else:
        rows = np.zeros(extra, dtype=np.int64)
    last = frame.index[-1]
    step = pd.Timedelta(1, "ns") if n < 2 else frame.index[-1] - frame.index[-2]
    index = frame.index.append(pd.DatetimeIndex([last + step * (k + 1) for k in range(extra)]))
    return pd.DataFrame(np.vstack([values, values[rows]]), columns=frame.columns, index=index.rename("time"))


def _nan_output(length: int) -> np.ndarray:
    return np.full(length, np.nan)


class LiveIndicators:
    """Runs a bar strategy's init() once with recording, then refreshes its indicators per bar."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.calls: list[_Call] = []
        self.ready = False

    # -- first bar: init() with I() recorded ---------------------------------------------------------
    def start(self, frame: pd.DataFrame) -> None:
        strategy = self.strategy
        data = BarData(frame)
        strategy.data = data  # init() reads numpy arrays and Series, as in a backtest
        strategy.I = self._recorder(data)  # type: ignore[method-assign]
        try:
            strategy.init()
        finally:
            del strategy.I
        for call in self.calls:
            outputs = call.output if isinstance(call.output, tuple) else (call.output,)
            for name, value in vars(strategy).items():
                if value is call.output:
                    call.targets.append((name, None))
                elif isinstance(call.output, tuple):
                    call.targets.extend((name, k) for k, out in enumerate(outputs) if value is out)
        self.ready = True
        self._assign(len(frame))

    def _recorder(self, data: BarData) -> Callable[..., Any]:
        arrays = {id(getattr(data, c)): c for c in COLUMNS}
        frame = data.frame

        def placeholder(value: Any) -> Any:
            if isinstance(value, np.ndarray) and id(value) in arrays:
                return _Column(arrays[id(value)], pandas=False)
            if isinstance(value, pd.Series) and value.name in COLUMNS and len(value) == len(frame):
                return _Column(str(value.name), pandas=True)
            if value is frame:
                return _Frame()
            return value

        def record(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            call = _Call(func, tuple(placeholder(a) for a in args), {k: placeholder(v) for k, v in kwargs.items()})
            self.calls.append(call)
            call.output = self._compute(call, frame, len(frame))
            return call.output

        return record

    # -- every bar close --------------------------------------------------------------------------
    def refresh(self, frame: pd.DataFrame) -> None:
        """Recompute every recorded indicator over `frame` (the bars so far) and hand the
        strategy its values as lists."""
        for call in self.calls:
            call.output = self._compute(call, frame, len(frame))
        self._assign(len(frame))

    def _compute(self, call: _Call, frame: pd.DataFrame, length: int) -> Any:
        # The function is causal, so bars appended after the last one cannot change the values up
        # to it; it is run over the bars padded at the end, and the first `length` values kept.
        # Why pad: (1) pandas-ta refuses a series shorter than its window (returns None), yet over
        # the whole series a backtest has values there (rsi: from bar 1); (2) a series exactly as
        # long as the window takes another arithmetic path (np.convolve swaps its operands), 1 ulp
        # off the full-series value. One bar avoids (2); (1) doubles until the function answers.
        # The padding mirrors the bars before the last rather than repeating it: constant windows
        # trip pandas-ta's non_zero_range, which adds epsilon to a *whole* series if any value is 0.
        size = length + 1
        out = None
        while out is None and size <= length + MAX_PAD:
            padded = _padded(frame, size)
            out = call.func(*(bind_to(a, padded) for a in call.args),
                            **{k: bind_to(v, padded) for k, v in call.kwargs.items()})
            size *= 2
        if out is None:
            return _nan_output(length)
        out = out.iloc[:length] if isinstance(out, (pd.Series, pd.DataFrame)) else np.asarray(out)[:length]
        if isinstance(out, pd.DataFrame):
            return tuple(out[c].to_numpy(dtype=np.float64) for c in out.columns)
        array = np.asarray(out, dtype=np.float64)
        if array.shape != (length,):
            raise ValueError(f"indicator {getattr(call.func, '__name__', call.func)} gave shape {array.shape} "
                             f"for {length} bars")
        return array

    def _assign(self, length: int) -> None:
        strategy = self.strategy
        for call in self.calls:
            out = call.output
            for name, element in call.targets:
                if element is None:
                    value = tuple(a.tolist() for a in out) if isinstance(out, tuple) else out.tolist()
                elif isinstance(out, tuple):
                    value = out[element].tolist()
                else:  # a tuple-valued indicator that returned None (too few bars): NaN for each part
                    value = _nan_output(length).tolist()
                setattr(strategy, name, value)
