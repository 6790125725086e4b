"""Typed errors. Every error a user can provoke is one of these, so the CLI and the API can
print a clear message (and map it to an exit code or a 4xx) instead of a traceback."""

from __future__ import annotations


class TickbridgeError(Exception):
    """Base of every error tickbridge raises on purpose."""


class DataError(TickbridgeError):
    """Market data that cannot be used as it is: a missing column, unsorted or duplicate
    timestamps, NaN or non-positive prices. The message names the file and the problem."""


class ConfigError(TickbridgeError):
    """A configuration value that is refused. `field` names it so the user can fix it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownStrategyError(ConfigError):
    """A strategy name that no registered strategy answers to."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__("strategy", f"unknown strategy {name!r}; known: {', '.join(sorted(known))}")


class InvalidTransition(TickbridgeError):
    """An order state change the order state machine does not allow."""


class StoreUnavailable(TickbridgeError):
    """The database cannot be reached or read. Trading stops rather than trade blind."""
