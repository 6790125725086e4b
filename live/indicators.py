"""Indicators live: each `self.I(...)` that a strategy's `init()` makes is recorded once, then
extended by one value at every bar close, so a bot's cost per bar does not grow with its history.

A backtest's `init()` computes each indicator over the whole series once. Live the series grows a
bar at a time, and the value at bar t must be the one a backtest computes there (the functions
are causal: bars after t do not change it). Two ways to get that value:

- Kernels (KERNELS) for the pandas-ta functions the built-ins, the examples and most user
  strategies use: sma, ema, rsi. pandas-ta computes them itself, or hands them to TA-Lib when it
  is installed (unless the call says talib=False); a kernel repeats the floating-point operations
  of whichever path the batch takes, in the same order, so its values are the batch values over
  the whole series bit for bit, not merely close (tests/unit/test_incremental_indicators.py holds
  them to that on every real series in data/, both ways):
  pandas-ta's sma is numpy's dot product of the last `length` values with its weights, the BLAS
  call nb_sma's convolution makes for every full window (a bounded window: O(length) per bar);
  its ema and rsi carry pandas' ewm recursion (`_Ewm`) from bar to bar; TA-Lib's SMA, EMA and RSI
  carry the C loops' running state (`_TaKernel`). O(1) per bar. A kernel never calls pandas-ta,
  so a bot does not wait for numba to compile nb_sma (TA-Lib absent) nor pay a call per bar.
- Windows (WINDOWS) for functions whose value at a bar is provably a function of a known number
  of bars before it: mom, midpoint, donchian (a subtraction at a fixed lag, rolling min and max).
  They are run over the last window + 1 bars at each close: O(window) per bar, the same values.
- Anything else is recomputed over all the bars so far at every close (`_compute`), correct and
  O(bars) per bar, and the log says so once per function. So is a kernel's function called in a
  way the kernel does not reproduce (an offset, fillna, a mamode other than rma, an input that is
  not a bar column, TA-Lib with an unstable period or in Metastock mode, or a TA-Lib build whose
  arithmetic its replica does not match). Why no generic bounded window: pandas' rolling
  statistics (and TA-Lib's) are running sums over the whole series, so their value at t depends
  on every bar before it at the last bit; a window is provably identical only for window-local
  arithmetic (nb_sma's, which the sma kernel is, and the WINDOWS).

What is recorded: the function and its arguments; arguments that are columns of the bar data
(numpy arrays or pandas Series, or the frame itself) are replaced by the same column of the new
history. An indicator built outside `I()` (e.g. `self.x = self.fast - self.slow` in `init()`)
is not recomputed; strategies must use `I()` for everything `next()` reads, as in a backtest.
The attributes holding an indicator are Python lists, as `Strategy.connect` hands them to
`next()` in a backtest; a kernel's lists keep their identity and grow by one value a bar.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import numpy as np
import pandas as pd
import pandas_ta as ta
from pandas_ta.maps import Imports
from pandas_ta.utils import v_bool, v_drift, v_mamode, v_offset, v_pos_default, v_scalar, v_talib

from strategies.base import BarData, Strategy, indicator_call

log = logging.getLogger(__name__)
NAN = float("nan")

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
    make: Callable[[], "_Kernel"] | None = None  # a fresh kernel for this call
    kernel: "_Kernel | None" = None
    window: int | None = None  # else: bars the last value depends on (a bounded window, WINDOWS)
    parts: list[list[float]] = field(default_factory=list)  # kernel/window output so far, per output


class _Column:
    """Placeholder for a bar column inside a recorded call."""

    __slots__ = ("name", "pandas")

    def __init__(self, name: str, pandas: bool) -> None:
        self.name, self.pandas = name, pandas


class _Frame:
    """Placeholder for the bar frame itself."""


MAX_PAD = 8192  # bars of padding tried for an indicator that refuses a short series
# The longest period a TA-Lib kernel is probed (and so used) for: the probe series is 3 periods
# long. A longer period is recomputed by TA-Lib itself over the bars there are, which allocates
# in proportion to the bars, not to the period a config asks for.
LONGEST_PROBED = 10_000


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


# -- kernels: pandas-ta's arithmetic, one bar at a time ---------------------------------------------
class _Ewm:
    """pandas' exponentially weighted mean (pandas/_libs/window/aggregations.pyx `ewm` with
    adjust=False, ignore_na=False, min_periods=0, no times), one value at a time: the same
    operations in the same order as the batch loop, hence the same bits."""

    __slots__ = ("factor", "new_wt", "old_wt", "weighted", "nobs")

    def __init__(self, com: float) -> None:
        alpha = 1.0 / (1.0 + com)  # as pandas turns com back into alpha
        self.factor = 1.0 - alpha
        self.new_wt = alpha
        self.old_wt = 1.0
        self.weighted: float | None = None
        self.nobs = 0

    def update(self, cur: float) -> float:
        observed = cur == cur
        weighted = self.weighted
        if weighted is None:  # the series' first value
            weighted = cur
        elif weighted == weighted:
            self.old_wt *= self.factor
            if observed:
                if weighted != cur:  # pandas skips the update on equal values (constant series stay exact)
                    weighted = self.old_wt * weighted + self.new_wt * cur
                    weighted /= self.old_wt + self.new_wt
                self.old_wt = 1.0
        elif observed:
            weighted = cur
        self.nobs += observed
        self.weighted = weighted
        return weighted if self.nobs >= 1 else NAN


class _Kernel:
    """One indicator's state. `value(columns, i)` is called for i = 0, 1, 2, ... in order, with the
    bar columns as sequences (a BarHistory's lists) that reach at least bar i."""

    __slots__ = ()

    def value(self, columns: Any, i: int) -> float:
        raise NotImplementedError


class _Sma(_Kernel):
    """ta.sma: nb_sma is np.convolve(ones(n) / n, x), which numba computes as one BLAS dot product
    of each full window with the weights; numpy's dot of the same window gives the same bits."""

    __slots__ = ("column", "n", "weights")

    def __init__(self, column: str, n: int) -> None:
        self.column, self.n = column, n
        self.weights: np.ndarray | None = None  # made at the first full window: never longer than the bars

    def value(self, columns: Any, i: int) -> float:
        n = self.n
        if i < n - 1:
            return NAN
        if self.weights is None:
            self.weights = np.ones(n) / n
        window = np.array(getattr(columns, self.column)[i - n + 1:i + 1], dtype=np.float64)
        return float(np.dot(window, self.weights))


class _Ema(_Kernel):
    """ta.ema without TA-Lib: with presma (the default) bars before length-1 are NaN and bar
    length-1 holds the mean of the first `length` values (pandas' Series.mean, as pandas-ta takes
    it), then pandas' ewm with span=length, adjust=False."""

    __slots__ = ("column", "n", "presma", "ewm")

    def __init__(self, column: str, n: int, presma: bool) -> None:
        self.column, self.n, self.presma = column, n, presma
        self.ewm = _Ewm((n - 1) / 2)  # pandas: span -> com

    def value(self, columns: Any, i: int) -> float:
        x = getattr(columns, self.column)
        n = self.n
        if not self.presma or i >= n:
            cur = x[i]
        elif i < n - 1:
            cur = NAN
        else:
            cur = float(pd.Series(np.array(x[:n], dtype=np.float64)).mean())
        return self.ewm.update(cur)


class _Rsi(_Kernel):
    """ta.rsi without TA-Lib, mamode rma: the drift-bar change split into gains and losses, each
    smoothed by pandas' ewm with alpha = 1/length (rma), then scalar * gain / (gain + |loss|)."""

    __slots__ = ("column", "drift", "scalar", "gain", "loss")

    def __init__(self, column: str, n: int, drift: int, scalar: float) -> None:
        self.column, self.drift, self.scalar = column, drift, scalar
        alpha = (1.0 / n) if n > 0 else 0.5  # pandas-ta's rma
        com = (1 - alpha) / alpha            # pandas: alpha -> com (and _Ewm: com -> alpha)
        self.gain, self.loss = _Ewm(com), _Ewm(com)

    def value(self, columns: Any, i: int) -> float:
        x = getattr(columns, self.column)
        change = x[i] - x[i - self.drift] if i >= self.drift else NAN
        gain = self.gain.update(0.0 if change < 0 else change)
        loss = self.loss.update(0.0 if change > 0 else change)
        return _divide(self.scalar * gain, gain + abs(loss))


def _divide(a: float, b: float) -> float:
    """a / b with IEEE results for b == 0 (pandas divides arrays: 0/0 is NaN, not an exception)."""
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return NAN
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


# TA-Lib's loops (ta_SMA.c, ta_EMA.c, ta_RSI.c), for when pandas-ta hands these functions to
# TA-Lib (installed, and `talib` not False): the talib wrapper skips leading NaNs and the C code
# keeps a running state, which these carry from bar to bar. The operations are the ones the
# compiled library performs, which is not quite the C source: the TA-Lib 0.6 wheel (ta-lib 0.8.2)
# fuses EMA's multiply-add into one FMA and RSI divides by multiplying with 1/period, both found
# and checked bit for bit on data/ (tests/unit/test_incremental_indicators.py). A different
# build may differ again, so each TA-Lib kernel is first checked against TA-Lib itself on a
# probe series (`_talib_ok`, a few microseconds of C) and not used if it disagrees.
class _TaKernel(_Kernel):
    """Waits for the first non-NaN value (the wrapper's begidx); `step(x, k)` then sees the
    k-th value from there."""

    __slots__ = ("column", "begin")

    def __init__(self, column: str) -> None:
        self.column = column
        self.begin: int | None = None

    def value(self, columns: Any, i: int) -> float:
        x = getattr(columns, self.column)[i]
        if self.begin is None:
            if x != x:
                return NAN
            self.begin = i
        return self.step(x, i - self.begin)

    def step(self, x: float, k: int) -> float:
        raise NotImplementedError


class _TaSma(_TaKernel):
    __slots__ = ("n", "window", "total")

    def __init__(self, column: str, n: int) -> None:
        super().__init__(column)
        self.n, self.total = n, 0.0
        self.window: deque[float] = deque()

    def step(self, x: float, k: int) -> float:
        self.window.append(x)
        self.total += x  # periodTotal += inReal[i++]
        if k < self.n - 1:
            return NAN
        out = self.total / self.n
        self.total -= self.window.popleft()  # periodTotal -= inReal[trailingIdx++]
        return out


class _TaEma(_TaKernel):
    __slots__ = ("n", "k", "total", "ma")

    def __init__(self, column: str, n: int) -> None:
        super().__init__(column)
        self.n, self.k, self.total, self.ma = n, 2.0 / (n + 1), 0.0, NAN  # PER_TO_K

    def step(self, x: float, k: int) -> float:
        if k < self.n:
            self.total += x
            if k < self.n - 1:
                return NAN
            self.ma = self.total / self.n  # the seed: mean of the first n values
        else:
            self.ma = _fma(x - self.ma, self.k, self.ma)  # ((x - ma) * k) + ma, fused
        return self.ma


class _TaRsi(_TaKernel):
    __slots__ = ("n", "previous", "gain", "loss")

    def __init__(self, column: str, n: int) -> None:
        super().__init__(column)
        self.n, self.previous, self.gain, self.loss = n, NAN, 0.0, 0.0

    def step(self, x: float, k: int) -> float:
        change, self.previous = x - self.previous, x
        if k == 0:
            return NAN
        n, inverse = self.n, 1.0 / self.n  # the library's "/ period" is "* (1.0 / period)"
        if k <= n:  # the first n changes are summed, then averaged once
            if change < 0:
                self.loss -= change
            else:
                self.gain += change
            if k < n:
                return NAN
            self.loss *= inverse
            self.gain *= inverse
        else:
            self.loss *= n - 1
            self.gain *= n - 1
            if change < 0:
                self.loss -= change
            else:
                self.gain += change
            self.loss *= inverse
            self.gain *= inverse
        total = self.gain + self.loss
        return 0.0 if -0.00000001 < total < 0.00000001 else 100.0 * (self.gain / total)  # TA_IS_ZERO


def _fma(a: float, b: float, c: float) -> float:
    """a * b + c rounded once, as a fused multiply-add (Python 3.12's math has no fma)."""
    if math.isfinite(a) and math.isfinite(b) and math.isfinite(c):
        return float(Fraction(a) * Fraction(b) + Fraction(c))
    return a * b + c


_probed: dict[tuple[str, int], bool] = {}


def _talib_ok(function: str, kind: type[_TaKernel], n: int) -> bool:
    """TA-Lib at its defaults (no unstable period, not Metastock-compatible), and `kind` giving
    TA-Lib's own bits on a probe series (a seeded random walk long enough for the recursion to
    matter); checked once per function and period."""
    import talib

    if talib.get_compatibility() != 0 or (function != "SMA" and talib.get_unstable_period(function) != 0):
        return False
    if n > LONGEST_PROBED:  # the probe would be 3n values: a period of 1e9 asked for 24 GB (V.md #4)
        return False
    key = (function, n)
    if key not in _probed:
        walk = np.round(100.0 + np.cumsum(np.random.default_rng(13).normal(0.0, 1.0, max(400, 3 * n))), 2)
        expected = getattr(talib, function)(walk, n)
        kernel, columns = kind("close", n), _Probe(walk.tolist())
        got = np.array([kernel.value(columns, i) for i in range(len(walk))])
        _probed[key] = bool(np.array_equal(got, expected, equal_nan=True))
        if not _probed[key]:
            log.warning("TA-Lib's %s(%d) in this build differs from tickbridge's replica of it: "
                        "recomputed in full at each bar instead", function, n)
    return _probed[key]


class _Probe:
    __slots__ = ("close",)

    def __init__(self, close: list[float]) -> None:
        self.close = close


# Which calls a kernel reproduces. Each binder takes the pandas-ta function's own signature, so
# positional and keyword arguments bind as they would there, and answers a kernel factory, or
# None when any argument asks for something the kernel does not do.
def _bar_column(value: Any) -> str | None:
    if isinstance(value, _Column) and value.pandas and value.name != "time":
        return value.name
    return None


def _length(value: Any, default: int) -> int | None:
    n = v_pos_default(value, default)
    return int(n) if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else None


def _uses_talib(talib: Any) -> bool:
    """pandas-ta's choice: TA-Lib when it is importable, unless the call says talib=False."""
    return bool(Imports["talib"]) and v_talib(talib)


def _bind_sma(close: Any, length: Any = None, talib: Any = None, offset: Any = None,
              **kwargs: Any) -> Callable[[], _Kernel] | None:
    column, n = _bar_column(close), _length(length, 10)
    if column is None or n is None or n < 2 or kwargs or v_offset(offset) != 0:  # n=1: pandas-ta fails
        return None
    if _uses_talib(talib):
        return (lambda: _TaSma(column, n)) if _talib_ok("SMA", _TaSma, n) else None
    return lambda: _Sma(column, n)


def _bind_ema(close: Any, length: Any = None, talib: Any = None, presma: Any = None, offset: Any = None,
              **kwargs: Any) -> Callable[[], _Kernel] | None:
    column, n = _bar_column(close), _length(length, 10)
    if column is None or n is None or set(kwargs) - {"adjust"} or kwargs.get("adjust") or v_offset(offset) != 0:
        return None
    if _uses_talib(talib) and n > 1:
        return (lambda: _TaEma(column, n)) if _talib_ok("EMA", _TaEma, n) else None
    with_sma = v_bool(presma, True)
    return lambda: _Ema(column, n, with_sma)


def _bind_rsi(close: Any, length: Any = None, scalar: Any = None, mamode: Any = None, talib: Any = None,
              drift: Any = None, offset: Any = None, **kwargs: Any) -> Callable[[], _Kernel] | None:
    column, n = _bar_column(close), _length(length, 14)
    if column is None or n is None or kwargs or v_offset(offset) != 0:
        return None
    if _uses_talib(talib):  # TA-Lib's RSI: Wilder's averages, scale 100, one-bar changes whatever is asked
        return (lambda: _TaRsi(column, n)) if n > 1 and _talib_ok("RSI", _TaRsi, n) else None
    if v_mamode(mamode, "rma") != "rma":
        return None
    step, factor = v_drift(drift), v_scalar(scalar, 100)
    if not isinstance(step, int) or step < 1:
        return None
    return lambda: _Rsi(column, n, step, factor)


KERNELS: dict[Callable[..., Any], Callable[..., Callable[[], _Kernel] | None]] = {
    ta.sma: _bind_sma, ta.ema: _bind_ema, ta.rsi: _bind_rsi}



# Functions whose value at a bar depends on a known number of bars before it, and only on their
# values (window-local arithmetic): rolling min and max select a value, no rounding can depend on
# older bars; mom is one subtraction at a fixed lag (pandas-ta and TA-Lib alike). Live, each is
# run over the last `window` + 1 bars at every close and its last value kept: O(window) per bar,
# and provably the full series' value. Each binder answers that window, or None.
def _window_mom(close: Any, length: Any = None, talib: Any = None, offset: Any = None, **kwargs: Any) -> int | None:
    n = _length(length, 10)
    return n + 1 if _bar_column(close) and n is not None and not kwargs and v_offset(offset) == 0 else None


def _window_midpoint(close: Any, length: Any = None, talib: Any = None, offset: Any = None,
                     **kwargs: Any) -> int | None:
    n = _length(length, 2)
    return n if _bar_column(close) and n is not None and not kwargs and v_offset(offset) == 0 else None


def _window_donchian(high: Any, low: Any, lower_length: Any = None, upper_length: Any = None, offset: Any = None,
                     **kwargs: Any) -> int | None:
    lower, upper = _length(lower_length, 20), _length(upper_length, 20)
    if not (_bar_column(high) and _bar_column(low)) or lower is None or upper is None or kwargs or v_offset(offset):
        return None
    return max(lower, upper)


WINDOWS: dict[Callable[..., Any], Callable[..., int | None]] = {
    ta.mom: _window_mom, ta.midpoint: _window_midpoint, ta.donchian: _window_donchian}


def window_for(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The bounded window of a recorded call, or None."""
    bind = WINDOWS.get(func)
    if bind is None:
        return None
    try:
        return bind(*args, **kwargs)
    except TypeError:
        return None


_reported: set[str] = set()  # functions already logged as recomputed in full, once per process


def kernel_for(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], _Kernel] | None:
    """The kernel factory for a recorded call (bar columns as placeholders), or None."""
    bind = KERNELS.get(func)
    if bind is None:
        return None
    try:
        return bind(*args, **kwargs)
    except TypeError:  # arguments the function would refuse: let it say so itself
        return None


def _report_full_recompute(func: Callable[..., Any]) -> None:
    name = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', func)}"
    if name in _reported:
        return
    _reported.add(name)
    why = "these arguments" if func in KERNELS else "this function"
    log.warning("live indicator %s is recomputed over all bars at each bar close (O(bars) per bar): "
                "no incremental kernel for %s", name, why)


class _FrameColumns:
    """A DataFrame's bar columns as lists, for callers that hand LiveIndicators a frame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __getattr__(self, name: str) -> Any:
        if name == "time":
            self.time = self.frame.index.as_unit("ns").asi8.tolist()
            return self.time
        if name in COLUMNS[1:]:
            values = self.frame[name].tolist()
            setattr(self, name, values)
            return values
        raise AttributeError(name)

    def __len__(self) -> int:
        return len(self.frame)


def _tail(columns: Any, first: int, end: int) -> pd.DataFrame:
    """Bars first..end-1 as the frame BarHistory.frame would give for them (O(end - first))."""
    index = pd.DatetimeIndex(np.asarray(columns.time[first:end], dtype="datetime64[ns]"), name="time")
    return pd.DataFrame({c: getattr(columns, c)[first:end] for c in COLUMNS[1:]}, index=index.tz_localize("UTC"),
                        dtype="float64")


def _sources(bars: Any) -> tuple[Any, Callable[[], pd.DataFrame]]:
    """(columns a kernel reads, the frame for functions recomputed in full) of a BarHistory or a
    DataFrame of the bars so far; the frame is built only when asked for (it costs O(bars))."""
    if isinstance(bars, pd.DataFrame):
        return _FrameColumns(bars), lambda: bars
    return bars, lambda: bars.frame


class LiveIndicators:
    """Runs a bar strategy's init() once with recording, then brings its indicators up to each new
    bar: a kernel by one value, a window-local function over its window, anything else by a full
    recompute."""

    def __init__(self, strategy: Strategy, kernels: bool = True) -> None:
        """`kernels=False` recomputes every indicator in full at each bar, as before kernels
        existed (bench/live_indicators.py compares the two)."""
        self.strategy = strategy
        self.kernels = kernels
        self.calls: list[_Call] = []
        self.ready = False

    @property
    def incremental(self) -> bool:
        """True when no recorded indicator is recomputed over all bars (a kernel or a window each)."""
        return all(call.make is not None or call.window is not None for call in self.calls)

    # -- first bar: init() with I() recorded ---------------------------------------------------------
    def start(self, bars: Any) -> None:
        """init() over `bars` (a BarHistory, or a DataFrame of the bars so far)."""
        columns, frame_of = _sources(bars)
        frame = frame_of()
        strategy = self.strategy
        data = BarData(frame)
        strategy.data = data  # init() reads numpy arrays and Series, as in a backtest
        strategy.record_indicators(self._recorder(data, columns))
        try:
            strategy.init()
        finally:
            strategy.record_indicators(None)
        for call in self.calls:
            outputs = call.output if isinstance(call.output, tuple) else (call.output,)
            for name, value in vars(strategy).items():
                if value is call.output:
                    call.targets.append((name, None))
                elif isinstance(call.output, tuple):
                    call.targets.extend((name, k) for k, out in enumerate(outputs) if value is out)
        self.ready = True
        self._assign(len(frame), every=True)

    def _recorder(self, data: BarData, columns: Any) -> Callable[..., Any]:
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
            func, kwargs = indicator_call(func, kwargs)  # what Strategy.I runs, so batch = live
            call = _Call(func, tuple(placeholder(a) for a in args), {k: placeholder(v) for k, v in kwargs.items()})
            call.make = kernel_for(func, call.args, call.kwargs) if self.kernels else None
            call.window = window_for(func, call.args, call.kwargs) if self.kernels and call.make is None else None
            self.calls.append(call)
            if call.make is not None:
                call.kernel = call.make()
                call.parts = [[call.kernel.value(columns, i) for i in range(len(frame))]]
                call.output = np.array(call.parts[0], dtype=np.float64)
                return call.output
            call.output = self._compute(call, frame, len(frame))
            if call.window is not None and isinstance(call.output, (tuple, np.ndarray)):
                call.parts = [o.tolist() for o in (call.output if isinstance(call.output, tuple) else (call.output,))]
            else:
                call.window = None
                if self.kernels:
                    _report_full_recompute(func)
            return call.output

        return record

    # -- every bar close --------------------------------------------------------------------------
    def refresh(self, bars: Any) -> None:
        """Bring every recorded indicator up to the last of `bars` (a BarHistory, or a DataFrame of
        the bars so far) and hand the strategy its values as lists."""
        columns, frame_of = _sources(bars)
        length = len(bars)
        frame = None
        for call in self.calls:
            if call.make is not None:
                values = call.parts[0]
                if length < len(values):  # fewer bars than before (not in a live run): start over
                    call.kernel = call.make()
                    values.clear()
                kernel = call.kernel
                for i in range(len(values), length):
                    values.append(kernel.value(columns, i))  # type: ignore[union-attr]
            elif call.window is not None:
                parts = call.parts
                if length < len(parts[0]):
                    for part in parts:
                        del part[length:]
                for i in range(len(parts[0]), length):
                    tail = _tail(columns, max(0, i - call.window), i + 1)  # window + 1 bars: never refused
                    out = self._compute(call, tail, len(tail))
                    for part, values in zip(parts, out if isinstance(out, tuple) else (out,)):
                        part.append(float(values[-1]))
            else:
                if frame is None:
                    frame = frame_of()
                call.output = self._compute(call, frame, length)
        self._assign(length)

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

    def _assign(self, length: int, every: bool = False) -> None:
        """Set the strategy's attributes: a kernel's or a window's lists once (they grow in place),
        a recomputed indicator's fresh lists at every bar."""
        strategy = self.strategy
        for call in self.calls:
            if call.parts:
                if every:
                    whole = tuple(call.parts) if isinstance(call.output, tuple) else call.parts[0]
                    for name, element in call.targets:
                        setattr(strategy, name, whole if element is None else call.parts[element])
                continue
            out = call.output
            for name, element in call.targets:
                if element is None:
                    value = tuple(a.tolist() for a in out) if isinstance(out, tuple) else out.tolist()
                elif isinstance(out, tuple):
                    value = out[element].tolist()
                else:  # a tuple-valued indicator that returned None (too few bars): NaN for each part
                    value = _nan_output(length).tolist()
                setattr(strategy, name, value)
