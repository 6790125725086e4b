"""Where a strategy comes from, in one place: every command, bot config and API call asks here.

A strategy is named by a reference, `ref`:

- a built-in name (sma_cross, rsi_reversion, ml_signal, buy_and_hold), or one registered in
  `strategies.STRATEGIES`. A built-in's module is imported only when it is named: ml_signal
  pulls in scikit-learn and the SQL store, seconds that a moving-average backtest should not wait;
- a name defined in the operator's strategies directory (TICKBRIDGE_STRATEGIES_DIR, several
  joined by os.pathsep; the CLI's `--strategies-dir` sets it): every Strategy subclass with a
  `name` defined in its *.py files (files starting with "_" are helpers, not scanned);
- a name an installed package registers under the entry-point group `tickbridge.strategies`
  (`my_cross = my_package.strategies:MyCross` in its pyproject's
  [project.entry-points."tickbridge.strategies"]);
- a code reference, `path/to/file.py:Class` or `package.module:Class`, only where the caller
  says the code is the operator's own: the CLI and the operator's runtime YAML
  (`allow_code_refs=True`). The API runs only what the operator installed (the three above): a
  reference arriving in a request would make every API account a shell on the server.

Built-ins win over the directory, the directory over entry points. A name defined twice within
the directory, or by two packages, is refused naming both rather than picking one silently.
User files are loaded once per version (path, size, mtime); a file that fails to import is
reported at its line. `user_location` finds the user's own line in a traceback, so a mistake in
a strategy is reported where it was made, not deep in the engine.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import linecache
import os
import re
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from engine.errors import ConfigError, UnknownStrategyError
from engine.settings import RuntimeSettings, load_group
from strategies.base import Strategy

DIR_ENV = "TICKBRIDGE_STRATEGIES_DIR"
ENTRY_POINT_GROUP = "tickbridge.strategies"
CODE_REF_FORMS = "path/to/file.py:Class or package.module:Class"
BUILT_INS: dict[str, str] = {  # name -> module:Class, imported on first use
    "sma_cross": "strategies.sma_cross:SmaCross",
    "rsi_reversion": "strategies.rsi_reversion:RsiReversion",
    "ml_signal": "models.ml_signal:MlSignal",
    "buy_and_hold": "strategies.buy_and_hold:BuyAndHold",
}
REFUSED_CODE_REF = ("{ref!r} names code to load; the API runs only the strategies the operator installed "
                    "(built-ins, the strategies directory, packages' entry points): {known}")

_loaded_refs: dict[str, type[Strategy]] = {}          # code reference -> class, loaded by the operator's say-so
_modules: dict[Path, tuple[tuple[int, int], ModuleType]] = {}  # user file -> (size, mtime), module
_user_files: set[str] = set()                          # files of user strategy code, for user_location
_entry_points_cache: dict[tuple[str, ...], list[Any]] = {}


@dataclass(frozen=True, slots=True)
class Listing:
    """One strategy as `tickbridge strategies` shows it: its name, where it comes from, its class
    (None when it cannot be loaded), and a note (a load error, or what it is shadowed by)."""

    name: str
    origin: str
    cls: type[Strategy] | None = None
    note: str = ""


# -- the public entry points ---------------------------------------------------------------------------
def is_code_ref(ref: str) -> bool:
    """True for `path.py:Class` or `module:Class`; strategy names never hold a colon."""
    return ":" in ref


def resolve_strategy(ref: str, allow_code_refs: bool) -> type[Strategy]:
    """The strategy class `ref` names, or ConfigError("strategy", why not) saying what is known."""
    if is_code_ref(ref):
        if not allow_code_refs:
            raise ConfigError("strategy", REFUSED_CODE_REF.format(ref=ref, known=", ".join(installed_names())))
        cls = _loaded_refs.get(ref)
        if cls is None:
            cls = _loaded_refs[ref] = _load_code_ref(ref)
        return cls
    return _by_name(ref)


def loaded_ref(ref: str) -> type[Strategy] | None:
    """A code reference the operator's CLI or YAML already loaded in this process (a validated bot
    config naming one is run by the runtime through `get_strategy`), else None."""
    return _loaded_refs.get(ref)


def available() -> list[Listing]:
    """Every strategy this process can run by name: built-ins and registered ones, then the
    strategies directory, then entry points. Names defined twice are listed with a note."""
    from strategies import STRATEGIES

    listings: list[Listing] = []
    taken: dict[str, str] = {}
    for name in STRATEGIES:
        origin = "built-in" if name in BUILT_INS else "registered"
        try:
            listings.append(Listing(name, origin, STRATEGIES[name]))
        except ConfigError as exc:
            listings.append(Listing(name, origin, note=exc.message))
        taken[name] = origin
    found, errors = _scan_dirs()
    for name, (cls, path) in sorted(found.items()):
        listings.append(_listing(name, _show(path), cls, taken))
        taken.setdefault(name, _show(path))
    for path, message in errors:
        listings.append(Listing("?", _show(path), note=message))
    for ep in _entry_points():
        origin = f"package {_dist_name(ep)} ({ep.value})"
        try:
            listings.append(_listing(ep.name, origin, _load_entry_point(ep), taken))
        except ConfigError as exc:
            listings.append(Listing(ep.name, origin, note=exc.message))
        taken.setdefault(ep.name, origin)
    return listings


def installed_names() -> list[str]:
    """The names an API caller may use: built-ins, registered, the directory's, entry points'."""
    from strategies import STRATEGIES

    names = set(STRATEGIES)
    try:
        names.update(_scan_dirs()[0])
    except ConfigError:
        pass
    names.update(ep.name for ep in _entry_points())
    return sorted(names)


def set_strategies_dir(path: Path) -> None:
    """Make `path` the strategies directory of this process and of the processes it starts
    (Ray workers, a bot runtime): the CLI's --strategies-dir. A missing directory is refused."""
    if not path.is_dir():
        raise ConfigError("strategies-dir", f"{path} is not a directory")
    os.environ[DIR_ENV] = str(path.resolve())


