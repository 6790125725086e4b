"""strategies.registry: built-ins (imported only when named), the operator's strategies directory,
installed packages' entry points, and file / module references where the caller allows code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import ConfigError
from strategies import STRATEGIES, get_strategy
from strategies.base import Strategy
from strategies.registry import DIR_ENV, available, is_code_ref, resolve_strategy
from tests.conftest import ROOT

CROSS = '''
import pandas_ta as ta
from strategies.base import Strategy, StrategyParams


class {cls}(Strategy):
    name = "{name}"

    class Params(StrategyParams):
        fast: int = 5

    def init(self):
        self.fast = self.I(ta.ema, self.data.Close, length=self.p.fast)
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def no_dir(monkeypatch):
    monkeypatch.delenv(DIR_ENV, raising=False)


# -- built-ins ----------------------------------------------------------------------------------------
def test_naming_a_builtin_imports_only_that_one():
    """sma_cross must not pay for ml_signal's scikit-learn and SQL store (seconds at every start)."""
    code = ("import sys\nfrom strategies import get_strategy\nget_strategy('sma_cross')\n"
            "print(sorted(m for m in ('models.ml_signal', 'sqlalchemy', 'sklearn', 'models.signals') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_strategies_mapping_keeps_working_for_existing_callers():
    from strategies.sma_cross import SmaCross

    assert {"sma_cross", "rsi_reversion", "ml_signal"} <= set(STRATEGIES)
    assert "sma_cross" in STRATEGIES and STRATEGIES["sma_cross"] is SmaCross is get_strategy("sma_cross")

    class Registered(Strategy):
        name = "registered_in_a_test"

    assert STRATEGIES.setdefault(Registered.name, Registered) is Registered  # what the runtime tests do
    try:
        assert get_strategy("registered_in_a_test") is Registered
        assert resolve_strategy("registered_in_a_test", allow_code_refs=False) is Registered
    finally:
        del STRATEGIES[Registered.name]
    with pytest.raises(ConfigError, match="unknown strategy 'registered_in_a_test'"):
        get_strategy("registered_in_a_test")


def test_an_unknown_name_lists_what_is_known_and_how_to_name_a_file(no_dir):
    with pytest.raises(ConfigError) as refused:
        resolve_strategy("sma_crss", allow_code_refs=True)
    assert refused.value.field == "strategy"
    assert "did you mean 'sma_cross'" in refused.value.message
    assert "rsi_reversion" in refused.value.message and "path/to/file.py:Class" in refused.value.message


# -- code references --------------------------------------------------------------------------------
def test_a_file_reference_loads_the_class(tmp_path):
    path = write(tmp_path / "mine" / "cross.py", CROSS.format(cls="FileCross", name="file_cross"))
    ref = f"{path}:FileCross"
    assert is_code_ref(ref) and not is_code_ref("sma_cross")
    cls = resolve_strategy(ref, allow_code_refs=True)
    assert cls.__name__ == "FileCross" and cls.name == "file_cross" and issubclass(cls, Strategy)
    assert resolve_strategy(ref, allow_code_refs=True) is cls  # loaded once
    assert get_strategy(ref) is cls  # what the runtime does with a config the operator's YAML validated


def test_a_relative_file_reference_is_read_from_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "strats" / "rel.py", CROSS.format(cls="RelCross", name="rel_cross"))
    monkeypatch.chdir(tmp_path)
    assert resolve_strategy("strats/rel.py:RelCross", allow_code_refs=True).name == "rel_cross"


def test_code_references_are_refused_where_code_may_not_be_loaded(tmp_path):
    path = write(tmp_path / "never.py", "raise SystemExit('this file must never run')\n")
    for ref in (f"{path}:Never", "os:system", "strategies.sma_cross:SmaCross"):
        with pytest.raises(ConfigError) as refused:
            resolve_strategy(ref, allow_code_refs=False)
        assert refused.value.field == "strategy"
        assert "installed" in refused.value.message and "sma_cross" in refused.value.message


