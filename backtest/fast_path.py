"""The compiled fast path: one numba pass over a strategy's vectorised signals.

It books exactly what the event path books for a strategy that trades through
`Strategy.go(direction)` with market orders: at a bar where the signal asks for another direction,
a close order and/or an entry order are made at that bar's close and filled at the next open,
sized and charged by the very same integer functions (`engine.money`, compiled here from their
Python source, so rounding is identical). The parity tests compare the two paths on real data.

Outside its envelope it refuses rather than guesses: int64 headroom exhausted (raw cash of huge
accounts at fine grids), or a state the single-lot model cannot hold (a close order rejected
while an entry follows). The runner then reruns the backtest on the event path.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numba
import numpy as np

from engine import money

_SHARED = ("div_round_half_even", "floor_to_step", "ceil_to_step", "slipped_price", "fee_raw",
           "order_cost_raw", "max_qty_for_budget", "estimate_qty", "raw_to_float")


def _compile_shared() -> dict[str, object]:
    """numba versions of engine.money's functions, calling each other (same source, same rules)."""
    # The clones' globals must name an importable module: numba's disk cache re-imports it by
    # `__name__` when a caller (the kernel) is recompiled against the cached clones, and a
    # namespace without one fails there ("'NoneType' object has no attribute 'startswith'").
    namespace: dict[str, object] = {"__name__": __name__}
    for name in _SHARED:
        fn = getattr(money, name)
        clone = types.FunctionType(fn.__code__, namespace, name, fn.__defaults__, fn.__closure__)
        namespace[name] = numba.njit(cache=True)(clone)
    return namespace


_J = _compile_shared()
_slipped_price = _J["slipped_price"]
_fee_raw = _J["fee_raw"]
_max_qty_for_budget = _J["max_qty_for_budget"]
_estimate_qty = _J["estimate_qty"]
_raw_to_float = _J["raw_to_float"]
_floor_to_step = _J["floor_to_step"]

OK, OVERFLOW, UNSUPPORTED = 0, 1, 2
FILLED, REJECTED, CANCELED = 0, 1, 2
TAG_OPEN, TAG_CLOSE = 0, 1
_LIMIT = 4.0e18  # keep every intermediate below int64's 9.2e18


