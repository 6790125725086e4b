"""The MetaTrader5 fake's constants must equal the real module's.

The real wheel is Windows-only, so its __init__.py (which holds every constant) is fetched with
`pip download --platform win_amd64`, unzipped and parsed (never imported: it imports a compiled
core). When the registry cannot be reached the test is skipped, saying why.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fakes.mt5_fake import FakeMT5

MT5_VERSION = "5.0.6231"


def _evaluate(node: ast.expr) -> int | float | str:
    """Literal values and the `1 | 0x4000` style expressions the module uses for timeframes."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _evaluate(node.left) | _evaluate(node.right)  # type: ignore[operator]
    return ast.literal_eval(node)


def parse_constants(source: str) -> dict[str, object]:
    constants: dict[str, object] = {}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.isupper()):
            constants[node.targets[0].id] = _evaluate(node.value)
    return constants


@pytest.fixture(scope="module")
def real_constants(tmp_path_factory) -> dict[str, object]:
    target = tmp_path_factory.mktemp("mt5wheel")
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--platform", "win_amd64",
               "--python-version", "3.12", "--no-deps", f"MetaTrader5=={MT5_VERSION}", "-d", str(target)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"REAL-WHEEL CHECK NOT RUN: pip download MetaTrader5 failed: {exc!r}")
    wheels = list(Path(target).glob("*.whl"))
    if done.returncode != 0 or not wheels:
        pytest.skip("REAL-WHEEL CHECK NOT RUN: pip download MetaTrader5 failed "
                    f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        source = wheel.read("MetaTrader5/__init__.py").decode("utf-8")
    constants = parse_constants(source)
    assert len(constants) > 150, "the wheel's __init__.py no longer holds the constants: check the parser"
    return constants


def test_every_real_constant_exists_in_the_fake_with_the_same_value(real_constants):
    missing = sorted(name for name in real_constants if not hasattr(FakeMT5, name))
    different = {name: (getattr(FakeMT5, name), value) for name, value in real_constants.items()
                 if hasattr(FakeMT5, name) and getattr(FakeMT5, name) != value}
    assert not missing, f"constants missing from the fake: {missing}"
    assert not different, f"fake value != real value: {different}"


def test_the_fake_invents_no_constants(real_constants):
    invented = sorted(name for name in vars(FakeMT5) if name.isupper() and name not in real_constants)
    assert not invented, f"constants the real module does not have: {invented}"


def test_the_parser_reads_timeframe_expressions():
    assert parse_constants("TIMEFRAME_H4 = 4  | 0x4000\nX_Y = -1  # c")["TIMEFRAME_H4"] == 16388
