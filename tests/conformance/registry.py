"""Adapter name -> "module:Class" of its conformance harness (see harness.py).

Each entry is imported lazily, so an adapter whose SDK is not installed skips only its own cases.
Add yours here: one line.
"""

from __future__ import annotations

HARNESSES: dict[str, str] = {
    "paper": "tests.conformance.harness_paper:PaperHarness",
    "paper_sim": "tests.conformance.harness_paper:PaperSimHarness",
    "ccxt": "tests.conformance.harness_ccxt:CcxtBinanceHarness",
    "ccxt_bybit": "tests.conformance.harness_ccxt:CcxtBybitHarness",
    "ccxt_binanceusdm": "tests.conformance.harness_ccxt:CcxtBinanceFuturesHarness",
    "mt5": "tests.conformance.harness_mt5:MT5Harness",
    "alpaca": "tests.conformance.harness_alpaca:AlpacaHarness",
}