@numba.njit(cache=True)
def _kernel(target, open_raw, close_raw, close_f,
            cash0, cash_dp, qty_dp, qty_step, min_qty, max_qty, notional_k, multiplier,
            fee_num, fee_den, fee_step, fixed_fee, min_fee, fee_rate, slip_num, slip_den, price_step,
            frac_num, frac_den, fixed_qty,
            equity, position,
            o_bar, o_side, o_tag, o_state, o_qty, o_price, o_fee, o_fill_bar,
            t_dir, t_qty, t_entry_px, t_exit_px, t_entry_bar, t_exit_bar, t_fees, t_pnl):
    n = len(target)
    cash = cash0
    pos = 0
    lot_px = 0
    lot_fee = 0
    lot_bar = -1
    no = 0
    nt = 0
    pend_close = -1  # order slot of a pending close, -1 for none
    pend_open = -1
    # the books as floats for the marks, recomputed only when a fill changes them (the same
    # expressions, so the same bits as computing them at every bar, for a fraction of the work)
    cash_f = _raw_to_float(cash, cash_dp)
    held_f = 0.0
    pos_f = 0.0
    for i in range(n + 1):
        final = i == n
        if final:  # end of data: cancel what is pending, then close at the last close
            if pend_close >= 0:
                o_state[pend_close] = CANCELED
            if pend_open >= 0:
                o_state[pend_open] = CANCELED
            pend_close = -1
            pend_open = -1
            if pos == 0:
                break
            o_bar[no] = n - 1
            o_side[no] = -1 if pos > 0 else 1
            o_tag[no] = TAG_CLOSE
            o_qty[no] = abs(pos)
            pend_close = no
            no += 1
            fill_px_base = close_raw[n - 1]
            bar = n - 1
        else:
            fill_px_base = open_raw[i]
            bar = i
        if pend_close >= 0:
            direction = 1 if pos > 0 else -1
            side = -direction
            q = abs(pos)
            px = _slipped_price(fill_px_base, side > 0, slip_num, slip_den, price_step)
            if float(q) * float(px) * float(notional_k) * max(1.0, float(fee_num)) > _LIMIT:
                return OVERFLOW, no, nt
            notional = q * px * notional_k
            fee = _fee_raw(notional, fee_num, fee_den, fee_step, fixed_fee, min_fee)
            if side > 0 and notional + fee > cash:
                o_state[pend_close] = REJECTED
                if pend_open >= 0:
                    return UNSUPPORTED, no, nt
            else:
                cash -= side * notional + fee
                if abs(float(cash)) > _LIMIT:
                    return OVERFLOW, no, nt
                t_dir[nt] = direction
                t_qty[nt] = q
                t_entry_px[nt] = lot_px
                t_exit_px[nt] = px
                t_entry_bar[nt] = lot_bar
                t_exit_bar[nt] = bar
                t_fees[nt] = lot_fee + fee
                t_pnl[nt] = (px - lot_px) * q * notional_k * direction - lot_fee - fee
                nt += 1
                pos = 0
                cash_f = _raw_to_float(cash, cash_dp)
                held_f = _raw_to_float(pos * multiplier, qty_dp)
                pos_f = _raw_to_float(pos, qty_dp)
                o_state[pend_close] = FILLED
                o_price[pend_close] = px
                o_fee[pend_close] = fee
                o_fill_bar[pend_close] = bar
            pend_close = -1
        if final:
            equity[n - 1] = _raw_to_float(cash, cash_dp) + _raw_to_float(pos * multiplier, qty_dp) * close_f[n - 1]
            break
        if pend_open >= 0:
            if pos != 0:
                return UNSUPPORTED, no, nt
            side = o_side[pend_open]
            px = _slipped_price(fill_px_base, side > 0, slip_num, slip_den, price_step)
            if fixed_qty >= 0:
                q = fixed_qty
            else:
                # the fraction asked for at the signal's bar (one array element: the same for all)
                fn = frac_num[o_bar[pend_open]] if len(frac_num) > 1 else frac_num[0]
                # floor(cash * fn / den) without forming cash * fn, which overflows with a
                # six-decimal fraction of a fine-grained cash amount
                whole, rest = cash // frac_den, cash % frac_den
                if float(whole) * float(fn) > _LIMIT or float(rest) * float(fn) > _LIMIT:
                    return OVERFLOW, no, nt
                budget = whole * fn + (rest * fn) // frac_den
                if side > 0 and budget > cash:
                    budget = cash
                q = 0
                if budget > 0:
                    est = _estimate_qty(budget, px, notional_k, fee_rate)
                    if ((float(est) + 2.0 * float(qty_step)) * float(px) * float(notional_k)
                            * max(1.0, float(fee_num)) > _LIMIT):
                        return OVERFLOW, no, nt
                    q = _max_qty_for_budget(budget, px, notional_k, fee_num, fee_den, fee_step, fixed_fee,
                                            qty_step, est, min_fee)
                if max_qty >= 0 and q > max_qty:
                    q = _floor_to_step(max_qty, qty_step)
            if float(q) * float(px) * float(notional_k) * max(1.0, float(fee_num)) > _LIMIT:
                return OVERFLOW, no, nt
            notional = q * px * notional_k
            fee = _fee_raw(notional, fee_num, fee_den, fee_step, fixed_fee, min_fee)
            if q < min_qty or (side > 0 and notional + fee > cash):
                o_state[pend_open] = REJECTED
            else:
                cash -= side * notional + fee
                pos = side * q
                lot_px = px
                lot_fee = fee
                lot_bar = i
                cash_f = _raw_to_float(cash, cash_dp)
                held_f = _raw_to_float(pos * multiplier, qty_dp)
                pos_f = _raw_to_float(pos, qty_dp)
                o_state[pend_open] = FILLED
                o_qty[pend_open] = q
                o_price[pend_open] = px
                o_fee[pend_open] = fee
                o_fill_bar[pend_open] = i
            pend_open = -1
        wanted = target[i]
        if wanted == wanted:  # not NaN: the strategy asks for a direction
            d = int(wanted)
            current = (pos > 0) - (pos < 0)
            if current != d:
                if current != 0:
                    o_bar[no] = i
                    o_side[no] = -current
                    o_tag[no] = TAG_CLOSE
                    o_qty[no] = abs(pos)
                    pend_close = no
                    no += 1
                if d != 0:
                    o_bar[no] = i
                    o_side[no] = d
                    o_tag[no] = TAG_OPEN
                    if fixed_qty >= 0:
                        o_qty[no] = fixed_qty
                        if fixed_qty < min_qty or (max_qty >= 0 and fixed_qty > max_qty):
                            o_state[no] = REJECTED  # refused at submit, never pending
                            no += 1
                            d = 0
                    else:
                        o_qty[no] = -1
                    if d != 0:
                        pend_open = no
                        no += 1
        equity[i] = cash_f + held_f * close_f[i]
        position[i] = pos_f
    return OK, no, nt