def user_location(tb: TracebackType | None) -> str | None:
    """'file.py line N, in func: `source`' for the deepest frame of the traceback that is the
    user's code (a strategy file the registry loaded, or any file outside tickbridge, the
    standard library and installed packages), or None when the error is all ours."""
    found = None
    for frame, lineno in traceback.walk_tb(tb):
        if _is_user_file(frame.f_code.co_filename):
            found = (frame.f_code.co_filename, lineno, frame.f_code.co_name)
    if found is None:
        return None
    return describe_line(*found)


def user_location_in_text(text: str) -> str | None:
    """user_location for a traceback that came as text (a Ray worker's)."""
    found = None
    for filename, lineno, function in re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text):
        if _is_user_file(filename):
            found = (filename, int(lineno), function)
    return None if found is None else describe_line(*found)


def caller_location() -> str | None:
    """user_location for the current call stack: where the user's code called into ours."""
    frame = sys._getframe(1)
    while frame is not None:
        if _is_user_file(frame.f_code.co_filename):
            return describe_line(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        frame = frame.f_back
    return None


def describe_line(filename: str, lineno: int, function: str | None = None) -> str:
    """'examples/my_cross.py line 21, in next: `if self.fast[i + 1] > ...`' for a user's line."""
    where = f"{_show(Path(filename))} line {lineno}"
    if function and function != "<module>":
        where += f", in {function}"
    source = linecache.getline(filename, lineno).strip()
    return f"{where}: `{source}`" if source else where


# -- names -------------------------------------------------------------------------------------------
def _by_name(name: str) -> type[Strategy]:
    from strategies import STRATEGIES

    if name in STRATEGIES:
        return STRATEGIES[name]
    found, errors = _scan_dirs()
    if name in found:
        return found[name][0]
    matches = [ep for ep in _entry_points() if ep.name == name]
    if len(matches) > 1:
        raise ConfigError("strategy", f"{name!r} is registered by two packages: "
                                      + " and ".join(f"{_dist_name(ep)} ({ep.value})" for ep in matches))
    if matches:
        return _load_entry_point(matches[0])
    known = installed_names()
    message = UnknownStrategyError(name, known).message
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if errors:  # the name may be in a file that failed to import
        message += f"; note: {errors[0][1]}"
    message += f" (your own: a name in {DIR_ENV}, or {CODE_REF_FORMS} from the command line or a bot YAML)"
    raise ConfigError("strategy", message)


def _listing(name: str, origin: str, cls: type[Strategy], taken: dict[str, str]) -> Listing:
    note = f"shadowed by the {taken[name]} {name!r}" if name in taken else ""
    return Listing(name, origin, cls, note)


# -- the strategies directory ----------------------------------------------------------------------------
def _dirs() -> list[Path]:
    dirs = list(load_group(RuntimeSettings).strategies_dir)  # read each time: set_strategies_dir may change it
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError("strategy", f"strategies directory {folder} (from {DIR_ENV}) is not a directory")
    return dirs


def _scan_dirs() -> tuple[dict[str, tuple[type[Strategy], Path]], list[tuple[Path, str]]]:
    """name -> (class, file) for every named Strategy subclass defined in the directory's files,
    and the files that failed to import (path, message)."""
    found: dict[str, tuple[type[Strategy], Path]] = {}
    errors: list[tuple[Path, str]] = []
    for folder in _dirs():
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith(("_", ".")):
                continue
            try:
                module = _load_file(path)
            except ConfigError as exc:
                errors.append((path, exc.message))
                continue
            for cls in _strategy_classes(module):
                if not cls.name:
                    continue
                if cls.name in found and found[cls.name][0] is not cls:
                    raise ConfigError("strategy", f"{cls.name!r} is defined twice in the strategies directory: "
                                                  f"{_show(found[cls.name][1])} and {_show(path)}")
                found[cls.name] = (cls, path)
    return found, errors


def _strategy_classes(module: ModuleType) -> list[type[Strategy]]:
    """Strategy subclasses defined in `module` itself (not ones it imports)."""
    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Strategy) and value is not Strategy
            and value.__module__ == module.__name__]


