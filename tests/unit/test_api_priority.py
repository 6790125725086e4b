"""`tickbridge serve` lowers the API's CPU priority below its bot runtime's process, so a burst of
requests takes CPU from the bots last (docs/benchmarks.md, "API under load"). Each case runs in a
child interpreter: a nice level cannot be raised back once lowered."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import os, sys
from app.api_cli import _lower_priority
class Child: pid = 12345
class InProcess: pass
control = Child() if sys.argv[1] == "process" else InProcess()
before = os.nice(0)
try:
    _lower_priority(control)
except Exception as error:
    print("error", type(error).__name__, error)
else:
    print("niced", os.nice(0) - before)
"""


def probe(where: str, nice: str | None) -> str:
    env = {"PATH": "/usr/bin:/bin"} | ({} if nice is None else {"TICKBRIDGE_API_NICE": nice})
    done = subprocess.run([sys.executable, "-c", PROBE, where], capture_output=True, text=True, env=env, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_api_runs_ten_levels_below_bots_in_their_own_process_by_default():
    assert probe("process", None) == "niced 10"


def test_bots_sharing_the_api_process_are_not_niced_with_it():
    assert probe("thread", None) == "niced 0"


@pytest.mark.parametrize("value", ["20", "-1", "ten"])
def test_a_bad_nice_level_is_refused_with_the_variable_named(value):
    out = probe("process", value)
    assert out.startswith("error ConfigError") and "TICKBRIDGE_API_NICE" in out and "niced" not in out


def test_a_nice_level_needs_the_runtime_in_its_own_process():
    out = probe("thread", "5")
    assert out.startswith("error ConfigError") and "own process" in out