@dataclass(slots=True)
class KernelInputs:
    """Everything the kernel needs, already on the integer grid."""

    target: np.ndarray
    open_raw: np.ndarray
    close_raw: np.ndarray
    close_f: np.ndarray
    cash0: int
    cash_dp: int
    qty_dp: int
    qty_step: int
    min_qty: int
    max_qty: int          # -1: none
    notional_k: int
    multiplier: int
    fee_num: int
    fee_den: int
    fee_step: int
    fixed_fee: int
    fee_rate: float
    slip_num: int
    slip_den: int
    price_step: int
    frac_num: int | np.ndarray   # per bar (a strategy sizing each entry), or one for all
    frac_den: int
    fixed_qty: int        # -1: size by fraction
    min_fee: int = 0      # minimum fee per order, raw cash


@dataclass(slots=True)
class KernelOutput:
    status: int
    equity: np.ndarray
    position: np.ndarray
    orders: dict[str, np.ndarray]
    trades: dict[str, np.ndarray]


def run_kernel(k: KernelInputs) -> KernelOutput:
    n = len(k.target)
    # each bar with a signal makes at most a close and an entry; the end adds one close
    events = int(np.count_nonzero(~np.isnan(k.target)))
    frac_num = (np.array([k.frac_num], dtype=np.int64) if np.isscalar(k.frac_num)
                else np.ascontiguousarray(k.frac_num, dtype=np.int64))
    cap_orders = 2 * events + 2
    cap_trades = events + 1
    i64 = np.int64
    equity = np.empty(n, dtype=np.float64)
    position = np.empty(n, dtype=np.float64)
    orders = {name: np.full(cap_orders, -1, dtype=i64) for name in
              ("bar", "side", "tag", "state", "qty", "price", "fee", "fill_bar")}
    trades = {name: np.zeros(cap_trades, dtype=i64) for name in
              ("direction", "qty", "entry_price", "exit_price", "entry_bar", "exit_bar", "fees", "pnl")}
    status, n_orders, n_trades = _kernel(
        k.target, k.open_raw, k.close_raw, k.close_f,
        k.cash0, k.cash_dp, k.qty_dp, k.qty_step, k.min_qty, k.max_qty, k.notional_k, k.multiplier,
        k.fee_num, k.fee_den, k.fee_step, k.fixed_fee, k.min_fee, k.fee_rate, k.slip_num, k.slip_den, k.price_step,
        frac_num, k.frac_den, k.fixed_qty,
        equity, position,
        orders["bar"], orders["side"], orders["tag"], orders["state"], orders["qty"], orders["price"],
        orders["fee"], orders["fill_bar"],
        trades["direction"], trades["qty"], trades["entry_price"], trades["exit_price"],
        trades["entry_bar"], trades["exit_bar"], trades["fees"], trades["pnl"],
    )
    return KernelOutput(
        status=int(status), equity=equity, position=position,
        orders={name: arr[:n_orders] for name, arr in orders.items()},
        trades={name: arr[:n_trades] for name, arr in trades.items()},
    )


