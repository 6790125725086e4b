"""Strategies, looked up by name from the CLI, bot configs and the API (strategies/registry.py
says where names come from). `STRATEGIES` is the mapping of the built-in and registered ones;
each built-in module is imported on first use, so naming sma_cross does not import ml_signal's
scikit-learn and SQL store."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from strategies.base import Strategy, StrategyParams


class _Strategies(MutableMapping[str, type[Strategy]]):
    """name -> Strategy class. Built-ins stay "module:Class" text until their entry is read;
    tests and embedding code may still register classes with `STRATEGIES[name] = cls`."""

    def __init__(self, lazy: dict[str, str]) -> None:
        self._lazy = dict(lazy)
        self._classes: dict[str, type[Strategy]] = {}

    def __getitem__(self, name: str) -> type[Strategy]:
        cls = self._classes.get(name)
        if cls is None:
            target = self._lazy.get(name)
            if target is None:
                raise KeyError(name)
            module, _, attr = target.partition(":")
            cls = self._classes[name] = getattr(importlib.import_module(module), attr)
        return cls

    def __setitem__(self, name: str, cls: type[Strategy]) -> None:
        self._lazy.pop(name, None)
        self._classes[name] = cls

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._lazy.pop(name, None)
        self._classes.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._lazy, *self._classes]))

    def __len__(self) -> int:
        return len(set(self._lazy) | set(self._classes))

    def __repr__(self) -> str:
        return f"STRATEGIES({sorted(self)})"


def _built_ins() -> dict[str, str]:
    from strategies.registry import BUILT_INS

    return BUILT_INS


STRATEGIES: MutableMapping[str, type[Strategy]] = _Strategies(_built_ins())


def get_strategy(name: str) -> type[Strategy]:
    """The strategy a name (or a code reference the operator's CLI or YAML already loaded) runs.
    Loads no code a caller names: see strategies.registry.resolve_strategy for that."""
    from strategies.registry import loaded_ref, resolve_strategy

    return loaded_ref(name) or resolve_strategy(name, allow_code_refs=False)


__all__ = ["STRATEGIES", "Strategy", "StrategyParams", "get_strategy"]
