"""The ccxt adapter: any ccxt exchange by id behind the BrokerAdapter contract (binance tested)."""