def unsized_orders(k: KernelInputs, out: KernelOutput) -> tuple[int, tuple[int, int, int] | None]:
    """Entries sized by equity fraction that came to less than the minimum quantity, counted as
    the event path's venue counts them (SimulatedVenue.unsized): how many, and the first one's
    (fill price, budget, quantity), raw. The kernel rejects a fraction-sized entry for no other
    reason (its budget never exceeds the cash), so these are its rejected entries; the first one's
    figures are recomputed here with engine.money's functions: the account is flat then, so its
    cash is the starting cash plus the P&L of the trades closed by that bar."""
    if k.fixed_qty >= 0:
        return 0, None
    o = out.orders
    hit = np.flatnonzero((o["state"] == REJECTED) & (o["tag"] == TAG_OPEN))
    if not len(hit):
        return 0, None
    first = int(hit[0])
    signal_bar = int(o["bar"][first])
    bar = signal_bar + 1  # made at a bar's close, refused at the next open
    side = int(o["side"][first])
    price = money.slipped_price(int(k.open_raw[bar]), side > 0, k.slip_num, k.slip_den, k.price_step)
    t = out.trades
    cash = int(k.cash0) + int(t["pnl"][t["exit_bar"] <= bar].sum())
    fraction = int(k.frac_num if np.isscalar(k.frac_num) else k.frac_num[signal_bar])
    budget = (cash * fraction) // k.frac_den
    if side > 0:
        budget = min(budget, cash)
    qty = 0
    if budget > 0:
        qty = money.max_qty_for_budget(budget, price, k.notional_k, k.fee_num, k.fee_den, k.fee_step, k.fixed_fee,
                                       k.qty_step, money.estimate_qty(budget, price, k.notional_k, k.fee_rate),
                                       k.min_fee)
        if k.max_qty >= 0:
            qty = min(qty, money.floor_to_step(k.max_qty, k.qty_step))
    return len(hit), (price, budget, qty)


@numba.njit(cache=True)
def _kernel_many(targets, open_raw, close_raw, close_f,
                 cash0, cash_dp, qty_dp, qty_step, min_qty, max_qty, notional_k, multiplier,
                 fee_num, fee_den, fee_step, fixed_fee, min_fee, fee_rate, slip_num, slip_den, price_step,
                 frac_num, frac_den, fixed_qty,
                 equity, position,
                 o_bar, o_side, o_tag, o_state, o_qty, o_price, o_fee, o_fill_bar,
                 t_dir, t_qty, t_entry_px, t_exit_px, t_entry_bar, t_exit_bar, t_fees, t_pnl,
                 status, n_orders, n_trades):
    """_kernel over each row of `targets` (one parameter set per row), in one call."""
    for j in range(targets.shape[0]):
        s, no, nt = _kernel(targets[j], open_raw, close_raw, close_f,
                            cash0, cash_dp, qty_dp, qty_step, min_qty, max_qty, notional_k, multiplier,
                            fee_num, fee_den, fee_step, fixed_fee, min_fee, fee_rate, slip_num, slip_den, price_step,
                            frac_num, frac_den, fixed_qty,
                            equity[j], position[j],
                            o_bar[j], o_side[j], o_tag[j], o_state[j], o_qty[j], o_price[j], o_fee[j], o_fill_bar[j],
                            t_dir[j], t_qty[j], t_entry_px[j], t_exit_px[j], t_entry_bar[j], t_exit_bar[j], t_fees[j],
                            t_pnl[j])
        status[j] = s
        n_orders[j] = no
        n_trades[j] = nt


_ORDER_FIELDS = ("bar", "side", "tag", "state", "qty", "price", "fee", "fill_bar")
_TRADE_FIELDS = ("direction", "qty", "entry_price", "exit_price", "entry_bar", "exit_bar", "fees", "pnl")


