"""ml_signal: trade a registered model's probabilities (models.signals has the rule).

Two ways to the same signals:
- fast path (`signals()`): features over the whole frame, one batch of predictions;
- event and live path (`next()`): each closed bar updates IncrementalFeatures (each indicator's
  recursive state, O(1) per bar), and the model predicts from the last `context` feature rows.
The parity test holds them to identical signals, orders and fills on real data.

The model is loaded through the registry, so its artifact's sha256 is checked before anything
trades on it (the seal also covers the feature spec and parameters in its row); a spec that
does not fit the data (a missing column, a different number of features than the model was
trained on) or too little history for the feature window is a clear error at start, before the
first bar, not a silent run on NaNs.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from engine.errors import ConfigError, DataError
from models.features import FeatureSpec, IncrementalFeatures, compute
from models.signals import MICRO, MemorySignals, Signal, SignalRule, SignalSink, emitted, to_confidence
from strategies.base import DirectionalParams, Strategy, must_exceed


class MlSignalParams(DirectionalParams):
    model_id: int | None = Field(None, ge=1, description="registered model id (tickbridge models list)")
    model: str | None = Field(None, min_length=1, description="registered model name: trades its active version")
    database_url: str | None = Field(None, description="store holding the registry (default: TICKBRIDGE_DATABASE_URL)")
    exit: float = Field(0.45, gt=0, lt=1, description="flatten when neither P(up) nor P(down) reaches this")
    enter: float = Field(0.55, gt=0.5, lt=1, description="go long/short when P(up)/P(down) reaches this")
    sizing: Literal["confidence", "fixed"] = Field("confidence", description="entry size from confidence or `size`")
    min_fraction: float = Field(0.1, gt=0, le=1, description="smallest share of `size` a confident entry gets")

    _enter_above_exit = field_validator("enter")(must_exceed("exit"))

    @model_validator(mode="after")
    def _one_model(self) -> "MlSignalParams":
        if (self.model_id is None) == (self.model is None):
            raise ValueError("give exactly one of model_id or model")
        return self


class MlSignal(Strategy):
    name = "ml_signal"
    Params = MlSignalParams
    incremental = True
    p: MlSignalParams

    def __init__(self, params: MlSignalParams) -> None:  # type: ignore[override]
        super().__init__(params)
        self.signal_sink: SignalSink = MemorySignals()
        self.rule = SignalRule(enter=params.enter, exit=params.exit, allow_short=params.mode == "long_short",
                               sizing=params.sizing, size=float(params.size), min_fraction=params.min_fraction)
        self._last_emitted: int | None = None

    # -- set-up -------------------------------------------------------------------------------------
    def init(self) -> None:
        from engine.store.db import make_engine
        from models.registry import ModelRegistry

        registry = ModelRegistry(make_engine(self.p.database_url))
        model_id = self.p.model_id
        if model_id is None:
            active = registry.active(self.p.model)  # type: ignore[arg-type]
            if active is None:
                raise ConfigError("param.model", f"model {self.p.model!r} has no active version "
                                                 "(tickbridge models list; promote one first)")
            model_id = active.id
        self.model, self.record = registry.load(model_id)
        self.spec: FeatureSpec = self.record.spec
        self.context = self.model.context
        classes = [float(c) for c in self.model.classes]
        self._up = classes.index(1.0) if 1.0 in classes else None
        self._down = classes.index(-1.0) if -1.0 in classes else None
        needed = self.spec.lookback + self.context - 1
        if self.data is not None and len(self.data) < needed + 1:
            raise ConfigError("data", f"{len(self.data)} bars are too few for model {self.record.name} "
                                      f"v{self.record.version}: its features and window need {needed} bars of history")
        self._features = IncrementalFeatures(self.spec)
        # at start, not at the first warmed-up bar (35 hours after start on 1h bars)
        self._check_width(len(self._features.names))
        self.warnings: list[str] = []
        if self.data is not None and len(self.data):
            times = self.data.time
            overlap = int(((times >= self.record.train_start) & (times <= self.record.train_end)).sum())
            if overlap:
                # the model saw these bars' labels: a backtest over them is in-sample, and flatters
                self.warnings.append(
                    f"{overlap:,} of {len(times):,} bars lie inside model {self.record.name} "
                    f"v{self.record.version}'s training window: those results are in-sample; the "
                    "out-of-sample figures are in `tickbridge train`'s report (models show ID)")
        self._rows: deque[np.ndarray] = deque(maxlen=self.context)

    def warmup_bars(self) -> int:
        """The features' look-back plus the model's window, and never fewer than the default, which
        lets the recursive features (RSI, MACD, ATR) forget their start (init() has run: live, the
        driver calls it before the warm-up)."""
        spec, context = getattr(self, "spec", None), getattr(self, "context", 1)
        return max(type(self).warmup, spec.lookback + context - 1 if spec is not None else 0)

    def _check_width(self, width: int) -> None:
        expected = self.model.n_features
        if width != expected:
            raise DataError(f"feature spec of model {self.record.name} v{self.record.version} gives {width} "
                            f"features, the model was trained on {expected}")

    def _probabilities(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zero = np.zeros(len(proba))
        p_up = proba[:, self._up] if self._up is not None else np.where(np.isnan(proba[:, 0]), np.nan, zero)
        p_down = proba[:, self._down] if self._down is not None else np.where(np.isnan(proba[:, 0]), np.nan, zero)
        return p_up, p_down

    # -- fast path: batch inference -------------------------------------------------------------
    def signals(self) -> np.ndarray:
        frame = self.data.frame
        features = compute(frame, self.spec)
        self._check_width(features.shape[1])
        valid = np.flatnonzero(features.notna().all(axis=1).to_numpy())
        n = len(frame)
        p_up, p_down = np.full(n, np.nan), np.full(n, np.nan)
        if len(valid):
            proba = self.model.predict_proba(features.to_numpy()[valid[0]:])
            p_up[valid[0]:], p_down[valid[0]:] = self._probabilities(proba)
        target = self.rule.directions(p_up, p_down)
        confidence = np.where(target == 1.0, p_up, np.where(target == -1.0, p_down, np.maximum(p_up, p_down)))
        self._micro = self.rule.micro_fractions(confidence)
        times = self.data.time
        close = self.data.close
        for row in emitted(target):
            self._publish(int(target[row]), int(times[row]), float(p_up[row]), float(p_down[row]),
                          float(confidence[row]), int(self._micro[row]), float(close[row]))
        return target

    def sizes(self) -> np.ndarray | None:
        if self.p.fixed_size is not None:
            return None
        return self._micro / MICRO

    # -- event / live path: incremental inference ---------------------------------------------------
    def next(self) -> None:
        i, d = self.i, self.data
        values = self._features.update_array(d.time[i], d.open[i], d.high[i], d.low[i], d.close[i], d.volume[i])
        if np.isnan(values).any():
            return
        if not self._rows:
            self._check_width(len(values))
        self._rows.append(values)
        if len(self._rows) < self.context:
            return
        proba = self.model.predict_proba(np.asarray(self._rows))[-1:]
        p_up, p_down = self._probabilities(proba)
        direction = self.rule.directions(p_up, p_down)[0]
        if direction != direction:  # NaN: no change
            return
        up, down = float(p_up[0]), float(p_down[0])
        confidence = up if direction == 1.0 else down if direction == -1.0 else max(up, down)
        micro = int(self.rule.micro_fractions(np.array([confidence]))[0])
        if self._last_emitted != int(direction):
            self._publish(int(direction), int(d.time[i]), up, down, confidence, micro, float(d.close[i]))
        self.go(int(direction), Decimal(micro).scaleb(-6) if self.p.fixed_size is None else None)

    # -- signals out -------------------------------------------------------------------------------
    def _publish(self, direction: int, ts: int, p_up: float, p_down: float, confidence: float, micro: int,
                 price: float) -> None:
        self._last_emitted = direction
        bot_id = self._oms.bot_id if self._oms is not None else "backtest"
        weight = Decimal(micro).scaleb(-6) if direction != 0 else Decimal(0)
        self.signal_sink.publish(Signal(bot_id, self._symbol, ts, direction, to_confidence(confidence), weight,
                                        p_up, p_down, price, self.record.id, self.record.version))
