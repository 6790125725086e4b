"""Margin accounts (issue 14, items 4 and 6): margin used and free, refusal without free margin,
stop-out, a USDJPY position reported in USD, swap at rollover, and bad margin input.

Every case runs the real books: the SimulatedVenue matching bars, the OrderManager booking its
fills into the Portfolio. The arithmetic is in the comments.

EURUSD here: price grid 0.00001 (price_dp 5), lots of 0.01 (qty_dp 2), contract size 100,000, so
cash counts units of 10^-7 USD and 1 lot at 1.10000 is 110,000.00 USD of notional.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from brokers.base import RejectReason
from brokers.paper.venue import SimulatedVenue
from engine.clock import SimulatedClock
from engine.errors import ConfigError
from engine.instrument import AssetClass, Instrument
from engine.money import ConversionRates, FeeModel
from engine.oms import OrderManager
from engine.orders import Order, OrderSide, OrderState, OrderType
from engine.portfolio import Portfolio


def fx(symbol: str = "EURUSD", quote: str = "USD", price_increment: str = "0.00001", **margin) -> Instrument:
    return Instrument(symbol, asset_class=AssetClass.FX, price_increment=Decimal(price_increment),
                      size_increment=Decimal("0.01"), min_qty=Decimal("0.01"), multiplier=Decimal(100_000),
                      quote_currency=quote, **margin)


EURUSD = fx(leverage=Decimal(30))
S = EURUSD.scales
MONDAY = pd.Timestamp("2024-01-01T12:00Z").value  # 2024-01-01 was a Monday
HOUR = 3600 * 10**9


def px(value: str, instrument: Instrument = EURUSD) -> int:
    return int(Decimal(value).scaleb(instrument.scales.price_dp))


def usd(value: str) -> int:
    return S.cash_raw(Decimal(value))


class Desk:
    """One bot on a margin account: venue + OMS sharing the portfolio, as the backtester runs it."""

    def __init__(self, instrument: Instrument, cash: str, *, currency: str = "", stop_out: str | None = None,
                 rates: ConversionRates | None = None, fees: FeeModel = FeeModel()) -> None:
        self.instrument = instrument
        self.clock = SimulatedClock(MONDAY)
        self.portfolio = Portfolio.for_instrument(Decimal(cash), instrument, currency, rates,
                                                  None if stop_out is None else Decimal(stop_out))
        self.venue = SimulatedVenue(instrument, Decimal(cash), fees, shared_account=self.portfolio)
        self.oms = OrderManager("bot", self.clock, self.venue, self.portfolio, {instrument.symbol: instrument})
        self.bar = 0

    def order(self, side: OrderSide, qty: str) -> Order:
        order = Order(self.oms.next_client_order_id(), "bot", self.instrument.symbol, side, OrderType.MARKET,
                      Decimal(qty), self.clock.ts)
        self.oms.submit(order)
        return order

    def on_bar(self, o: str, h: str, lo: str, c: str, ts: int | None = None) -> None:
        self.clock.ts = ts if ts is not None else self.clock.ts + HOUR
        i = self.instrument
        self.venue.on_bar(px(o, i), px(h, i), px(lo, i), px(c, i), self.clock.ts, self.bar)
        self.bar += 1

    @property
    def qty(self) -> Decimal:
        return self.portfolio.positions[self.instrument.symbol].quantity


def test_margin_used_and_free_for_one_eurusd_lot_at_leverage_30():
    desk = Desk(EURUSD, "10000")
    desk.order(OrderSide.BUY, "1")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    p = desk.portfolio
    assert desk.qty == 1 and p.cash == Decimal("10000")   # on margin no notional leaves the account
    at = {"EURUSD": px("1.10000")}
    # margin = 1 lot * 100,000 * 1.10000 / 30 = 3,666.666... -> 3,666.67 (rounded up to the cent)
    assert p.margin_used_raw(at) == usd("3666.67")
    assert p.equity_raw(at) == usd("10000")
    assert p.free_margin_raw(at) == usd("6333.33")         # 10,000 - 3,666.67
    up = {"EURUSD": px("1.10500")}
    # at 1.10500: floating P&L (1.10500 - 1.10000) * 100,000 = 500.00; equity 10,500.00;
    # margin 110,500 / 30 = 3,683.333... -> 3,683.34; free 10,500 - 3,683.34 = 6,816.66
    assert p.equity_raw(up) == usd("10500") and p.unrealized_pnl_raw(up) == usd("500")
    assert p.margin_used_raw(up) == usd("3683.34") and p.free_margin_raw(up) == usd("6816.66")
    # the books' identity: equity = initial cash + realized + unrealized
    assert p.equity_raw(up) == p.initial_cash_raw + p.realized_pnl_raw + p.unrealized_pnl_raw(up)


def test_an_order_without_free_margin_is_refused_and_nothing_is_booked():
    desk = Desk(EURUSD, "3000")
    # 1 lot needs 3,666.67 of margin, more than the 3,000.00 of equity
    too_big = desk.order(OrderSide.BUY, "1")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    assert too_big.state is OrderState.REJECTED and too_big.reason == RejectReason.INSUFFICIENT_FUNDS
    assert desk.qty == 0 and desk.portfolio.cash == Decimal("3000") and desk.oms.fills == []
    # 0.8 lot needs 80,000 * 1.1 / 30 = 2,933.33... -> 2,933.34, which fits
    fits = desk.order(OrderSide.BUY, "0.8")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    assert fits.state is OrderState.FILLED and desk.qty == Decimal("0.8")
    # a second 0.1 lot needs 366.67 more; free margin is 3,000 - 2,933.34 = 66.66: refused
    more = desk.order(OrderSide.BUY, "0.1")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    assert more.state is OrderState.REJECTED and desk.qty == Decimal("0.8")
    # closing never needs margin
    close = desk.order(OrderSide.SELL, "0.8")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    assert close.state is OrderState.FILLED and desk.qty == 0


def test_a_position_is_stopped_out_at_the_first_price_that_breaches_the_stop_out_level():
    instrument = fx(leverage=Decimal(100))
    desk = Desk(instrument, "1000", stop_out="0.5")
    desk.order(OrderSide.BUY, "0.5")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    # 0.5 lot = 50,000 EUR. At price P: equity = 1,000 + (P - 1.1) * 50,000, margin = 50,000 * P / 100
    # = 500 P. Stop-out when equity <= 0.5 * margin: 1,000 + 50,000 P - 55,000 <= 250 P, i.e.
    # P <= 54,000 / 49,750 = 1.0854271... At 1.08542: margin 542.71, equity 1,000 - 729.00 = 271.00
    # <= 271.355: breached. At 1.08543: margin 542.715 -> 542.72, equity 271.50 > 271.36: holds.
    desk.on_bar("1.09000", "1.09100", "1.09000", "1.09050")     # level 545/545 = ~1.0: nothing
    assert desk.qty == Decimal("0.5")
    desk.on_bar("1.09000", "1.09100", "1.08000", "1.08500")     # passes through 1.08542
    assert desk.qty == 0
    stop_out = desk.oms.fills[-1]
    assert stop_out.client_order_id == "STOPOUT-1" and stop_out.price == Decimal("1.08542")
    # realized (1.08542 - 1.10000) * 50,000 = -729.00 -> balance 271.00
    assert desk.portfolio.cash == Decimal("271") and desk.portfolio.realized_pnl_raw == usd("-729")
    assert desk.oms.orders["STOPOUT-1"].state is OrderState.FILLED


def test_a_gap_through_the_stop_out_level_closes_at_the_open():
    instrument = fx(leverage=Decimal(100))
    desk = Desk(instrument, "1000", stop_out="0.5")
    desk.order(OrderSide.BUY, "0.5")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    desk.on_bar("1.08000", "1.08100", "1.07000", "1.07500")
    # the open 1.08000 is already past 1.08542: closed there, loss 0.02 * 50,000 = 1,000.00
    assert desk.qty == 0 and desk.oms.fills[-1].price == Decimal("1.08") and desk.portfolio.cash == 0


def test_usdjpy_pnl_on_a_usd_account_is_reported_in_usd_at_the_current_rate():
    usdjpy = fx("USDJPY", quote="JPY", price_increment="0.001", leverage=Decimal(30))
    rates = ConversionRates()
    desk = Desk(usdjpy, "10000", currency="USD", rates=rates)
    desk.order(OrderSide.BUY, "1")
    desk.on_bar("150.000", "150.000", "150.000", "150.000")   # the venue feeds USD/JPY from its prices
    p = desk.portfolio
    # margin: 100,000 USD of notional / 30 = 3,333.333... -> 3,333.34 USD (15,000,000 JPY / 30 at 150)
    assert p.margin_used_raw({"USDJPY": px("150.000", usdjpy)}) == usdjpy.scales.cash_raw(Decimal("3333.34"))
    desk.on_bar("151.500", "151.500", "151.500", "151.500")
    at = {"USDJPY": px("151.500", usdjpy)}
    # floating: (151.500 - 150.000) * 100,000 = 150,000 JPY; at 151.500 JPY per USD = 990.0990... USD
    # -> 990.10 USD (half-even to the cent)
    assert p.unrealized_pnl_raw(at) == usdjpy.scales.cash_raw(Decimal("990.10"))
    assert p.equity_raw(at) == usdjpy.scales.cash_raw(Decimal("10990.10"))
    desk.order(OrderSide.SELL, "1")
    desk.on_bar("151.500", "151.500", "151.500", "151.500")
    # realized at the close's rate: the same 990.10 USD, into the USD balance
    assert p.cash == Decimal("10990.10") and p.realized_pnl_raw == usdjpy.scales.cash_raw(Decimal("990.10"))


def test_a_missing_conversion_rate_refuses_the_fill_and_books_nothing():
    eurjpy = fx("EURJPY", quote="JPY", price_increment="0.001", leverage=Decimal(30))
    p = Portfolio.for_instrument(Decimal("10000"), eurjpy, "USD", ConversionRates())  # no JPY/USD rate
    with pytest.raises(ConfigError) as refused:
        p.apply_fill(eurjpy, +1, 100, px("160.000", eurjpy), 0, MONDAY)
    assert refused.value.field == "conversion_rate" and "no JPY/USD rate" in str(refused.value)
    assert p.positions["EURJPY"].qty == 0 and p.cash == Decimal("10000")


def test_swap_is_charged_at_each_weekday_rollover_three_times_on_wednesday():
    instrument = fx(leverage=Decimal(30), swap_long=Decimal("-7.50"), swap_short=Decimal("2.10"))
    desk = Desk(instrument, "10000")
    desk.order(OrderSide.BUY, "1")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000", ts=MONDAY)                   # Mon 12:00 fill
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000", ts=MONDAY + 9 * HOUR)       # Mon 21:00
    assert desk.portfolio.cash == Decimal("10000")                                      # no rollover yet
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000", ts=MONDAY + 11 * HOUR)      # Mon 23:00
    assert desk.portfolio.cash == Decimal("9992.50")                                    # 1 night * -7.50
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000", ts=MONDAY + 59 * HOUR)      # Wed 23:00
    # Tuesday 22:00 (1 night) and Wednesday 22:00 (3 nights): 4 * -7.50 = -30.00 more
    assert desk.portfolio.cash == Decimal("9962.50")
    assert desk.portfolio.swap_raw == usd("-37.50") and desk.portfolio.realized_pnl_raw == usd("-37.50")
    desk.order(OrderSide.SELL, "2")                                                     # flip to 1 short
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000", ts=MONDAY + 60 * HOUR)      # Thu 00:00
    # Friday 22:00 counts one night, Saturday's and Sunday's none: +2.10 for 1 lot short
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000", ts=MONDAY + 7 * 24 * HOUR)  # next Mon 12:00
    # Thursday 22:00 and Friday 22:00: 2 nights * +2.10 = +4.20
    assert desk.portfolio.cash == Decimal("9966.70")


def test_commission_per_lot_is_charged_on_each_fill():
    instrument = fx(leverage=Decimal(30), commission_per_lot=Decimal("3.50"))
    desk = Desk(instrument, "10000")
    desk.order(OrderSide.BUY, "0.3")
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    # 0.3 lot * 3.50 = 1.05 USD
    assert desk.portfolio.cash == Decimal("9998.95") and desk.oms.fills[0].fee == Decimal("1.05")


@pytest.mark.parametrize("field, values", [
    ("leverage", {"leverage": Decimal(0)}),
    ("margin_rate", {"margin_rate": Decimal("-0.05")}),
    ("margin_per_lot", {"margin_per_lot": Decimal("-1000")}),
    ("multiplier", {"multiplier": Decimal("100000.5")}),
    ("commission_per_lot", {"commission_per_lot": Decimal("-1")}),
    ("margin", {"leverage": Decimal(30), "margin_rate": Decimal("0.05")}),
])
def test_bad_margin_input_is_refused_naming_the_field(field, values):
    base = {"symbol": "EURUSD", "asset_class": AssetClass.FX, "price_increment": Decimal("0.00001"),
            "size_increment": Decimal("0.01"), "multiplier": Decimal(100_000)}
    with pytest.raises(ConfigError) as refused:
        Instrument(**{**base, **values})
    assert refused.value.field == field


def test_a_bad_stop_out_level_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as refused:
        Portfolio.for_instrument(Decimal(1000), EURUSD, stop_out_level=Decimal("-0.5"))
    assert refused.value.field == "stop_out_level"


def test_the_risk_engine_denies_an_order_without_free_margin_instead_of_asking_for_its_notional():
    from engine.risk import AccountRisk, RiskEngine, RiskLimits

    desk = Desk(EURUSD, "3000")
    risk = RiskEngine("bot", RiskLimits(), AccountRisk(), desk.clock, {"EURUSD": EURUSD},
                      last_price=lambda _: Decimal("1.10000"))
    risk.bind(desk.oms)
    desk.oms.risk = risk
    # 0.8 lot: 88,000 of notional, far beyond the 3,000 of cash, but its margin 2,933.34 fits
    fits = desk.order(OrderSide.BUY, "0.8")
    assert fits.state is OrderState.SUBMITTED
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    # 0.1 lot more adds 366.67 of margin; free margin is 3,000 - 2,933.34 = 66.66
    denied = desk.order(OrderSide.BUY, "0.1")
    assert denied.state is OrderState.DENIED and denied.reason == "INSUFFICIENT_MARGIN"
    closing = desk.order(OrderSide.SELL, "0.8")  # a reduction needs no margin
    assert closing.state is OrderState.SUBMITTED


# -- the backtester on margin ---------------------------------------------------------------------

def _eurusd_bars():
    from backtest.data import load_bars
    from pathlib import Path
    return load_bars(Path(__file__).resolve().parents[2] / "data" / "fx" / "EURUSD_1h.csv").iloc[:1500]


def test_a_margin_backtest_books_margin_swap_and_commission_and_its_equity_adds_up():
    from backtest.config import InstrumentSpec, make_config
    from backtest.runner import run_backtest
    from strategies import get_strategy

    spec = InstrumentSpec(contract_size=Decimal(100_000), tick=Decimal("0.00001"), lot_step=Decimal("0.01"),
                          min_qty=Decimal("0.01"), commission_per_lot=Decimal("3.5"),
                          swap_long=Decimal("-7.5"), swap_short=Decimal("2.1"))
    config = make_config(symbol="EURUSD", cash="10000", instrument=spec, leverage="30")
    result = run_backtest(_eurusd_bars(), get_strategy("sma_cross"), {"fast": 10, "slow": 20, "size": "0.2"}, config)
    assert result.meta["path"] == "event" and result.meta["margin"]["leverage"] == "30"
    trades = result.trades
    assert len(trades) > 10
    # sized on margin: 0.2 of ~10,000 equity as margin at leverage 30 is ~0.5 lot, i.e. ~55,000 EUR
    # of notional, more than five times the cash (a cash account could not buy one lot)
    assert trades["size"].max() >= Decimal("0.4") and (trades["size"] * 100_000 * trades["entry_price"]).max() > 40_000
    # flat at the end: equity = cash + every trade's net P&L + swap, to the cent
    swap = float(result.meta["margin"]["swap"])
    assert swap < 0  # mostly long or short over many rollovers
    assert result.equity.iloc[-1] == pytest.approx(10_000 + trades["pnl"].sum() + swap, abs=1e-6)
    assert result.fees_total == pytest.approx(trades["fees"].sum(), abs=1e-6)


def test_the_fast_path_refuses_a_margin_backtest_instead_of_faking_it():
    from backtest.config import make_config
    from backtest.runner import run_backtest
    from strategies import get_strategy

    config = make_config(symbol="EURUSD", leverage="30", path="fast")
    with pytest.raises(ConfigError) as refused:
        run_backtest(_eurusd_bars(), get_strategy("sma_cross"), {"fast": 10, "slow": 20}, config)
    assert refused.value.field == "path"


@pytest.mark.parametrize("yaml_text, field", [
    ("EURUSD:\n  contract_size: 100000.5\n", "instruments.EURUSD.contract_size"),
    ("EURUSD:\n  leverage: 0\n", "instruments.EURUSD.leverage"),
    ("EURUSD:\n  margin_per_lot: -50\n", "instruments.EURUSD.margin_per_lot"),
    ("EURUSD:\n  tick: 0.00001\n  colour: red\n", "instruments.EURUSD.colour"),
    ("- not a mapping\n", "instruments"),
])
def test_a_bad_instrument_spec_is_refused_naming_the_field(tmp_path, yaml_text, field):
    from backtest.config import load_instrument_specs

    path = tmp_path / "instruments.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as refused:
        load_instrument_specs(path)
    assert refused.value.field == field and str(tmp_path) not in str(refused.value)


@pytest.mark.parametrize("values, field", [({"leverage": "0"}, "leverage"), ({"margin": "-0.05"}, "margin"),
                                           ({"stop_out_level": "-1"}, "stop_out_level")])
def test_bad_margin_options_are_refused_naming_the_field(values, field):
    from backtest.config import make_config

    with pytest.raises(ConfigError) as refused:
        make_config(**values)
    assert refused.value.field == field


def test_the_risk_engine_sizes_an_equity_fraction_on_margin_like_the_venue():
    from engine.risk import AccountRisk, RiskEngine, RiskLimits

    desk = Desk(EURUSD, "10000")
    risk = RiskEngine("bot", RiskLimits(max_position_qty=Decimal("0.6")), AccountRisk(), desk.clock,
                      {"EURUSD": EURUSD}, last_price=lambda _: Decimal("1.10000"))
    risk.bind(desk.oms)
    desk.oms.risk = risk
    order = Order(desk.oms.next_client_order_id(), "bot", "EURUSD", OrderSide.BUY, OrderType.MARKET, None,
                  desk.clock.ts, equity_fraction=Decimal("0.2"))
    # 0.2 x 10,000 = 2,000 of margin; one lot needs 3,666.67: 0.545... -> 0.54 lot (not 0.018 lot
    # of a cash account's 2,000 / 110,000), within max_position_qty 0.6
    assert risk._fraction_qty(order, desk.portfolio, Decimal("1.10000")) == Decimal("0.54")
    desk.oms.submit(order)
    desk.on_bar("1.10000", "1.10000", "1.10000", "1.10000")
    assert order.state is OrderState.FILLED and desk.qty == Decimal("0.54")  # the venue agrees


def test_tickbridge_backtest_takes_an_instruments_file_and_margin_options(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "data" / "fx" / "EURUSD_1h.csv"
    specs = tmp_path / "instruments.yaml"
    specs.write_text("EURUSD:\n  contract_size: 100000\n  tick: 0.00001\n  lot_step: 0.01\n  leverage: 30\n"
                     "  commission_per_lot: 3.5\n  swap_long: -7.5\n  swap_short: 2.1\n")
    out = tmp_path / "r.json"

    def tickbridge(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--strategy", "sma_cross",
                               "--data", str(data), "--symbol", "EURUSD", *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    done = tickbridge("--instruments", specs, "--param", "size=0.2", "--json", out)
    assert done.returncode == 0, done.stderr
    meta = json.loads(out.read_text())["meta"]
    assert meta["path"] == "event" and meta["margin"]["leverage"] == "30" and meta["margin"]["swap"] != "0.00"
    refused = tickbridge("--leverage", "0")
    assert refused.returncode != 0 and "leverage" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr


def test_a_futures_contract_is_the_same_model_with_a_fixed_margin_per_contract():
    es = Instrument("ES", asset_class=AssetClass.FUTURE, price_increment=Decimal("0.25"), multiplier=Decimal(50),
                    margin_per_lot=Decimal(12_000), commission_per_lot=Decimal("2.25"))
    desk = Desk(es, "30000")
    desk.order(OrderSide.BUY, "2")
    desk.on_bar("5000.00", "5000.00", "5000.00", "5000.00")
    p, cash = desk.portfolio, es.scales.cash_raw
    # margin 2 contracts * 12,000 = 24,000 whatever the price; commission 2 * 2.25 = 4.50
    assert p.margin_used_raw({"ES": px("5010.00", es)}) == cash(Decimal(24_000))
    assert p.cash == Decimal("29995.50")
    # 10 points up: 2 * 10 * 50 = 1,000.00 floating
    assert p.equity_raw({"ES": px("5010.00", es)}) == cash(Decimal("30995.50"))
    assert p.free_margin_raw({"ES": px("5010.00", es)}) == cash(Decimal("6995.50"))
    # a third contract needs 12,000 more than the 6,000 free at 5,000.00: refused
    third = desk.order(OrderSide.BUY, "1")
    desk.on_bar("5000.00", "5000.00", "5000.00", "5000.00")
    assert third.state is OrderState.REJECTED and desk.qty == 2


def test_a_durable_paper_venue_replays_its_stop_out_and_swap_from_the_log(tmp_path):
    from brokers.paper.durable import DurablePaperVenue

    instrument = fx(leverage=Decimal(100), swap_long=Decimal("-7.50"))
    log = tmp_path / "venue.log"
    venue = DurablePaperVenue(log, instrument, Decimal(1000), stop_out_level=Decimal("0.5"))
    sink = _Sink()
    venue.connect(sink)
    order = Order("b-1", "b", "EURUSD", OrderSide.BUY, OrderType.MARKET, Decimal("0.5"), MONDAY)
    venue.submit(order)
    venue.on_tick(1, px("1.09999"), px("1.10000"), 0, MONDAY)
    venue.on_tick(2, px("1.09999"), px("1.10000"), 0, MONDAY + 11 * HOUR)   # Monday 22:00 passed
    venue.on_tick(3, px("1.08500"), px("1.08501"), 0, MONDAY + 12 * HOUR)   # stopped out at 1.08500
    cash, qty = venue.cash_raw(), venue.position_raw()
    venue.close()
    # 0.5 lot * -7.50 = -3.75 of swap; (1.08500 - 1.10000) * 50,000 = -750.00: 1,000 - 753.75
    assert qty == 0 and instrument.scales.cash(cash) == Decimal("246.25")
    assert [f.client_order_id for f in sink.fills] == ["b-1", "STOPOUT-1"]
    reopened = DurablePaperVenue(log, instrument, Decimal(1000), stop_out_level=Decimal("0.5"))
    assert (reopened.cash_raw(), reopened.position_raw()) == (cash, qty)
    assert reopened.order_status("STOPOUT-1") is not None
    reopened.close()


class _Sink:
    """Collects the fills a venue reports; the other reports do not matter here."""

    def __init__(self) -> None:
        self.fills: list = []

    def on_submitted(self, order, ts) -> None:
        pass

    def on_accepted(self, order, ts) -> None:
        pass

    def on_rejected(self, order, ts, reason) -> None:
        pass

    def on_canceled(self, order, ts, reason) -> None:
        pass

    def on_fill(self, order, fill, bar) -> None:
        self.fills.append(fill)


def test_a_commission_per_share_finer_than_the_cent_is_rounded_on_the_fills_total():
    shares = Instrument("SPY", price_increment=Decimal("0.01"), margin_rate=Decimal("0.5"),
                        commission_per_lot=Decimal("0.005"))
    desk = Desk(shares, "100000")
    desk.order(OrderSide.BUY, "301")
    desk.on_bar("500.00", "500.00", "500.00", "500.00")
    # 301 shares * 0.005 = 1.505 -> 1.50 (half to even), not 301 * 0.01 = 3.01
    assert desk.oms.fills[0].fee == Decimal("1.50")