class KernelBatch:
    """Buffers for up to `chunk` kernel runs over `n` bars, reused call after call (a sweep makes
    thousands of runs: fresh million-element buffers each time cost page faults, and numba's
    dispatch is paid once per call, not once per run).

    Fill rows of `block` with targets, then `run(k, m)` runs the first `m`: one KernelOutput per
    row, whose arrays are views into these buffers, valid until the next `run`."""

    def __init__(self, n: int, chunk: int) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.n, self.chunk = n, chunk
        self.block = np.empty((chunk, n), dtype=np.float64)
        self.equity = np.empty((chunk, n), dtype=np.float64)
        self.position = np.empty((chunk, n), dtype=np.float64)
        self.status = np.zeros(chunk, dtype=np.int64)
        self.n_orders = np.zeros(chunk, dtype=np.int64)
        self.n_trades = np.zeros(chunk, dtype=np.int64)
        self.cap = 0
        self.orders: dict[str, np.ndarray] = {}
        self.trades: dict[str, np.ndarray] = {}

    def run(self, k: KernelInputs, m: int, events: int | None = None) -> list[KernelOutput]:
        """The kernel over rows 0..m-1 of `block` with `k`'s bars, money and sizing (its `target`
        is ignored). `events`: the most non-NaN values in a row (counted here if not given)."""
        if not 0 < m <= self.chunk:
            raise ValueError(f"rows must be 1..{self.chunk}, got {m}")
        if events is None:
            events = max(int(np.count_nonzero(~np.isnan(row))) for row in self.block[:m])
        frac_num = (np.array([k.frac_num], dtype=np.int64) if np.isscalar(k.frac_num)
                    else np.ascontiguousarray(k.frac_num, dtype=np.int64))
        if events + 1 > self.cap:  # room for the busiest run (grown, never shrunk)
            self.cap = max(events + 1, 2 * self.cap)
            self.orders = {name: np.full((self.chunk, 2 * self.cap), -1, dtype=np.int64) for name in _ORDER_FIELDS}
            self.trades = {name: np.zeros((self.chunk, self.cap), dtype=np.int64) for name in _TRADE_FIELDS}
        else:  # reset what these runs can reach (a run makes at most 2 x events + 2 orders)
            for arr in self.orders.values():
                arr[:m, :2 * events + 2].fill(-1)  # run_kernel's orders start at -1 (fields never written stay so)
            for arr in self.trades.values():
                arr[:m, :events + 1].fill(0)
        orders, trades = self.orders, self.trades
        _kernel_many(self.block[:m], k.open_raw, k.close_raw, k.close_f,
                     k.cash0, k.cash_dp, k.qty_dp, k.qty_step, k.min_qty, k.max_qty, k.notional_k, k.multiplier,
                     k.fee_num, k.fee_den, k.fee_step, k.fixed_fee, k.min_fee, k.fee_rate, k.slip_num, k.slip_den,
                     k.price_step, frac_num, k.frac_den, k.fixed_qty,
                     self.equity, self.position, *(orders[name] for name in _ORDER_FIELDS),
                     *(trades[name] for name in _TRADE_FIELDS), self.status, self.n_orders, self.n_trades)
        outputs = []
        for j in range(m):
            no, nt = int(self.n_orders[j]), int(self.n_trades[j])
            outputs.append(KernelOutput(status=int(self.status[j]), equity=self.equity[j], position=self.position[j],
                                        orders={name: arr[j, :no] for name, arr in orders.items()},
                                        trades={name: arr[j, :nt] for name, arr in trades.items()}))
        return outputs


def run_kernel_batch(k: KernelInputs, targets: Iterable[np.ndarray], chunk: int = 8) -> Iterator[KernelOutput]:
    """The kernel over many parameter sets of one instrument, bars and fee model: one output per
    target (the `target` of `k` is ignored; `targets` may be a generator, so the signals of a large
    grid are made as they are consumed), in order. Each compiled call runs `chunk` sets.

    Why: a sweep's sets share everything but the signals; this converts nothing per set and
    reuses one set of buffers (KernelBatch), so memory is bounded by `chunk` x (three float64 rows
    of the bars + the order and trade rows), whatever the grid's size. The price: an output's
    arrays are views into those buffers, valid until the next output of the next chunk is
    produced: copy (or reduce to statistics) what you keep before advancing the iterator past the
    chunk.

    Each output equals run_kernel's for the same inputs (tests/unit/test_speed_batch.py); a set
    whose status is not OK is for the caller to rerun on the event path, as run_fast does.
    `frac_num` is shared by all sets (one fraction, or one per bar)."""
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    n = len(k.open_raw)
    batch = KernelBatch(n, chunk)
    rows = 0
    events = 0
    for target in targets:
        row = np.asarray(target, dtype=np.float64)
        if row.shape != (n,):
            raise ValueError(f"each target needs {n} values (one per bar), got shape {row.shape}")
        batch.block[rows] = row
        events = max(events, int(np.count_nonzero(~np.isnan(row))))
        rows += 1
        if rows == chunk:
            yield from batch.run(k, rows, events)
            rows = events = 0
    if rows:
        yield from batch.run(k, rows, events)


@numba.njit(cache=True)
def scaled_rint(values: np.ndarray, scale: float, out: np.ndarray) -> bool:  # pragma: no cover - compiled
    """out[i] = rint(values[i] * scale) as int64, what `np.rint(values * scale).astype(np.int64)`
    gives (the same IEEE product, rounded half-even), in one pass without the float temporary; False
    (out unfinished) at a value that is not finite or not inside int64, which the caller then
    converts with numpy, as before."""
    for i in range(len(values)):
        v = np.rint(values[i] * scale)
        if not -9.2e18 < v < 9.2e18:  # NaN fails too
            return False
        out[i] = np.int64(v)
    return True
