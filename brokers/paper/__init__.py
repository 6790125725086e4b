"""The built-in simulated venue: backtests and paper trading fill orders here."""

from brokers.paper.venue import SimulatedVenue

__all__ = ["SimulatedVenue"]
