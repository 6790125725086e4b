"""MetaTrader 5: the adapter (adapter.py), its venue-to-domain mapping (mapping.py) and the tick
feed (feed.py). The MetaTrader5 module, or an mt5linux bridge with the same API, is injected."""

from brokers.mt5.adapter import MT5Adapter
from brokers.mt5.feed import MT5Feed

__all__ = ["MT5Adapter", "MT5Feed"]