def test_a_module_reference_loads_the_class(tmp_path, monkeypatch):
    write(tmp_path / "pkg_mod_ref" / "__init__.py", "")
    write(tmp_path / "pkg_mod_ref" / "cross.py", CROSS.format(cls="ModCross", name="mod_cross"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_strategy("pkg_mod_ref.cross:ModCross", allow_code_refs=True).name == "mod_cross"


@pytest.mark.parametrize("ref, expected", [
    ("{tmp}/missing.py:X", "no such file"),
    ("{tmp}/ok.py:OkCros", "has no class 'OkCros'; did you mean 'OkCross'"),
    ("{tmp}/ok.py:helper", "helper is not a Strategy subclass"),
    ("{tmp}/ok.py:", "expected path/to/file.py:Class or package.module:Class"),
    ("no_such_module_xyz:Cls", "no module 'no_such_module_xyz'"),
])
def test_bad_code_references_say_what_is_wrong(tmp_path, ref, expected):
    write(tmp_path / "ok.py", CROSS.format(cls="OkCross", name="ok_cross") + "\n\ndef helper():\n    pass\n")
    with pytest.raises(ConfigError) as refused:
        resolve_strategy(ref.format(tmp=tmp_path), allow_code_refs=True)
    assert refused.value.field == "strategy"
    assert expected in refused.value.message


def test_a_file_that_fails_to_import_names_its_line(tmp_path):
    path = write(tmp_path / "broken.py", "import math\n\n\nx = math.sqrt(-1)\n")
    with pytest.raises(ConfigError) as refused:
        resolve_strategy(f"{path}:Anything", allow_code_refs=True)
    assert "broken.py line 4" in refused.value.message and "ValueError" in refused.value.message
    syntax = write(tmp_path / "syntax.py", "class A(:\n    pass\n")
    with pytest.raises(ConfigError) as refused:
        resolve_strategy(f"{syntax}:A", allow_code_refs=True)
    assert "syntax.py line 1" in refused.value.message and "SyntaxError" in refused.value.message


# -- the strategies directory --------------------------------------------------------------------------
def test_every_named_strategy_in_the_directory_resolves(tmp_path, monkeypatch):
    folder = tmp_path / "strats"
    write(folder / "one.py", CROSS.format(cls="DirOne", name="dir_one"))
    write(folder / "two.py", CROSS.format(cls="DirTwo", name="dir_two") + textwrap.dedent('''
        from strategies.sma_cross import SmaCross  # imported, not defined here: not listed again


        class Base(Strategy):  # no name: a base class for others, not a strategy to run
            pass
        '''))
    monkeypatch.setenv(DIR_ENV, str(folder))
    assert resolve_strategy("dir_one", allow_code_refs=False).__name__ == "DirOne"
    assert get_strategy("dir_two").__name__ == "DirTwo"
    listed = {entry.name: entry for entry in available()}
    assert {"sma_cross", "dir_one", "dir_two"} <= set(listed)
    assert listed["dir_one"].origin.endswith("one.py") and listed["sma_cross"].origin == "built-in"


def test_a_name_defined_twice_in_the_directory_is_refused_naming_both(tmp_path, monkeypatch):
    folder = tmp_path / "dupes"
    write(folder / "a.py", CROSS.format(cls="A", name="twice"))
    write(folder / "b.py", CROSS.format(cls="B", name="twice"))
    monkeypatch.setenv(DIR_ENV, str(folder))
    with pytest.raises(ConfigError) as refused:
        resolve_strategy("twice", allow_code_refs=False)
    assert "a.py" in refused.value.message and "b.py" in refused.value.message


def test_a_broken_file_in_the_directory_is_named_when_the_name_is_not_found(tmp_path, monkeypatch):
    folder = tmp_path / "half"
    write(folder / "good.py", CROSS.format(cls="Good", name="good_one"))
    write(folder / "bad.py", "import pandas_ta as ta\n\nclass Oops(:\n")
    monkeypatch.setenv(DIR_ENV, str(folder))
    assert resolve_strategy("good_one", allow_code_refs=False).__name__ == "Good"  # the others still work
    with pytest.raises(ConfigError) as refused:
        resolve_strategy("in_the_broken_file", allow_code_refs=False)
    assert "bad.py line 3" in refused.value.message


def test_a_missing_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as refused:
        resolve_strategy("anything", allow_code_refs=False)
    assert "nowhere" in refused.value.message and DIR_ENV in refused.value.message


# -- entry points ------------------------------------------------------------------------------------
def make_distribution(root: Path, strategy_name: str = "ep_cross") -> None:
    """A package installed the way pip leaves one: the module and its .dist-info with entry points."""
    write(root / "ep_strats_pkg" / "__init__.py", CROSS.format(cls="EpCross", name=strategy_name))
    info = root / "ep_strats_pkg-1.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: ep-strats-pkg\nVersion: 1.0\n")
    write(info / "entry_points.txt", f"[tickbridge.strategies]\n{strategy_name} = ep_strats_pkg:EpCross\n")


def test_an_installed_package_registers_strategies_by_entry_point(tmp_path, monkeypatch, no_dir):
    make_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = resolve_strategy("ep_cross", allow_code_refs=False)  # installed by the operator: the API may run it
    assert cls.__name__ == "EpCross"
    listed = {entry.name: entry.origin for entry in available()}
    assert "ep-strats-pkg" in listed["ep_cross"]


def test_a_strategy_code_error_keeps_its_location_through_pickling():
    """A sweep's worker raises it; the driver prints it: the user's line must survive the trip."""
    import pickle

    from strategies.base import StrategyCodeError

    error = StrategyCodeError("go(2): the direction must be +1, -1 or 0", "mine.py line 9, in next")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is StrategyCodeError and again.field == "strategy"
    assert again.message == error.message == "mine.py line 9, in next: go(2): the direction must be +1, -1 or 0"