# -- entry points ----------------------------------------------------------------------------------------
def _entry_points() -> list[Any]:
    """The group's entry points, read once per sys.path (a scan of every installed distribution)."""
    from importlib.metadata import entry_points

    key = tuple(sys.path)
    if key not in _entry_points_cache:
        _entry_points_cache.clear()
        _entry_points_cache[key] = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    return _entry_points_cache[key]


def _dist_name(ep: Any) -> str:
    return ep.dist.name if getattr(ep, "dist", None) is not None else "?"


def _load_entry_point(ep: Any) -> type[Strategy]:
    try:
        value = ep.load()
    except Exception as exc:
        raise ConfigError("strategy", f"package {_dist_name(ep)}'s strategy {ep.name!r} ({ep.value}) failed to "
                                      f"load: {_error_text(exc)}") from None
    module = sys.modules.get(getattr(value, "__module__", ""), None)
    if module is not None and getattr(module, "__file__", None):
        _user_files.add(str(Path(module.__file__).resolve()))
    return _checked(value, f"{ep.value} (package {_dist_name(ep)})")


# -- code references -------------------------------------------------------------------------------------
def _load_code_ref(ref: str) -> type[Strategy]:
    target, _, attr = ref.rpartition(":")
    if not target or not attr.isidentifier():
        raise ConfigError("strategy", f"{ref!r}: expected {CODE_REF_FORMS}")
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ConfigError("strategy", f"{target}: no such file (relative paths are read from {Path.cwd()})")
        module = _load_file(path)
        where = _show(path)
    else:
        module = _import_module(target)
        where = f"module {target}"
    value = getattr(module, attr, None)
    if value is None:
        names = [cls.__name__ for cls in _strategy_classes(module)]
        close = difflib.get_close_matches(attr, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; strategies there: {', '.join(names) or 'none'}"
        raise ConfigError("strategy", f"{where} has no class {attr!r}{hint}")
    return _checked(value, f"{where}:{attr}")


def _import_module(name: str) -> ModuleType:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError("strategy", f"no module {name!r} (install it, add its folder to PYTHONPATH, or name "
                                          f"its file: path/to/file.py:Class)") from None
        raise ConfigError("strategy", f"module {name} failed to import: {_error_text(exc)}") from None
    except Exception as exc:
        raise ConfigError("strategy", f"module {name} failed to import: {_error_text(exc)}") from None
    if getattr(module, "__file__", None):
        _user_files.add(str(Path(module.__file__).resolve()))
    return module


def _load_file(path: Path) -> ModuleType:
    """Import a user's .py file as its own module, once per version of the file. Its folder goes on
    the end of sys.path (helpers beside it import as they would under `python file.py`), and the
    module is in sys.modules so that pickling (Ray workers) and dataclasses work."""
    path = path.resolve()
    stat = path.stat()
    version = (stat.st_size, stat.st_mtime_ns)
    cached = _modules.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    name = f"tickbridge_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("strategy", f"{_show(path)}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    _user_files.add(str(path))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        where = describe_line(exc.filename or str(path), exc.lineno or 0)
        raise ConfigError("strategy", f"{where}: SyntaxError: {exc.msg}") from None
    except Exception as exc:
        del sys.modules[name]
        where = user_location(exc.__traceback__) or _show(path)
        raise ConfigError("strategy", f"{where}: {_error_text(exc)}") from None
    _modules[path] = (version, module)
    return module


def _checked(value: Any, where: str) -> type[Strategy]:
    if not (isinstance(value, type) and issubclass(value, Strategy)):
        raise ConfigError("strategy", f"{where}: {getattr(value, '__name__', value)} is not a Strategy subclass "
                                      "(class MyStrategy(Strategy): ... from strategies.base)")
    if not value.name:
        value.name = value.__name__  # reports and bot summaries show a name; a reference needs none
    return value


# -- whose code is it ------------------------------------------------------------------------------------
_OURS = tuple(str(Path(__file__).resolve().parents[1] / package) + os.sep
              for package in ("engine", "backtest", "strategies", "brokers", "api", "models", "live", "app"))
_LIBRARIES = tuple({str(Path(p).resolve()) + os.sep for p in (sysconfig.get_paths()["stdlib"],
                                                             sysconfig.get_paths()["purelib"],
                                                             sysconfig.get_paths()["platlib"])})


_ENVIRONMENT = tuple({str(Path(p).resolve()) + os.sep for p in (sys.prefix, sys.base_prefix)})  # bin/tickbridge


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    if resolved in _user_files:
        return True
    return not resolved.startswith(_OURS) and not resolved.startswith(_LIBRARIES) \
        and "site-packages" not in resolved and "dist-packages" not in resolved \
        and not resolved.startswith(_ENVIRONMENT)


def _show(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
